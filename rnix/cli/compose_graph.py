"""`rnix compose graph`: print the agent DAG by layer, as Mermaid (default), Graphviz DOT or text.

Reads and validates the file like `config` and `plan` (an invalid file exits 2 with every problem
listed) but never opens the state database: the graph is the file's structure, not a run's.
"""

from __future__ import annotations

import click

from rnix.cli.compose import compose, file_option, json_option, load, project_option
from rnix.core.secrets import secret_values
from rnix.env import Env
from rnix.errors import ExitCode
from rnix.ui import jsonout

# rnix.ui.graph.FORMATS (that module loads the planner: imported only when the command runs).
GRAPH_FORMATS = ("mermaid", "dot", "text")


@compose.command("graph")
@file_option
@project_option
@json_option
@click.option(
    "--format",
    "fmt",
    type=click.Choice(GRAPH_FORMATS),
    default="mermaid",
    show_default=True,
    help="Mermaid for Markdown docs, DOT for Graphviz (`| dot -Tsvg`), text for a terminal.",
)
@click.pass_obj
def graph_cmd(env: Env, file: str | None, project: str | None, as_json: bool, fmt: str) -> ExitCode:
    """Print the dependency graph of the agents, grouped by layer.

    Edges point from an agent to the agents that depend on it; the critical path is drawn bold.
    Labels show each agent's name and what it runs (definition, command or model), never its
    intent; a `when:` condition, and a `for_each:` fan-out drawn as `name[*]`. A loop's body is
    boxed, with a back edge labelled `until: <expr> (max N)`. With --json: the layers, nodes,
    edges, loops and critical path as data.
    """
    loaded = load(env, file, project)
    from rnix.ui.graph import graph_document, render

    document = graph_document(loaded.spec, loaded.project, secret_values(env.environ))
    if as_json:
        jsonout.write_ok(env.stdout, document)
    else:
        env.stdout.write(render(document, fmt))
    return ExitCode.OK
