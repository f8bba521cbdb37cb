"""Benchmarks measure rnix as installed: with its modules compiled to bytecode.

A wheel install compiles them (pip does by default); an editable install compiles each on first
import, unless PYTHONDONTWRITEBYTECODE is set, in which case every `rnix` process compiles ~50
modules again (~0.1 s of CPU) and start-up figures would measure the compiler, not rnix.
"""

from __future__ import annotations

import compileall
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "rnix"


def ensure_compiled() -> None:
    """Write rnix's .pyc files (a no-op when they are up to date)."""
    compileall.compile_dir(str(PACKAGE), quiet=1)
