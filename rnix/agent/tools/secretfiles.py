"""Files that hold secrets: the file tools leave them alone unless a tool's options opt in.

A path is secret-bearing when any of its components is one of these: `.env` and `.env.*`, `*.pem`,
`*.key`, private keys named `id_*` (not `id_*.pub`), `.netrc`, `.npmrc`, `.pypirc`,
`.git-credentials`, or a directory `.aws`, `.ssh` or `.gnupg`. read_file and write_file refuse them,
grep does not search them; list_dir and glob still show their names (a name is not a secret).
`allow_secrets: true` in a tool's options lifts the rule for that tool. Standard library only: this
runs inside every agent.
"""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase

_FILES = (".env", ".env.*", "*.pem", "*.key", ".netrc", ".npmrc", ".pypirc", ".git-credentials")
_DIRECTORIES = frozenset({".aws", ".ssh", ".gnupg"})

HINT = "it may hold secrets; the agent's definition can allow it with `allow_secrets: true` for this tool"


def is_secret(parts: Sequence[str]) -> bool:
    """Whether the workspace-relative path `parts` names a secret-bearing file or lies in such a directory."""
    if any(part in _DIRECTORIES for part in parts[:-1]):
        return True
    if not parts:
        return False
    name = parts[-1]
    if name in _DIRECTORIES:
        return True
    if any(fnmatchcase(name, pattern) for pattern in _FILES):
        return True
    return name.startswith("id_") and not name.endswith(".pub")
