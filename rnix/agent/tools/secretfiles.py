"""Which files hold secrets, so that the tools refuse them unless the definition opts in.

Contract: `secret_reason(parts)` takes workspace-relative path components and returns why the path
holds secrets (`"`.env` files hold environment secrets"`), or None. A path is secret-bearing when
its last name is one of:
  `.env` and `.env.*`/`.env*` (`.env.local`, `.envrc`), `*.pem`, `*.key`, an SSH private key
  (`id_rsa`, `id_dsa`, `id_ecdsa`, `id_ed25519`, with `_sk` and any `_suffix`/`.suffix`, but not
  `*.pub`), `.netrc`/`_netrc`, `.npmrc`, `.pypirc`, `.git-credentials`;
or when any directory on the way is `.aws`, `.ssh` or `.gnupg`. Names compare case-insensitively.

The tools apply it to the path the model gave and to the path it resolves to (so a symlink named
`notes.txt` pointing at `.env` is refused too). `read_file`, `grep` and `write_file` refuse such
paths and grep does not search into them; `list_dir` and `glob` still show their names (a name is
not a secret, and the model should know why it cannot read the file); the shell tool refuses an
argument naming one. A tool option `allow_secrets: true` lifts the rule for that tool.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_DIRECTORIES = {".aws": "AWS credentials", ".ssh": "SSH keys", ".gnupg": "GnuPG keys"}
_NAMES = {
    ".netrc": "login passwords",
    "_netrc": "login passwords",
    ".npmrc": "registry tokens",
    ".pypirc": "registry passwords",
    ".git-credentials": "git passwords",
}
_SSH_KEY = re.compile(r"id_(rsa|dsa|ecdsa|ed25519)(_sk)?([._-].*)?")


def secret_reason(parts: Sequence[str]) -> str | None:
    """Why the file at `parts` holds secrets, or None when nothing says it does."""
    for part in parts[:-1]:
        what = _DIRECTORIES.get(part.lower())
        if what:
            return f"`{part}/` holds {what}"
    if not parts:
        return None
    name = parts[-1].lower()
    if name in _DIRECTORIES:
        return f"`{parts[-1]}/` holds {_DIRECTORIES[name]}"
    if name in _NAMES:
        return f"`{parts[-1]}` files hold {_NAMES[name]}"
    if name.startswith(".env"):
        return "`.env` files hold API keys and other secrets"
    if name.endswith((".pem", ".key")):
        return f"`*{name[name.rfind('.'):]}` files hold private keys or certificates"
    if _SSH_KEY.fullmatch(name) and not name.endswith(".pub"):
        return f"`{parts[-1]}` looks like an SSH private key"
    return None


def denial(shown: str, reason: str, tool: str) -> str:
    """The words of a refusal: what, why, and how a definition opts in."""
    return (
        f"`{shown}` holds secrets ({reason}); agents may not use such files. If this agent needs "
        f"it, its definition can allow it with `tools: {{{tool}: {{allow_secrets: true}}}}`"
    )
