"""JSON-ready forms of spec values shared by every `--json` output and config printer.

The plan (`compose plan --json`, `compose config`) and the agent definitions (`rnix agents --json`)
both print contracts and durations; the helpers live here, below both, so neither imports the
other for them. Durations print as whole seconds when they are whole; absent fields are left out.
"""

from __future__ import annotations

from typing import Any

from rnix.core.model import Contract, Judge


def seconds(value: float) -> int | float:
    """Durations print as whole seconds when they are whole."""
    return int(value) if float(value).is_integer() else value


def contract_as_dict(contract: Contract) -> dict[str, Any]:
    quality: object = contract.output_quality
    if isinstance(quality, Judge):
        quality = {"judge": quality.criteria}
    out = {
        "output_format": contract.output_format,
        "output_quality": quality,
        "max_tokens": contract.max_tokens,
        "timeout": seconds(contract.timeout_s) if contract.timeout_s is not None else None,
        "sla_level": contract.sla_level,
    }
    return {k: v for k, v in out.items() if v is not None}
