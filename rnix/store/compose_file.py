"""Finding and loading a compose file: the entry points between the command line and `parse_compose`.

`find_compose_file` decides which file to read (`-f` wins, else the first of `COMPOSE_FILENAMES` in the
working directory); `load_compose` reads it and the optional `.env` beside it, parses the YAML safely
(`yaml_lines`), interpolates variables (`interpolate`) and returns the plain tree with its line map,
ready for `rnix.core.spec.parse_compose`. Every problem in the file and its `.env` is collected and
raised at once as `InvalidCompose`; a file that cannot be found or read is `ComposeNotFound`.
`resolve_project_name` picks and normalises the project name. Nothing here prints: warnings are
returned for the caller to show.
"""

from __future__ import annotations

import os
import pathlib
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from rnix.core.problems import Problem
from rnix.core.types import Path
from rnix.errors import ComposeNotFound, InvalidCompose, UsageError
from rnix.store.dotenv import parse_dotenv
from rnix.store.interpolate import interpolate_tree
from rnix.store.yaml_lines import MAX_BYTES, load_yaml

COMPOSE_FILENAMES = ("compose.yaml", "compose.yml", "rnix-compose.yaml")
PROJECT_NAME_VARIABLE = "RNIX_PROJECT_NAME"
# docker compose's names, honoured when rnix's own are not set (habits carry over).
PROJECT_NAME_VARIABLES = (PROJECT_NAME_VARIABLE, "COMPOSE_PROJECT_NAME")
COMPOSE_FILE_VARIABLES = ("RNIX_COMPOSE_FILE", "COMPOSE_FILE")
DOTENV_NAME = ".env"

_PROJECT_NAME_HINT = "project names use a-z, 0-9, '-' and '_'; set one with -p NAME"


@dataclass(frozen=True)
class LoadedCompose:
    """A compose file read from disk, interpolated, not yet validated."""

    path: pathlib.Path  # absolute path of the compose file
    display: str  # the name used in messages: as given to -f, or the bare file name when looked up
    data: object  # plain tree: dict/list/str/int/float/bool/None, after interpolation
    lines: Mapping[Path, int]  # key path -> 1-based line of the key (or list item); () -> 1
    warnings: tuple[str, ...]
    # With `collect=True`: interpolation and .env problems, left for the caller to report together
    # with the validation's (a value that failed to interpolate keeps its text as written).
    problems: tuple[Problem, ...] = ()


def find_compose_file(cwd: pathlib.Path, explicit: str | None) -> tuple[pathlib.Path, str, tuple[str, ...]]:
    """Return (absolute path, display name, warnings) of the compose file to use.

    `explicit` (from -f) wins and is relative to `cwd`; otherwise the first of `COMPOSE_FILENAMES`
    found in `cwd`, with a warning when several are present. Raises `ComposeNotFound`.
    """
    if explicit is not None:
        return _explicit_file(cwd, explicit), explicit, ()
    found = [name for name in COMPOSE_FILENAMES if _is_file(cwd / name, name)]
    if not found:
        raise ComposeNotFound(
            f"no compose file in {cwd}",
            "create compose.yaml here, or pass -f FILE (looked for " + ", ".join(COMPOSE_FILENAMES) + ")",
        )
    path = _absolute(cwd / found[0])
    _check_readable(path, found[0])
    return path, found[0], _several_found(found)


def compose_file_from_env(environ: Mapping[str, str]) -> str | None:
    """The compose file named by $RNIX_COMPOSE_FILE, else $COMPOSE_FILE (None: neither is set).

    docker's COMPOSE_FILE may list several files to merge; rnix reads one, so a list is refused.
    """
    for variable in COMPOSE_FILE_VARIABLES:
        value = environ.get(variable)
        if value:
            if os.pathsep in value:
                raise UsageError(
                    f"${variable} names several files ({value}); rnix reads one compose file",
                    f"set {variable} to one file, or pass -f FILE",
                )
            return value
    return None


