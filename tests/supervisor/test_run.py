"""supervise(): a run that cannot start still records its end, and secrets are masked in the log."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest

from rnix.core.plan import make_plan
from rnix.core.spec import parse_compose
from rnix.env import SystemClock
from rnix.supervisor import run as run_module
from rnix.supervisor import spawn


def context(tmp_path: Path, environ: dict[str, str], intent: str = "x") -> run_module.RunContext:
    spec = parse_compose({"agents": {"a": {"intent": intent}}}, {}, "compose.yaml")
    return run_module.RunContext(
        plan=make_plan(spec, "proj"),
        run_id="abcdef123456",
        home=tmp_path / "home",
        environ=environ,
        base_dir=tmp_path,
        compose_file="compose.yaml",
        clock=SystemClock(),
    )


def test_a_run_that_cannot_start_is_recorded_as_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken_start(self: object) -> None:
        raise RuntimeError("the rnix fork server did not start")

    monkeypatch.setattr(spawn.ForkServerSpawner, "start", broken_start)
    with pytest.raises(RuntimeError, match="fork server"):
        asyncio.run(supervise_quietly(context(tmp_path, {"PATH": "/usr/bin:/bin"})))
    db = sqlite3.connect(tmp_path / "home" / "rnix.db")
    status, exit_code = db.execute("select status, exit_code from runs where id='abcdef123456'").fetchone()
    assert (status, exit_code) == ("failed", 1)


def test_secret_values_are_masked_in_recorded_events(tmp_path: Path) -> None:
    canary = "sk-canary-0123456789abcdef"
    environ = {"PATH": "/usr/bin:/bin", "DEMO_API_KEY": canary}
    outcome = asyncio.run(supervise_quietly(context(tmp_path, environ, intent=f"use {canary} please")))
    assert outcome.exit_code == 0
    raw = b"".join(p.read_bytes() for p in (tmp_path / "home").rglob("*") if p.is_file())
    assert canary.encode() not in raw
    db = sqlite3.connect(tmp_path / "home" / "rnix.db")
    planned = [json.loads(d) for (d,) in db.execute("select data from events where kind='agent_planned'")]
    assert planned[0]["intent"] == "use *** please"


async def supervise_quietly(ctx: run_module.RunContext) -> run_module.Outcome:
    return await run_module.supervise(ctx)
