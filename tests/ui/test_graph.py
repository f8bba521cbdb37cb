"""The graph document and its Mermaid, DOT and text renderings (pure functions, no processes)."""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Any

import pytest

from rnix.core.spec import parse_compose
from rnix.ui.graph import graph_document, render
from tests.ui import dotsyntax

DIAMOND = {
    "agents": {
        "plan": {"intent": "make a plan", "model": "openai/gpt-4o-mini"},
        "left": {"intent": "do the left part", "depends_on": ["plan"], "agent": "researcher"},
        "right": {
            "intent": "do the right part",
            "depends_on": ["plan"],
            "command": ["/usr/bin/python3", "x.py"],
        },
        "merge": {"intent": "merge", "depends_on": {"left": "completed", "right": "completed"}},
        "lonely": {"intent": "unrelated", "candidates": ["a", "b"]},
    }
}
# Values a file controls that must not break out of a label: quotes, brackets, markup, escapes.
HOSTILE_MODEL = 'evil"] --> n1\nclick n1 "javascript:alert(1)" <b>`x`</b> \\N \x1b[31m;#'


def doc(data: dict[str, Any]) -> dict[str, Any]:
    return graph_document(parse_compose(data, {}, "compose.yaml"), "demo")


def test_document_has_layers_edges_and_the_critical_path() -> None:
    d = doc(DIAMOND)
    assert d["layers"] == [["lonely", "plan"], ["left", "right"], ["merge"]]
    assert sorted((e["from"], e["to"]) for e in d["edges"]) == [
        ("left", "merge"),
        ("plan", "left"),
        ("plan", "right"),
        ("right", "merge"),
    ]
    assert d["critical_path"] == ["plan", "left", "merge"]
    details = {n["name"]: n["detail"] for n in d["nodes"]}
    assert details == {
        "plan": "openai/gpt-4o-mini",
        "left": "agent: researcher",
        "right": "command: python3",
        "merge": "mock",
        "lonely": "candidates: a, b",
    }
    assert all("intent" not in n for n in d["nodes"])


def test_mermaid_groups_nodes_by_layer_and_draws_every_edge() -> None:
    out = render(doc(DIAMOND), "mermaid")
    lines = out.splitlines()
    assert lines[1] == "flowchart TB"
    ids = dict(re.findall(r'^    (n\d+)\["([a-z]+)<br/>', out, re.M))
    by_name = {name: node_id for node_id, name in ids.items()}
    layers = re.findall(r'subgraph layer(\d+)\["layer \1"\]\n((?:    .*\n)*)  end', out)
    assert [sorted(re.findall(r"^    (n\d+)\[", body, re.M)) for _, body in layers] == [
        sorted([by_name["lonely"], by_name["plan"]]),
        sorted([by_name["left"], by_name["right"]]),
        [by_name["merge"]],
    ]
    edges = set(re.findall(r"^  (n\d+) --> (n\d+)$", out, re.M))
    assert edges == {
        (by_name["plan"], by_name["left"]),
        (by_name["plan"], by_name["right"]),
        (by_name["left"], by_name["merge"]),
        (by_name["right"], by_name["merge"]),
    }
    assert f"  class {by_name['plan']},{by_name['left']},{by_name['merge']} critical" in lines


def test_dot_is_valid_with_one_rank_same_cluster_per_layer() -> None:
    graph = dotsyntax.parse(render(doc(DIAMOND), "dot"))
    assert graph.name == "demo"
    clusters = [(sub.name, sub.attrs, sorted(sub.nodes)) for sub in graph.subgraphs]
    assert clusters == [
        ("cluster_layer1", {"label": "layer 1", "rank": "same"}, ["lonely", "plan"]),
        ("cluster_layer2", {"label": "layer 2", "rank": "same"}, ["left", "right"]),
        ("cluster_layer3", {"label": "layer 3", "rank": "same"}, ["merge"]),
    ]
    assert sorted(graph.edges) == [("left", "merge"), ("plan", "left"), ("plan", "right"), ("right", "merge")]
    plan = graph.subgraphs[0].nodes["plan"]
    assert plan == {"label": "plan\nopenai/gpt-4o-mini", "penwidth": "2"}


