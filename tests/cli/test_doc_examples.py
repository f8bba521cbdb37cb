"""What the docs show really happens: examples run, errors read as troubleshooting.md quotes them.

Runs the installed `rnix`. Every compose example that can run offline (mock models and commands on
PATH, no api_base) runs with `compose up` and must end with its expected exit status, leaving no
process behind. The error messages troubleshooting.md and rnix-compose.yaml(5) quote are produced
here for real and compared line by line (numbers, PIDs and paths normalised).
"""

from __future__ import annotations

import json
import re
import shutil
import uuid
from pathlib import Path

from rnix.cli.manpage_compose import ERROR_EXAMPLE, ERROR_FILE
from tests.conftest import RunRnix
from tests.procs import marked_pids, wait_gone

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "compose-examples").glob("*.yaml"))
# budget-contention ends with an agent out of tokens, diagnose-on-failure with a failed build, saga-booking
# with a failed confirmation (and its compensations): on purpose
EXPECTED_EXIT = {"budget-contention.yaml": 1, "diagnose-on-failure.yaml": 1, "saga-booking.yaml": 1}
TROUBLESHOOTING = (ROOT / "docs" / "troubleshooting.md").read_text(encoding="utf-8")
DOC_DIR = "/home/me/team"  # the directory troubleshooting.md shows in messages


def offline(config: dict[str, object]) -> bool:
    agents = config["agents"]
    assert isinstance(agents, dict)
    for agent in agents.values():
        if agent.get("api_base"):
            return False
        if "command" in agent:
            if shutil.which(agent["command"][0]) is None:
                return False
        elif not str(agent.get("model", "mock")).startswith("mock"):
            return False
    return True


def test_offline_examples_run_with_their_expected_exit_status(rnix: RunRnix) -> None:
    ran = []
    for example in EXAMPLES:
        config = rnix("compose", "config", "-f", str(example), "--json")
        assert config.returncode == 0, (example.name, config.stderr)
        if not offline(json.loads(config.stdout)["data"]["config"]):
            continue
        marker = uuid.uuid4().hex
        up = rnix("compose", "-f", str(example), "up", env={"RNIX_TEST_MARKER": marker}, timeout=120)
        assert up.returncode == EXPECTED_EXIT.get(example.name, 0), (example.name, up.stdout, up.stderr)
        assert "Traceback" not in up.stderr
        assert wait_gone(marked_pids(marker), 5) == [], f"{example.name} left processes behind"
        ran.append(example.name)
        if example.name == "review-pipeline.yaml":
            assert_transcript(up.stdout)
    assert len(ran) >= 4, ran
    assert "review-pipeline.yaml" in ran  # the README's set-up command runs it


def assert_transcript(stdout: str) -> None:
    """README.md and getting-started.md show what the set-up command prints (numbers aside)."""
    actual = sorted(normalise(line) for line in stdout.splitlines())
    for page in (ROOT / "README.md", ROOT / "docs" / "getting-started.md"):
        shown = re.search(r"^```text\n(\[layer 1/.*?)^```$", page.read_text(encoding="utf-8"), re.M | re.S)
        assert shown is not None, page
        quoted = sorted(normalise(line) for line in shown.group(1).splitlines())
        assert quoted == actual, f"paste the output of the set-up command into {page.name}"


def normalise(line: str) -> str:
    return re.sub(r"\d+(\.\d+)?", "N", line.replace("\\", "/"))


def assert_quoted(output: str, tmp: Path) -> None:
    """Every line rnix printed appears in troubleshooting.md (numbers aside)."""
    doc_lines = {normalise(line) for line in TROUBLESHOOTING.splitlines()}
    for line in output.replace(str(tmp), DOC_DIR).splitlines():
        assert normalise(line) in doc_lines, f"troubleshooting.md does not quote: {line}"


def test_troubleshooting_quotes_usage_and_file_errors(rnix: RunRnix, tmp_path: Path) -> None:
    missing = rnix("compose", "up")
    assert missing.returncode == 2 and missing.stderr
    assert_quoted(missing.stderr, tmp_path)
    for args in (("compose", "up", "-f", "compse.yaml"), ("compose", "plan", "--jsn"), ("compse", "up")):
        result = rnix(*args)
        assert result.returncode == 2, args
        assert_quoted(result.stderr, tmp_path)
    (tmp_path / "compose.yaml").write_text(
        "agents:\n  a: {intent: x, depends_on: [b]}\n  b: {intent: y, depends_on: [a]}\n"
        '  c: {intent: echo, command: "echo hi | wc -l", model: "${MODEL}"}\n'
    )
    invalid = rnix("compose", "config", "-q")
    assert invalid.returncode == 2
    assert_quoted(invalid.stderr, tmp_path)
    for args in (("kill", "999999"), ("compose", "-p", "nothing", "logs"), ("llm", "hello")):
        result = rnix(*args)
        assert result.returncode == 1, (args, result.stderr)
        assert_quoted(result.stderr, tmp_path)


def test_troubleshooting_quotes_agent_failures(rnix: RunRnix, tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text(
        "name: ts\n"
        "budget_pool: {total: 100000}\n"
        "agents:\n"
        "  missing: {intent: x, command: no-such-program-xyz}\n"
        '  slow: {intent: y, command: "sleep 5", timeout: 1s, stop_grace_period: 0}\n'
        "  poor: {intent: z, budget: 5}\n"
        "  after: {intent: v, depends_on: [missing]}\n"
    )
    marker = uuid.uuid4().hex
    up = rnix("compose", "up", env={"RNIX_TEST_MARKER": marker})
    assert up.returncode == 1, up.stderr
    assert_quoted("\n".join(line for line in up.stdout.splitlines() if line.startswith("[layer")), tmp_path)
    assert wait_gone(marked_pids(marker), 5) == []
    (tmp_path / "compose.yaml").write_text(
        "budget_pool: {total: 100}\nagents:\n  a: {intent: x}\n  b: {intent: y, budget: 500}\n"
    )
    unfunded = rnix("compose", "up")
    assert unfunded.returncode == 1
    assert_quoted(unfunded.stderr, tmp_path)
    assert_quoted(next(line for line in unfunded.stdout.splitlines() if " b PID" in line), tmp_path)


def test_compose_man_page_error_example_is_what_rnix_prints(rnix: RunRnix, tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text(ERROR_FILE)
    result = rnix("compose", "config", "-q")
    assert result.returncode == 2
    assert result.stderr == ERROR_EXAMPLE + "\n"
