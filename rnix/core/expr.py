"""Expressions (`when`, `for_each`, loops' `until`) in CEL, and `{{ ... }}` templates. Pure.

CEL (the Common Expression Language, as Orchestra uses) is evaluated by cel-python: never `eval`. An
expression sees

- `agents.<name>.status`: the agent's state (`completed`, `failed`, `skipped`, ...; `pending` before
  it ran), `agents.<name>.output`: its structured result (parsed JSON when it has an
  `output_schema`, the list of its instances' outputs for a `for_each` agent) or else its text,
  `agents.<name>.result` (the text) and `agents.<name>.error`;
- `vars`: the run's variables, and `iteration`: the loop iteration (0 outside loops).

Agent names with `-` are written `agents["my-agent"]` (CEL reads `a-b` as a subtraction).

cel-python costs ~0.25 s to import and ~0.2 s to build its parser, so it is imported only when a
file has expressions; each expression is compiled once per process.

Templates are simpler than expressions: `{{ item }}`, `{{ item.id }}`, `{{ index }}`,
`{{ iteration }}`, `{{ vars.name }}` and `{{ agents.review.output.verdict }}` are dotted paths into
the same values; a value that is not a string is written as JSON. Anything else between `{{ }}` is
left as it is.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

ROOTS = ("agents", "vars", "iteration")
TEMPLATE_ROOTS = ("item", "index", "iteration", "vars", "agents")

_NAME = r"[A-Za-z0-9_][A-Za-z0-9_-]*"
# `agents.review`, `agents["my-agent"]`, each optionally followed by `.output.<property>`.
_AGENT_REF = re.compile(
    r"\bagents\s*(?:\.\s*([A-Za-z_][A-Za-z0-9_]*)|\[\s*[\"']([^\"']+)[\"']\s*\])"
    r"(?:\s*\.\s*output\s*\.\s*([A-Za-z_][A-Za-z0-9_]*))?"
)
_TEMPLATE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_-]+|\[\d+\])*)\s*\}\}")


class ExprError(ValueError):
    """An expression that cannot be compiled or evaluated; the message is one line."""


# -- checking ----------------------------------------------------------------------------------------


def syntax_error(text: str) -> str | None:
    """None when `text` parses as CEL, else what is wrong (one line, with the column)."""
    try:
        _program(text)
    except ExprError as exc:
        return str(exc)
    return None


def agent_references(text: str) -> list[tuple[str, str | None]]:
    """The agents an expression (or a template) reads, each with the `output` property it reads
    directly (`agents.review.output.verdict` -> ("review", "verdict")), in order of appearance."""
    return [(m.group(1) or m.group(2), m.group(3)) for m in _AGENT_REF.finditer(text)]


def template_paths(text: str) -> list[str]:
    """The dotted paths of `{{ ... }}` placeholders in `text` whose root rnix fills in."""
    return [m.group(1) for m in _TEMPLATE.finditer(text) if _root(m.group(1)) in TEMPLATE_ROOTS]


def _root(path: str) -> str:
    return re.split(r"[.\[]", path, maxsplit=1)[0]


# -- evaluating --------------------------------------------------------------------------------------


def evaluate(text: str, context: Mapping[str, Any]) -> Any:
    """The value of `text` over `context` (plain Python values); raises ExprError."""
    from celpy.adapter import json_to_cel

    program = _program(text)
    try:
        activation = {name: json_to_cel(value) for name, value in context.items()}
        value = program.evaluate(activation)
    except ExprError:
        raise
    except Exception as exc:  # CELEvalError and friends: the message is what the user needs
        raise ExprError(_eval_message(exc)) from None
    if isinstance(value, Exception):
        raise ExprError(_eval_message(value))
    return plain(value)


def truth(text: str, context: Mapping[str, Any]) -> bool:
    """`when` and `until`: the expression must be true or false."""
    value = evaluate(text, context)
    if not isinstance(value, bool):
        raise ExprError(f"must be true or false, not {_shown(value)}")
    return value


def items(text: str, context: Mapping[str, Any]) -> list[Any]:
    """`for_each`: the expression must yield a list."""
    value = evaluate(text, context)
    if not isinstance(value, list):
        raise ExprError(f"must yield a list, not {_shown(value)}")
    return value


def plain(value: Any) -> Any:
    """A cel-python value as plain Python (bool before int: CEL's bool is an int)."""
    from celpy import celtypes

    if isinstance(value, celtypes.BoolType):
        return bool(value)
    if isinstance(value, (celtypes.IntType, celtypes.UintType)):
        return int(value)
    if isinstance(value, celtypes.DoubleType):
        return float(value)
    if isinstance(value, celtypes.StringType):
        return str(value)
    if isinstance(value, celtypes.BytesType):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, celtypes.ListType):
        return [plain(v) for v in value]
    if isinstance(value, celtypes.MapType):
        return {str(plain(k)): plain(v) for k, v in value.items()}
    if value is None or isinstance(value, celtypes.NullType):
        return None
    return value


def render(template: str, context: Mapping[str, Any]) -> str:
    """`template` with every `{{ path }}` rnix knows replaced; a path that does not resolve raises."""

    def one(match: re.Match[str]) -> str:
        path = match.group(1)
        if _root(path) not in TEMPLATE_ROOTS:
            return match.group(0)
        value = lookup(context, path)
        return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)

    return _TEMPLATE.sub(one, template)


def lookup(context: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path (`item.id`, `agents.review.output.issues[0]`)."""
    value: Any = context
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        if part.startswith("["):
            index = int(part[1:-1])
            if not isinstance(value, list) or index >= len(value):
                raise ExprError(f"{{{{ {path} }}}}: no item {index}")
            value = value[index]
        elif isinstance(value, Mapping) and part in value:
            value = value[part]
        else:
            raise ExprError(f"{{{{ {path} }}}}: no '{part}' here")
    return value


# -- internals ---------------------------------------------------------------------------------------


@lru_cache(maxsize=512)
def _program(text: str) -> Any:
    from celpy.celparser import CELParseError

    environment = _environment()
    try:
        ast = environment.compile(text)
    except CELParseError as exc:
        raise ExprError(_parse_message(exc, text)) from None
    except Exception as exc:  # the parser's other complaints
        raise ExprError(str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)) from None
    return environment.program(ast)


@lru_cache(maxsize=1)
def _environment() -> Any:
    import logging

    import celpy

    # cel-python logs every evaluation error at INFO and above through its own loggers.
    logging.getLogger("celpy").setLevel(logging.CRITICAL)
    return celpy.Environment()


def _parse_message(exc: Exception, text: str) -> str:
    column = getattr(exc, "column", None)
    if not isinstance(column, int) or column < 1:
        return "syntax error"
    near = text[column - 1 :].strip()
    if not near:
        return f"syntax error at column {column}: the expression ends too early"
    near = near if len(near) <= 20 else near[:17] + "..."
    return f"syntax error at column {column}, near {near!r}"


def _eval_message(exc: Exception) -> str:
    args = getattr(exc, "args", ())
    message = args[0] if args and isinstance(args[0], str) else str(exc)
    message = message.strip().splitlines()[0] if message.strip() else type(exc).__name__
    if message.startswith("no such member in mapping"):
        return message.replace("no such member in mapping", "no such key")
    return message


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else text[:57] + "..."
