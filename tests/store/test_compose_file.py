"""The compose file entry points on real files: finding, loading (.env, problems, limits), project names."""

from __future__ import annotations

import os
import pathlib
import time

import pytest

from rnix.core.spec import parse_compose
from rnix.errors import ComposeNotFound, InvalidCompose, UsageError
from rnix.store.compose_file import (
    COMPOSE_FILENAMES,
    LoadedCompose,
    find_compose_file,
    load_compose,
    resolve_project_name,
)
from rnix.store.yaml_lines import MAX_BYTES

COMPOSE = """\
name: demo
x-defaults: &defaults
  model: ${MODEL:-mock}
agents:
  reader:
    intent: read the ${TOPIC} notes
  writer:
    <<: *defaults
    intent: write
    budget: ${BUDGET:-1000}
    depends_on:
      - reader
"""


def write(path: pathlib.Path, text: str | bytes) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def load(tmp_path: pathlib.Path, text: str | bytes, environ: dict[str, str] | None = None) -> LoadedCompose:
    path = write(tmp_path / "compose.yaml", text)
    return load_compose(path, "compose.yaml", environ or {})


def problems_of(
    tmp_path: pathlib.Path, text: str | bytes, environ: dict[str, str] | None = None
) -> list[str]:
    with pytest.raises(InvalidCompose) as caught:
        load(tmp_path, text, environ)
    return [str(problem) for problem in caught.value.problems]


# --- find_compose_file ---------------------------------------------------------------------------


def test_finds_compose_yaml_in_cwd(tmp_path: pathlib.Path) -> None:
    write(tmp_path / "compose.yaml", "agents: {}\n")
    assert find_compose_file(tmp_path, None) == (tmp_path / "compose.yaml", "compose.yaml", ())


@pytest.mark.parametrize("name", COMPOSE_FILENAMES)
def test_finds_each_name(tmp_path: pathlib.Path, name: str) -> None:
    write(tmp_path / name, "agents: {}\n")
    path, display, warnings = find_compose_file(tmp_path, None)
    assert (path, display, warnings) == (tmp_path / name, name, ())
    assert path.is_absolute()


def test_both_yaml_and_yml_warns_and_uses_yaml(tmp_path: pathlib.Path) -> None:
    write(tmp_path / "compose.yml", "agents: {}\n")
    write(tmp_path / "compose.yaml", "agents: {}\n")
    path, display, warnings = find_compose_file(tmp_path, None)
    assert display == "compose.yaml" and path == tmp_path / "compose.yaml"
    assert warnings == ("found both compose.yaml and compose.yml, using compose.yaml",)


def test_yml_wins_over_rnix_compose(tmp_path: pathlib.Path) -> None:
    write(tmp_path / "rnix-compose.yaml", "agents: {}\n")
    write(tmp_path / "compose.yml", "agents: {}\n")
    _, display, warnings = find_compose_file(tmp_path, None)
    assert display == "compose.yml"
    assert warnings == ("found both compose.yml and rnix-compose.yaml, using compose.yml",)


def test_all_three_present(tmp_path: pathlib.Path) -> None:
    for name in COMPOSE_FILENAMES:
        write(tmp_path / name, "agents: {}\n")
    _, display, warnings = find_compose_file(tmp_path, None)
    assert display == "compose.yaml"
    assert warnings == ("found compose.yaml, compose.yml and rnix-compose.yaml, using compose.yaml",)


def test_a_directory_named_compose_yaml_is_not_a_candidate(tmp_path: pathlib.Path) -> None:
    (tmp_path / "compose.yaml").mkdir()
    write(tmp_path / "compose.yml", "agents: {}\n")
    assert find_compose_file(tmp_path, None)[1] == "compose.yml"


def test_nothing_found(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ComposeNotFound) as caught:
        find_compose_file(tmp_path, None)
    assert caught.value.message == f"no compose file in {tmp_path}"
    assert caught.value.hint == (
        "create compose.yaml here, or pass -f FILE (looked for compose.yaml, compose.yml, rnix-compose.yaml)"
    )


