"""`python -m rnix` is the same as the `rnix` command."""

from rnix.cli.main import run

if __name__ == "__main__":  # pragma: no cover - exercised through the CLI tests
    run()
