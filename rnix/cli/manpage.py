"""Man pages generated from the click command tree and the compose field table.

Pages: `rnix.1` (every command at a glance, exit status, environment, files), one page per top-level
command (`rnix-compose.1` with all its subcommands, `rnix-run.1`, ...; a new command gets its page
by existing) and `rnix-compose.yaml.5` (`manpage_compose.py`).
`python -m rnix.cli.manpage --write man/` refreshes them and removes pages of commands that no longer
exist; `tests/cli/test_manpages.py` fails when man/ differs from what the code generates.
"""

from __future__ import annotations

import sys
from pathlib import Path

from rnix.cli import roff
from rnix.cli.helptext import Entry, root_command, walk

EXIT_STATUS = (
    ("0", "Success."),
    ("1", "The run did not fully succeed (an agent failed), or an internal error."),
    ("2", "Usage error or invalid compose file; nothing was run and no state was written."),
    (
        "3",
        "RNIX_HOME cannot hold rnix's state: it is not a directory, or its filesystem is read-only "
        "or full. Checked before a run starts anything; when it happens mid-run, the agents are "
        "stopped and what was recorded before stays consistent.",
    ),
    ("130", "Interrupted by SIGINT (Ctrl-C)."),
    ("143", "Terminated by SIGTERM."),
)
# Every variable rnix reads or sets; tests/cli/test_docs.py checks the code against this list.
ENVIRONMENT = (
    (
        "RNIX_HOME",
        "Where rnix keeps its state database and run files (default: $XDG_STATE_HOME/rnix, "
        "else ~/.local/state/rnix).",
    ),
    ("XDG_STATE_HOME", "Base of the default RNIX_HOME."),
    (
        "RNIX_CONFIG_HOME",
        "rnix's configuration directory; your own agent definitions are in its agents/ folder "
        "(default: $XDG_CONFIG_HOME/rnix, else ~/.config/rnix).",
    ),
    ("XDG_CONFIG_HOME", "Base of the default RNIX_CONFIG_HOME."),
    (
        "XDG_RUNTIME_DIR",
        "Base of the private directory for gateway sockets ($XDG_RUNTIME_DIR/rnix, else /tmp/rnix-UID).",
    ),
    ("RNIX_PROJECT_NAME", "Project name when -p is not given (beats name: in the compose file)."),
    ("COMPOSE_PROJECT_NAME", "docker compose's name for RNIX_PROJECT_NAME, used when that is not set."),
    (
        "RNIX_COMPOSE_FILE",
        "The compose file when -f is not given (one file; default: compose.yaml in the directory).",
    ),
    ("COMPOSE_FILE", "docker compose's name for RNIX_COMPOSE_FILE, used when that is not set."),
    ("RNIX_SEED", "Seed for choosing among candidates, as --seed."),
    ("RNIX_ENGINE", "Where `compose up` runs the agents when --engine is not given: local or ray."),
    ("RNIX_RAY_ADDRESS", "The Ray cluster of `compose up --engine ray`, as --ray-address."),
    (
        "RNIX_GATEWAY_HOST",
        "With the Ray engine: the address the gateway listens on for agents of other nodes (default: "
        "127.0.0.1 when every node is this machine, else this node's address).",
    ),
    (
        "RNIX_NODE_DIR",
        "On a node of a Ray cluster: where the node agent keeps its agents' files "
        "(default $TMPDIR/rnix-node-UID).",
    ),
    ("RNIX_NODE", "Set by rnix in an agent run by the Ray engine: the node it runs on, as ps shows it."),
    (
        "RAY_USAGE_STATS_ENABLED",
        "Ray's usage statistics; rnix sets it to 0 when it is unset (the run reports nothing).",
    ),
    ("USER", "The name `rnix compose approve` and `reject` decide under when --as is not given."),
    ("RNIX_EXPLORE", "Share of candidate choices that explore at random, from 0 to 1 (default 0.1)."),
    ("RNIX_MODEL", "Model of rnix run when --model is not given (default: mock)."),
    (
        "RNIX_CGROUP",
        "0 keeps each run's agents out of a cgroup of their own (by default one is used where cgroup v2 "
        "is writable, to kill what escaped the process tree when the run ends).",
    ),
    (
        "RNIX_GATEWAY, RNIX_AGENT_NONCE",
        "Set by rnix in every agent process: the gateway socket and the agent's credential for it. "
        "rnix llm and the built-in agent read them; an rnix run started inside an agent does not pass "
        "them on to its own agents.",
    ),
    ("RNIX_AGENT, RNIX_RUN_ID, RNIX_PROJECT", "Set by rnix in every agent process: who and where it is."),
    (
        "PATH, PYTHONUNBUFFERED",
        "Agents get rnix's PATH with the directory of rnix's Python appended (so rnix llm is found) "
        "and PYTHONUNBUFFERED=1 unless it is set.",
    ),
    (
        "*_API_KEY, *_TOKEN, *_SECRET, *_PASSWORD, ...",
        "Provider credentials (OPENAI_API_KEY, ANTHROPIC_API_KEY, ...), read by the gateway, which "
        "sends them only to the provider. rnix masks their values as *** in all output and never "
        "passes them to agents unless the compose file lists them under environment.",
    ),
    (
        "OPENAI_BASE_URL, *_API_BASE",
        "A provider's URL when the model gives no api_base (OPENAI_BASE_URL or OPENAI_API_BASE, "
        "GROQ_API_BASE, OLLAMA_API_BASE, HOSTED_VLLM_API_BASE, ...), as litellm reads them.",
    ),
    (
        "RNIX_LLM_CLIENT",
        "litellm: send every model through litellm, also those of OpenAI-protocol providers, which "
        "otherwise use rnix's own lean client; auto (the default) picks per provider.",
    ),
    (
        "RNIX_LLM_MAX_ATTEMPTS, RNIX_LLM_MAX_RETRY_AFTER",
        "Attempts per model call (default 4) and the longest Retry-After the gateway waits, in "
        "seconds (default 30).",
    ),
    (
        "TIKTOKEN_CACHE_DIR",
        "A directory with tiktoken encoding files; preferred over the copies bundled with litellm.",
    ),
    (
        "LITELLM_LOCAL_MODEL_COST_MAP, HF_HUB_OFFLINE",
        "Set to True and 1 before litellm is imported unless already set, so it never downloads "
        "price maps or tokenizers.",
    ),
    ("_RNIX_COMPLETE", "Set by the shell completion script (see rnix-completion(1))."),
)
FILES = (
    ("compose.yaml, compose.yml, rnix-compose.yaml", "The compose file, looked for in this order."),
    ("$RNIX_HOME/rnix.db", "The state database: event log, process table, reputation ledger (SQLite)."),
    (
        "$RNIX_HOME/runs/RUN/",
        "Per agent: AGENT.task.json (its stdin), AGENT.out (stdout), AGENT.log (stderr); "
        "supervisor.log of a detached run.",
    ),
)
COMPOSE_PAGE = "rnix-compose.yaml.5"