def test_explicit_relative_path_is_relative_to_cwd_and_wins(tmp_path: pathlib.Path) -> None:
    write(tmp_path / "compose.yaml", "agents: {}\n")
    write(tmp_path / "sub" / "other.yaml", "agents: {}\n")
    path, display, warnings = find_compose_file(tmp_path, "sub/other.yaml")
    assert (path, display, warnings) == (tmp_path / "sub" / "other.yaml", "sub/other.yaml", ())


def test_explicit_path_is_normalised(tmp_path: pathlib.Path) -> None:
    write(tmp_path / "a.yaml", "agents: {}\n")
    (tmp_path / "sub").mkdir()
    path, display, _ = find_compose_file(tmp_path / "sub", "../a.yaml")
    assert path == tmp_path / "a.yaml" and display == "../a.yaml"


def test_explicit_absolute_path(tmp_path: pathlib.Path) -> None:
    target = write(tmp_path / "x" / "c.yaml", "agents: {}\n")
    path, display, _ = find_compose_file(pathlib.Path("/"), str(target))
    assert path == target and display == str(target)


def test_explicit_missing(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ComposeNotFound) as caught:
        find_compose_file(tmp_path, "nope.yaml")
    assert caught.value.message == "compose file not found: nope.yaml"
    assert caught.value.hint == "check the path given to -f"


def test_explicit_directory(tmp_path: pathlib.Path) -> None:
    (tmp_path / "proj").mkdir()
    with pytest.raises(ComposeNotFound) as caught:
        find_compose_file(tmp_path, "proj")
    assert caught.value.message == "proj is a directory"
    assert caught.value.hint == "pass the compose file itself, e.g. -f proj/compose.yaml"


