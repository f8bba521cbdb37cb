"""The built-in agent's tools: read_file, list_dir, glob, grep, write_file and shell, sandboxed.

The agent loop uses three names (docs/agent-tools.md has the user-facing rules):

    policy = ToolPolicy.from_json(task["tools"], task["workspace"])   # ValueError if invalid
    tools = schemas(policy)                     # OpenAI function schemas of the enabled tools
    result = execute(policy, name, arguments)   # a ToolResult, never an exception for model mistakes

Everything here imports only the standard library and runs inside the agent process: paths are
confined to the workspace (rnix.agent.tools.sandbox), commands run without a shell under an
allowlist (rnix.agent.tools.shell, shellrules). The policy comes from the agent definition through
the supervisor; nothing a tool returns, and nothing an upstream agent says, can change it.
"""

from __future__ import annotations

from rnix.agent.tools.dispatch import execute
from rnix.agent.tools.policy import TOOL_NAMES, TOOL_OPTIONS, ToolPolicy
from rnix.agent.tools.result import ToolResult
from rnix.agent.tools.schemas import schemas

__all__ = ["TOOL_NAMES", "TOOL_OPTIONS", "ToolPolicy", "ToolResult", "execute", "schemas"]
