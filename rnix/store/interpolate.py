"""Variable interpolation in compose values, with docker-compose semantics.

`interpolate_tree` rewrites every string *value* of a loaded tree (never a key, and nothing below a key
starting with `x-`) using these forms:

    $VAR  ${VAR}       the value; unset -> "" and one warning per variable
    ${VAR:-default}    default when VAR is unset or empty   ${VAR-default}  default when unset
    ${VAR:?message}    error when VAR is unset or empty     ${VAR?message}  error when unset
    $$                 a literal `$`; a `$` not followed by a name or `{` is kept as it is

Defaults may contain further substitutions (`${A:-${B}}`); they are only evaluated when used, so an
unused default never warns. A plain (unquoted, untagged) scalar that contained a substitution is typed
again like YAML would have typed the result (`budget: ${B:-1000}` -> 1000); a result that is empty
stays "" (the warning says "using an empty string"), and quoted scalars always stay strings.

Variable values are secrets as far as this module knows: warnings and problems name variables and
quote the text written in the file, never a value looked up.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

from rnix.core.problems import Problem
from rnix.core.types import EXTENSION_PREFIX, Checker, Path
from rnix.store.yaml_lines import resolve_plain

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPERATORS = (":-", ":?", "-", "?")
_MAX_NESTING = 8  # `${A:-${B:-...}}` levels; far more than anyone writes, few enough for the stack
_ESCAPE_HINT = "write $$ for a literal $"


class InterpolationError(Exception):
    """A value cannot be interpolated; the message is safe to show (it holds no variable value)."""


@dataclass(frozen=True)
class Var:
    """One substitution: `name`, its operator (None for `$VAR`/`${VAR}`) and the parsed default/message."""

    name: str
    op: str | None = None
    word: tuple[Part, ...] = ()
    raw_word: str = ""


Part = str | Var


@dataclass(frozen=True)
class Interpolated:
    data: object
    warnings: tuple[str, ...]
    problems: tuple[Problem, ...]


def interpolate_tree(
    data: object,
    lines: Mapping[Path, int],
    plain: AbstractSet[Path],
    variables: Mapping[str, str],
    file: str,
) -> Interpolated:
    """Interpolate every string value of `data`; `plain` holds the paths of plain scalars."""
    walker = _Walker(variables, plain, Checker(file, lines))
    out = walker.walk(data, ())
    warnings = tuple(f"variable {name} is not set, using an empty string" for name in walker.missing)
    return Interpolated(out, warnings, tuple(walker.checker.problems))


def parse_template(text: str) -> tuple[Part, ...]:
    """Split `text` into literal strings and `Var`s; raises `InterpolationError` on bad syntax."""
    parser = _Parser(text)
    return parser.parts(in_braces=False, level=0)


def substitute(parts: tuple[Part, ...], variables: Mapping[str, str], missing: dict[str, None]) -> str:
    """Evaluate parsed `parts`; unset variables without a default are added to `missing`."""
    out: list[str] = []
    for part in parts:
        out.append(part if isinstance(part, str) else _value(part, variables, missing))
    return "".join(out)


def _value(var: Var, variables: Mapping[str, str], missing: dict[str, None]) -> str:
    value = variables.get(var.name)
    absent = value is None or (var.op in (":-", ":?") and value == "")
    if var.op is None:
        if value is None:
            missing.setdefault(var.name)
        return value or ""
    if not absent:
        return value or ""
    if var.op in (":-", "-"):
        return substitute(var.word, variables, missing)
    if var.raw_word.strip():
        raise InterpolationError(f"required variable {var.name} is not set: {var.raw_word.strip()}")
    raise InterpolationError(f"required variable {var.name} is missing a value")


def _has_var(parts: tuple[Part, ...]) -> bool:
    return any(isinstance(part, Var) for part in parts)


class _Walker:
    def __init__(self, variables: Mapping[str, str], plain: AbstractSet[Path], checker: Checker) -> None:
        self.variables = variables
        self.plain = plain
        self.checker = checker
        self.missing: dict[str, None] = {}  # an ordered set: one warning per variable, in file order

    def walk(self, value: object, path: Path) -> object:
        if isinstance(value, dict):
            return {
                key: item if _is_extension(key) else self.walk(item, (*path, key))
                for key, item in value.items()
            }
        if isinstance(value, list):
            return [self.walk(item, (*path, index)) for index, item in enumerate(value)]
        if isinstance(value, str) and "$" in value:
            return self.string(value, path)
        return value

    def string(self, text: str, path: Path) -> object:
        try:
            parts = parse_template(text)
            result = substitute(parts, self.variables, self.missing)
        except InterpolationError as exc:
            self.checker.error(path, str(exc))
            return text
        if path in self.plain and _has_var(parts) and result != "":
            return resolve_plain(result)
        return result


def _is_extension(key: object) -> bool:
    return isinstance(key, str) and key.startswith(EXTENSION_PREFIX)


class _Parser:
    """A recursive-descent parser over one string; `pos` moves forward only."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def parts(self, in_braces: bool, level: int) -> tuple[Part, ...]:
        """Parse until the end, or (inside `${VAR:-...}`) until the unmatched `}`, left unconsumed."""
        parts: list[Part] = []
        literal: list[str] = []
        text = self.text
        while self.pos < len(text):
            char = text[self.pos]
            if in_braces and char == "}":
                break
            following = text[self.pos + 1 : self.pos + 2]
            if char != "$" or not (following in ("$", "{") or _NAME.match(text, self.pos + 1)):
                literal.append(char)  # includes a `$` that starts nothing, as in "cost: 5$"
                self.pos += 1
                continue
            if following == "$":
                literal.append("$")
                self.pos += 2
                continue
            if literal:
                parts.append("".join(literal))
                literal = []
            parts.append(self.braced(level) if following == "{" else self.bare())
        if literal:
            parts.append("".join(literal))
        return tuple(parts)

    def bare(self) -> Var:
        match = _NAME.match(self.text, self.pos + 1)
        assert match is not None  # `parts` only calls this when a name follows
        self.pos = match.end()
        return Var(match.group())

    def braced(self, level: int) -> Var:
        start = self.pos
        match = _NAME.match(self.text, start + 2)
        if match is None:
            if start + 2 >= len(self.text):
                raise self.error(start, "unclosed '${'")
            raise self.error(start, "expected a variable name after '${'")
        name = match.group()
        self.pos = match.end()
        if self.text.startswith("}", self.pos):
            self.pos += 1
            return Var(name)
        op = next((op for op in _OPERATORS if self.text.startswith(op, self.pos)), None)
        if op is None:
            if self.pos >= len(self.text):
                raise self.error(start, "unclosed '${'")
            raise self.error(start, f"expected '}}', ':-', '-', ':?' or '?' after '${{{name}'")
        if level >= _MAX_NESTING:
            raise self.error(start, f"defaults are nested more than {_MAX_NESTING} levels deep")
        self.pos += len(op)
        word_start = self.pos
        word = self.parts(in_braces=True, level=level + 1)
        if self.pos >= len(self.text):
            raise self.error(start, "unclosed '${'")
        raw_word = self.text[word_start : self.pos]
        self.pos += 1  # the closing brace
        return Var(name, op, word, raw_word)

    def error(self, start: int, reason: str) -> InterpolationError:
        end = self.text.find("}", start)
        fragment = self.text[start : end + 1] if end != -1 else self.text[start:]
        if len(fragment) > 40:
            fragment = fragment[:37] + "..."
        return InterpolationError(f"invalid interpolation {fragment!r}: {reason} ({_ESCAPE_HINT})")