def test_explicit_unreadable(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = write(tmp_path / "c.yaml", "agents: {}\n")
    real_access = os.access
    # Tests may run as root, for whom chmod 000 changes nothing; pretend the kernel said no.
    monkeypatch.setattr(
        os, "access", lambda p, mode: False if pathlib.Path(p) == target else real_access(p, mode)
    )
    with pytest.raises(ComposeNotFound) as caught:
        find_compose_file(tmp_path, "c.yaml")
    assert caught.value.message == "cannot read c.yaml: permission denied"
    assert caught.value.hint is not None and "permissions" in caught.value.hint


# --- load_compose ----------------------------------------------------------------------------------


def test_load_interpolates_and_maps_lines(tmp_path: pathlib.Path) -> None:
    loaded = load(tmp_path, COMPOSE, {"TOPIC": "meeting", "BUDGET": "250"})
    assert loaded.path == tmp_path / "compose.yaml" and loaded.display == "compose.yaml"
    assert loaded.data == {
        "name": "demo",
        "x-defaults": {"model": "${MODEL:-mock}"},
        "agents": {
            "reader": {"intent": "read the meeting notes"},
            "writer": {"model": "mock", "intent": "write", "budget": 250, "depends_on": ["reader"]},
        },
    }
    assert loaded.warnings == ()
    assert loaded.lines[()] == 1
    assert loaded.lines[("agents", "reader", "intent")] == 6
    assert loaded.lines[("agents", "writer", "model")] == 3
    assert loaded.lines[("agents", "writer", "depends_on", 0)] == 12


def test_loaded_tree_validates_with_parse_compose(tmp_path: pathlib.Path) -> None:
    loaded = load(tmp_path, COMPOSE, {"TOPIC": "t"})
    spec = parse_compose(loaded.data, loaded.lines, loaded.display)
    writer = next(agent for agent in spec.agents if agent.name == "writer")
    assert writer.budget == 1000 and writer.depends_on == ("reader",) and writer.line == 7


def test_unset_variable_warns(tmp_path: pathlib.Path) -> None:
    loaded = load(tmp_path, COMPOSE)
    assert loaded.warnings == ("variable TOPIC is not set, using an empty string",)


def test_dotenv_beside_the_file_is_used_and_the_shell_wins(tmp_path: pathlib.Path) -> None:
    write(tmp_path / ".env", "TOPIC=from-dotenv\nBUDGET=7\n")
    loaded = load(tmp_path, COMPOSE, {"BUDGET": "9"})
    agents = loaded.data["agents"]  # type: ignore[index]
    assert agents["reader"]["intent"] == "read the from-dotenv notes"
    assert agents["writer"]["budget"] == 9


def test_dotenv_is_read_from_the_compose_files_directory(tmp_path: pathlib.Path) -> None:
    write(tmp_path / ".env", "TOPIC=wrong\n")
    path = write(tmp_path / "proj" / "compose.yaml", "a: $TOPIC\n")
    write(tmp_path / "proj" / ".env", "TOPIC=right\n")
    assert load_compose(path, "proj/compose.yaml", {}).data == {"a": "right"}


def test_dotenv_errors_name_the_dotenv_file_and_line(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path / "proj" / "compose.yaml", "a: $A\n")
    write(tmp_path / "proj" / ".env", "A=1\nnot a line\n")
    with pytest.raises(InvalidCompose) as caught:
        load_compose(path, "proj/compose.yaml", {})
    assert [(p.file, p.line, p.message) for p in caught.value.problems] == [
        ("proj/.env", 2, "invalid line: expected KEY=VALUE")
    ]
    assert caught.value.file == "proj/compose.yaml"


def test_dotenv_display_for_a_bare_file_name(tmp_path: pathlib.Path) -> None:
    write(tmp_path / ".env", "oops\n")
    assert problems_of(tmp_path, "a: 1\n") == [".env:1: invalid line: expected KEY=VALUE"]


def test_non_utf8_dotenv(tmp_path: pathlib.Path) -> None:
    write(tmp_path / ".env", b"A=1\nB=caf\xe9\n")
    assert problems_of(tmp_path, "a: 1\n") == [".env:2: not valid UTF-8; save as UTF-8"]


def test_every_problem_is_reported_at_once_sorted_by_line(tmp_path: pathlib.Path) -> None:
    write(tmp_path / ".env", "bad\n")
    text = "agents:\n  w:\n    intent: ${NEED:?set NEED}\n    model: '${'\n  w:\n    intent: again\n"
    assert problems_of(tmp_path, text) == [
        "compose.yaml:3: agents.w.intent: required variable NEED is not set: set NEED",
        "compose.yaml:4: agents.w.model: invalid interpolation '${': unclosed '${' "
        "(write $$ for a literal $)",
        "compose.yaml:5: agents.w: duplicate key 'w' (first defined on line 2)",
        ".env:1: invalid line: expected KEY=VALUE",
    ]


def test_syntax_error(tmp_path: pathlib.Path) -> None:
    with pytest.raises(InvalidCompose) as caught:
        load(tmp_path, "agents:\n  w: {intent: a\n")
    assert len(caught.value.problems) == 1
    problem = caught.value.problems[0]
    assert (
        problem.file == "compose.yaml" and problem.line == 3 and problem.message.startswith("invalid YAML: ")
    )
    assert caught.value.message == "compose.yaml is not a valid compose file (1 problem)"


def test_duplicate_keys_in_a_file(tmp_path: pathlib.Path) -> None:
    assert problems_of(tmp_path, "name: a\nagents:\n  w: {}\n  w: {}\nname: b\n") == [
        "compose.yaml:4: agents.w: duplicate key 'w' (first defined on line 3)",
        "compose.yaml:5: name: duplicate key 'name' (first defined on line 1)",
    ]


def test_alias_bomb_file_is_rejected_quickly(tmp_path: pathlib.Path) -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in "bcdefghi":
        previous = chr(ord(level) - 1)
        lines.append(f"{level}: &{level} [{', '.join([f'*{previous}'] * 9)}]")
    start = time.perf_counter()
    problems = problems_of(tmp_path, "\n".join(lines) + "\n")
    assert time.perf_counter() - start < 1.0
    assert len(problems) == 1 and "too many nodes" in problems[0] and "aliases" in problems[0]


def test_python_tag_in_a_file_is_not_executed(tmp_path: pathlib.Path) -> None:
    marker = tmp_path / "pwned"
    problems = problems_of(tmp_path, f"a: !!python/object/apply:os.system ['touch {marker}']\n")
    assert not marker.exists()
    assert problems == ["compose.yaml:1: a: unsupported tag '!!python/object/apply:os.system'"]


def test_file_too_large(tmp_path: pathlib.Path) -> None:
    text = "# " + "x" * MAX_BYTES + "\n"
    assert problems_of(tmp_path, text) == ["compose.yaml: file is larger than 1 MiB"]


def test_non_utf8_file(tmp_path: pathlib.Path) -> None:
    assert problems_of(tmp_path, b"name: ok\nintent: \xff\xfe\n") == [
        "compose.yaml:2: not valid UTF-8 (byte 0xff); save the file as UTF-8"
    ]


def test_multiple_documents_in_a_file(tmp_path: pathlib.Path) -> None:
    assert problems_of(tmp_path, "---\na: 1\n---\nb: 2\n") == [
        "compose.yaml:3: only one YAML document is allowed (found a second '---' document)"
    ]


def test_empty_file_loads_as_none(tmp_path: pathlib.Path) -> None:
    loaded = load(tmp_path, "# nothing yet\n")
    assert loaded.data is None and dict(loaded.lines) == {(): 1}


def test_missing_file_at_load_time(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ComposeNotFound) as caught:
        load_compose(tmp_path / "gone.yaml", "gone.yaml", {})
    assert caught.value.message == "compose file not found: gone.yaml"


def test_unreadable_file_at_load_time(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = write(tmp_path / "compose.yaml", "a: 1\n")
    real_open = pathlib.Path.open

    def deny(self: pathlib.Path, *args: object, **kwargs: object) -> object:
        if self == target:
            raise PermissionError(13, "Permission denied")
        return real_open(self, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(pathlib.Path, "open", deny)
    with pytest.raises(ComposeNotFound) as caught:
        load_compose(target, "compose.yaml", {})
    assert caught.value.message == "cannot read compose.yaml: permission denied"


# --- resolve_project_name --------------------------------------------------------------------------

COMPOSE_PATH = pathlib.Path("/home/me/My Dir/compose.yaml")


def test_project_name_precedence() -> None:
    env = {"RNIX_PROJECT_NAME": "from-env"}
    assert resolve_project_name("from-cli", env, "from-file", COMPOSE_PATH) == "from-cli"
    assert resolve_project_name(None, env, "from-file", COMPOSE_PATH) == "from-env"
    assert resolve_project_name(None, {}, "from-file", COMPOSE_PATH) == "from-file"
    assert resolve_project_name(None, {}, None, COMPOSE_PATH) == "mydir"


def test_empty_values_count_as_not_given() -> None:
    assert resolve_project_name("", {"RNIX_PROJECT_NAME": ""}, "", COMPOSE_PATH) == "mydir"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("My Project!", "myproject"),
        ("__x", "x"),
        ("-_-a-b_c", "a-b_c"),
        ("web2.0", "web20"),
        ("ÜberApp", "berapp"),
        ("9lives", "9lives"),
    ],
)
def test_project_name_normalisation(raw: str, expected: str) -> None:
    assert resolve_project_name(raw, {}, None, COMPOSE_PATH) == expected


@pytest.mark.parametrize("raw", ["!!!", "__", "---", "ÄÖ"])
def test_invalid_project_name(raw: str) -> None:
    with pytest.raises(UsageError) as caught:
        resolve_project_name(raw, {}, None, COMPOSE_PATH)
    assert caught.value.message == f"invalid project name '{raw}'"
    assert caught.value.hint == "project names use a-z, 0-9, '-' and '_'; set one with -p NAME"


def test_invalid_directory_name_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="invalid project name '___'"):
        resolve_project_name(None, {}, None, pathlib.Path("/srv/___/compose.yaml"))
