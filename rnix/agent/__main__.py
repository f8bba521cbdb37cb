"""`python -m rnix.agent`: the built-in agent as a standalone program (see rnix.agent.runtime)."""

from __future__ import annotations

from rnix.agent import runtime

if __name__ == "__main__":
    runtime.main()
