"""The agent loop with real tools in a temp workspace and a scripted model (a plain Python fake)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rnix.agent.loop import StepLimit, log_line, run_loop
from rnix.agent.tools.policy import ToolPolicy
from rnix.core.journal import tool_key

TASK = [{"role": "user", "content": "Your task: count the lines"}]


def call(name: str, **arguments: Any) -> dict[str, Any]:
    return {
        "id": f"c-{name}",
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(arguments)},
    }


class Model:
    """Replies from a script; records what it was sent."""

    def __init__(self, *replies: dict[str, Any]) -> None:
        self.replies = list(replies)
        self.sent: list[tuple[list[dict[str, Any]], dict[str, Any]]] = []

    def complete(self, messages: list[dict[str, Any]], **options: Any) -> dict[str, Any]:
        self.sent.append((json.loads(json.dumps(messages)), options))
        return self.replies.pop(0)


def test_calls_tools_feeds_results_back_and_returns_the_final_answer(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("one\ntwo\nthree\n")
    policy = ToolPolicy.from_json({"read_file": {}, "list_dir": {}}, str(tmp_path))
    model = Model(
        {"content": "Let me look.", "tool_calls": [call("list_dir")]},
        {"content": None, "tool_calls": [call("read_file", path="notes.txt")]},
        {"content": "3 lines", "tool_calls": None},
    )
    logged: list[str] = []
    outcome = run_loop(model, TASK, policy, max_steps=5, log=logged.append)
    assert (outcome.answer, outcome.steps) == ("3 lines", 3)
    names = {t["function"]["name"] for t in model.sent[0][1]["tools"]}
    assert names == {"read_file", "list_dir"}  # exactly the enabled tools are offered
    last = model.sent[2][0]
    assert last[-1]["role"] == "tool" and "two" in last[-1]["content"]
    assert last[-2]["tool_calls"][0]["function"]["name"] == "read_file"
    assert [line.split("]")[0] + "]" for line in logged] == ["[think]", "[tool]", "[tool]"]
    assert TASK == [{"role": "user", "content": "Your task: count the lines"}]  # the input is not mutated


def test_stops_at_max_steps(tmp_path: Path) -> None:
    policy = ToolPolicy.from_json({"list_dir": {}}, str(tmp_path))
    model = Model(*[{"content": "", "tool_calls": [call("list_dir")]}] * 3)
    with pytest.raises(StepLimit, match=r"max_steps \(2\)"):
        run_loop(model, TASK, policy, max_steps=2, log=lambda line: None)
    assert len(model.sent) == 2


def test_a_denied_call_is_logged_as_warn_and_reported_to_the_model(tmp_path: Path) -> None:
    policy = ToolPolicy.from_json({"read_file": {}}, str(tmp_path))
    model = Model(
        {"content": "", "tool_calls": [call("read_file", path="../../etc/passwd")]},
        {"content": "could not", "tool_calls": None},
    )
    logged: list[str] = []
    run_loop(model, TASK, policy, max_steps=3, log=logged.append)
    assert logged and logged[0].startswith("[warn]")
    reported = model.sent[1][0][-1]
    assert reported["role"] == "tool" and "denied" in reported["content"].lower()
    assert "root:" not in reported["content"]  # nothing of /etc/passwd leaked back


def test_unknown_tools_and_bad_arguments_become_results_not_crashes(tmp_path: Path) -> None:
    policy = ToolPolicy.from_json({"read_file": {}}, str(tmp_path))
    bad = {"id": "x", "type": "function", "function": {"name": "read_file", "arguments": "{not json"}}
    model = Model(
        {"content": "", "tool_calls": [call("shell", argv=["ls"]), bad, {"function": None}]},
        {"content": "done", "tool_calls": None},
    )
    assert run_loop(model, TASK, policy, max_steps=3, log=lambda line: None).answer == "done"
    tool_messages = [m for m in model.sent[1][0] if m["role"] == "tool"]
    assert len(tool_messages) == 3 and len({m["tool_call_id"] for m in tool_messages}) == 3


def test_log_lines_are_one_line_and_capped() -> None:
    line = log_line("think", "a\nb\x1b[31m " + "x" * 1000)
    assert "\n" not in line and "\x1b" not in line and len(line) < 420
    assert line.startswith("[think] a b [31m x")


class Journal:
    """The gateway's tool journal, in memory: what was recorded, and what a resume may replay."""

    def __init__(self, replay: dict[str, list[dict[str, Any]]] | None = None) -> None:
        self.replay = replay or {}
        self.recorded: list[tuple[str, dict[str, Any]]] = []
        self.asked: list[str] = []

    def tool_replay(self, key: str) -> dict[str, Any] | None:
        self.asked.append(key)
        queue = self.replay.get(key)
        return queue.pop(0) if queue else None

    def tool_record(self, key: str, output: dict[str, Any]) -> None:
        self.recorded.append((key, output))


