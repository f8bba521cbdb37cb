"""Variable interpolation: every form, escaping, re-typing, `x-` subtrees, errors and secrecy."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from rnix.store.interpolate import Interpolated, Var, interpolate_tree, parse_template
from rnix.store.yaml_lines import parse_yaml

SECRET = "s3cr3t-value"


def run(text: str, env: Mapping[str, str]) -> Interpolated:
    tree = parse_yaml(text, "c.yaml")
    assert tree.problems == ()
    return interpolate_tree(tree.data, tree.lines, tree.plain, env, "c.yaml")


def value(text: str, env: Mapping[str, str]) -> object:
    result = run(f"v: {text}\n", env)
    assert result.problems == ()
    assert isinstance(result.data, dict)
    return result.data["v"]


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("$A", {"A": "x"}, "x"),
        ("${A}", {"A": "x"}, "x"),
        ("pre-${A}-post", {"A": "x"}, "pre-x-post"),
        ("$A$B", {"A": "x", "B": "y"}, "xy"),
        ("$A.txt", {"A": "x"}, "x.txt"),
        ("${A:-dflt}", {}, "dflt"),
        ("${A:-dflt}", {"A": ""}, "dflt"),
        ("${A:-dflt}", {"A": "x"}, "x"),
        ("${A-dflt}", {}, "dflt"),
        ("${A-dflt}", {"A": ""}, ""),
        ("${A-dflt}", {"A": "x"}, "x"),
        ("${A:-}", {}, ""),
        ("'${A:?boom}'", {"A": "x"}, "x"),
        ("'${A?boom}'", {"A": ""}, ""),
        ("${A:-${B}}", {"B": "b"}, "b"),
        ("${A:-${B:-deep}}", {}, "deep"),
        ("${A:-x $B y}", {"B": "b"}, "x b y"),
        ("$$A", {"A": "x"}, "$A"),
        ("$${A}", {"A": "x"}, "${A}"),
        ("cost 5$", {}, "cost 5$"),
        ("'$ 5'", {}, "$ 5"),
        ("a$-b", {}, "a$-b"),
        ("$1", {}, "$1"),
        ("'{A}'", {"A": "x"}, "{A}"),
    ],
)
def test_forms(text: str, env: Mapping[str, str], expected: object) -> None:
    assert value(text, env) == expected


def test_default_is_used_only_when_needed_so_it_never_warns_needlessly() -> None:
    result = run("v: ${A:-$UNUSED}\n", {"A": "x"})
    assert result.data == {"v": "x"}
    assert result.warnings == ()


def test_unset_variable_is_empty_with_one_warning_per_variable() -> None:
    result = run("a: $FOO\nb: x${FOO}y\nc: [$BAR, $FOO]\n", {})
    assert result.data == {"a": "", "b": "xy", "c": ["", ""]}
    assert result.warnings == (
        "variable FOO is not set, using an empty string",
        "variable BAR is not set, using an empty string",
    )
    assert result.problems == ()


def test_variable_set_to_empty_does_not_warn() -> None:
    result = run("a: x$FOO\n", {"FOO": ""})
    assert result.data == {"a": "x"} and result.warnings == ()


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        ("${REQ:?set REQ first}", {}, "required variable REQ is not set: set REQ first"),
        ("${REQ:?set REQ first}", {"REQ": ""}, "required variable REQ is not set: set REQ first"),
        ("${REQ?set REQ first}", {}, "required variable REQ is not set: set REQ first"),
        ("${REQ:?}", {}, "required variable REQ is missing a value"),
        ("${REQ?}", {}, "required variable REQ is missing a value"),
    ],
)
def test_required_variables(text: str, env: Mapping[str, str], message: str) -> None:
    result = run(f"agents:\n  w:\n    model: {text}\n", env)
    assert [(p.file, p.line, p.key, p.message) for p in result.problems] == [
        ("c.yaml", 3, "agents.w.model", message)
    ]


def test_problem_in_a_list_item_has_the_item_line_and_index() -> None:
    result = run("agents:\n  w:\n    command:\n      - run\n      - ${ARG:?}\n", {})
    assert [(p.line, p.key) for p in result.problems] == [(5, "agents.w.command[1]")]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("'${'", "unclosed '${'"),
        ("'${A'", "unclosed '${'"),
        ("'${A:-abc'", "unclosed '${'"),
        ("'${A:x}'", "expected '}', ':-', '-', ':?' or '?' after '${A'"),
        ("'${}'", "expected a variable name after '${'"),
        ("'${1A}'", "expected a variable name after '${'"),
        ("'${ A}'", "expected a variable name after '${'"),
    ],
)
def test_bad_syntax_is_a_problem(text: str, reason: str) -> None:
    result = run(f"a: ok\nb: {text}\n", {"A": "x"})
    assert len(result.problems) == 1
    problem = result.problems[0]
    assert (problem.line, problem.key) == (2, "b")
    assert problem.message.startswith("invalid interpolation '")
    assert reason in problem.message and "$$" in problem.message


def test_all_problems_are_reported_and_good_values_still_interpolated() -> None:
    result = run("a: ${X:?}\nb: $Y\nc: '${'\n", {"Y": "y"})
    assert [p.line for p in result.problems] == [1, 3]
    assert isinstance(result.data, dict) and result.data["b"] == "y"


def test_plain_scalars_are_retyped_quoted_ones_are_not() -> None:
    env = {"B": "250", "FLAG": "true", "RATE": "0.5", "NIL": "null"}
    result = run(
        "a: ${B}\nb: '${B}'\nc: \"${B}\"\nd: ${FLAG}\ne: ${RATE}\nf: ${MISSING:-1000}\n"
        "g: ${NIL}\nh: !!str ${B}\ni: [$B, '$B']\nj: ${B} tokens\nk: $$5\n",
        env,
    )
    assert result.data == {
        "a": 250,
        "b": "250",
        "c": "250",
        "d": True,
        "e": 0.5,
        "f": 1000,
        "g": None,
        "h": "250",
        "i": [250, "250"],
        "j": "250 tokens",
        "k": "$5",
    }


def test_empty_result_stays_an_empty_string() -> None:
    # The warning promises an empty string; a plain empty scalar would otherwise become null.
    assert value("${MISSING}", {}) == ""
    assert value("${EMPTY:-}", {"EMPTY": ""}) == ""


def test_values_that_look_like_collections_stay_strings() -> None:
    assert value("${LIST}", {"LIST": "[1, 2]"}) == "[1, 2]"
    assert value("${MAP}", {"MAP": "{a: 1}"}) == "{a: 1}"


def test_keys_and_extension_subtrees_are_not_interpolated() -> None:
    result = run(
        "x-common:\n  model: ${MISSING}\n  list: [$A]\n"
        "agents:\n  $A:\n    intent: $A\n    x-note: ${BROKEN\n    environment:\n      x-raw: $A\n",
        {"A": "x"},
    )
    assert result.problems == () and result.warnings == ()
    assert result.data == {
        "x-common": {"model": "${MISSING}", "list": ["$A"]},
        "agents": {"$A": {"intent": "x", "x-note": "${BROKEN", "environment": {"x-raw": "$A"}}},
    }


def test_merged_copies_of_an_extension_anchor_are_interpolated() -> None:
    result = run("x-base: &base\n  model: ${M}\nagents:\n  w:\n    <<: *base\n", {"M": "gpt"})
    assert result.data == {"x-base": {"model": "${M}"}, "agents": {"w": {"model": "gpt"}}}


def test_non_string_values_pass_through() -> None:
    assert run("a: 1\nb: true\nc: null\nd: 1.5\n", {}).data == {"a": 1, "b": True, "c": None, "d": 1.5}


def test_values_never_appear_in_warnings_or_problems() -> None:
    env = {"TOKEN": SECRET, "EMPTY": ""}
    result = run("a: ${TOKEN}\nb: ${EMPTY:?need $TOKEN}\nc: ${TOKEN:x}\nd: $UNSET\n", env)
    assert isinstance(result.data, dict) and result.data["a"] == SECRET
    assert len(result.problems) == 2 and len(result.warnings) == 1
    texts = [str(p) for p in result.problems] + list(result.warnings)
    assert all(SECRET not in text for text in texts)
    assert "need $TOKEN" in str(result.problems[0])  # the message as written, not substituted


def test_parse_template_structure() -> None:
    assert parse_template("a$$b") == ("a$b",)
    assert parse_template("x${A:-y$B}z") == ("x", Var("A", ":-", ("y", Var("B")), "y$B"), "z")
    assert parse_template("${A?msg}") == (Var("A", "?", ("msg",), "msg"),)


def test_absurd_nesting_is_an_error_not_a_crash() -> None:
    text = "${A:-" * 50 + "x" + "}" * 50
    result = run(f"v: '{text}'\n", {})
    assert len(result.problems) == 1 and "nested" in result.problems[0].message
