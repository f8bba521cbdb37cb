"""The user's model aliases: `models.yaml` in rnix's config directory (`$RNIX_CONFIG_HOME`, else
`~/.config/rnix`).

The file maps alias names to a model string or to `{model, api_base, max_concurrency, rpm}`,
exactly like a compose file's `models:` section, either at the top level or under a `models:` key:

    haiku: anthropic/claude-haiku-4-5
    local: {model: openai/qwen2.5-coder, api_base: http://127.0.0.1:8000/v1}

A missing file is no aliases; an invalid one is an `InvalidCompose`-style error with every problem
at its line.
"""

from __future__ import annotations

import pathlib

from rnix.core.fields import MODEL_ALIAS, MODEL_ALIAS_NAME
from rnix.core.model import ModelAlias
from rnix.core.spec import model_aliases
from rnix.core.types import INVALID, Checker, MapOf
from rnix.errors import InvalidCompose
from rnix.store.yaml_lines import load_yaml

FILE_NAME = "models.yaml"
_ALIASES = MapOf(MODEL_ALIAS, MODEL_ALIAS_NAME, "a model alias (letters, digits, '.', '-' and '_')")


def user_aliases(config_home: pathlib.Path) -> tuple[ModelAlias, ...]:
    path = config_home / FILE_NAME
    try:
        raw = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return ()
    except OSError as exc:
        from rnix.errors import RnixError

        raise RnixError(f"cannot read {path}: {exc.strerror or exc}") from exc
    tree = load_yaml(raw, str(path))
    ck = Checker(str(path), tree.lines)
    data = tree.data
    root: tuple[object, ...] = ()
    if isinstance(data, dict) and set(data) == {"models"}:
        data, root = data["models"], ("models",)
    if data is None:
        return ()
    checked = _ALIASES.check(data, root, ck)
    problems = [*tree.problems, *ck.problems]
    if problems or checked is INVALID:
        raise InvalidCompose(str(path), problems, "fix the lines above; `rnix models` shows the aliases")
    return model_aliases(checked, "user")