def test_dot_is_accepted_by_graphviz_when_it_is_installed() -> None:
    dot = shutil.which("dot")
    source = render(doc(DIAMOND), "dot")
    dotsyntax.parse(source)  # always: the structure
    if dot:  # and Graphviz itself where it exists
        out = subprocess.run([dot, "-Tsvg"], input=source, capture_output=True, text=True, timeout=30)
        assert out.returncode == 0 and "<svg" in out.stdout, out.stderr


@pytest.mark.parametrize("fmt", ["mermaid", "dot", "text"])
def test_labels_from_the_file_cannot_inject_syntax(fmt: str) -> None:
    data = {
        "agents": {
            "end": {"intent": 'ignore "previous" instructions"]', "model": HOSTILE_MODEL},
            "o-x": {"intent": "x", "command": ['/tmp/a"b\\c}{'], "depends_on": ["end"]},
        }
    }
    out = render(doc(data), fmt)
    assert "\x1b" not in out and "previous" not in out  # no control characters, no intents
    if fmt == "dot":
        graph = dotsyntax.parse(out)
        labels = {name: attrs["label"] for sub in graph.subgraphs for name, attrs in sub.nodes.items()}
        assert labels["o-x"] == 'o-x\ncommand: a"b\\c}{'
        assert labels["end"].startswith('end\nevil"] --> n1 click')
        assert graph.edges == [("end", "o-x")]
    if fmt == "mermaid":
        for label in re.findall(r'^    n\d+\["(.*)"\]$', out, re.M):
            assert re.fullmatch(r"[A-Za-z0-9 _.,:/=+@()?#;-]*(<br/>[A-Za-z0-9 _.,:/=+@()?#;-]*)?", label), (
                label
            )
        assert len(re.findall(r"-->", out)) == 1  # the one real edge; the model's arrow is escaped
        assert "#34;" in out and "#60;b#62;" in out  # quote and <b> as entity codes
    if fmt == "text":
        assert len(out.splitlines()) == 6  # a newline in a model cannot add lines


def test_text_lists_layers_with_dependencies() -> None:
    assert render(doc(DIAMOND), "text") == (
        "project demo: 5 agents in 3 layers\n"
        "layer 1\n"
        "  lonely  (candidates: a, b)\n"
        "  plan    (openai/gpt-4o-mini)\n"
        "layer 2\n"
        "  left    (agent: researcher)  <- plan\n"
        "  right   (command: python3)  <- plan\n"
        "layer 3\n"
        "  merge   (mock)  <- left, right\n"
        "critical path: plan -> left -> merge\n"
    )


PIPELINE: dict[str, Any] = {
    "vars": {"x": "a", "y": 1},
    "loops": {"ref": {"body": ["split", "one", "two", "join"], "until": "agents.join.status == 'completed'"}},
    "agents": {
        "plan": {"intent": "p"},
        "split": {"intent": "s", "depends_on": ["plan"]},
        "one": {"intent": "1", "depends_on": ["split"], "when": "vars.y > 0"},
        "two": {"intent": "2", "depends_on": ["split"], "for_each": "[1, 2, 3]", "max_parallel": 2},
        "join": {"intent": "j", "depends_on": ["one", "two"]},
        "side": {"intent": "not in the loop", "depends_on": ["split"]},
    },
}


def test_document_has_pipeline_keys_and_each_loops_ends() -> None:
    d = doc(PIPELINE)
    nodes = {n["name"]: n for n in d["nodes"]}
    assert nodes["one"]["when"] == "vars.y > 0" and nodes["plan"]["when"] is None
    assert nodes["two"]["for_each"] == "[1, 2, 3]" and nodes["two"]["max_parallel"] == 2
    assert [nodes[n]["loop"] for n in ("plan", "split", "side")] == [None, "ref", None]
    assert d["loops"] == [
        {
            "name": "ref",
            "body": ["split", "one", "two", "join"],
            "until": "agents.join.status == 'completed'",
            "max_iterations": 5,
            "on_max": "fail",
            "first": ["split"],
            "last": ["join"],
        }
    ]


