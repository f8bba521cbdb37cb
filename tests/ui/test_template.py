"""`--format` templates: docker-style placeholders over a row's JSON fields, values made inert."""

from __future__ import annotations

import pytest

from rnix.errors import UsageError
from rnix.ui.template import render


def test_template_rendering() -> None:
    rows = [{"pid": 7, "agent": "a\x1b[31m", "sla": {"passed": True}, "error": None}]
    fields = ["pid", "agent", "sla", "error"]
    assert render(r"{{.PID}}\t{{.agent}} {{.sla}} {{.error}}", rows, fields) == [
        '7\ta?[31m {"passed":true} -'
    ]


def test_table_header_and_unknown_field() -> None:
    rows = [{"run_id": "r1", "pid": None}]
    assert render("table {{.RunId}} {{.pid}}", rows, ["run_id", "pid"]) == ["RUNID PID", "r1 -"]
    with pytest.raises(UsageError, match="unknown field 'x'"):
        render("{{.x}}", [], ["pid"])