def hashed(reply: dict[str, Any], request_hash: str) -> dict[str, Any]:
    return {**reply, "request_hash": request_hash}


def resumable_script() -> list[dict[str, Any]]:
    return [
        hashed({"content": "", "tool_calls": [call("write_file", path="out.txt", content="v1")]}, "h1"),
        hashed({"content": "", "tool_calls": [call("list_dir"), call("read_file", path="out.txt")]}, "h2"),
        hashed({"content": "wrote v1", "tool_calls": None}, "h3"),
    ]


def test_tool_results_are_recorded_and_a_resume_does_not_run_them_again(tmp_path: Path) -> None:
    policy = ToolPolicy.from_json({"write_file": {}, "read_file": {}, "list_dir": {}}, str(tmp_path))
    first, journal = Model(*resumable_script()), Journal()
    outcome = run_loop(first, TASK, policy, max_steps=5, log=lambda line: None, journal=journal)
    assert outcome.answer == "wrote v1"
    write, listing, read = journal.recorded
    assert write[0] == tool_key("h1", 0, "write_file", json.dumps({"path": "out.txt", "content": "v1"}))
    assert listing[0] == tool_key("h2", 0, "list_dir", "{}")
    assert read[0] == tool_key("h2", 1, "read_file", json.dumps({"path": "out.txt"}))
    assert read[1] == {"ok": True, "denied": False, "output": "v1", "summary": read[1]["summary"]}

    (tmp_path / "out.txt").write_text("changed since")  # the workspace moved on after the crash
    resumed = Journal({key: [output] for key, output in journal.recorded})
    second, logged = Model(*resumable_script()), list[str]()
    outcome = run_loop(second, TASK, policy, max_steps=5, log=logged.append, journal=resumed)
    assert outcome.answer == "wrote v1"
    assert (tmp_path / "out.txt").read_text() == "changed since"  # write_file was not run again
    assert second.sent == first.sent  # the model saw exactly the same conversation: same requests
    assert resumed.recorded == [] and resumed.asked == [key for key, _ in journal.recorded]
    assert all(line.startswith("[tool]") and line.endswith("(replayed)") for line in logged)


def test_a_partial_journal_replays_what_it_has_and_runs_the_rest(tmp_path: Path) -> None:
    policy = ToolPolicy.from_json({"write_file": {}, "read_file": {}, "list_dir": {}}, str(tmp_path))
    journal = Journal()
    run_loop(Model(*resumable_script()), TASK, policy, max_steps=5, log=lambda line: None, journal=journal)
    (write_key, write_output), *_ = journal.recorded
    (tmp_path / "out.txt").unlink()
    resumed = Journal({write_key: [write_output]})  # the crash came right after the first tool
    run_loop(Model(*resumable_script()), TASK, policy, max_steps=5, log=lambda line: None, journal=resumed)
    assert not (tmp_path / "out.txt").exists()  # replayed, not written again...
    assert [key for key, _ in resumed.recorded] == [key for key, _ in journal.recorded[1:]]  # ...the rest ran
    assert resumed.recorded[1][1]["ok"] is False  # the file the replayed write_file made is gone


def test_replies_without_a_request_hash_and_malformed_records_are_not_replayed(tmp_path: Path) -> None:
    policy = ToolPolicy.from_json({"list_dir": {}}, str(tmp_path))
    journal = Journal()
    model = Model({"content": "", "tool_calls": [call("list_dir")]}, {"content": "done", "tool_calls": None})
    run_loop(model, TASK, policy, max_steps=3, log=lambda line: None, journal=journal)
    assert journal.asked == [] and journal.recorded == []  # nothing to key the call by

    key = tool_key("h1", 0, "list_dir", "{}")
    broken = Journal({key: [{"output": "forged", "ok": "yes"}]})
    model = Model(
        hashed({"content": "", "tool_calls": [call("list_dir")]}, "h1"),
        {"content": "done", "tool_calls": None},
    )
    run_loop(model, TASK, policy, max_steps=3, log=lambda line: None, journal=broken)
    assert broken.asked == [key] and [k for k, _ in broken.recorded] == [key]  # run again and recorded
    assert "forged" not in model.sent[1][0][-1]["content"]
