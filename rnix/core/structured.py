"""Structured results (`output_schema`, docs/pipelines.md): check a schema, validate a result, mock one.

- `check_schema(schema)`: None, or one line saying why `schema` is not a JSON Schema (draft 2020-12).
- `validate(schema, text)`: the problems of a result (its text must be one JSON document), as short
  one-line strings that start with the JSON path (`$.issues[0].line: 'x' is not of type 'integer'`),
  at most `MAX_ERRORS` and a count of the rest; `[]` when it validates. `validate_value` takes the
  parsed value.
- `sample(schema)`: a deterministic instance of `schema`, for the offline `mock` model: enum -> the
  first value, const, objects with every listed property, arrays with `minItems` items (at least one
  when `items` is given), strings and numbers within their bounds, anyOf/oneOf -> the first branch
  whose sample validates, allOf merged. Never raises: an instance it cannot make valid is its best
  effort, and the agent says what is wrong with it like with any other answer.
- `tool_parameters(schema)`: the `submit_result` tool's parameters. Function parameters must be an
  object, so any other schema is wrapped as `{result: <schema>}` (its `$defs` moved up so that local
  `$ref`s still resolve), and `unwrap` takes the submitted document back out.
- `canonical(value)`: the JSON text an agent prints as its result (sorted keys, no spaces).

Standard library only when imported: jsonschema is imported by the functions that validate, so
`import rnix.core` stays light and the agent loads it only when its task has an `output_schema`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

SUBMIT_TOOL = "submit_result"
MAX_ERRORS = 5
ERROR_MAX = 200  # characters of one error line
DEPTH_MAX = 12  # nesting the sample follows (a recursive $ref ends there)
DEPTH_OPTIONAL = 6  # deeper than this, an object gets its required properties only
WRAP_KEY = "result"
_DEFS = ("$defs", "definitions")


def check_schema(schema: object) -> str | None:
    """None when `schema` is a valid JSON Schema, else one line saying what is wrong and where."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    if not isinstance(schema, (dict, bool)):
        return "a JSON Schema must be a mapping"
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in exc.absolute_path)
        return _short(f"not a valid JSON Schema: {exc.message}" + (f" (at {where[1:]})" if where else ""))
    return None


def validate(schema: Mapping[str, Any] | bool, text: str) -> list[str]:
    """The problems of the result `text` (one JSON document) under `schema`; [] when valid."""
    if not text.strip():
        return ["$: the result is empty, not a JSON document"]
    try:
        value = json.loads(text)
    except ValueError as exc:
        return [_short(f"$: the result is not JSON: {exc}")]
    return validate_value(schema, value)


def validate_value(schema: Mapping[str, Any] | bool, value: object) -> list[str]:
    """The problems of the already parsed `value` under `schema`; [] when valid."""
    from jsonschema import Draft202012Validator

    schema = dict(schema) if isinstance(schema, Mapping) else schema
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    try:
        errors = sorted(
            validator.iter_errors(value), key=lambda e: ([str(p) for p in e.absolute_path], e.message)
        )
    except Exception as exc:  # an unresolvable $ref, a bad pattern: the schema's fault, said once
        return [_short(f"$: the schema cannot be applied: {type(exc).__name__}: {exc}")]
    lines = [_short(f"{e.json_path}: {e.message}") for e in errors[:MAX_ERRORS]]
    if len(errors) > MAX_ERRORS:
        lines.append(f"... and {len(errors) - MAX_ERRORS} more")
    return lines


