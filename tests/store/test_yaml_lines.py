"""Safe YAML loading: the tree, the line map, duplicate keys, merge keys, tags and limits."""

from __future__ import annotations

import pathlib
import time

from rnix.store.yaml_lines import MAX_BYTES, MAX_DEPTH, MAX_NODES, load_yaml, parse_yaml, resolve_plain

COMPOSE = """\
name: demo
agents:
  writer:
    intent: write
    depends_on:
      - reader
      - checker
  reader:
    intent: read
    tags: [a, b]
"""


def messages(text: str) -> list[str]:
    return [problem.message for problem in parse_yaml(text, "c.yaml").problems]


def test_lines_for_every_key_and_list_item() -> None:
    tree = parse_yaml(COMPOSE, "c.yaml")
    assert tree.problems == ()
    assert tree.lines == {
        (): 1,
        ("name",): 1,
        ("agents",): 2,
        ("agents", "writer"): 3,
        ("agents", "writer", "intent"): 4,
        ("agents", "writer", "depends_on"): 5,
        ("agents", "writer", "depends_on", 0): 6,
        ("agents", "writer", "depends_on", 1): 7,
        ("agents", "reader"): 8,
        ("agents", "reader", "intent"): 9,
        ("agents", "reader", "tags"): 10,
        ("agents", "reader", "tags", 0): 10,
        ("agents", "reader", "tags", 1): 10,
    }
    assert tree.data == {
        "name": "demo",
        "agents": {
            "writer": {"intent": "write", "depends_on": ["reader", "checker"]},
            "reader": {"intent": "read", "tags": ["a", "b"]},
        },
    }


def test_list_of_mappings_lines_point_at_items_and_keys() -> None:
    tree = parse_yaml("items:\n  - name: a\n    size: 1\n\n  - name: b\n", "c.yaml")
    assert tree.lines[("items", 0)] == 2
    assert tree.lines[("items", 0, "size")] == 3
    assert tree.lines[("items", 1)] == 5
    assert tree.lines[("items", 1, "name")] == 5


def test_root_is_line_one_even_after_leading_comments() -> None:
    tree = parse_yaml("# comment\n\na: 1\n", "c.yaml")
    assert tree.lines[()] == 1
    assert tree.lines[("a",)] == 3


def test_scalars_are_typed_like_yaml_but_timestamps_stay_text() -> None:
    text = "i: 42\nf: 1.5\nb: true\nn: null\nt: ~\ns: '42'\nd: 2024-01-02\nhex: 0x10\nplain: hello\n"
    assert parse_yaml(text, "c.yaml").data == {
        "i": 42,
        "f": 1.5,
        "b": True,
        "n": None,
        "t": None,
        "s": "42",
        "d": "2024-01-02",
        "hex": 16,
        "plain": "hello",
    }


def test_plain_paths_only_hold_unquoted_untagged_strings() -> None:
    tree = parse_yaml("a: text\nb: 'text'\nc: \"text\"\nd: !!str text\ne: 5\nf: [x, 'y']\n", "c.yaml")
    assert tree.plain == frozenset({("a",), ("f", 0)})


def test_non_string_keys_are_kept_for_the_validator() -> None:
    tree = parse_yaml("on: 1\n3: three\nnull: 4\n", "c.yaml")
    assert tree.problems == ()
    assert tree.data == {True: 1, 3: "three", None: 4}
    assert tree.lines[(True,)] == 1 and tree.lines[(3,)] == 2


def test_on_and_yes_are_the_same_boolean_key() -> None:
    # YAML 1.1 reads both as True, so the second one is a duplicate of the first.
    assert messages("on: 1\nyes: 2\n") == ["duplicate key True (first defined on line 1)"]


def test_unhashable_key_is_a_problem() -> None:
    tree = parse_yaml("? [a, b]\n: 1\nok: 2\n", "c.yaml")
    assert [p.message for p in tree.problems] == [
        "a mapping key must be a single value, not a list or mapping"
    ]
    assert tree.problems[0].line == 1
    assert tree.data == {"ok": 2}


def test_duplicate_top_level_key() -> None:
    tree = parse_yaml("name: a\nagents: {}\nname: b\n", "c.yaml")
    assert len(tree.problems) == 1
    problem = tree.problems[0]
    assert (problem.file, problem.line, problem.key) == ("c.yaml", 3, "name")
    assert problem.message == "duplicate key 'name' (first defined on line 1)"


def test_duplicate_nested_key_names_the_dotted_path() -> None:
    text = "agents:\n  writer:\n    intent: a\n    model: x\n    intent: b\n  writer:\n    intent: c\n"
    problems = parse_yaml(text, "c.yaml").problems
    assert [(p.line, p.key, p.message) for p in problems] == [
        (5, "agents.writer.intent", "duplicate key 'intent' (first defined on line 3)"),
        (6, "agents.writer", "duplicate key 'writer' (first defined on line 2)"),
    ]