def project_name_from_env(environ: Mapping[str, str]) -> str | None:
    """$RNIX_PROJECT_NAME, else $COMPOSE_PROJECT_NAME (an empty value counts as not set)."""
    return next((environ[v] for v in PROJECT_NAME_VARIABLES if environ.get(v)), None)


def load_compose(
    path: pathlib.Path,
    display: str,
    environ: Mapping[str, str],
    env_files: tuple[pathlib.Path, ...] | None = None,
    *,
    collect: bool = False,
) -> LoadedCompose:
    """Read, parse and interpolate the compose file at `path`; raises `InvalidCompose` with every problem.

    Variables come from `environ` first, then from the `.env` file beside the compose file, or from
    `env_files` instead when given (`--env-file`, as in docker: later files win; a missing one is
    `ComposeNotFound`). With `collect`, only a file that is not YAML raises: the other problems are
    returned in `problems`, so that one report can list them with the validation's.
    """
    tree = load_yaml(_read_compose(path, display), display)
    if env_files is None:
        dotenv_values, dotenv_problems = _load_dotenv(path.parent / DOTENV_NAME, _dotenv_display(display))
    else:
        dotenv_values, dotenv_problems = _load_env_files(env_files)
    problems: list[Problem] = list(tree.problems)
    data: object = None
    warnings: tuple[str, ...] = ()
    if tree.data is not None:
        # The shell wins over .env, as in docker compose: `FOO=x rnix up` overrides the file.
        result = interpolate_tree(tree.data, tree.lines, tree.plain, {**dotenv_values, **environ}, display)
        data, warnings = result.data, result.warnings
        problems.extend(result.problems)
    problems.sort(key=lambda problem: problem.line or 0)
    problems.extend(dotenv_problems)
    if problems and (not collect or tree.data is None or tree.problems):
        raise InvalidCompose(display, problems)
    lines = MappingProxyType(dict(tree.lines))
    return LoadedCompose(path, display, data, lines, warnings, tuple(problems))


def resolve_project_name(
    cli_name: str | None, environ: Mapping[str, str], file_name: str | None, compose_path: pathlib.Path
) -> str:
    """-p > $RNIX_PROJECT_NAME > $COMPOSE_PROJECT_NAME > `name:` > the file's directory; then normalised.

    Normalising lower-cases, drops every character outside [a-z0-9_-] and strips leading `-`/`_`.
    An empty value counts as not given. Raises `UsageError` when nothing is left.
    """
    candidates = (cli_name, project_name_from_env(environ), file_name)
    raw = next((name for name in candidates if name), None)
    if raw is None:
        raw = _absolute(compose_path).parent.name
    name = re.sub(r"[^a-z0-9_-]", "", raw.lower())
    name = re.sub(r"^[^a-z0-9]+", "", name)
    if not name:
        raise UsageError(f"invalid project name '{raw}'", _PROJECT_NAME_HINT)
    return name


def _absolute(path: pathlib.Path) -> pathlib.Path:
    # abspath normalises `..` without resolving symlinks, so messages keep the user's view of the path.
    return pathlib.Path(os.path.abspath(path))


def _explicit_file(cwd: pathlib.Path, given: str) -> pathlib.Path:
    path = _absolute(cwd / given)
    info = _stat(path, given)
    if info is None:
        raise ComposeNotFound(f"compose file not found: {given}", "check the path given to -f")
    if stat.S_ISDIR(info.st_mode):
        example = pathlib.PurePath(given) / COMPOSE_FILENAMES[0]
        raise ComposeNotFound(f"{given} is a directory", f"pass the compose file itself, e.g. -f {example}")
    _check_readable(path, given)
    return path


def _stat(path: pathlib.Path, shown: str) -> os.stat_result | None:
    """The file's status, None when it does not exist; `ComposeNotFound` when we may not look."""
    try:
        return path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise _unreadable(shown, exc) from exc


