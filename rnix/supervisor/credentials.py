"""Provider credentials from the project's `.env`, for the gateway only.

litellm reads each provider's key from the environment of the process that calls it, and that
process is the supervisor (the gateway runs in it). So `provider_credentials` puts the secret-named
`.env` values (`rnix.core.secrets.dotenv_credentials`: those the real environment does not set) into
the supervisor's own `os.environ` for the length of the run, and takes them out again afterwards.
Agents never see them: their environments are built from the run's `environ` (rnix.supervisor.agentenv,
without secret-named variables), and the fork server gets an explicit environment too, never
`os.environ`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping


@contextlib.contextmanager
def provider_credentials(credentials: Mapping[str, str]) -> Iterator[None]:
    """Set each credential not already in `os.environ` for the duration of the block."""
    added = [key for key in credentials if key not in os.environ]
    for key in added:
        os.environ[key] = credentials[key]
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)
