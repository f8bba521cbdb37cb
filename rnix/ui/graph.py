"""`rnix compose graph`: the agent DAG as a document, and as Mermaid, Graphviz DOT or plain text.

Contract:
- `graph_document(spec, project)` is the `--json` data: layers (as `plan` computes them), one node per
  agent with its layer and what it runs, one edge per `depends_on` entry (from the dependency to the
  dependent: the direction results flow, with its `condition`) and the critical path. An edge whose
  condition is not `completed` is drawn dotted (Mermaid) or dashed (DOT) and labelled with it.
- The renderers are pure functions of that document. Agent names are restricted to
  `[a-z0-9][a-z0-9_-]*`, but models, definitions and commands come from the file (and from
  interpolated variables), so every label is escaped for its format and intents never appear at all:
  a rendered graph cannot inject Mermaid or DOT syntax, HTML or terminal control sequences.
- Mermaid node ids are synthetic (`n1`, `n2`, ...): agent names such as `end` or `o-x` are valid rnix
  names but Mermaid keywords or edge syntax.
"""

from __future__ import annotations

import os
import re
from typing import Any

from rnix.core import dag
from rnix.core.model import AgentSpec, ComposeSpec
from rnix.core.plan import graph_of
from rnix.core.secrets import mask_text
from rnix.ui.text import inert, with_condition

FORMATS = ("mermaid", "dot", "text")
DETAIL_MAX = 60  # characters of the second label line; long model strings would stretch the boxes
_MERMAID_SAFE = re.compile(r"[A-Za-z0-9 _.,:/=+@()?-]")


def graph_document(spec: ComposeSpec, project: str, secrets: tuple[str, ...] = ()) -> dict[str, Any]:
    """Nodes, edges, layers and the critical path of `spec` (the `--json` data); `secrets` are masked."""
    graph = graph_of(spec)
    layers = dag.layers(graph)
    critical = dag.critical_path(graph)
    layer_of = {name: i for i, layer in enumerate(layers, 1) for name in layer}
    nodes: list[dict[str, Any]] = [
        {
            "name": name,
            "layer": layer_of[name],
            "kind": spec.agent(name).kind,
            "detail": detail(spec.agent(name), secrets),
            "depends_on": list(spec.agent(name).depends_on),
            "on_critical_path": name in critical,
        }
        for layer in layers
        for name in layer
    ]
    edges = [
        {
            "from": dep,
            "to": node["name"],
            "condition": spec.agent(node["name"]).conditions.get(dep, "completed"),
        }
        for node in nodes
        for dep in node["depends_on"]
    ]
    return {
        "project": project,
        "file": spec.file,
        "layers": layers,
        "nodes": nodes,
        "edges": edges,
        "critical_path": critical,
    }


def detail(agent: AgentSpec, secrets: tuple[str, ...] = ()) -> str:
    """What the agent runs, in a few words: its definition, candidates, command name or model."""
    if agent.agent:
        text = f"agent: {agent.agent}"
    elif agent.candidates:
        text = "candidates: " + ", ".join(agent.candidates)
    elif agent.command is not None:
        text = "command: " + os.path.basename(agent.command[0])
    else:
        text = agent.model
    text = inert(mask_text(text, secrets))  # masked before it is cut: a cut secret would not match
    return text if len(text) <= DETAIL_MAX else text[: DETAIL_MAX - 3] + "..."


def render(document: dict[str, Any], fmt: str) -> str:
    """The graph in `fmt` (one of FORMATS), ending with a newline."""
    renderers = {"mermaid": mermaid, "dot": dot, "text": text}
    return renderers[fmt](document)


def _layer_nodes(document: dict[str, Any]) -> list[list[dict[str, Any]]]:
    by_name = {node["name"]: node for node in document["nodes"]}
    return [[by_name[name] for name in layer] for layer in document["layers"]]


def _mermaid_text(value: str) -> str:
    """`value` for inside a quoted Mermaid label: anything but plain characters becomes `#<code>;`."""
    return "".join(c if _MERMAID_SAFE.fullmatch(c) else f"#{ord(c)};" for c in value)


def mermaid(document: dict[str, Any]) -> str:
    ids = {node["name"]: f"n{i}" for i, node in enumerate(document["nodes"], 1)}
    lines = [f"%% rnix compose graph: project {_mermaid_text(document['project'])}", "flowchart TB"]
    for number, node_list in enumerate(_layer_nodes(document), 1):
        lines.append(f'  subgraph layer{number}["layer {number}"]')
        for node in node_list:
            label = f"{_mermaid_text(node['name'])}<br/>{_mermaid_text(node['detail'])}"
            lines.append(f'    {ids[node["name"]]}["{label}"]')
        lines.append("  end")
    lines += [f"  {ids[edge['from']]} {_mermaid_arrow(edge)} {ids[edge['to']]}" for edge in document["edges"]]
    critical = [ids[name] for name in document["critical_path"]]
    if critical:
        lines += ["  classDef critical stroke-width:3px", f"  class {','.join(critical)} critical"]
    return "\n".join(lines) + "\n"


def _mermaid_arrow(edge: dict[str, Any]) -> str:
    """`-->`, or a dotted arrow labelled with the condition (`-.->|failed|`) when it is not `completed`."""
    condition = edge.get("condition", "completed")
    return "-->" if condition == "completed" else f"-.->|{condition}|"


def _dot_edge(edge: dict[str, Any]) -> str:
    condition = edge.get("condition", "completed")
    return "" if condition == "completed" else f' [label="{condition}", style=dashed]'


def _dot_string(value: str) -> str:
    """`value` as a DOT double-quoted string (backslashes and quotes escaped, one line)."""
    return '"' + inert(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def dot(document: dict[str, Any]) -> str:
    critical = set(document["critical_path"])
    lines = [
        f"digraph {_dot_string(document['project'])} {{",
        "  rankdir=TB;",
        "  node [shape=box];",
    ]
    for number, node_list in enumerate(_layer_nodes(document), 1):
        lines += [f"  subgraph cluster_layer{number} {{", f'    label="layer {number}";', "    rank=same;"]
        for node in node_list:
            # \n inside a DOT label is a line break; the parts themselves are escaped first
            label = _dot_string(node["name"])[:-1] + "\\n" + _dot_string(node["detail"])[1:]
            bold = ", penwidth=2" if node["name"] in critical else ""
            lines.append(f"    {_dot_string(node['name'])} [label={label}{bold}];")
        lines.append("  }")
    lines += [
        f"  {_dot_string(e['from'])} -> {_dot_string(e['to'])}{_dot_edge(e)};" for e in document["edges"]
    ]
    lines.append("}")
    return "\n".join(lines) + "\n"


def text(document: dict[str, Any]) -> str:
    nodes = document["nodes"]
    width = max((len(node["name"]) for node in nodes), default=0)
    count = len(nodes)
    lines = [
        f"project {document['project']}: {count} agent{'s' * (count != 1)} "
        f"in {len(document['layers'])} layer{'s' * (len(document['layers']) != 1)}"
    ]
    conditions = {(e["from"], e["to"]): e.get("condition", "completed") for e in document["edges"]}
    for number, node_list in enumerate(_layer_nodes(document), 1):
        lines.append(f"layer {number}")
        for node in node_list:
            named = [
                with_condition(dep, conditions.get((dep, node["name"]), "completed"))
                for dep in node["depends_on"]
            ]
            deps = f"  <- {', '.join(named)}" if named else ""
            lines.append(f"  {node['name']:<{width}}  ({node['detail']}){deps}")
    lines.append("critical path: " + " -> ".join(document["critical_path"]))
    return "\n".join(lines) + "\n"
