"""The environment an agent process gets: the user's, minus provider secrets, plus rnix's variables.

Secret-named variables (`*_API_KEY`, `*_TOKEN`, ...) are withheld unless the compose file passes one
explicitly (`environment: {OPENAI_API_KEY: }` passes the user's value through). The directory of the
running Python is appended to PATH so that a command agent finds `rnix llm` even from a virtualenv.
The filtered base is computed once per run (`base_environment`); each agent adds its own on top.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

from rnix.agent import protocol
from rnix.core.model import AgentSpec
from rnix.core.secrets import is_secret_name

# Variables of an enclosing rnix run (an agent that runs rnix itself) that must not leak inward.
_WITHHELD_PREFIXES = ("RNIX_AGENT", "RNIX_GATEWAY")


def base_environment(user_env: Mapping[str, str]) -> dict[str, str]:
    """What every agent of a run shares: the user's environment without secrets, PATH extended."""
    env = {
        key: value
        for key, value in user_env.items()
        if not is_secret_name(key) and not key.startswith(_WITHHELD_PREFIXES)
    }
    bin_dir = os.path.dirname(sys.executable)
    path = env.get("PATH", os.defpath)
    if bin_dir not in path.split(os.pathsep):
        env["PATH"] = f"{path}{os.pathsep}{bin_dir}" if path else bin_dir
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def agent_environment(
    base: Mapping[str, str],
    user_env: Mapping[str, str],
    spec: AgentSpec,
    *,
    gateway_path: str,
    nonce: str,
    run_id: str,
    project: str,
) -> dict[str, str]:
    """`base` (from `base_environment`) plus the agent's own `environment:` and rnix's variables."""
    env = dict(base)
    for key, value in spec.environment.items():
        if value is None:
            if key in user_env:
                env[key] = user_env[key]
        else:
            env[key] = value
    env.update(
        {
            protocol.ENV_GATEWAY: gateway_path,
            protocol.ENV_NONCE: nonce,
            protocol.ENV_AGENT: spec.name,
            protocol.ENV_RUN_ID: run_id,
            protocol.ENV_PROJECT: project,
        }
    )
    return env