def _is_file(path: pathlib.Path, shown: str) -> bool:
    info = _stat(path, shown)
    return info is not None and stat.S_ISREG(info.st_mode)


def _check_readable(path: pathlib.Path, shown: str) -> None:
    # Checked here so a bad -f fails before anything else runs; `_read_compose` still handles races.
    if not os.access(path, os.R_OK):
        raise _unreadable(shown, PermissionError())


def _unreadable(shown: str, exc: OSError) -> ComposeNotFound:
    if isinstance(exc, PermissionError):
        return ComposeNotFound(
            f"cannot read {shown}: permission denied", f"check the file's permissions (chmod u+r {shown})"
        )
    return ComposeNotFound(f"cannot read {shown}: {exc.strerror or exc}", "check the path given to -f")


def _several_found(found: list[str]) -> tuple[str, ...]:
    if len(found) < 2:
        return ()
    if len(found) == 2:
        return (f"found both {found[0]} and {found[1]}, using {found[0]}",)
    return (f"found {', '.join(found[:-1])} and {found[-1]}, using {found[0]}",)


def _read_limited(path: pathlib.Path) -> bytes:
    # One byte over the limit is enough for `load_yaml` to report the size without reading a huge file.
    with path.open("rb") as handle:
        return handle.read(MAX_BYTES + 1)


def _read_compose(path: pathlib.Path, display: str) -> bytes:
    try:
        return _read_limited(path)
    except FileNotFoundError as exc:
        raise ComposeNotFound(f"compose file not found: {display}", "check the path given to -f") from exc
    except IsADirectoryError as exc:
        example = pathlib.PurePath(display) / COMPOSE_FILENAMES[0]
        hint = f"pass the compose file itself, e.g. -f {example}"
        raise ComposeNotFound(f"{display} is a directory", hint) from exc
    except OSError as exc:
        raise _unreadable(display, exc) from exc


def _dotenv_display(display: str) -> str:
    parent = pathlib.PurePath(display).parent
    return DOTENV_NAME if str(parent) == "." else str(parent / DOTENV_NAME)


def dotenv_values(
    directory: pathlib.Path, env_files: tuple[pathlib.Path, ...] | None = None
) -> dict[str, str]:
    """The variables of the `.env` in `directory`, or of `env_files` when given (`--env-file`);
    none when missing or unreadable (loading the compose file reports those problems)."""
    if env_files is not None:
        try:
            return _load_env_files(env_files)[0]
        except ComposeNotFound:
            return {}
    return _load_dotenv(directory / DOTENV_NAME, DOTENV_NAME)[0]


def _load_env_files(paths: tuple[pathlib.Path, ...]) -> tuple[dict[str, str], tuple[Problem, ...]]:
    values: dict[str, str] = {}
    problems: list[Problem] = []
    for path in paths:
        if not path.is_file():
            raise ComposeNotFound(f"env file not found: {path}", "check the path given to --env-file")
        found, trouble = _load_dotenv(path, str(path))
        values.update(found)
        problems.extend(trouble)
    return values, tuple(problems)


def _load_dotenv(path: pathlib.Path, display: str) -> tuple[dict[str, str], tuple[Problem, ...]]:
    """The `.env` values and problems; a missing `.env` is simply empty."""
    try:
        raw = _read_limited(path)
    except (FileNotFoundError, NotADirectoryError):
        return {}, ()
    except OSError as exc:
        reason = "permission denied" if isinstance(exc, PermissionError) else exc.strerror or str(exc)
        return {}, (Problem(display, None, "", f"cannot read the file: {reason}"),)
    if len(raw) > MAX_BYTES:
        return {}, (Problem(display, None, "", "file is larger than 1 MiB"),)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        return {}, (Problem(display, line, "", "not valid UTF-8; save as UTF-8"),)
    return parse_dotenv(text, display)
