"""rnix.core.structured: schema checks, validation errors, the submit_result parameters, and samples
that always validate (property-based over generated schemas)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from rnix.core import structured
from rnix.core.structured import canonical, check_schema, sample, validate, validate_value

REVIEW = {
    "type": "object",
    "properties": {
        "verdict": {"enum": ["pass", "fail"]},
        "issues": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"line": {"type": "integer", "minimum": 1}, "text": {"type": "string"}},
                "required": ["line"],
            },
        },
    },
    "required": ["verdict", "issues"],
}


def test_a_valid_document_has_no_errors() -> None:
    assert validate(REVIEW, '{"verdict": "pass", "issues": [{"line": 3}]}\n') == []


def test_errors_are_short_lines_with_the_json_path() -> None:
    errors = validate(REVIEW, '{"verdict": "maybe", "issues": [{"line": 0}]}')
    assert errors == [
        "$.issues[0].line: 0 is less than the minimum of 1",
        "$.verdict: 'maybe' is not one of ['pass', 'fail']",
    ]


def test_text_that_is_not_json_or_empty_is_one_error() -> None:
    assert validate(REVIEW, "The verdict is pass.")[0].startswith("$: the result is not JSON:")
    assert validate(REVIEW, "  \n") == ["$: the result is empty, not a JSON document"]


def test_at_most_five_errors_and_a_count_of_the_rest() -> None:
    schema = {"type": "array", "items": {"type": "integer"}}
    errors = validate(schema, json.dumps(["a"] * 8))
    assert len(errors) == 6 and errors[-1] == "... and 3 more"
    assert all("\n" not in e and len(e) <= structured.ERROR_MAX for e in errors)


def test_a_long_value_is_cut_in_the_error_line() -> None:
    (error,) = validate({"type": "integer"}, json.dumps("x" * 1000))
    assert len(error) == structured.ERROR_MAX and error.endswith("...")


def test_formats_are_checked() -> None:
    assert validate({"type": "string", "format": "date"}, '"yesterday"') != []
    assert validate({"type": "string", "format": "date"}, '"2024-02-29"') == []


def test_check_schema_names_what_is_wrong_and_where() -> None:
    assert check_schema(REVIEW) is None
    problem = check_schema({"properties": {"a": {"type": "strin"}}})
    assert problem is not None and problem.startswith("not a valid JSON Schema:")
    assert "(at properties.a.type)" in problem and "\n" not in problem
    assert check_schema([1]) == "a JSON Schema must be a mapping"


def test_a_schema_that_cannot_be_applied_is_one_error_not_an_exception() -> None:
    errors = validate_value({"$ref": "#/$defs/missing"}, 1)
    assert len(errors) == 1 and errors[0].startswith("$: the schema cannot be applied")


def test_object_schemas_are_the_tool_parameters_as_they_are() -> None:
    assert structured.tool_parameters(REVIEW) == REVIEW
    assert structured.unwrap(REVIEW, {"verdict": "pass"}) == {"verdict": "pass"}


def test_other_schemas_are_wrapped_and_their_defs_move_up() -> None:
    schema = {"type": "array", "items": {"$ref": "#/$defs/n"}, "$defs": {"n": {"type": "integer"}}}
    params = structured.tool_parameters(schema)
    assert params["required"] == ["result"] and params["$defs"] == schema["$defs"]
    assert validate_value(params, {"result": [1, 2]}) == []
    assert validate_value(params, {"result": ["x"]}) == ["$.result[0]: 'x' is not of type 'integer'"]
    assert structured.unwrap(schema, {"result": [1, 2]}) == [1, 2]
    tool = structured.tool_schema(schema)
    assert tool["function"]["name"] == "submit_result" and tool["function"]["parameters"] == params


def test_canonical_json_is_sorted_and_compact() -> None:
    assert canonical({"b": 1, "a": ["é"]}) == '{"a":["é"],"b":1}'


def test_samples_of_common_shapes() -> None:
    assert sample(REVIEW) == {"verdict": "pass", "issues": [{"line": 1, "text": "text"}]}
    assert sample({"const": 3}) == 3
    assert sample({"type": "string", "format": "email"}) == "someone@example.com"
    assert sample({"type": "integer", "minimum": 3, "multipleOf": 5}) == 5
    assert sample({"type": "array", "items": {"type": "integer"}, "minItems": 3, "uniqueItems": True}) == [
        0,
        1,
        2,
    ]
    assert sample({"type": ["null", "boolean"]}) is True


def test_samples_follow_refs_all_of_and_the_first_branch_that_validates() -> None:
    cases: list[dict[str, Any]] = [
        {
            "$defs": {"node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/node"}}}},
            "$ref": "#/$defs/node",
        },
        {
            "allOf": [
                {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
                {"required": ["b"], "properties": {"b": {"type": "boolean"}}},
            ]
        },
        {"oneOf": [{"type": "string", "minLength": 3, "maxLength": 1}, {"type": "integer"}]},
        {"type": "string", "pattern": "^[A-Z]+$"},
        {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 0.5},
    ]
    for schema in cases:
        assert validate_value(schema, sample(schema)) == [], schema


def test_a_sample_of_an_odd_schema_never_raises() -> None:
    for schema in (
        {"type": "object", "properties": 5},
        {"$ref": "http://elsewhere/x.json"},
        {"anyOf": []},
        True,
    ):
        sample(schema)  # type: ignore[arg-type]


# --- property-based: a sample of any simple satisfiable schema validates -------------------------

_scalars = st.one_of(
    st.builds(
        lambda lo, span: {"type": "integer", "minimum": lo, "maximum": lo + span},
        st.integers(-50, 50),
        st.integers(0, 20),
    ),
    st.builds(lambda lo: {"type": "integer", "exclusiveMinimum": lo}, st.integers(-50, 50)),
    st.builds(
        lambda lo, span: {"type": "number", "exclusiveMinimum": lo, "exclusiveMaximum": lo + span},
        st.floats(-10, 10),
        st.floats(0.01, 5),
    ),
    st.builds(lambda m: {"type": "integer", "multipleOf": m}, st.integers(1, 9)),
    st.builds(
        lambda a, b: {"type": "string", "minLength": a, "maxLength": a + b},
        st.integers(0, 12),
        st.integers(0, 5),
    ),
    st.sampled_from(
        [{"type": "string", "format": f} for f in ("date", "date-time", "email", "uuid", "ipv4")]
    ),
    st.lists(st.text(max_size=5) | st.integers(), min_size=1, max_size=4, unique=True).map(
        lambda v: {"enum": v}
    ),
    st.integers().map(lambda v: {"const": v}),
    st.sampled_from([{"type": "boolean"}, {"type": "null"}, {"type": ["string", "null"]}, {}]),
)


def _compound(children: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    names = st.text("abcdefgh", min_size=1, max_size=4)
    objects = st.dictionaries(names, children, max_size=4).flatmap(
        lambda props: st.builds(
            lambda required: {"type": "object", "properties": props, "required": sorted(required)},
            st.sets(st.sampled_from(sorted(props))) if props else st.just(set()),
        )
    )
    arrays = st.builds(
        lambda items, least, extra: {
            "type": "array",
            "items": items,
            "minItems": least,
            "maxItems": least + extra,
        },
        children,
        st.integers(0, 3),
        st.integers(0, 2),
    )
    branches = st.lists(children, min_size=1, max_size=3).map(lambda options: {"anyOf": options})
    return st.one_of(objects, arrays, branches)


schemas = st.recursive(_scalars, _compound, max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(schemas)
def test_a_sample_always_validates(schema: dict[str, Any]) -> None:
    assert check_schema(schema) is None
    value = sample(schema)
    assert validate_value(schema, value) == [], (schema, value)
    assert sample(schema) == value  # deterministic
