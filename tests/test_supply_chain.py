"""The supply-chain policy holds: docs/supply-chain.md.

requirements/lock.txt pins every package with sha256 hashes and covers every direct dependency of
pyproject.toml (its `dependencies` and the `test` extra) and the build backend; no locked version
and no version pyproject.toml admits is on requirements/known-bad.txt; .ci/run installs from the
lock with hashes required and takes nothing else from the index. The lock targets CPython 3.11 on
Linux, so markers are judged for that platform, whatever runs the test.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

tomllib = pytest.importorskip("tomllib")  # Python 3.11+, like the lock itself

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements" / "lock.txt"
TOOLS = ROOT / "requirements" / "tools.txt"
KNOWN_BAD = ROOT / "requirements" / "known-bad.txt"
# The platform the lock is made for (scripts/lock: --python-version 3.11 --python-platform linux).
LOCK_ENV = {
    "python_version": "3.11",
    "python_full_version": "3.11.0",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "os_name": "posix",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
}
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")
_HASH = re.compile(r"--hash=sha256:[0-9a-f]{64}\b")


def entries(path: Path) -> list[str]:
    """The requirement entries of a requirements file: continuation lines joined, comments gone."""
    joined = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
    lines = (" ".join(line.split(" #", 1)[0].split()) for line in joined.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def locked(lock: Path = LOCK) -> dict[str, str]:
    pins = {}
    for entry in entries(lock):
        match = _PIN.match(entry)
        assert match, f"not an exact pin: {entry[:80]}"
        pins[canonicalize_name(match.group(1))] = match.group(2)
    return pins


def known_bad() -> dict[str, set[str]]:
    bad: dict[str, set[str]] = {}
    for entry in entries(KNOWN_BAD):
        req = Requirement(entry)
        assert req.specifier and all(s.operator == "!=" for s in req.specifier), (
            f"known-bad.txt takes only != exclusions: {entry}"
        )
        bad.setdefault(canonicalize_name(req.name), set()).update(s.version for s in req.specifier)
    return bad


def direct_dependencies() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    reqs = [Requirement(r) for r in [*project["dependencies"], *project["optional-dependencies"]["test"]]]
    return [r for r in reqs if r.marker is None or r.marker.evaluate(LOCK_ENV)]


@pytest.mark.parametrize("lock", [LOCK, TOOLS], ids=lambda p: p.name)
def test_every_locked_requirement_is_an_exact_pin_with_a_hash(lock: Path) -> None:
    missing = [entry.split()[0] for entry in entries(lock) if not _HASH.search(entry)]
    assert entries(lock) and not missing, f"no --hash=sha256: for {missing}; run scripts/lock"
    assert locked(lock)


def test_the_lock_covers_every_direct_dependency_at_an_allowed_version() -> None:
    pins = locked()
    problems = []
    for req in direct_dependencies():
        version = pins.get(canonicalize_name(req.name))
        if version is None:
            problems.append(f"{req.name} is not locked")
        elif not req.specifier.contains(version, prereleases=True):
            problems.append(f"{req.name}=={version} is outside pyproject.toml's {req.specifier}")
    assert not problems, "; ".join(problems) + " (run scripts/lock)"


def test_the_lock_holds_the_build_backend() -> None:
    # .ci/run builds rnix with --no-build-isolation, from what the lock installed.
    build = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["build-system"]
    pins = locked()
    for req in map(Requirement, build["requires"]):
        assert req.specifier.contains(pins.get(canonicalize_name(req.name), "0")), f"lock {req}"


def test_no_known_bad_release_is_locked_or_admitted() -> None:
    bad = known_bad()
    assert "1.82.7" in bad["litellm"] and "1.82.8" in bad["litellm"]
    pins = locked()
    found = [f"{name}=={pins[name]}" for name, versions in bad.items() if pins.get(name) in versions]
    assert not found, f"known-bad releases in the lock: {found}"
    admitted = [
        f"{req.name}=={version}"
        for req in direct_dependencies()
        for version in sorted(bad.get(canonicalize_name(req.name), ()))
        if req.specifier.contains(version, prereleases=True)
    ]
    assert not admitted, f"pyproject.toml must exclude with !=: {admitted}"


def test_requirements_files_are_read_like_pip_reads_them(tmp_path: Path) -> None:
    path = tmp_path / "r.txt"
    path.write_text("x==1 \\\n    --hash=sha256:" + "a" * 64 + "\n    # via y\n# note\nz!=2  # why\n")
    assert entries(path) == ["x==1 --hash=sha256:" + "a" * 64, "z!=2"]


def pip_installs(script: str) -> list[list[str]]:
    """The argument lists of every `pip install` in a shell script, after `install`."""
    out = []
    for line in script.splitlines():
        words = shlex.split(line, comments=True)
        if "pip" in words and "install" in words[words.index("pip") :]:
            out.append(words[words.index("install", words.index("pip")) + 1 :])
    return out


def test_ci_installs_from_the_lock_with_hashes_required_and_nothing_else_from_the_index() -> None:
    installs = pip_installs((ROOT / ".ci" / "run").read_text(encoding="utf-8"))
    assert any("--require-hashes" in a and "requirements/lock.txt" in a for a in installs), installs
    for args in installs:
        hashed = "--require-hashes" in args
        local_only = {"--no-deps", "--no-build-isolation"} <= set(args) and args[-2:] == ["-e", "."]
        assert hashed or local_only, f"pip install {' '.join(args)} takes packages unchecked"
