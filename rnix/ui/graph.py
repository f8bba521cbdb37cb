"""`rnix compose graph`: the agent DAG as a document, and as Mermaid, Graphviz DOT or plain text.

Contract:
- `graph_document(spec, project)` is the `--json` data: layers (as `plan` computes them), one node per
  agent with its layer and what it runs, one edge per `depends_on` entry (from the dependency to the
  dependent: the direction results flow, with its `condition`) and the critical path. An edge whose
  condition is not `completed` is drawn dotted (Mermaid) or dashed (DOT) and labelled with it.
- Pipelines (docs/pipelines.md): a node carries its `when` and `for_each` (drawn `fix[*]`, with
  `max_parallel`); each loop lists its body and its ends, and a back edge runs from its last body
  agents (no body agent depends on them) to its first (they depend on no body agent), labelled
  `until: <expr> (max N)`. Mermaid and DOT draw the body in a box of its own (boxes cannot overlap,
  so a loop's agents leave their layer's box). Expressions are cut to DETAIL_MAX in the drawings;
  the JSON has them whole.
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
from rnix.core.model import AgentSpec, ComposeSpec, LoopSpec
from rnix.core.plan import graph_of
from rnix.core.secrets import mask_text
from rnix.ui.text import inert, node_name, shorten, with_condition

FORMATS = ("mermaid", "dot", "text")
DETAIL_MAX = 60  # characters of the second label line; long model strings would stretch the boxes
_MERMAID_SAFE = re.compile(r"[A-Za-z0-9 _.,:/=+@()?-]")


def graph_document(spec: ComposeSpec, project: str, secrets: tuple[str, ...] = ()) -> dict[str, Any]:
    """Nodes, edges, layers, loops and the critical path of `spec` (the `--json` data); `secrets` are
    masked."""
    graph = graph_of(spec)
    layers = dag.layers(graph)
    critical = dag.critical_path(graph)
    layer_of = {name: i for i, layer in enumerate(layers, 1) for name in layer}
    loop_of = {name: loop.name for loop in spec.loops for name in loop.body}
    nodes: list[dict[str, Any]] = [
        _node(spec.agent(name), layer_of[name], name in critical, loop_of.get(name), secrets)
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
        "loops": [_loop(loop, graph, layer_of, secrets) for loop in spec.loops],
        "critical_path": critical,
    }


def _node(
    agent: AgentSpec, layer: int, critical: bool, loop: str | None, secrets: tuple[str, ...]
) -> dict[str, Any]:
    return {
        "name": agent.name,
        "layer": layer,
        "kind": agent.kind,
        "detail": detail(agent, secrets),
        "depends_on": list(agent.depends_on),
        "on_critical_path": critical,
        "when": mask_text(agent.when, secrets) if agent.when is not None else None,
        "for_each": mask_text(agent.for_each, secrets) if agent.for_each is not None else None,
        "max_parallel": agent.max_parallel,
        "loop": loop,
        "aggregate": jury_text(agent),
    }


def _loop(
    loop: LoopSpec, graph: dict[str, list[str]], layer_of: dict[str, int], secrets: tuple[str, ...]
) -> dict[str, Any]:
    """A loop and where its back edge runs: from its last body agents (no other body agent depends
    on them) to its first (they depend on no body agent)."""
    body = set(loop.body)
    ordered = sorted(loop.body, key=lambda name: (layer_of[name], name))
    needed = {dep for name in body for dep in graph[name] if dep in body}
    return {
        "name": loop.name,
        "body": ordered,
        "until": mask_text(loop.until, secrets),
        "max_iterations": loop.max_iterations,
        "on_max": loop.on_max,
        "first": [name for name in ordered if not body & set(graph[name])],
        "last": [name for name in ordered if name not in needed],
    }


def back_edges(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(from, to, loop) for every loop's back edge, last body agents to first."""
    loops = document.get("loops", [])
    return [(last, first, loop) for loop in loops for last in loop["last"] for first in loop["first"]]


def node_lines(node: dict[str, Any]) -> list[str]:
    """The label of a node, line by line and inert: `fix[*]`, what it runs, its `when` and `for_each`."""
    lines = [node_name(node["name"], node.get("for_each") or node.get("aggregate")), node["detail"]]
    if node.get("when") is not None:
        lines.append(_short("when: " + node["when"]))
    if node.get("for_each") is not None:
        limit = node.get("max_parallel")
        lines.append(_short("for_each: " + node["for_each"]) + (f" (max_parallel {limit})" if limit else ""))
    if node.get("aggregate") is not None:
        lines.append(_short("aggregate: " + node["aggregate"]))
    return lines


def until_label(loop: dict[str, Any]) -> str:
    """What a back edge says: `until: <expr> (max N)`, shortened and inert."""
    return _short("until: " + loop["until"]) + f" (max {loop['max_iterations']})"


def _short(text: str) -> str:
    return shorten(inert(text), DETAIL_MAX)


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
    # masked before it is cut: a cut secret would not match
    return shorten(inert(mask_text(text, secrets)), DETAIL_MAX)


