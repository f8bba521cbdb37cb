"""`rnix run`'s options become a one-agent compose spec; its problems are reported as option errors.

Contract: `option_error(exc)` turns an `InvalidCompose` raised for the spec `rnix run` builds (file
`COMMAND_LINE`) into a `UsageError` that names the option (`--timeout: must be a positive duration
..., not '5x'`), one clause per problem, so nobody is told their command line "is not a valid
compose file". A problem of another file (an agent definition's own file) is left alone: None.
"""

from __future__ import annotations

from rnix.errors import InvalidCompose, UsageError

COMMAND_LINE = "<command line>"
AGENT_KEY = "agents.agent"
OPTIONS = {
    "intent": "INTENT",
    "model": "--model",
    "agent": "--agent",
    "budget": "--budget",
    "timeout": "--timeout",
    "api_base": "--api-base",
    "output_schema": "--output-schema",
}


def option_error(exc: InvalidCompose) -> UsageError | None:
    if not exc.problems or any(p.file != COMMAND_LINE for p in exc.problems):
        return None
    clauses = []
    for problem in exc.problems:
        field = problem.key.removeprefix(AGENT_KEY).lstrip(".").split(".", 1)[0]
        clauses.append(f"{OPTIONS.get(field, field or 'rnix run')}: {problem.message}")
    hint = (
        "`rnix agents` lists the definitions"
        if "rnix agents" in (exc.hint or "")
        else "see `rnix run --help`"
    )
    return UsageError("; ".join(clauses), hint)
