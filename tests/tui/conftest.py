"""Fixtures for `top`: `team(compose_text, running=...)` starts a detached run of real fixture agents
(tests/teams.py) and returns their `ps` rows by name; teardown brings it down and checks that no
process carrying the test's marker is left."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RunRnix
from tests.teams import Teams

Team = Callable[..., dict[str, Any]]


@pytest.fixture
def marker() -> str:
    return uuid.uuid4().hex


@pytest.fixture
def team(rnix: RunRnix, tmp_path: Path, marker: str) -> Iterator[Team]:
    teams = Teams(rnix, tmp_path, marker)
    yield teams.start
    teams.stop()


def run_app(scenario: Callable[[], Awaitable[None]]) -> None:
    """Run an async pilot scenario to completion (no pytest asyncio plugin needed)."""
    asyncio.run(scenario())