def _page_name(entry: Entry) -> str:
    return entry.path.replace(" ", "-")


def _commands_of(entry: Entry) -> list[Entry]:
    """The commands below `entry` that run something (groups are headings, not commands)."""
    return [e for e in walk(entry.command, entry.path) if not e.is_group]


def _command_section(entry: Entry) -> list[str]:
    lines = [".SS " + roff.escape(entry.path), f"{roff.bold(entry.path)} {roff.escape(entry.usage)}"]
    lines += roff.paragraphs(entry.blocks)
    if entry.options:
        lines += [".PP", "Options:", ".RS 4", *roff.definitions(entry.options), ".RE"]
    return lines


def command_page(entry: Entry, see_also: list[str]) -> str:
    """`rnix-NAME.1`: a top-level command, or a group with every command under it."""
    blocks = entry.blocks
    lines = roff.header(_page_name(entry), "1", entry.summary)
    lines += [".SH SYNOPSIS", f"{roff.bold(entry.path)} {roff.escape(entry.usage)}", ".SH DESCRIPTION"]
    lines += roff.paragraphs(blocks[1:] or blocks)
    if entry.options:
        lines += [".SH OPTIONS", *roff.definitions(entry.options)]
    if entry.is_group:
        lines.append(".SH COMMANDS")
        for sub in _commands_of(entry):
            lines += _command_section(sub)
    lines += [".SH EXIT STATUS", f"As for every rnix command; see {roff.ref('rnix')}."]
    lines += [".SH SEE ALSO", ", ".join(see_also)]
    return "\n".join(lines) + "\n"


def rnix_page(root: Entry, tops: list[Entry]) -> str:
    """`rnix.1`: the overview of every command, exit statuses, environment and files."""
    blocks = root.blocks
    lines = roff.header("rnix", "1", root.summary.removeprefix("rnix "))
    lines += [".SH SYNOPSIS", f"{roff.bold('rnix')} {roff.escape(root.usage)}", ".SH DESCRIPTION"]
    lines += roff.paragraphs(blocks[1:] or blocks)
    lines += [".SH OPTIONS", *roff.definitions(root.options), ".SH COMMANDS"]
    for top in tops:
        lines += [".TP", f"{roff.bold(top.path)} {roff.escape(top.usage)}", roff.escape(top.summary + ".")]
        subs = [e.path.removeprefix(top.path + " ") for e in _commands_of(top)] if top.is_group else []
        if subs:
            lines += [".br", "Commands: " + roff.escape(", ".join(subs)) + "."]
        lines += [".br", f"See {roff.ref(_page_name(top))}."]
    lines += [".SH EXIT STATUS", *roff.definitions(EXIT_STATUS)]
    lines += [".SH ENVIRONMENT", *roff.definitions(ENVIRONMENT)]
    lines += [".SH FILES", *roff.definitions(FILES)]
    refs = [roff.ref(_page_name(t)) for t in tops] + [roff.ref("rnix-compose.yaml", "5")]
    lines += [".SH SEE ALSO", ", ".join(refs)]
    return "\n".join(lines) + "\n"


def pages() -> dict[str, str]:
    """File name -> roff source for every page."""
    from rnix.cli.manpage_compose import compose_page

    root, *rest = walk(root_command())
    tops = [e for e in rest if e.path.count(" ") == 1]
    out = {"rnix.1": rnix_page(root, tops)}
    for top in tops:
        see_also = [roff.ref("rnix")]
        if top.path == "rnix compose":
            see_also.append(roff.ref("rnix-compose.yaml", "5"))
        out[_page_name(top) + ".1"] = command_page(top, see_also)
    out[COMPOSE_PAGE] = compose_page()
    return out


def write(target: Path) -> list[str]:
    """Write every page into `target`; remove rnix pages there that the code no longer makes."""
    generated = pages()
    target.mkdir(parents=True, exist_ok=True)
    for stale in target.glob("rnix*.[1-8]"):
        if stale.name not in generated:
            stale.unlink()
    for name, source in generated.items():
        (target / name).write_text(source, encoding="utf-8")
    return sorted(generated)


if __name__ == "__main__":  # pragma: no cover - a maintenance command
    if len(sys.argv) != 3 or sys.argv[1] != "--write":
        sys.exit("usage: python -m rnix.cli.manpage --write DIR")
    print("wrote " + ", ".join(write(Path(sys.argv[2]))))
