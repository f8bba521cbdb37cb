"""`rnix completion bash|zsh|fish`: print click's shell-completion script for rnix.

The script is exactly what `_RNIX_COMPLETE=<shell>_source rnix` prints: it calls `rnix` back with
`_RNIX_COMPLETE=<shell>_complete` and the words typed so far, and click answers from the live command
tree, so completion never goes stale. Install lines are in docs/getting-started.md and rnix-completion(1).
"""

from __future__ import annotations

import click
from click.shell_completion import get_completion_class

from rnix.env import Env
from rnix.errors import ExitCode
from rnix.ui import jsonout

SHELLS = ("bash", "zsh", "fish")
PROG_NAME = "rnix"
COMPLETE_VAR = "_RNIX_COMPLETE"  # what click derives from the program name; the script sets it


def completion_source(root: click.Command, shell: str) -> str:
    """The completion script for `shell` (one of SHELLS)."""
    completer = get_completion_class(shell)
    assert completer is not None, shell  # SHELLS lists only shells click supports
    return completer(root, {}, PROG_NAME, COMPLETE_VAR).source()


@click.command("completion")
@click.argument("shell", type=click.Choice(SHELLS))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
@click.pass_context
def completion_cmd(ctx: click.Context, shell: str, as_json: bool) -> ExitCode:
    """Print the shell completion script for bash, zsh or fish.

    \b
    Load it in the current shell, or install it for every new one:
      bash: eval "$(rnix completion bash)"   (in ~/.bashrc)
      zsh:  eval "$(rnix completion zsh)"    (in ~/.zshrc)
      fish: rnix completion fish > ~/.config/fish/completions/rnix.fish

    The script asks rnix itself for the candidates, so new commands and options complete without
    reinstalling it.
    """
    env: Env = ctx.ensure_object(Env)
    source = completion_source(ctx.find_root().command, shell)
    if as_json:
        jsonout.write_ok(env.stdout, {"shell": shell, "source": source})
    else:
        env.stdout.write(source if source.endswith("\n") else source + "\n")
    return ExitCode.OK
