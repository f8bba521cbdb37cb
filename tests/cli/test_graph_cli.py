"""`rnix compose graph` through the installed command: formats, --json, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import RunRnix
from tests.ui import dotsyntax

COMPOSE = """\
name: Graph Demo
agents:
  fetch: {intent: get the data}
  clean: {intent: clean it, depends_on: [fetch]}
  chart: {intent: chart it, depends_on: [clean], model: "mock?latency=1s"}
  notes: {intent: write notes, depends_on: [fetch]}
"""


def test_json_document_and_default_mermaid(rnix: RunRnix, tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text(COMPOSE)
    result = rnix("compose", "graph", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)["data"]
    assert data["project"] == "graphdemo"
    assert data["layers"] == [["fetch"], ["clean", "notes"], ["chart"]]
    assert {(e["from"], e["to"]) for e in data["edges"]} == {
        ("fetch", "clean"),
        ("clean", "chart"),
        ("fetch", "notes"),
    }
    assert data["critical_path"] == ["fetch", "clean", "chart"]
    mermaid = rnix("compose", "graph")
    assert mermaid.returncode == 0 and mermaid.stderr == ""
    assert mermaid.stdout.splitlines()[1] == "flowchart TB"
    assert mermaid.stdout.count("  subgraph layer") == 3 and mermaid.stdout.count(" --> ") == 3


def test_dot_and_text_with_file_before_the_subcommand(rnix: RunRnix, tmp_path: Path) -> None:
    (tmp_path / "team.yaml").write_text(COMPOSE)
    dot = rnix("compose", "-f", "team.yaml", "graph", "--format", "dot")
    assert dot.returncode == 0, dot.stderr
    graph = dotsyntax.parse(dot.stdout)
    assert [sorted(sub.nodes) for sub in graph.subgraphs] == [["fetch"], ["clean", "notes"], ["chart"]]
    text = rnix("compose", "graph", "-f", "team.yaml", "--format", "text")
    assert text.returncode == 0
    assert "  chart  (mock?latency=1s)  <- clean" in text.stdout


def test_invalid_file_exits_2_with_every_problem_and_no_traceback(rnix: RunRnix, tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text(
        "agents:\n  a: {intent: x, depends_on: [b]}\n  b: {intent: y, depends_on: [a]}\n  c: {intnt: z}\n"
    )
    result = rnix("compose", "graph")
    assert result.returncode == 2 and result.stdout == ""
    assert "Traceback" not in result.stderr
    assert "a -> b -> a" in result.stderr and "compose.yaml:4: agents.c" in result.stderr
    assert "rnix: error: compose.yaml is not a valid compose file (" in result.stderr
    as_json = rnix("compose", "graph", "--json")
    assert as_json.returncode == 2
    assert json.loads(as_json.stdout)["error"]["code"] == "INVALID_COMPOSE"


def test_missing_file_and_unknown_format_are_usage_errors(rnix: RunRnix, tmp_path: Path) -> None:
    missing = rnix("compose", "graph", "-f", "nope.yaml")
    assert missing.returncode == 2 and "rnix: error: compose file not found: nope.yaml" in missing.stderr
    (tmp_path / "compose.yaml").write_text(COMPOSE)
    bad = rnix("compose", "graph", "--format", "svg")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "'svg' is not one of 'mermaid', 'dot', 'text'" in bad.stderr


def test_secret_values_are_masked_in_labels(rnix: RunRnix, tmp_path: Path) -> None:
    secret = "sk-" + "x" * 70  # longer than a label: masked before the label is cut
    (tmp_path / "compose.yaml").write_text("agents:\n  a: {intent: x, model: 'openai/${MY_API_KEY}'}\n")
    for args in (("--format", "text"), ("--format", "dot"), ("--json",)):
        result = rnix("compose", "graph", *args, env={"MY_API_KEY": secret})
        assert result.returncode == 0, result.stderr
        assert "sk-xxx" not in result.stdout and "openai/***" in result.stdout


def test_conditions_show_on_edges_and_in_the_plan(rnix: RunRnix, tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text(
        "agents:\n  build: {intent: b}\n  diagnose: {intent: d, depends_on: {build: failed}}\n"
        "  report: {intent: r, depends_on: {build: finished, diagnose: completed}}\n"
    )
    doc = json.loads(rnix("compose", "graph", "--json").stdout)["data"]
    assert [(e["from"], e["to"], e["condition"]) for e in doc["edges"]] == [
        ("build", "diagnose", "failed"), ("build", "report", "finished"), ("diagnose", "report", "completed")
    ]  # fmt: skip
    mermaid = rnix("compose", "graph").stdout
    assert "n1 -.->|failed| n2" in mermaid and "n2 --> n3" in mermaid
    dot = rnix("compose", "graph", "--format", "dot").stdout
    assert '"build" -> "diagnose" [label="failed", style=dashed];' in dot
    graph = dotsyntax.parse(dot)
    assert graph.edge_attrs[("build", "report")] == {"label": "finished", "style": "dashed"}
    assert "build (finished), diagnose" in rnix("compose", "plan").stdout


PIPELINE = (Path(__file__).resolve().parents[1] / "fixtures" / "pipeline.yaml").read_text()


def test_every_format_shows_when_for_each_and_the_loop(rnix: RunRnix, tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text(PIPELINE)
    as_json = rnix("compose", "graph", "--json")
    assert as_json.returncode == 0, as_json.stderr
    data = json.loads(as_json.stdout)["data"]
    nodes = {n["name"]: n for n in data["nodes"]}
    assert nodes["draft"]["when"] == "size(agents.triage.output.bugs) > vars.limit"
    assert nodes["fix"]["for_each"] == "agents.triage.output.bugs" and nodes["fix"]["max_parallel"] == 2
    assert data["loops"][0]["first"] == ["draft"] and data["loops"][0]["last"] == ["review"]
    until = "until: agents.review.output.ok == true (max 4)"
    dot = rnix("compose", "graph", "--format", "dot")
    assert dot.returncode == 0, dot.stderr
    graph = dotsyntax.parse(dot.stdout)
    assert graph.edge_attrs[("review", "draft")]["label"] == until
    assert graph.edge_attrs[("fix", "draft")] == {"label": "finished", "style": "dashed"}
    loop_box = next(sub for sub in graph.subgraphs if sub.name == "cluster_loop1")
    assert sorted(loop_box.nodes) == ["draft", "review"]
    assert loop_box.nodes["draft"]["label"].endswith("\nwhen: size(agents.triage.output.bugs) > vars.limit")
    mermaid = rnix("compose", "graph")
    assert mermaid.returncode == 0, mermaid.stderr
    assert '  subgraph loop1["loop polish"]' in mermaid.stdout
    assert f'-.->|"{until}"|' in mermaid.stdout and "-.->|finished|" in mermaid.stdout
    assert (
        "fix#91;#42;#93;<br/>mock<br/>for_each: agents.triage.output.bugs (max_parallel 2)" in mermaid.stdout
    )
    text = rnix("compose", "graph", "--format", "text")
    assert text.returncode == 0, text.stderr
    assert "  fix[*]   (mock)  <- triage\n           for_each: agents.triage.output.bugs" in text.stdout
    assert "  draft    (mock, loop polish)  <- fix (finished)\n           when: size(" in text.stdout
    assert f"loop polish (draft, review): review -> draft again, {until}\n" in text.stdout


def test_the_pipelines_doc_shows_what_the_text_format_prints(rnix: RunRnix, tmp_path: Path) -> None:
    page = (Path(__file__).resolve().parents[2] / "docs" / "pipelines.md").read_text()
    section = page.split("## Seeing the pipeline", 1)[1].split("\n## ", 1)[0]
    compose = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    shown = section.split("```text\n", 1)[1].split("```", 1)[0]
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "compose.yaml").write_text(compose)
    result = rnix("compose", "graph", "--format", "text", cwd=tmp_path / "demo")
    assert result.returncode == 0, result.stderr
    assert result.stdout == shown


def test_the_cli_offers_exactly_the_formats_the_renderer_has() -> None:
    from rnix.cli.compose_graph import GRAPH_FORMATS
    from rnix.ui.graph import FORMATS

    assert GRAPH_FORMATS == FORMATS