def render(document: dict[str, Any], fmt: str) -> str:
    """The graph in `fmt` (one of FORMATS), ending with a newline."""
    renderers = {"mermaid": mermaid, "dot": dot, "text": text}
    return renderers[fmt](document)


def _layer_nodes(document: dict[str, Any]) -> list[list[dict[str, Any]]]:
    by_name = {node["name"]: node for node in document["nodes"]}
    return [[by_name[name] for name in layer] for layer in document["layers"]]


def _boxes(document: dict[str, Any]) -> list[tuple[str, str, list[dict[str, Any]]]]:
    """(id, title, nodes) of the boxes Mermaid and DOT draw: one per layer, one per loop.

    A node sits in one box only (neither format lets boxes overlap, and a loop's body spans layers):
    a loop's agents are drawn in the loop's box, and a layer left empty by that is not drawn.
    """
    by_name = {node["name"]: node for node in document["nodes"]}
    boxes = [
        (f"layer{number}", f"layer {number}", [n for n in node_list if n.get("loop") is None])
        for number, node_list in enumerate(_layer_nodes(document), 1)
    ]
    boxes += [
        (f"loop{number}", f"loop {loop['name']}", [by_name[name] for name in loop["body"]])
        for number, loop in enumerate(document.get("loops", []), 1)
    ]
    return [box for box in boxes if box[2]]


def _mermaid_text(value: str) -> str:
    """`value` for inside a quoted Mermaid label: anything but plain characters becomes `#<code>;`."""
    return "".join(c if _MERMAID_SAFE.fullmatch(c) else f"#{ord(c)};" for c in value)


def mermaid(document: dict[str, Any]) -> str:
    ids = {node["name"]: f"n{i}" for i, node in enumerate(document["nodes"], 1)}
    lines = [f"%% rnix compose graph: project {_mermaid_text(document['project'])}", "flowchart TB"]
    for box, title, node_list in _boxes(document):
        lines.append(f'  subgraph {box}["{_mermaid_text(title)}"]')
        for node in node_list:
            label = "<br/>".join(_mermaid_text(line) for line in node_lines(node))
            lines.append(f'    {ids[node["name"]]}["{label}"]')
        lines.append("  end")
    lines += [f"  {ids[edge['from']]} {_mermaid_arrow(edge)} {ids[edge['to']]}" for edge in document["edges"]]
    lines += [
        f'  {ids[last]} -.->|"{_mermaid_text(until_label(loop))}"| {ids[first]}'
        for last, first, loop in back_edges(document)
    ]
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
    for box, title, node_list in _boxes(document):
        # a layer is one rank; a loop's body spans several and is drawn as a rounded box
        style = "    rank=same;" if box.startswith("layer") else "    style=rounded;"
        lines += [f"  subgraph cluster_{box} {{", f"    label={_dot_string(title)};", style]
        for node in node_list:
            # \n inside a DOT label is a line break; the parts themselves are escaped first
            label = '"' + "\\n".join(_dot_string(line)[1:-1] for line in node_lines(node)) + '"'
            bold = ", penwidth=2" if node["name"] in critical else ""
            lines.append(f"    {_dot_string(node['name'])} [label={label}{bold}];")
        lines.append("  }")
    lines += [
        f"  {_dot_string(e['from'])} -> {_dot_string(e['to'])}{_dot_edge(e)};" for e in document["edges"]
    ]
    lines += [
        f"  {_dot_string(last)} -> {_dot_string(first)} "
        f"[label={_dot_string(until_label(loop))}, style=bold, constraint=false];"
        for last, first, loop in back_edges(document)
    ]
    lines.append("}")
    return "\n".join(lines) + "\n"


def text(document: dict[str, Any]) -> str:
    nodes = document["nodes"]
    width = max(
        (len(node_name(node["name"], node.get("for_each") or node.get("aggregate"))) for node in nodes),
        default=0,
    )
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
            name, _, *more = node_lines(node)
            loop = f", loop {node['loop']}" if node.get("loop") else ""
            lines.append(f"  {name:<{width}}  ({node['detail']}{loop}){deps}")
            lines += [f"  {'':<{width}}  {line}" for line in more]
    for loop in document.get("loops", []):
        back = ", ".join(f"{last} -> {first}" for last, first, _ in back_edges({"loops": [loop]}))
        lines.append(f"loop {loop['name']} ({', '.join(loop['body'])}): {back} again, {until_label(loop)}")
    lines.append("critical path: " + " -> ".join(document["critical_path"]))
    return "\n".join(lines) + "\n"


def jury_text(agent: AgentSpec) -> str | None:
    """How a jury combines its candidates, e.g. `vote on verdict (weights reputation)`; None for
    an agent that is not one (docs/pipelines.md)."""
    if agent.aggregate is None:
        return None
    text = agent.aggregate
    if agent.quorum is not None:
        text += f" {agent.quorum} of {len(agent.candidates)}"
    if agent.vote_on is not None:
        text += f" on {agent.vote_on}"
    if agent.weights != "equal":
        text += f" (weights {agent.weights})"
    return text
