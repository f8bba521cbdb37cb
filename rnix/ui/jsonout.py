"""The `--json` envelope: `{"ok": true, "data": ...}` or `{"ok": false, "error": {...}}` on stdout."""

from __future__ import annotations

import json
from typing import Any, TextIO

from rnix.errors import InvalidCompose, InvalidDefinition, RnixError


def dumps(document: Any) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False)


def write_ok(stream: TextIO, data: Any) -> None:
    write_document(stream, {"ok": True, "data": data})


def write_document(stream: TextIO, document: dict[str, Any]) -> None:
    stream.write(dumps(document) + "\n")


def error_document(error: RnixError) -> dict[str, Any]:
    body: dict[str, Any] = {"code": error.code, "message": error.message, "hint": error.hint}
    body["problems"] = []
    if isinstance(error, (InvalidCompose, InvalidDefinition)):
        body["problems"] = [p.as_dict() for p in error.problems]
    return {"ok": False, "error": body}


def write_error(stream: TextIO, error: RnixError) -> None:
    stream.write(dumps(error_document(error)) + "\n")