def _short(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= ERROR_MAX else flat[: ERROR_MAX - 3] + "..."


def canonical(value: object) -> str:
    """The result's text: one line of JSON with sorted keys (stable, so it compares and hashes)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def wrapped(schema: Mapping[str, Any]) -> bool:
    """Whether `submit_result` wraps `schema` as `{result: ...}` (its top-level type is not object)."""
    return schema.get("type") != "object"


def tool_parameters(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters of the `submit_result` tool for `schema` (see the module docstring)."""
    if not wrapped(schema):
        return dict(schema)
    inner = {k: v for k, v in schema.items() if k not in _DEFS and k != "$schema"}
    params: dict[str, Any] = {"type": "object", "properties": {WRAP_KEY: inner}, "required": [WRAP_KEY]}
    params.update({k: schema[k] for k in _DEFS if k in schema})
    return params


def unwrap(schema: Mapping[str, Any], arguments: object) -> object:
    """The document submitted with `arguments` (already validated against `tool_parameters`)."""
    if wrapped(schema) and isinstance(arguments, dict):
        return arguments.get(WRAP_KEY)
    return arguments


def tool_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The OpenAI function schema of `submit_result` for an agent whose result must match `schema`."""
    return {
        "type": "function",
        "function": {
            "name": SUBMIT_TOOL,
            "description": "Submit your final result. Call it once, when you are done, with the whole "
            "result as its arguments; it is checked against the result's JSON Schema.",
            "parameters": tool_parameters(schema),
        },
    }


# --- sample -------------------------------------------------------------------------------------


def sample(schema: Mapping[str, Any] | bool) -> object:
    """A deterministic instance of `schema` (see the module docstring); never raises."""
    root = schema if isinstance(schema, Mapping) else {}
    try:
        return _Sampler(root).make(schema, 0, 0)
    except Exception:  # a schema too odd to follow: an empty object is still an answer
        return {}


class _Sampler:
    def __init__(self, root: Mapping[str, Any]) -> None:
        self.root = root
        self.defs = {k: root[k] for k in _DEFS if k in root}  # so a branch's local $refs resolve

    def make(self, schema: object, depth: int, variant: int) -> object:
        if not isinstance(schema, Mapping) or depth > DEPTH_MAX:
            return None
        s = self.resolve(schema, depth)
        if "const" in s:
            return s["const"]
        if isinstance(s.get("enum"), list) and s["enum"]:
            return s["enum"][variant % len(s["enum"])]
        if isinstance(s.get("allOf"), list):
            return self.make(self.merge_all(s), depth + 1, variant)
        for key in ("oneOf", "anyOf"):
            if isinstance(s.get(key), list) and s[key]:
                return self.branch(s, key, depth, variant)
        kind = _type_of(s)
        maker = getattr(self, f"make_{kind}", None)
        return maker(s, depth, variant) if maker is not None else None

    def resolve(self, schema: Mapping[str, Any], depth: int) -> Mapping[str, Any]:
        """A local `$ref` (`#/$defs/x`) replaced by what it points to, merged with its siblings."""
        ref = schema.get("$ref")
        if not isinstance(ref, str) or not ref.startswith("#") or depth > DEPTH_MAX:
            return schema
        target: Any = self.root
        for part in [p for p in ref[1:].split("/") if p]:
            part = part.replace("~1", "/").replace("~0", "~")
            target = target.get(part) if isinstance(target, Mapping) else None
        siblings = {k: v for k, v in schema.items() if k != "$ref"}
        if not isinstance(target, Mapping):
            return siblings
        return self.resolve({**target, **siblings}, depth + 1)

    def merge_all(self, s: Mapping[str, Any]) -> dict[str, Any]:
        merged = {k: v for k, v in s.items() if k != "allOf"}
        for part in s["allOf"]:
            if isinstance(part, Mapping):
                merged = _merge(merged, self.resolve(part, 0))
        return merged

    def branch(self, s: Mapping[str, Any], key: str, depth: int, variant: int) -> object:
        from rnix.core.structured import validate_value

        rest = {k: v for k, v in s.items() if k != key}
        first: object = None
        for index, option in enumerate(s[key]):
            merged = _merge(rest, self.resolve(option, depth)) if isinstance(option, Mapping) else rest
            candidate = self.make(merged, depth + 1, variant)
            if index == 0:
                first = candidate
            if not validate_value({**self.defs, **s}, candidate):
                return candidate
        return first

    def make_object(self, s: Mapping[str, Any], depth: int, variant: int) -> object:
        props = _map(s, "properties")
        required = [k for k in _list(s, "required") if isinstance(k, str)]
        optional = list(props) if depth < DEPTH_OPTIONAL else []  # a recursive schema ends somewhere
        names = list(dict.fromkeys([*required, *optional]))
        most = s.get("maxProperties")
        if isinstance(most, int):
            names = names[: max(most, len(required))]
        extra = s.get("additionalProperties")
        out = {
            name: self.make(props.get(name, extra if isinstance(extra, Mapping) else {}), depth + 1, 0)
            for name in names
        }
        least = s.get("minProperties")
        index = 0
        while isinstance(least, int) and len(out) < least and extra is not False:
            index += 1
            out.setdefault(
                f"key{index}", self.make(extra if isinstance(extra, Mapping) else {}, depth + 1, index)
            )
        return out

    def make_array(self, s: Mapping[str, Any], depth: int, variant: int) -> object:
        prefix = _list(s, "prefixItems")
        items = s.get("items")
        if not isinstance(items, Mapping) and isinstance(s.get("contains"), Mapping):
            items = s["contains"]
        count = max(_int(s, "minItems", 0), len(prefix), 1 if isinstance(items, Mapping) and items else 0)
        count = min(count, _int(s, "maxItems", count))
        unique = s.get("uniqueItems") is True
        out = []
        for index in range(count):
            item = prefix[index] if index < len(prefix) else items if isinstance(items, Mapping) else {}
            out.append(self.make(item, depth + 1, index if unique else 0))
        return out

    def make_string(self, s: Mapping[str, Any], depth: int, variant: int) -> object:
        text = _FORMATS.get(str(s.get("format")), "text")
        if variant:
            text = f"{text}{variant}" if s.get("format") not in _FORMATS else text
        pattern = s.get("pattern")
        if isinstance(pattern, str) and not _matches(pattern, text):
            text = next((c for c in _PATTERN_GUESSES if _matches(pattern, c)), text)
        least, most = _int(s, "minLength", 0), _int(s, "maxLength", -1)
        if len(text) < least:
            text += "x" * (least - len(text))
        if most >= 0 and len(text) > most:
            text = text[:most]
        return text

    def make_integer(self, s: Mapping[str, Any], depth: int, variant: int) -> object:
        return self.make_number(s, depth, variant)

    def make_number(self, s: Mapping[str, Any], depth: int, variant: int) -> object:
        integral = _type_of(s) == "integer"
        low, high = _low(s, integral), _high(s, integral)
        value: float = variant
        if low is not None and value < low:
            value = low + variant
        if high is not None and value > high:
            value = high
        if low is not None and high is not None and low > high:  # a gap narrower than our steps
            value = (low + high) / 2
        multiple = s.get("multipleOf")
        if isinstance(multiple, (int, float)) and not isinstance(multiple, bool) and multiple > 0:
            value = _ceil(value / multiple) * multiple
        if integral or float(value).is_integer():
            return int(value)
        return value

    def make_boolean(self, s: Mapping[str, Any], depth: int, variant: int) -> object:
        return variant % 2 == 0

    def make_null(self, s: Mapping[str, Any], depth: int, variant: int) -> object:
        return None


_FORMATS = {
    "date-time": "2024-01-01T00:00:00Z",
    "date": "2024-01-01",
    "time": "00:00:00Z",
    "duration": "P1D",
    "email": "someone@example.com",
    "idn-email": "someone@example.com",
    "hostname": "example.com",
    "idn-hostname": "example.com",
    "ipv4": "192.0.2.1",
    "ipv6": "2001:db8::1",
    "uri": "https://example.com/",
    "uri-reference": "https://example.com/",
    "iri": "https://example.com/",
    "iri-reference": "https://example.com/",
    "url": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "json-pointer": "/a",
    "regex": "^a$",
}
_PATTERN_GUESSES = ("a", "A", "0", "a1", "abc", "ABC", "123", "a-b", "a_b", "a.b", "")


def _matches(pattern: str, text: str) -> bool:
    try:
        return re.search(pattern, text) is not None
    except re.error:
        return False


def _type_of(s: Mapping[str, Any]) -> str | None:
    kind = s.get("type")
    if isinstance(kind, list):
        named = [k for k in kind if isinstance(k, str)]
        kind = next((k for k in named if k != "null"), named[0] if named else None)
    if isinstance(kind, str):
        return kind
    if "properties" in s or "required" in s or "additionalProperties" in s:
        return "object"
    if "items" in s or "prefixItems" in s or "minItems" in s:
        return "array"
    if "minLength" in s or "maxLength" in s or "pattern" in s or "format" in s:
        return "string"
    if any(k in s for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")):
        return "number"
    return None


def _map(s: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = s.get(key)
    return value if isinstance(value, Mapping) else {}


def _list(s: Mapping[str, Any], key: str) -> list[Any]:
    value = s.get(key)
    return value if isinstance(value, list) else []


def _int(s: Mapping[str, Any], key: str, default: int) -> int:
    value = s.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _low(s: Mapping[str, Any], integral: bool) -> float | None:
    """The least value allowed (an exclusive bound moved inside: +1 for integers, +1 or halfway)."""
    found: list[float] = []
    if _is_number(s.get("minimum")):
        found.append(_ceil(s["minimum"]) if integral else s["minimum"])
    if _is_number(s.get("exclusiveMinimum")):
        bound = s["exclusiveMinimum"]
        found.append(_floor(bound) + 1 if integral else bound + _gap(s, bound))
    return max(found) if found else None


def _high(s: Mapping[str, Any], integral: bool) -> float | None:
    found: list[float] = []
    if _is_number(s.get("maximum")):
        found.append(_floor(s["maximum"]) if integral else s["maximum"])
    if _is_number(s.get("exclusiveMaximum")):
        bound = s["exclusiveMaximum"]
        found.append(_ceil(bound) - 1 if integral else bound - _gap(s, bound))
    return min(found) if found else None


def _gap(s: Mapping[str, Any], bound: float) -> float:
    """How far inside an exclusive bound a number goes: 1, or less when the other side is close."""
    keys = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
    distances = [abs(bound - float(s[k])) for k in keys if _is_number(s.get(k)) and s[k] != bound]
    return min([1.0, *(d / 2 for d in distances)])


def _floor(value: float) -> int:
    whole = int(value)
    return whole - 1 if whole > value else whole


def _ceil(value: float) -> int:
    whole = int(value)
    return whole + 1 if whole < value else whole


def _merge(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """Two schemas as one: properties joined, required joined, other keys from `b`."""
    out = {**a, **b}
    pa, pb = a.get("properties"), b.get("properties")
    if isinstance(pa, Mapping) and isinstance(pb, Mapping):
        out["properties"] = {**pa, **pb}
    ra, rb = a.get("required"), b.get("required")
    if isinstance(ra, list) and isinstance(rb, list):
        out["required"] = list(dict.fromkeys([*ra, *rb]))
    return out


def result_error(schema: Mapping[str, Any] | None, returncode: int | None, result: str | None) -> str | None:
    """What the supervisor records when an attempt that exited 0 printed a result that does not match
    its agent's `output_schema` (`output_schema: <errors>`), else None: nothing to check or valid."""
    if schema is None or returncode != 0 or result is None:
        return None
    errors = validate(schema, result)
    return f"output_schema: {'; '.join(errors)}" if errors else None
