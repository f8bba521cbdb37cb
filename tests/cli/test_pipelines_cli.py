"""Pipelines through the installed `rnix compose up`, with scripted command agents: a review loop
that passes in its second iteration, a fan-out capped by max_parallel (checked from the processes),
a `when` that skips without blocking, and a run killed mid-loop that resumes in the right iteration.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from tests.cli.test_early_spawn import most_alive, start_up
from tests.conftest import RNIX, RunRnix
from tests.procs import marked_pids, wait_gone

PY = json.dumps(sys.executable)

# review: fails with three issues in iteration 0, passes after (sleeps while ./slow exists, so that
# a test can kill the run while the second review runs).
REVIEW = """\
import json, os, sys, time
task = json.load(sys.stdin)
with open("starts", "a") as f:
    f.write(task["name"] + "\\n")
if task["iteration"] > 0:
    while os.path.exists("slow"):
        time.sleep(0.05)
issues = [{"id": "bug-%d" % i, "title": "bug %d" % i} for i in range(3)] if task["iteration"] == 0 else []
print(json.dumps({"verdict": "fail" if issues else "pass", "issues": issues}))
"""
FIX = """\
import json, sys, time
task = json.load(sys.stdin)
with open("starts", "a") as f:
    f.write(task["name"] + "\\n")
time.sleep(float(sys.argv[2]))
print("fixed " + sys.argv[1])
"""
ECHO = """\
import json, sys
task = json.load(sys.stdin)
with open("starts", "a") as f:
    f.write(task["name"] + "\\n")
print(json.dumps({"upstream": task["upstream"], "previous": sorted(task.get("previous", {}))}))
"""

LOOP = f"""\
agents:
  review:
    intent: review the code
    command: [{PY}, review.py]
    output_schema:
      type: object
      required: [verdict, issues]
      properties:
        verdict: {{enum: [pass, fail]}}
        issues: {{type: array}}
  fix:
    intent: "fix {{{{ item.title }}}}"
    command: [{PY}, fix.py, "{{{{ item.id }}}}", "0.05"]
    depends_on: [review]
    when: agents.review.output.verdict == "fail"
    for_each: agents.review.output.issues
    item_name: "fix-{{{{ item.id }}}}"
  test:
    intent: run the tests
    command: [{PY}, echo.py]
    depends_on: [fix]
  publish:
    intent: publish
    command: [{PY}, echo.py]
    depends_on: [test]
loops:
  review-loop:
    body: [review, fix, test]
    until: agents.review.output.verdict == "pass"
    max_iterations: 3
"""


def scripts(directory: Path) -> None:
    (directory / "review.py").write_text(REVIEW)
    (directory / "fix.py").write_text(FIX)
    (directory / "echo.py").write_text(ECHO)


def agents_of(stdout: str) -> dict[str, dict[str, Any]]:
    return {a["name"]: a for a in json.loads(stdout)["data"]["agents"]}


def starts(directory: Path) -> list[str]:
    path = directory / "starts"
    return path.read_text().split() if path.exists() else []


def test_review_loop_passes_in_its_second_iteration(rnix: RunRnix, tmp_path: Path) -> None:
    scripts(tmp_path)
    (tmp_path / "compose.yaml").write_text(LOOP)
    done = rnix("compose", "up", "--json")
    assert done.returncode == 0, done.stderr
    agents = agents_of(done.stdout)
    assert json.loads(agents["review"]["result"])["verdict"] == "fail"
    assert json.loads(agents["review@1"]["result"])["verdict"] == "pass"
    assert agents["review@1"]["iteration"] == 1 and agents["review@1"]["node"] == "review"
    assert [agents[f"fix[{i}]"]["label"] for i in range(3)] == ["fix-bug-0", "fix-bug-1", "fix-bug-2"]
    assert [agents[f"fix[{i}]"]["result"] for i in range(3)] == [f"fixed bug-{i}\n" for i in range(3)]
    assert agents["fix@1"]["status"] == "skipped" and "condition" in agents["fix@1"]["error"]
    assert agents["test@1"]["status"] == "completed"  # the skip by condition did not block it
    assert "review@2" not in agents
    test = json.loads(agents["test"]["result"])
    assert json.loads(test["upstream"]["fix"]) == [f"fixed bug-{i}\n" for i in range(3)]  # in order
    assert json.loads(agents["test@1"]["result"])["previous"] == ["fix", "review", "test"]
    publish = json.loads(agents["publish"]["result"])
    assert json.loads(publish["upstream"]["test"])["previous"] == ["fix", "review", "test"]  # the last one
    # ps shows the iterations as well.
    ps = rnix("compose", "ps", "-a", "--json")
    rows = {r["agent"]: r for r in json.loads(ps.stdout)["data"]["processes"]}
    assert rows["test@1"]["iteration"] == 1 and rows["fix[2]"]["index"] == 2


def test_fan_out_of_five_never_has_more_than_two_alive(tmp_path: Path) -> None:
    marker = uuid.uuid4().hex
    scripts(tmp_path)
    compose = f"""\
