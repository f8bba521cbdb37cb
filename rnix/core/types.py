"""A small type vocabulary that both validates compose values and emits their JSON Schema.

Each type checks a plain value (from YAML) at a key path, reports problems to a `Checker` and returns
the converted value or `INVALID`. The same object writes its JSON Schema fragment, so `rnix compose
schema` cannot drift from what the validator accepts; `tests/core/test_schema_agreement.py` checks the
two against each other on generated documents. Cross-field rules (dependency targets, cycles) live in
`spec.py` and are described, not enforced, by the schema.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from rnix.core.problems import Problem, did_you_mean, dotted

Path = tuple[object, ...]
EXTENSION_PREFIX = "x-"


class _Invalid:
    def __repr__(self) -> str:
        return "INVALID"


INVALID: Any = _Invalid()


class Checker:
    """Collects problems; knows the file name and the line of every key path."""

    def __init__(self, file: str, lines: Mapping[Path, int]) -> None:
        self.file = file
        self.lines = lines
        self.problems: list[Problem] = []

    def line(self, path: Path) -> int | None:
        while True:
            if path in self.lines:
                return self.lines[path]
            if not path:
                return None
            path = path[:-1]

    def error(self, path: Path, message: str) -> Any:
        self.problems.append(Problem(self.file, self.line(path), dotted(path), message))
        return INVALID


def type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the string {value!r}" if len(value) <= 40 else "a string"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, Sequence):
        return "a list"
    return type(value).__name__


class Record:
    """Keyword/positional initialisation from the class annotations, with class attributes as defaults.

    Like a dataclass, but without generating code at import time (a dozen frozen dataclasses cost
    ~20 ms of `rnix` start-up, see bench/cli_start.py).
    """

    _fields: tuple[str, ...] = ()

    def __init_subclass__(cls) -> None:
        names: list[str] = []
        for klass in reversed(cls.__mro__):
            names += [
                n
                # inspect.get_annotations would import inspect: the point of Record is a cheap import
                for n in klass.__dict__.get("__annotations__", {})  # noqa: RUF063
                if n not in names and n != "_fields"
            ]
        cls._fields = tuple(names)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if len(args) > len(self._fields):
            raise TypeError(f"{type(self).__name__} takes at most {len(self._fields)} arguments")
        values = dict(zip(self._fields, args, strict=False))  # fewer args than fields is fine
        for name, value in kwargs.items():
            if name not in self._fields or name in values:
                raise TypeError(f"{type(self).__name__}: unexpected or repeated argument {name!r}")
            values[name] = value
        for name in self._fields:
            if name in values:
                self.__dict__[name] = values[name]
            elif not hasattr(type(self), name):
                raise TypeError(f"{type(self).__name__}: missing argument {name!r}")

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}={getattr(self, n)!r}" for n in self._fields if n in self.__dict__)
        return f"{type(self).__name__}({inner})"


class Type(Record):
    """Base of all types: `check` converts or reports, `schema` describes."""

    what = "a value"

    def check(self, value: object, path: Path, ck: Checker) -> Any:
        raise NotImplementedError

    def schema(self) -> dict[str, Any]:
        raise NotImplementedError

    def wrong(self, value: object, path: Path, ck: Checker) -> Any:
        return ck.error(path, f"must be {self.what}, not {type_name(value)}")


class Str(Type):
    pattern: str | None = None  # the whole value must match (re.fullmatch)
    what: str = "a non-empty string"
    max_length: int | None = None

    def check(self, value: object, path: Path, ck: Checker) -> Any:
        if not isinstance(value, str):
            return self.wrong(value, path, ck)
        if not value.strip():
            return ck.error(path, "must not be empty")
        if self.max_length is not None and len(value) > self.max_length:
            return ck.error(path, f"must be at most {self.max_length} characters long")
        if self.pattern and not re.fullmatch(self.pattern, value):
            return ck.error(path, f"must be {self.what}, not {value!r}")
        return value

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": "string",
            "pattern": f"^(?:{self.pattern})$" if self.pattern else r"\S",
        }
        if self.max_length is not None:
            out["maxLength"] = self.max_length
        return out


class Enum(Type):
    choices: tuple[str, ...]

    @property
    def what(self) -> str:  # type: ignore[override]
        return "one of " + ", ".join(self.choices)

    def check(self, value: object, path: Path, ck: Checker) -> Any:
        if isinstance(value, str) and value in self.choices:
            return value
        if isinstance(value, str):
            return ck.error(
                path, f"unknown value {value!r}: must be {self.what}{did_you_mean(value, self.choices)}"
            )
        return self.wrong(value, path, ck)

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "enum": list(self.choices)}


class Bool(Type):
    what: str = "true or false"

    def check(self, value: object, path: Path, ck: Checker) -> Any:
        return value if isinstance(value, bool) else self.wrong(value, path, ck)

    def schema(self) -> dict[str, Any]:
        return {"type": "boolean"}


class Int(Type):
    minimum: int = 0
    maximum: int | None = None

    @property
    def what(self) -> str:  # type: ignore[override]
        if self.maximum is not None:
            return f"a whole number from {self.minimum} to {self.maximum}"
        return "a positive whole number" if self.minimum == 1 else f"a whole number >= {self.minimum}"

    def check(self, value: object, path: Path, ck: Checker) -> Any:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            return self.wrong(value, path, ck)
        if value < self.minimum or (self.maximum is not None and value > self.maximum):
            return ck.error(path, f"must be {self.what}, not {value}")
        return value

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "integer", "minimum": self.minimum}
        if self.maximum is not None:
            out["maximum"] = self.maximum
        return out


class Number(Type):
    """A finite number (int or float) >= `minimum`."""

    minimum: float = 0.0

    @property
    def what(self) -> str:  # type: ignore[override]
        return f"a number >= {self.minimum:g}"

    def check(self, value: object, path: Path, ck: Checker) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return self.wrong(value, path, ck)
        if value != value or value in (float("inf"), float("-inf")) or value < self.minimum:
            return ck.error(path, f"must be {self.what}, not {value}")
        return float(value)

    def schema(self) -> dict[str, Any]:
        return {"type": "number", "minimum": self.minimum}


_DURATION_PART = r"(\d+(\.\d+)?(h|ms|m|s))"
_DURATION_STR = re.compile(rf"^({_DURATION_PART}+|\d+(\.\d+)?)$")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_duration(text: str) -> float | None:
    """`'1h30m'` -> 5400.0, `'250ms'` -> 0.25, `'30'` -> 30.0; None when not a duration."""
    if not _DURATION_STR.fullmatch(text):
        return None
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    return sum(
        float(num) * _UNIT_SECONDS[unit] for num, _, unit in re.findall(r"(\d+(\.\d+)?)(h|ms|m|s)", text)
    )


class Duration(Type):
    """Seconds as a number, or a string such as `30s`, `5m`, `1h30m`, `250ms`."""

    positive: bool = True

    @property
    def what(self) -> str:  # type: ignore[override]
        sign = "positive" if self.positive else "non-negative"
        return f"a {sign} duration (seconds, or like 30s, 5m, 1h30m)"

    def check(self, value: object, path: Path, ck: Checker) -> Any:
        seconds: float | None
        if isinstance(value, bool):
            return self.wrong(value, path, ck)
        if isinstance(value, (int, float)):
            seconds = float(value)
        elif isinstance(value, str):
            seconds = parse_duration(value)
            if seconds is None:
                return ck.error(path, f"must be {self.what}, not {value!r}")
        else:
            return self.wrong(value, path, ck)
        if seconds != seconds or seconds in (float("inf"), float("-inf")):
            return ck.error(path, f"must be {self.what}, not {value!r}")
        if seconds < 0 or (self.positive and seconds == 0):
            return ck.error(path, f"must be {self.what}, not {value!r}")
        return seconds

    def schema(self) -> dict[str, Any]:
        nonzero = "(?=.*[1-9])" if self.positive else ""
        number: dict[str, Any] = {"type": "number"}
        number["exclusiveMinimum" if self.positive else "minimum"] = 0
        return {
            "anyOf": [
                number,
                {"type": "string", "pattern": rf"^{nonzero}({_DURATION_PART}+|\d+(\.\d+)?)$"},
            ]
        }


class Regex(Type):
    what: str = "a regular expression"

    def check(self, value: object, path: Path, ck: Checker) -> Any:
        if not isinstance(value, str) or not value:
            return self.wrong(value, path, ck)
        try:
            re.compile(value)
        except re.error as exc:
            return ck.error(path, f"is not a valid regular expression: {exc}")
        return value

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "minLength": 1, "format": "regex"}


class Scalar(Type):
    """A string, number or boolean, kept as text (environment values); null when `nullable`."""

    nullable: bool = True
    what: str = "a string, number or boolean"

    def check(self, value: object, path: Path, ck: Checker) -> Any:
        if value is None and self.nullable:
            return None
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (str, int, float)):
            return str(value)
        return self.wrong(value, path, ck)

    def schema(self) -> dict[str, Any]:
        kinds = ["string", "number", "boolean"] + (["null"] if self.nullable else [])
        return {"type": kinds}


class ListOf(Type):
    item: Type
    unique: bool = False
    min_items: int = 0
    label: str | None = None  # overrides the generated "a list of <items>"

    @property
    def what(self) -> str:  # type: ignore[override]
        return self.label or f"a list of {_plural(self.item.what)}"

    def check(self, value: object, path: Path, ck: Checker) -> Any:
        if not isinstance(value, list):
            return self.wrong(value, path, ck)
        if len(value) < self.min_items:
            return ck.error(path, f"must have at least {self.min_items} item(s)")
        out = [self.item.check(v, (*path, i), ck) for i, v in enumerate(value)]
        if self.unique:
            seen: set[object] = set()
            for i, v in enumerate(out):
                if v is not INVALID and v in seen:
                    ck.error((*path, i), f"{v!r} is listed twice")
                seen.add(v if v is not INVALID else object())
        return INVALID if any(v is INVALID for v in out) else out

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "array", "items": self.item.schema()}
        if self.unique:
            out["uniqueItems"] = True
        if self.min_items:
            out["minItems"] = self.min_items
        return out


def _plural(what: str) -> str:
    return what.removeprefix("a ").removeprefix("an ") + "s" if what.startswith(("a ", "an ")) else what


def _check_key(key: object, path: Path, ck: Checker) -> bool:
    if not isinstance(key, str):
        ck.error(path, f"keys must be strings, not {type_name(key)} (quote the key)")
        return False
    return True


class MapOf(Type):
    """A mapping from names (matching `key_pattern`) to values; `x-` keys are ignored."""

    value: Type
    key_pattern: str
    key_what: str
    min_items: int = 0
    what: str = "a mapping"

    def check(self, value: object, path: Path, ck: Checker) -> Any:
        if not isinstance(value, dict):
            return self.wrong(value, path, ck)
        out: dict[str, Any] = {}
        ok = True
        for key, item in value.items():
            if not _check_key(key, path, ck):
                ok = False
                continue
            if key.startswith(EXTENSION_PREFIX):
                continue
            if not re.fullmatch(self.key_pattern, key):
                ck.error((*path, key), f"{key!r} is not {self.key_what}")
                ok = False
                continue
            out[key] = self.value.check(item, (*path, key), ck)
            ok = ok and out[key] is not INVALID
        if len(out) < self.min_items and ok:
            return ck.error(path, f"must have at least {self.min_items} entry")
        return out if ok else INVALID

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": "object",
            "propertyNames": {"pattern": rf"^(x-.*|{self.key_pattern})$"},
            "patternProperties": {"^x-": {}},
            "additionalProperties": self.value.schema(),
        }
        if self.min_items:
            out["not"] = {"propertyNames": {"pattern": "^x-"}}
        return out


class Field(Record):
    """One key of an `Obj`: its type, whether it is required, its default and its documentation."""

    type: Type
    doc: str
    required: bool = False
    default: object = None


class Obj(Type):
    """A mapping with a fixed set of keys; unknown keys are errors (with "did you mean")."""

    fields: Mapping[str, Field]
    exclusive: tuple[str, ...] = ()
    what: str = "a mapping"
    # Keys other tools use for one of ours (docker compose's `services`): named in the error, and the
    # key they stand for is then not also reported missing.
    renamed: Mapping[str, str] = {}

    def check(self, value: object, path: Path, ck: Checker) -> Any:
        if not isinstance(value, dict):
            return self.wrong(value, path, ck)
        out: dict[str, Any] = {}
        ok = True
        for key, item in value.items():
            if not _check_key(key, path, ck):
                ok = False
                continue
            if key.startswith(EXTENSION_PREFIX):
                continue
            field = self.fields.get(key)
            if field is None and key in self.renamed:
                ck.error((*path, key), f"rnix names this key '{self.renamed[key]}': rename it")
                ok = False
                continue
            if field is None:
                hint = did_you_mean(key, self.fields) or f" (known keys: {', '.join(self.fields)})"
                ck.error((*path, key), f"unknown key{hint}")
                ok = False
                continue
            out[key] = field.type.check(item, (*path, key), ck)
            ok = ok and out[key] is not INVALID
        for name, field in self.fields.items():
            stand_ins = [k for k, ours in self.renamed.items() if ours == name and k in value]
            if field.required and name not in value and not stand_ins:
                ck.error(path, f"missing required key '{name}'")
                ok = False
        present = [k for k in self.exclusive if k in value]
        if len(present) > 1:
            ck.error(path, f"{' and '.join(repr(k) for k in present)} cannot be used together")
            ok = False
        return out if ok else INVALID

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": "object",
            "properties": {},
            "patternProperties": {"^x-": {}},
            "additionalProperties": False,
        }
        for name, field in self.fields.items():
            prop = {"description": field.doc, **field.type.schema()}
            if field.default is not None:
                prop["default"] = field.default
            out["properties"][name] = prop
        required = [name for name, field in self.fields.items() if field.required]
        if required:
            out["required"] = required
        if self.exclusive:
            pairs = [
                {"required": [a, b]} for i, a in enumerate(self.exclusive) for b in self.exclusive[i + 1 :]
            ]
            out["not"] = {"anyOf": pairs}
        return out


class OneOf(Type):
    """The first variant whose Python type fits the value checks it (e.g. a string or a list)."""

    variants: tuple[tuple[type | tuple[type, ...], Type], ...]
    what: str = "a value"

    def check(self, value: object, path: Path, ck: Checker) -> Any:
        for python_type, variant in self.variants:
            if isinstance(value, python_type) and not isinstance(value, bool):
                return variant.check(value, path, ck)
        return self.wrong(value, path, ck)

    def schema(self) -> dict[str, Any]:
        return {"anyOf": [variant.schema() for _, variant in self.variants]}


class Literal(Type):
    """One of a few exact values (e.g. `version: "1.0"` or `1.0`)."""

    values: tuple[object, ...]

    @property
    def what(self) -> str:  # type: ignore[override]
        return "one of " + ", ".join(repr(v) for v in self.values)

    def check(self, value: object, path: Path, ck: Checker) -> Any:
        if not isinstance(value, bool) and value in self.values:
            return value
        return ck.error(path, f"must be {self.what}, not {type_name(value)}")

    def schema(self) -> dict[str, Any]:
        return {"enum": list(self.values)}


class Json(Type):
    """Any JSON value (a mapping, list, string, number, boolean or null), kept as it is."""

    what: str = "a JSON value"
    mapping: bool = False  # only a mapping

    def check(self, value: object, path: Path, ck: Checker) -> Any:
        if self.mapping and not isinstance(value, dict):
            return ck.error(path, f"must be a mapping, not {type_name(value)}")
        bad = _not_json(value)
        if bad is not None:
            return ck.error(path, f"must be plain JSON data: {bad}")
        return value

    def schema(self) -> dict[str, Any]:
        return {"type": "object"} if self.mapping else {}


def _not_json(value: object) -> str | None:
    if value is None or isinstance(value, (str, bool, int, float)):
        return None
    if isinstance(value, list):
        return next((bad for bad in map(_not_json, value) if bad is not None), None)
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"the key {key!r} is not a string"
            bad = _not_json(item)
            if bad is not None:
                return bad
        return None
    return f"{type(value).__name__} is not JSON"


class Expression(Type):
    """A CEL expression (rnix.core.expr). Its syntax and what it refers to are checked with the
    other cross-field rules (rnix.core.pipeline_checks): a JSON Schema cannot say them."""

    what: str = "a CEL expression"

    def check(self, value: object, path: Path, ck: Checker) -> Any:
        if isinstance(value, bool):
            return "true" if value else "false"
        if not isinstance(value, str):
            return self.wrong(value, path, ck)
        if not value.strip():
            return ck.error(path, "must not be empty")
        return value

    def schema(self) -> dict[str, Any]:
        return {"type": ["string", "boolean"], "pattern": r"\S"}
