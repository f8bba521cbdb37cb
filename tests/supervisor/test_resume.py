"""Resume decisions over the state database (the CLI tests cover the user's side)."""

from __future__ import annotations

from pathlib import Path

from rnix.core import events as ev
from rnix.core.events import InstanceKey, Record
from rnix.core.plan import Plan, make_plan
from rnix.core.spec import parse_compose
from rnix.store.db import Store
from rnix.supervisor import resume

A, B = InstanceKey("a"), InstanceKey("b")


def team() -> Plan:
    spec = {"agents": {"a": {"intent": "x"}, "b": {"intent": "y", "depends_on": ["a"]}}}
    return make_plan(parse_compose(spec, {}, "compose.yaml"), "proj")


def planned(run: str, plan: Plan, resumed_from: str | None = None) -> list[Record]:
    out = [Record(run, 1.0, ev.RunStarted(project="proj", resumed_from=resumed_from))]
    for agent in plan.agents:
        key = InstanceKey(agent.spec.name)
        out.append(
            Record(
                run,
                1.0,
                ev.InstancePlanned(key=key, depends_on=agent.spec.depends_on, spec_hash=agent.spec_hash),
            )
        )
    return out


def test_a_resume_killed_before_it_decided_anything_does_not_lose_the_chain(rnix_home: Path) -> None:
    plan = team()
    with Store.open(rnix_home) as store:
        store.append(
            [
                *planned("run1", plan),
                Record("run1", 2.0, ev.InstanceStarted(key=A, attempt=1, pid=10)),
                Record("run1", 3.0, ev.InstanceExited(key=A, state="completed", result="A")),
                Record("run1", 3.0, ev.InstanceStarted(key=B, attempt=1, pid=11)),
                Record("run1", 4.0, ev.RunFinished(status="lost")),
                # run2 resumed run1 and was killed before it reused or started anything
                *planned("run2", plan, resumed_from="run1"),
                Record("run2", 5.0, ev.RunFinished(status="lost")),
            ]
        )
        previous = resume.previous_run(store, "proj")
        assert previous is not None and previous.id == "run2"
        decided = resume.prepare(store, plan, previous)
    assert [(r.key, r.from_run, r.result) for r in decided.reused] == [(A, "run1", "A")]
    assert decided.from_run == "run1"


def test_a_resume_that_decided_keeps_its_own_decisions(rnix_home: Path) -> None:
    plan = team()
    with Store.open(rnix_home) as store:
        store.append(
            [
                *planned("run1", plan),
                Record("run1", 2.0, ev.InstanceStarted(key=A, attempt=1, pid=10)),
                Record("run1", 3.0, ev.InstanceExited(key=A, state="completed", result="A")),
                Record("run1", 4.0, ev.RunFinished(status="failed")),
                # run2 (`--from a`) started a again and was killed: a is not reused from run1
                *planned("run2", plan, resumed_from="run1"),
                Record("run2", 5.0, ev.InstanceStarted(key=A, attempt=1, pid=12)),
                Record("run2", 6.0, ev.RunFinished(status="lost")),
            ]
        )
        previous = store.run("run2")
        assert previous is not None
        decided = resume.prepare(store, plan, previous)
    assert decided.reused == () and decided.from_run == "run2"


def test_an_exit_the_dead_supervisor_never_recorded_is_recovered_from_the_exit_report(
    rnix_home: Path, tmp_path: Path
) -> None:
    from rnix.supervisor.exitreport import write_exit_report

    plan = team()
    out_a, out_b = tmp_path / "a.out", tmp_path / "b.out"
    out_a.write_text("A done\n")
    write_exit_report(str(tmp_path / "a.exit.json"), 0, None)  # a finished; nobody recorded it
    out_b.write_text("half")  # b was killed with its supervisor: no report
    with Store.open(rnix_home) as store:
        store.append(
            [
                *planned("run1", plan),
                Record("run1", 2.0, ev.InstanceStarted(key=A, attempt=1, pid=10, out_path=str(out_a))),
                Record("run1", 3.0, ev.RunFinished(status="lost")),
            ]
        )
        previous = store.run("run1")
        assert previous is not None
        decided = resume.prepare(store, plan, previous)
        recorded = [r.to_record().event for r in store.events("run1", kinds=["agent_exited"])]
        row = {p.agent: p for p in store.processes(run_id="run1")}["a"]
    assert decided.recovered == ("a",)
    assert [(r.key, r.result) for r in decided.reused] == [(A, "A done\n")]
    assert [(e.state, e.recovered, e.result) for e in recorded] == [("completed", True, "A done\n")]
    assert row.state == "completed"  # the run that executed it now says so
    assert [(run, agent.spec.name, inst.state.value) for run, agent, inst in decided.to_assess] == [
        ("run1", "a", "completed")
    ]
