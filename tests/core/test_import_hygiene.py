"""The pure core must not pull in heavy or effectful libraries (STYLE.md, practice 1)."""

from __future__ import annotations

import subprocess
import sys

FORBIDDEN = ("litellm", "rich", "textual", "psutil", "tiktoken", "yaml", "click", "sqlite3", "subprocess")


def loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return {name.split(".")[0] for name in out.split()}


def test_core_imports_only_the_standard_library() -> None:
    modules = loaded_after(
        "import rnix.core, rnix.core.spec, rnix.core.plan, rnix.core.budget, rnix.core.dag, "
        "rnix.core.fields, rnix.core.sla, rnix.core.reputation, rnix.core.pool, rnix.core.definition, "
        "rnix.core.journal"
    )
    assert modules.isdisjoint(FORBIDDEN), modules & set(FORBIDDEN)


def test_cli_start_does_not_import_heavy_libraries() -> None:
    modules = loaded_after("import rnix.cli.main")
    assert modules.isdisjoint({"litellm", "aiohttp", "tiktoken", "textual", "rich"}), modules
