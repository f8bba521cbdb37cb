"""Choosing the engine (`--engine`, RNIX_ENGINE, `engine:`) and the `resources:` key, with or without Ray.

These run everywhere: "Ray is not installed" is simulated by a `ray` package that fails to import,
put first on the supervisor's PYTHONPATH.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rnix.agent import protocol
from tests.conftest import RunRnix

TEAM = """name: engines
agents:
  one:
    intent: say hi
    command: ["echo", "hi"]
"""


@pytest.fixture
def no_ray(tmp_path: Path) -> dict[str, str]:
    """An environment in which `import ray` fails as it does where Ray is not installed."""
    fake = tmp_path / "no-ray" / "ray"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError(\"No module named 'ray'\")\n")
    return {"PYTHONPATH": str(fake.parent)}


@pytest.mark.parametrize(
    ("how", "extra_env", "text"),
    [
        ("flag", {}, TEAM),
        ("environment", {"RNIX_ENGINE": "ray"}, TEAM),
        ("address", {"RNIX_RAY_ADDRESS": "127.0.0.1:1"}, TEAM),
        ("file", {}, "engine: ray\n" + TEAM),
    ],
)
def test_the_ray_engine_without_ray_is_a_one_line_error_with_the_install_command(
    rnix: RunRnix,
    tmp_path: Path,
    no_ray: dict[str, str],
    how: str,
    extra_env: dict[str, str],
    text: str,
) -> None:
    (tmp_path / "compose.yaml").write_text(text)
    args = ["compose", "up", "--json"] + (["--engine", "ray"] if how == "flag" else [])
    result = rnix(*args, env={**no_ray, **extra_env})
    assert result.returncode == 2, result.stderr
    assert "the Ray engine needs Ray, which is not installed" in result.stderr
    assert "pip install 'rnix[ray]'" in result.stderr
    assert "Traceback" not in result.stderr
    assert json.loads(result.stdout)["ok"] is False
    listing = rnix("compose", "ps", "-a", "--json")
    assert json.loads(listing.stdout)["data"]["processes"] == []  # nothing was started


def test_engine_local_on_the_command_line_wins_over_the_file(
    rnix: RunRnix, tmp_path: Path, no_ray: dict[str, str]
) -> None:
    (tmp_path / "compose.yaml").write_text("engine: ray\n" + TEAM)
    result = rnix("compose", "up", "--engine", "local", env=no_ray)
    assert result.returncode == 0, result.stderr
    assert rnix("compose", "logs", "--no-log-prefix", "one").stdout == "hi\n"


def test_a_bad_engine_is_an_error_at_its_line(rnix: RunRnix, tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text("engine: rey\n" + TEAM)
    result = rnix("compose", "config", "-q")
    assert result.returncode == 2
    assert "compose.yaml:1: engine: unknown value 'rey': must be one of local, ray" in result.stderr
    assert "ray" in result.stderr.split("one of local, ray", 1)[1]  # the did-you-mean


@pytest.mark.parametrize(
    ("resources", "message"),
    [
        ("{GPU: -1}", "agents.one.resources.GPU: must be a number >= 0, not -1"),
        ("{GPU: many}", "agents.one.resources.GPU: must be a number >= 0, not the string 'many'"),
        ('{"has space": 1}', "agents.one.resources.has space: 'has space' is not a resource name"),
        ("[GPU]", "agents.one.resources: must be a mapping, not a list"),
    ],
)
def test_bad_resources_are_errors_at_their_line(
    rnix: RunRnix, tmp_path: Path, resources: str, message: str
) -> None:
    (tmp_path / "compose.yaml").write_text(TEAM + f"    resources: {resources}\n")
    result = rnix("compose", "config", "-q")
    assert result.returncode == 2, result.stderr
    assert message in result.stderr, result.stderr
    assert "compose.yaml:6:" in result.stderr


def test_resources_and_engine_survive_compose_config(rnix: RunRnix, tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text("engine: ray\n" + TEAM + "    resources: {CPU: 2, gpu-box: 1}\n")
    result = rnix("compose", "config", "--json")
    assert result.returncode == 0, result.stderr
    config = json.loads(result.stdout)["data"]["config"]
    assert config["engine"] == "ray"
    assert config["agents"]["one"]["resources"] == {"CPU": 2.0, "gpu-box": 1.0}


@pytest.mark.parametrize(
    ("address", "parsed"),
    [
        ("tcp://127.0.0.1:4000", ("127.0.0.1", 4000)),
        ("tcp://[::1]:4000", ("::1", 4000)),
        ("/run/rnix/gw.sock", None),
        ("tcp://nohost", None),
        ("tcp://:80", None),
    ],
)
def test_gateway_addresses(address: str, parsed: tuple[str, int] | None) -> None:
    assert protocol.parse_tcp_address(address) == parsed
    if parsed is not None:
        assert protocol.tcp_address(*parsed) == address
