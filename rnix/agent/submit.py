"""The `submit_result` tool of a built-in agent whose task has an `output_schema` (docs/pipelines.md).

The agent offers the tool with the schema as its parameters (wrapped as `{result: ...}` when the
schema is not an object: rnix.core.structured.tool_parameters) and asks the model, after its task,
to finish by calling it. A call whose arguments validate ends the loop: the result is the canonical
JSON text of the submitted document. A call that does not validate gets the errors back as the
tool's result; a final answer in plain text gets a user message asking for the call. Either is a
failed turn, and after `REPAIRS` repair turns one more failure ends the agent with `OutputInvalid`
(exit status 1, the errors on stderr). Every turn is an ordinary call: it counts against the budget.

rnix.core.structured (and with it jsonschema) is imported only by agents that have a schema.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rnix.core.structured import (
    SUBMIT_TOOL,
    canonical,
    tool_parameters,
    tool_schema,
    unwrap,
    validate,
)

REPAIRS = 2  # turns the model gets to fix a result that does not validate
INSTRUCTION = (
    f"When you are done, call the `{SUBMIT_TOOL}` tool once with your whole result as its arguments; "
    "they are checked against the result's JSON Schema (the tool's parameters). Do not answer in plain "
    "text: only what you submit is your result."
)


class OutputInvalid(Exception):
    """No valid result after the repair turns; `errors` are the last attempt's."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


class Submission:
    """The schema a result must match, and how many failed turns the model has had."""

    def __init__(self, schema: Mapping[str, Any], repairs: int = REPAIRS) -> None:
        self.schema = schema
        self.parameters = tool_parameters(schema)
        self.tool = tool_schema(schema)
        self.repairs = repairs
        self.failures = 0
        self.errors: list[str] = []

    def instruction(self) -> dict[str, str]:
        return {"role": "user", "content": INSTRUCTION}

    def check(self, arguments: str) -> tuple[str | None, str]:
        """(the result text, None when invalid) and the tool message for the model."""
        import json

        errors = validate(self.parameters, arguments)
        if not errors:
            return canonical(unwrap(self.schema, json.loads(arguments))), "Result accepted."
        self.errors = errors
        listed = "\n".join(f"- {e}" for e in errors)
        return None, (
            f"The result does not match its JSON Schema:\n{listed}\n"
            f"Fix these and call `{SUBMIT_TOOL}` again with the whole result."
        )

    def plain_answer(self) -> dict[str, str]:
        """The user message after a final answer in plain text (no submit_result call)."""
        self.errors = [f"answered in plain text instead of calling {SUBMIT_TOOL}"]
        return {
            "role": "user",
            "content": f"Call `{SUBMIT_TOOL}` with your whole result as its arguments (a plain text answer "
            "is not a result).",
        }

    def failed_turn(self) -> None:
        """Count a turn without a valid result; raises OutputInvalid when no repair turn is left."""
        self.failures += 1
        if self.failures > self.repairs:
            raise OutputInvalid(self.errors)
