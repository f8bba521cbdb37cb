"""The package layering of rnix, read from the source with `ast` (every import, also lazy ones).

    cli ─► tui ─► ui ─► supervisor ─► llm, store ─► core ─► errors
    (and agent: standard library only, it runs in every agent process; the supervisor forks it)

Each rule below says what a package may import from rnix and why; every violation is reported at
once as `FILE:LINE: module imports target`. Module-level imports (those under `if TYPE_CHECKING:`
too) must not form a cycle; an import inside a function is the documented way to break load order
and is left out of the cycle check, not out of the layering.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import rnix

PACKAGE = Path(rnix.__file__).resolve().parent


@dataclass(frozen=True)
class Import:
    source: str  # the importing module, e.g. rnix.core.plan
    target: str  # the imported module (a name imported from a package resolves to its submodule)
    file: str
    line: int
    lazy: bool  # inside a function: runs when called, not when the module loads
    type_only: bool  # under `if TYPE_CHECKING:`

    def __str__(self) -> str:
        how = " (lazy)" if self.lazy else " (type only)" if self.type_only else ""
        return f"{self.file}:{self.line}: {self.source} imports {self.target}{how}"


@dataclass(frozen=True)
class Rule:
    package: str
    why: str
    allowed: tuple[str, ...] | None = None  # the only rnix packages/modules it may import
    forbidden: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.allowed is not None:
            return f"{self.package} may import only {', '.join(self.allowed) or 'the standard library'}"
        return f"{self.package} must not import {', '.join(self.forbidden)}"

    def refuses(self, target: str) -> bool:
        if self.allowed is not None and not _within(target, self.allowed):
            return True
        return _within(target, self.forbidden)


FRONT_ENDS = ("rnix.cli", "rnix.ui", "rnix.tui")
RULES = (
    Rule(
        "rnix.core",
        "the pure core; rnix.errors is the error family its validation raises (InvalidCompose),"
        " itself standard library only (see the rule for rnix.errors)",
        allowed=("rnix.core", "rnix.errors"),
    ),
    Rule(
        "rnix.agent",
        "the thin agent runtime runs in every agent process: standard library and itself only, but"
        " for rnix.core.journal (standard library only), whose tool_key the tool loop derives"
        " (only the agent calls it: it could move to rnix.agent.protocol), and rnix.core.structured"
        " (standard library only when imported; jsonschema is loaded by its functions), which"
        " checks a result against the task's output_schema, for agents that have one",
        allowed=("rnix.agent", "rnix.core.journal", "rnix.core.structured"),
    ),
    Rule(
        "rnix.store",
        "the store sits on the core; it also asks the agent's own tool sandbox"
        " (rnix.agent.tools.policy, standard library only) what it would refuse in a definition",
        allowed=("rnix.core", "rnix.store", "rnix.errors", "rnix.env", "rnix.agent.tools.policy"),
    ),
    Rule(
        "rnix.llm",
        "model backends know nothing of who calls them",
        forbidden=("rnix.supervisor", *FRONT_ENDS),
    ),
    Rule("rnix.supervisor", "the kernel never imports a front end", forbidden=FRONT_ENDS),
    Rule(
        "rnix.errors",
        "below everything: it may name rnix.core types, for type checking only (checked separately)",
        allowed=("rnix.core",),
    ),
    Rule("rnix.env", "below everything", allowed=()),
)

# Module-level cycles that are known and on their way out, each with a comment saying what removes
# it, e.g. frozenset({"rnix.supervisor.runfiles", "rnix.supervisor.scheduler"}) until the durable-runs
# rewrite removed it. Each entry must still be a cycle.
ALLOWED_CYCLES: set[frozenset[str]] = set()


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = ["rnix", *path.relative_to(PACKAGE).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _resolve(name: str, known: dict[str, Path]) -> str:
    while name not in known and "." in name:
        name = name.rpartition(".")[0]
    return name


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(module: str, path: Path, known: dict[str, Path]) -> Iterator[Import]:
    file = str(path.relative_to(PACKAGE.parent))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]

    def walk(node: ast.AST, lazy: bool, type_only: bool) -> Iterator[Import]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                yield from walk(child, True, type_only)
            elif isinstance(child, ast.If) and _is_type_checking(child.test):
                for statement in child.body:
                    yield from walk(ast.Module(body=[statement], type_ignores=[]), lazy, True)
                for statement in child.orelse:
                    yield from walk(ast.Module(body=[statement], type_ignores=[]), lazy, type_only)
            elif isinstance(child, (ast.Import, ast.ImportFrom)):
                for target in targets(child):
                    yield Import(module, target, file, child.lineno, lazy, type_only)
            else:
                yield from walk(child, lazy, type_only)

    def targets(statement: ast.Import | ast.ImportFrom) -> Iterator[str]:
        if isinstance(statement, ast.Import):
            names = [alias.name for alias in statement.names]
        else:
            base = statement.module or ""
            if statement.level:
                anchor = package
                for _ in range(statement.level - 1):
                    anchor = anchor.rpartition(".")[0]
                base = ".".join(filter(None, [anchor, base]))
            names = [f"{base}.{alias.name}" for alias in statement.names]
        for name in names:
            if _within(name, ("rnix",)):
                yield _resolve(name, known)

    yield from walk(ast.parse(path.read_text(), filename=file), False, False)


def all_imports() -> list[Import]:
    known = modules()
    return [found for module, path in known.items() for found in imports_of(module, path, known)]


def test_the_collector_sees_lazy_type_only_and_relative_imports() -> None:
    found = {(i.source, i.target, i.lazy, i.type_only) for i in all_imports()}
    assert ("rnix.core.plan", "rnix.core.definition", True, False) in found  # inside a function
    assert ("rnix.errors", "rnix.core.problems", False, True) in found  # under TYPE_CHECKING
    assert ("rnix.supervisor.spawn", "rnix.supervisor.exitreport", False, False) in found  # from pkg
    assert ("rnix.__main__", "rnix.cli.main", False, False) in found


def test_every_package_imports_only_what_its_layer_allows() -> None:
    imports = all_imports()
    problems = []
    for rule in RULES:
        for found in imports:
            if _within(found.source, (rule.package,)) and rule.refuses(found.target):
                problems.append(f"{found}: {rule.describe()} ({rule.why})")
    for found in imports:
        if found.source.startswith("rnix.errors") and not found.type_only:
            problems.append(f"{found}: rnix.errors may name rnix.core types for type checking only")
        if _within(found.target, ("rnix.cli",)) and not _within(found.source, ("rnix.cli", "rnix.__main__")):
            problems.append(f"{found}: only the CLI and `python -m rnix` import rnix.cli")
    assert not problems, "\n".join(problems)


def _cycle_through(start: str, graph: dict[str, set[str]], members: frozenset[str]) -> list[str]:
    """One cycle `start -> ... -> start` inside a strongly connected component."""
    path, seen = [start], {start}

    def extend(node: str) -> bool:
        for nxt in sorted(graph.get(node, ()) & members):
            if nxt == start:
                return True
            if nxt not in seen:
                seen.add(nxt)
                path.append(nxt)
                if extend(nxt):
                    return True
                path.pop()
        return False

    extend(start)
    return [*path, start]


def cycles(graph: dict[str, set[str]]) -> list[tuple[frozenset[str], list[str]]]:
    """Every strongly connected component of more than one module, with one cycle through it."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[frozenset[str]] = []
    for root in sorted(graph):  # Tarjan's algorithm, iteratively
        if root in index:
            continue
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        work = [(root, iter(sorted(graph.get(root, ()))))]
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    members = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        members.add(member)
                        if member == node:
                            break
                    if len(members) > 1:
                        components.append(frozenset(members))
    return [(members, _cycle_through(min(members), graph, members)) for members in components]


def module_level_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for found in all_imports():
        if not found.lazy and found.source != found.target:
            graph.setdefault(found.source, set()).add(found.target)
    return graph


def test_no_module_level_import_cycle() -> None:
    found = cycles(module_level_graph())
    unexpected = [" -> ".join(path) for members, path in found if members not in ALLOWED_CYCLES]
    advice = "import cycles (move the shared part down, or import one side inside a function):"
    assert not unexpected, "\n".join([advice, *unexpected])
    gone = ALLOWED_CYCLES - {members for members, _ in found}
    assert not gone, f"no longer a cycle: delete it from ALLOWED_CYCLES: {sorted(map(sorted, gone))}"


def test_the_cycle_check_finds_each_cycle_and_prints_it() -> None:
    graph = {"a": {"b"}, "b": {"c", "d"}, "c": {"a"}, "d": {"e"}, "e": {"d", "f"}, "f": set()}
    assert sorted(cycles(graph), key=lambda found: sorted(found[0])) == [
        (frozenset("abc"), ["a", "b", "c", "a"]),
        (frozenset("de"), ["d", "e", "d"]),
    ]
    assert cycles({"a": {"b"}, "b": set()}) == []
