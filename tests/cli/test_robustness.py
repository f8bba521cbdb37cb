"""Random mutations of a valid compose file end in a plan or a clean RnixError, never anything else.

Runs the real CLI entry point in-process (`rnix.cli.main.main`) with an injected Env, so hundreds of
mutated files are checked in seconds; "internal error" is how main reports an unexpected exception.
"""

from __future__ import annotations

import io
import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rnix.cli.main import main
from rnix.env import Env

VALID = """\
version: "1.0"
name: fuzz
model: mock
timeout: 2m
budget_pool:
  total: 9000
  allocation: priority
x-defaults: &defaults
  priority: high
  max_retries: 1
agents:
  a:
    <<: *defaults
    intent: first ${TOPIC:-thing}
    contract:
      output_format: json
      output_quality: "^ok"
      max_tokens: 100
  b:
    intent: second
    depends_on: [a]
    command: ["python3", "-c", "print(1)"]
    environment:
      KEY: value
  c:
    intent: third
    depends_on:
      a: completed
      b: completed
    timeout: 1h30m
    budget: 300
"""

LINES = VALID.splitlines()
TOKENS = [
    "",
    "-",
    ":",
    "[",
    "]",
    "{",
    "}",
    "&x",
    "*defaults",
    "*nope",
    "!!python/object/apply:os.system ['true']",
    "${",
    "$$",
    "${X:?}",
    "0",
    "-1",
    "1e309",
    "null",
    "~",
    "yes",
    "'",
    '"',
    "\t",
    "a",
    "agents:",
    "  - x",
    "<<: 5",
    "\x00",
    "\u2028",
    "é",
    "depends_on: [c]",
    "timeout: 0",
    "   ",
    "---",
    "...",
    "%YAML 1.1",
    "? x",
]


@st.composite
def mutated(draw: st.DrawFn) -> str:
    lines = list(LINES)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["delete", "duplicate", "swap", "insert", "replace", "truncate", "indent"]))
        i = draw(st.integers(0, len(lines) - 1)) if lines else 0
        if not lines:
            lines.append(draw(st.sampled_from(TOKENS)))
        elif op == "delete":
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, lines[i])
        elif op == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "insert":
            lines.insert(i, draw(st.sampled_from(TOKENS)))
        elif op == "replace":
            line = lines[i]
            cut = draw(st.integers(0, len(line)))
            lines[i] = line[:cut] + draw(st.sampled_from(TOKENS)) + line[cut + draw(st.integers(0, 5)) :]
        elif op == "truncate":
            lines = lines[:i]
        elif op == "indent":
            lines[i] = " " * draw(st.integers(0, 6)) + lines[i].lstrip()
    return "\n".join(lines) + "\n"


def run_plan(text: str, workdir: Path) -> tuple[int, str, str]:
    (workdir / "compose.yaml").write_text(text, encoding="utf-8", errors="surrogateescape")
    out, err = io.StringIO(), io.StringIO()
    env = Env(stdout=out, stderr=err, environ={"RNIX_HOME": str(workdir / "home")}, cwd=workdir)
    code = main(["compose", "plan", "--json"], env)
    return code, out.getvalue(), err.getvalue()


def test_the_unmutated_file_plans() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        code, out, err = run_plan(VALID, Path(tmp))
    assert code == 0, err
    assert json.loads(out)["data"]["layers"] == [["a"], ["b"], ["c"]]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutations_end_in_a_plan_or_a_clean_error(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        code, out, err = run_plan(text, Path(tmp))
        assert not (Path(tmp) / "home").exists()
    assert "internal error" not in err, (text, err)
    assert "Traceback" not in err
    doc = json.loads(out)
    if code == 0:
        assert doc["ok"] is True and doc["data"]["agents"]
    else:
        assert code == 2, (text, err)
        assert doc["ok"] is False
        assert doc["error"]["code"] in {"INVALID_COMPOSE", "COMPOSE_NOT_FOUND"}
        assert err.rstrip().splitlines()[-2].startswith("rnix: error: ") or "hint:" in err