MERGE = """\
x-base: &base
  model: gpt
  timeout: 30
x-extra: &extra
  timeout: 99
  retries: 2
agents:
  writer:
    <<: *base
    timeout: 60
  reader:
    <<: [*extra, *base]
"""


def test_merge_keys_explicit_keys_win_and_merged_keys_are_not_duplicates() -> None:
    tree = parse_yaml(MERGE, "c.yaml")
    assert tree.problems == ()
    agents = tree.data["agents"]  # type: ignore[index]
    assert agents["writer"] == {"model": "gpt", "timeout": 60}
    # In a list of merged mappings the earlier one wins.
    assert agents["reader"] == {"timeout": 99, "retries": 2, "model": "gpt"}


def test_merged_key_lines_point_into_the_anchor() -> None:
    lines = parse_yaml(MERGE, "c.yaml").lines
    assert lines[("agents", "writer", "model")] == 2
    assert lines[("agents", "writer", "timeout")] == 10  # written in the mapping itself
    assert lines[("agents", "reader", "retries")] == 6
    assert lines[("agents", "reader", "model")] == 2
    assert ("agents", "writer", "<<") not in lines


def test_merge_of_a_non_mapping_is_a_problem() -> None:
    assert messages("a: &s text\nb:\n  <<: *s\n") == [
        "a merge key '<<' takes a mapping or a list of mappings"
    ]


def test_aliases_expand_to_independent_copies() -> None:
    tree = parse_yaml("a: &x {k: [1]}\nb: *x\nc:\n  - *x\n", "c.yaml")
    data = tree.data
    assert isinstance(data, dict)
    data["a"]["k"].append(2)
    assert data["b"] == {"k": [1]}
    assert tree.lines[("b", "k")] == 1
    assert tree.lines[("c", 0)] == 4  # the line of the alias, not of the anchor
    assert tree.lines[("c", 0, "k")] == 1


def test_problem_inside_an_anchor_is_reported_once() -> None:
    assert messages("a: &x {k: 1, k: 2}\nb: *x\nc: *x\n") == ["duplicate key 'k' (first defined on line 1)"]


def billion_laughs(levels: int) -> str:
    lines = ['l0: &l0 "lol"']
    for level in range(1, levels + 1):
        refs = ", ".join([f"*l{level - 1}"] * 10)
        lines.append(f"l{level}: &l{level} [{refs}]")
    return "\n".join(lines) + "\n"


def test_alias_bomb_is_rejected_quickly() -> None:
    start = time.perf_counter()
    tree = parse_yaml(billion_laughs(9), "c.yaml")
    elapsed = time.perf_counter() - start
    assert elapsed < 1.0
    assert tree.data is None
    assert len(tree.problems) == 1
    message = tree.problems[0].message
    assert "too many nodes" in message and "aliases" in message and str(MAX_NODES) in message


def test_moderate_alias_use_is_fine() -> None:
    tree = parse_yaml(billion_laughs(3), "c.yaml")
    assert tree.problems == ()
    assert isinstance(tree.data, dict)
    assert len(tree.data["l3"]) == 10 and len(tree.data["l3"][0]) == 10


def nested_lists(depth: int) -> str:
    return "a: " + "[" * depth + "1" + "]" * depth + "\n"


def test_depth_limit() -> None:
    assert parse_yaml(nested_lists(MAX_DEPTH - 1), "c.yaml").problems == ()  # plus the root mapping
    too_deep = parse_yaml(nested_lists(MAX_DEPTH), "c.yaml").problems
    assert [p.message for p in too_deep] == [f"nesting is deeper than {MAX_DEPTH} levels"]
    assert too_deep[0].line == 1


def test_very_deep_nesting_does_not_overflow_the_stack() -> None:
    # Plain PyYAML composes this recursively and raises RecursionError; the limit stops it first.
    assert messages("- " * 5_000 + "1\n") == [f"nesting is deeper than {MAX_DEPTH} levels"]


def test_self_referencing_anchor_hits_the_depth_limit() -> None:
    assert "nesting is deeper than" in messages("a: &a [*a]\n")[0]
    assert "nesting is deeper than" in messages("a: &a {<<: *a}\n")[0]