agents:
  plan:
    intent: list the work
    command: [{PY}, -c, "print('[\\"a\\", \\"b\\", \\"c\\", \\"d\\", \\"e\\"]')"]
    output_schema: {{type: array, items: {{type: string}}}}
  work:
    intent: "do {{{{ item }}}}"
    command: [{PY}, fix.py, "{{{{ item }}}}-{{{{ index }}}}", "0.4"]
    depends_on: [plan]
    for_each: agents.plan.output
    max_parallel: 2
  gather:
    intent: gather
    command: [{PY}, echo.py]
    depends_on: [work]
"""
    up = start_up(tmp_path, compose, marker)
    most, stdout, stderr = most_alive(up)
    assert up.returncode == 0, stderr
    assert 1 <= most <= 2, most
    agents = agents_of(stdout)
    gathered = json.loads(json.loads(agents["gather"]["result"])["upstream"]["work"])
    assert gathered == [f"fixed {x}-{i}\n" for i, x in enumerate("abcde")]
    assert wait_gone(marked_pids(marker), 5) == []


def test_when_false_skips_without_blocking_its_dependents(rnix: RunRnix, tmp_path: Path) -> None:
    scripts(tmp_path)
    (tmp_path / "compose.yaml").write_text(
        f"""\
vars:
  deploy: false
agents:
  build: {{intent: build, command: [{PY}, -c, "print('built')"]}}
  deploy:
    intent: deploy
    command: [{PY}, -c, "print('deployed')"]
    depends_on: [build]
    when: vars.deploy && agents.build.status == "completed"
  notify: {{intent: notify, command: [{PY}, echo.py], depends_on: [deploy]}}
"""
    )
    done = rnix("compose", "up", "--json")
    assert done.returncode == 0, done.stderr
    agents = agents_of(done.stdout)
    assert agents["deploy"]["status"] == "skipped"
    assert agents["deploy"]["error"].startswith("condition:")
    assert agents["notify"]["status"] == "completed"
    assert json.loads(agents["notify"]["result"])["upstream"] == {"deploy": ""}


def test_a_run_killed_mid_loop_resumes_in_the_right_iteration(rnix: RunRnix, tmp_path: Path) -> None:
    marker = uuid.uuid4().hex
    scripts(tmp_path)
    (tmp_path / "slow").touch()
    up = start_up(tmp_path, LOOP, marker)
    try:
        deadline = time.monotonic() + 30
        while "review@1" not in starts(tmp_path) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert "review@1" in starts(tmp_path)
        os.kill(up.pid, signal.SIGKILL)
        up.communicate(timeout=30)
    finally:
        if up.poll() is None:
            up.kill()
    assert wait_gone(marked_pids(marker), 10) == []  # nothing of the killed run is left
    (tmp_path / "slow").unlink()
    first = starts(tmp_path)
    done = subprocess.run(
        [RNIX, "compose", "up", "--json"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    agents = agents_of(done.stdout)
    reused = {name for name, a in agents.items() if a["reused_from"]}
    assert reused == {"review", "fix", "test"}  # the fan-out node is taken whole, with its list
    assert json.loads(agents["fix"]["result"]) == [f"fixed bug-{i}\n" for i in range(3)]
    again = starts(tmp_path)[len(first) :]
    assert again == ["review@1", "test@1", "publish"]  # iteration 1 again, nothing of iteration 0
    assert json.loads(agents["review@1"]["result"])["verdict"] == "pass"


def test_config_reports_expression_problems_at_their_lines(rnix: RunRnix, tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text(
        """\
agents:
  review: {intent: review, output_schema: {type: object}}
  fix:
    intent: fix
    depends_on: [review]
    when: agents.reveiw.output.verdict == "fail"
  test:
    intent: "test {{ item }}"
    when: agents.review.status ==
  other:
    intent: other
    for_each: agents.fix.output
loops:
  again:
    body: [fix, nobody]
    until: agents.other.status == "completed"
"""
    )
    done = rnix("compose", "config", "-q")
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.startswith("compose.yaml:")]
    assert lines == [
        "compose.yaml:6: agents.fix.when: unknown agent 'reveiw' (did you mean 'review'?)",
        "compose.yaml:8: agents.test.intent: {{ item }} is only set in an agent with for_each",
        "compose.yaml:9: agents.test.when: invalid expression: syntax error at column 22, near '=='",
        "compose.yaml:12: agents.other.for_each: reads agent 'fix', which 'other' does not depend on: "
        "add it to other's depends_on",
        "compose.yaml:15: loops.again.body[1]: unknown agent 'nobody'",
        "compose.yaml:16: loops.again.until: reads agent 'other', which 'again' does not reach: "
        "add it to the body",
    ], done.stderr
    assert "Traceback" not in done.stderr


def test_reading_a_property_the_schema_does_not_define_is_a_warning(rnix: RunRnix, tmp_path: Path) -> None:
    (tmp_path / "review.json").write_text('{"type": "object", "properties": {"verdict": {"type": "string"}}}')
    (tmp_path / "compose.yaml").write_text(
        """\
agents:
  review: {intent: review, output_schema: {$ref: review.json}}
  fix: {intent: fix, depends_on: [review], when: 'agents.review.output.verdikt == "fail"'}
"""
    )
    done = rnix("compose", "config", "-q")
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == (
        "rnix: warning: compose.yaml:3: agents.fix.when: reads agents.review.output.verdikt, but "
        "review's output_schema defines no property 'verdikt' (it defines: verdict) "
        "(did you mean 'verdict'?)"
    )