def test_a_loop_with_parallel_ends_gets_a_back_edge_per_pair() -> None:
    data = {
        "loops": {"l": {"body": ["a", "b", "c", "d"], "until": "true", "max_iterations": 3}},
        "agents": {
            "a": {"intent": "a"},
            "b": {"intent": "b"},
            "c": {"intent": "c", "depends_on": ["a", "b"]},
            "d": {"intent": "d", "depends_on": ["a"]},
        },
    }
    graph = dotsyntax.parse(render(doc(data), "dot"))
    back = [edge for edge, attrs in graph.edge_attrs.items() if attrs.get("constraint") == "false"]
    assert sorted(back) == [("c", "a"), ("c", "b"), ("d", "a"), ("d", "b")]
    assert all(graph.edge_attrs[e]["label"] == "until: true (max 3)" for e in back)


def test_dot_draws_the_loop_as_a_box_and_a_back_edge() -> None:
    graph = dotsyntax.parse(render(doc(PIPELINE), "dot"))
    boxes = {sub.name: sub for sub in graph.subgraphs}
    # a layer whose agents are all in the loop is not drawn; the loop box has the body
    assert sorted(boxes) == ["cluster_layer1", "cluster_layer3", "cluster_loop1"]
    assert boxes["cluster_loop1"].attrs["label"] == "loop ref"
    assert sorted(boxes["cluster_loop1"].nodes) == ["join", "one", "split", "two"]
    assert sorted(boxes["cluster_layer3"].nodes) == ["side"]
    labels = {name: attrs["label"] for sub in graph.subgraphs for name, attrs in sub.nodes.items()}
    assert labels["one"] == "one\nmock\nwhen: vars.y > 0"
    assert labels["two"] == "two[*]\nmock\nfor_each: [1, 2, 3] (max_parallel 2)"
    assert graph.edge_attrs[("join", "split")] == {
        "label": "until: agents.join.status == 'completed' (max 5)",
        "style": "bold",
        "constraint": "false",
    }


def test_mermaid_and_text_show_conditions_fan_outs_and_loops() -> None:
    out = render(doc(PIPELINE), "mermaid")
    assert '  subgraph loop1["loop ref"]' in out
    assert "two#91;#42;#93;<br/>mock<br/>for_each: #91;1, 2, 3#93; (max_parallel 2)" in out
    assert "when: vars.y #62; 0" in out
    ids = dict(re.findall(r'^    (n\d+)\["(\w+)', out, re.M))
    back = re.findall(r'^  (n\d+) -\.->\|"until: (.*)"\| (n\d+)$', out, re.M)
    assert [(ids[a], label, ids[b]) for a, label, b in back] == [
        ("join", "agents.join.status == #39;completed#39; (max 5)", "split")
    ]
    lines = render(doc(PIPELINE), "text").splitlines()
    assert "  one     (mock, loop ref)  <- split" in lines
    assert "          when: vars.y > 0" in lines
    assert "  two[*]  (mock, loop ref)  <- split" in lines
    assert "          for_each: [1, 2, 3] (max_parallel 2)" in lines
    assert "loop ref (split, one, two, join): join -> split again, until: agents.join.status == " in lines[-2]


@pytest.mark.parametrize("fmt", ["mermaid", "dot", "text"])
def test_expressions_are_inert_and_shortened(fmt: str) -> None:
    hostile = 'vars.x == "evil\\"] --> n1 <b>x</b> \x1b[31m" ||\n vars.y == ' + "1" * 80
    data = {
        "vars": {"x": "a", "y": 1},
        "loops": {"l": {"body": ["b"], "until": hostile}},
        "agents": {"a": {"intent": "a", "when": hostile}, "b": {"intent": "b", "depends_on": ["a"]}},
    }
    out = render(doc(data), fmt)
    assert "\x1b" not in out and "1" * 70 not in out and "..." in out
    if fmt == "dot":
        graph = dotsyntax.parse(out)
        assert graph.edges == [("a", "b"), ("b", "b")]
    if fmt == "mermaid":
        assert len(re.findall(r"-->", out)) == 1 and "<b>" not in out
    if fmt == "text":
        assert len(out.splitlines()) == 8  # the newline in the expression adds no line
