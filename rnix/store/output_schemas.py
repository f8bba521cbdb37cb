"""Each agent's `output_schema`, read and checked: `{$ref: FILE}` replaced by FILE's schema, then the
schema checked as JSON Schema (draft 2020-12).

`{$ref: FILE}` (a mapping with that one key, FILE not starting with `#`) names a file relative to
the compose file's directory: JSON, or YAML when it ends in .yaml/.yml. Any other mapping is the
schema itself (its own `$ref`s, local ones such as `#/$defs/x`, are JSON Schema's). A missing or
unreadable file, a file that is not JSON/YAML or not a mapping, and an invalid schema are each one
problem at the line of `agents.<name>.output_schema`; all are raised together as `InvalidCompose`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from rnix.core.model import AgentSpec, ComposeSpec
from rnix.core.structured import check_schema
from rnix.core.types import Checker
from rnix.core.types import Path as KeyPath
from rnix.errors import InvalidCompose

YAML_SUFFIXES = (".yaml", ".yml")


def resolve_output_schemas(spec: ComposeSpec, base_dir: Path, lines: Mapping[KeyPath, int]) -> ComposeSpec:
    """`spec` with every agent's `output_schema` read ($ref) and checked; InvalidCompose otherwise."""
    if not any(agent.output_schema is not None for agent in spec.agents):
        return spec
    ck = Checker(spec.file, lines)
    agents = [_resolve(agent, base_dir, ck) for agent in spec.agents]
    if ck.problems:
        raise InvalidCompose(spec.file, ck.problems)
    return dataclasses.replace(spec, agents=tuple(agents))


def file_of(schema: Mapping[str, object]) -> str | None:
    """The file a `{$ref: FILE}` schema names, or None for an inline schema."""
    ref = schema.get("$ref")
    if len(schema) == 1 and isinstance(ref, str) and not ref.startswith("#"):
        return ref
    return None


def _resolve(agent: AgentSpec, base_dir: Path, ck: Checker) -> AgentSpec:
    if agent.output_schema is None:
        return agent
    key: KeyPath = ("agents", agent.name, "output_schema")
    schema: Any = dict(agent.output_schema)
    name = file_of(schema)
    if name is not None:
        schema = _read(base_dir / name, name)
        if isinstance(schema, str):
            ck.error(key, schema)
            return agent
    problem = check_schema(schema)
    if problem is not None:
        ck.error(key, f"{name}: {problem}" if name else problem)
        return agent
    return dataclasses.replace(agent, output_schema=MappingProxyType(schema))


def _read(path: Path, name: str) -> dict[str, Any] | str:
    """The schema in the file, or one line saying why there is none."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return f"$ref {name}: no such file"
    except (OSError, UnicodeDecodeError) as exc:
        return f"$ref {name}: cannot be read: {getattr(exc, 'strerror', None) or exc}"
    if path.suffix.lower() in YAML_SUFFIXES:
        import yaml

        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" (line {mark.line + 1})" if mark is not None else ""
            return f"$ref {name}: not valid YAML{where}: {getattr(exc, 'problem', None) or exc}"
    else:
        try:
            value = json.loads(text)
        except ValueError as exc:
            return f"$ref {name}: not valid JSON: {exc}"
    if not isinstance(value, dict):
        return f"$ref {name}: must hold a JSON Schema object (a mapping)"
    return value
