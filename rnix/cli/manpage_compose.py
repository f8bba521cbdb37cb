"""`rnix-compose.yaml.5`: the compose file format as a man page, fields generated from `fields.py`.

The field lists come from the same table as the validator, the JSON Schema and docs/compose-file.md
(`rnix.core.reference.SECTIONS`), so a field cannot be accepted but undocumented, or the reverse.
The prose around them is a short form of docs/compose-file.md.
"""

from __future__ import annotations

from rnix.cli import roff
from rnix.core.reference import SECTIONS
from rnix.core.types import Obj

DESCRIPTION = (
    "A compose file declares a team of agents, their dependencies and how a token budget is shared "
    "among them. rnix looks for compose.yaml, compose.yml or rnix-compose.yaml (in that order) in the "
    "current directory; -f FILE names one. It is YAML with one document; keys starting with x- are "
    "ignored at any level (use them with anchors to share settings). rnix compose config prints the "
    "file after interpolation and defaults; rnix compose schema prints its JSON Schema."
)
VALUES = (
    (
        "durations",
        "timeout, stop_grace_period and contract.timeout: seconds, or number-unit parts like 30s, 5m, "
        "1h30m, 250ms. stop_grace_period: 0 means SIGKILL right after SIGTERM.",
    ),
    ("agent names", "[a-z0-9][a-z0-9_-]*, at most 63 characters."),
    (
        "depends_on",
        "A list of agent names, or a mapping NAME: completed. Cycles are errors, printed as a -> b -> a.",
    ),
    (
        "command",
        "A string split like a POSIX shell splits it (not run by a shell: no pipes, globs or "
        "variables), or a list of arguments.",
    ),
    (
        "environment",
        "Names to strings, numbers or booleans. A name with no value passes that variable through "
        "from rnix's environment; this is how an agent gets a secret, which rnix otherwise withholds.",
    ),
    (
        "interpolation",
        "String values may use $VAR, ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?message}, "
        "${VAR?message} and $$ for a literal $. Variables come from the environment, then from a .env "
        "file beside the compose file; the environment wins. Secret-named .env variables (OPENAI_API_KEY, "
        "*_TOKEN, ...) are also provider credentials for the gateway, never given to agents, and masked.",
    ),
)
ERRORS = (
    "Every problem is reported at once on stderr, one line each, as FILE:LINE: dotted.key: message, "
    "with a did-you-mean for misspelt keys, values and agent names, followed by "
    "rnix: error: FILE is not a valid compose file (N problems) and a hint. The command exits with "
    "status 2 and nothing is run or written. With --json, stdout holds "
    '{"ok": false, "error": {"code": "INVALID_COMPOSE", "message", "hint", "problems": '
    '[{"file", "line", "key", "message"}]}}.'
)
# What rnix prints for a file with two typos (tests/cli/test_docs.py runs it to keep this true).
ERROR_EXAMPLE = """\
compose.yaml:7: agents.writer.depends_on[1]: unknown agent 'reviewr' (did you mean 'reviewer'?)
compose.yaml:10: agents.reviewer.timout: unknown key (did you mean 'timeout'?)
rnix: error: compose.yaml is not a valid compose file (2 problems)
hint: fix the lines above; `rnix compose config -q` checks the file again"""
ERROR_FILE = """\
name: review
agents:
  analyst:
    intent: Find the risky parts
  writer:
    intent: Write the review
    depends_on: [analyst, reviewr]
  reviewer:
    intent: Check it
    timout: 1m
"""
EXAMPLE = """\
version: "1.0"
name: review
model: mock                  # `mock` is the built-in offline model
timeout: 5m
budget_pool: {total: 40000, allocation: priority}
agents:
  analyst:
    intent: Find the risky parts of the change
    priority: high
  writer:
    intent: Write the review from the analysis
    depends_on: [analyst]
    contract: {output_format: markdown, max_tokens: 4000, sla_level: silver}"""


def _field_items(obj: Obj) -> list[tuple[str, str]]:
    items = []
    for name, field in obj.fields.items():
        what = field.type.what
        facts = [field.doc, what[0].upper() + what[1:] + "."]
        if field.required:
            facts.append("Required.")
        elif field.default is not None:
            facts.append(f"Default: {field.default}.")
        items.append((name, " ".join(facts)))
    return items


def compose_page() -> str:
    lines = roff.header("rnix-compose.yaml", "5", "the rnix compose file format")
    lines += [".SH SYNOPSIS", "compose.yaml, compose.yml, rnix\\-compose.yaml", ".SH DESCRIPTION"]
    lines += [roff.escape(DESCRIPTION), ".SH FIELDS"]
    lines.append(
        roff.escape(
            "Top-level model, api_base, timeout, stop_grace_period and max_retries are "
            "the defaults of every agent that does not set its own."
        )
    )
    for title, obj in SECTIONS:
        lines += [".SS " + roff.escape(title.replace("`", "")), *roff.definitions(_field_items(obj))]
        if obj.exclusive:
            lines += [".PP", roff.escape("Only one of " + ", ".join(obj.exclusive) + " may be given.")]
    lines += [".SH VALUES", *roff.definitions(VALUES)]
    lines += [
        ".SH ERRORS",
        roff.escape(ERRORS),
        ".PP",
        "This compose.yaml:",
        *roff.literal(ERROR_FILE.rstrip()),
    ]
    lines += [".PP", roff.escape("makes rnix compose config -q print:"), *roff.literal(ERROR_EXAMPLE)]
    lines += [".SH EXAMPLE", *roff.literal(EXAMPLE)]
    lines += [".SH SEE ALSO", f"{roff.ref('rnix')}, {roff.ref('rnix-compose')}"]
    return "\n".join(lines) + "\n"