def test_size_limit_is_checked_before_parsing() -> None:
    raw = b"a: [" * (MAX_BYTES // 4 + 1)  # would also be a syntax error and far too deep
    assert len(raw) > MAX_BYTES
    tree = load_yaml(raw, "c.yaml")
    assert [p.message for p in tree.problems] == ["file is larger than 1 MiB"]


def test_multiple_documents_are_rejected() -> None:
    problems = parse_yaml("a: 1\n---\nb: 2\n", "c.yaml").problems
    assert [(p.line, p.message) for p in problems] == [
        (2, "only one YAML document is allowed (found a second '---' document)")
    ]


def test_one_explicit_document_is_fine() -> None:
    assert parse_yaml("---\na: 1\n...\n", "c.yaml").data == {"a": 1}


def test_empty_document_is_none() -> None:
    for text in ("", "\n\n", "# only a comment\n", "---\n"):
        tree = parse_yaml(text, "c.yaml")
        assert tree.data is None and tree.problems == () and tree.lines == {(): 1}


def test_python_tags_are_never_constructed(tmp_path: pathlib.Path) -> None:
    marker = tmp_path / "pwned"
    text = (
        f"a: !!python/object/apply:os.system ['touch {marker}']\n"
        f"b: !!python/object/new:os.system ['touch {marker}']\n"
        "c: !!python/name:os.system\n"
        "d: !custom {x: 1}\n"
        "e: !!binary aGk=\n"
        "f: !!set {a}\n"
        "ok: 1\n"
    )
    tree = parse_yaml(text, "c.yaml")
    assert not marker.exists()
    assert [(p.line, p.key, p.message) for p in tree.problems] == [
        (1, "a", "unsupported tag '!!python/object/apply:os.system'"),
        (2, "b", "unsupported tag '!!python/object/new:os.system'"),
        (3, "c", "unsupported tag '!!python/name:os.system'"),
        (4, "d", "unsupported tag '!custom'"),
        (5, "e", "unsupported tag '!!binary'"),
        (6, "f", "unsupported tag '!!set'"),
    ]
    assert isinstance(tree.data, dict) and tree.data["ok"] == 1 and tree.data["a"] is None


def test_explicit_standard_tags_are_honoured() -> None:
    tree = parse_yaml("a: !!str 5\nb: !!int '7'\nc: !!float 1\nd: !!int nope\n", "c.yaml")
    assert isinstance(tree.data, dict)
    assert (tree.data["a"], tree.data["b"], tree.data["c"]) == ("5", 7, 1.0)
    assert [(p.line, p.message) for p in tree.problems] == [(4, "'nope' is not a valid !!int value")]


def test_syntax_error_has_the_line_and_pyyaml_description() -> None:
    problems = parse_yaml("a: 1\nb: c: d\n", "c.yaml").problems
    assert [(p.file, p.line, p.key, p.message) for p in problems] == [
        ("c.yaml", 2, "", "invalid YAML: mapping values are not allowed here")
    ]


def test_tab_indentation_is_a_syntax_error() -> None:
    problems = parse_yaml("a:\n\tb: 1\n", "c.yaml").problems
    assert len(problems) == 1 and problems[0].line == 2
    assert problems[0].message == "invalid YAML: indented with a tab; YAML indents with spaces only"


def test_undefined_alias_and_duplicate_anchor() -> None:
    assert messages("a: *nope\n") == ["invalid YAML: found undefined alias 'nope'"]
    problems = parse_yaml("a: &x 1\nb: &x 2\n", "c.yaml").problems
    assert [(p.line, p.message) for p in problems] == [
        (2, "invalid YAML: duplicate anchor 'x' (first defined on line 1)")
    ]


def test_non_utf8_bytes_are_reported_with_their_line() -> None:
    problems = load_yaml(b"a: ok\nb: caf\xe9\n", "c.yaml").problems
    assert [(p.line, p.message) for p in problems] == [
        (2, "not valid UTF-8 (byte 0xe9); save the file as UTF-8")
    ]


def test_utf8_with_bom_is_accepted() -> None:
    assert load_yaml("\ufeffa: café\n".encode(), "c.yaml").data == {"a": "café"}


def test_control_characters_are_rejected_with_their_line() -> None:
    problems = parse_yaml("a: 1\nb: \x07\n", "c.yaml").problems
    assert len(problems) == 1 and problems[0].line == 2
    assert problems[0].message.startswith("invalid YAML: unacceptable character #x0007")


def test_resolve_plain_types_like_an_unquoted_scalar() -> None:
    assert resolve_plain("1000") == 1000
    assert resolve_plain("1.5") == 1.5
    assert resolve_plain("true") is True
    assert resolve_plain("off") is False
    assert resolve_plain("null") is None
    assert resolve_plain("2024-01-02") == "2024-01-02"
    assert resolve_plain("[1, 2]") == "[1, 2]"
    assert resolve_plain("gpt-4o") == "gpt-4o"
