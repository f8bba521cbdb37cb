"""The one error family and the one exit-status enum of rnix.

Every failure a user can cause is an `RnixError` with a message (what went wrong) and a hint (what to
do). The CLI maps it to `rnix: error: ...` on stderr, a `--json` error document and `exit_code`.
Standard library only: the pure core raises these too.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rnix.core.problems import Problem


class ExitCode(enum.IntEnum):
    """Exit statuses of every rnix command (documented in rnix(1))."""

    OK = 0
    FAILURE = 1  # the run did not fully succeed (an agent failed), or an internal error
    USAGE = 2  # usage error or invalid compose file: nothing was run
    STATE = 3  # RNIX_HOME cannot hold rnix's state (not a directory, read-only, full); see HomeUnusable
    INTERRUPTED = 130  # SIGINT (Ctrl-C)
    TERMINATED = 143  # SIGTERM


class RnixError(Exception):
    """A failure with a user-facing message and hint."""

    code = "ERROR"
    exit_code = ExitCode.FAILURE

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(RnixError):
    """The command line was wrong (unknown option, missing argument, bad value)."""

    code = "USAGE"
    exit_code = ExitCode.USAGE


class HomeUnusable(RnixError):
    """rnix's state cannot be written to RNIX_HOME (not a directory, read-only, full, no permission).

    Raised before a run starts anything, or mid-run once an event cannot be recorded: the run's
    agents are then stopped, and what was recorded before stays as it was (one transaction per batch).
    """

    code = "HOME_UNUSABLE"
    exit_code = ExitCode.STATE


class ComposeNotFound(RnixError):
    """No compose file where one was expected."""

    code = "COMPOSE_NOT_FOUND"
    exit_code = ExitCode.USAGE


class InvalidCompose(RnixError):
    """The compose file (or its .env) has one or more problems; nothing was run."""

    code = "INVALID_COMPOSE"
    exit_code = ExitCode.USAGE

    def __init__(self, file: str, problems: Sequence[Problem], hint: str | None = None) -> None:
        count = len(problems)
        noun = "problem" if count == 1 else "problems"
        super().__init__(
            f"{file} is not a valid compose file ({count} {noun})",
            hint or "fix the lines above; `rnix compose config -q` checks the file again",
        )
        self.file = file
        self.problems = tuple(problems)


class InvalidDefinition(RnixError):
    """One or more agent definitions (agents/<name>/agent.yaml) have problems."""

    code = "INVALID_DEFINITION"
    exit_code = ExitCode.FAILURE

    def __init__(self, what: str, problems: Sequence[Problem], hint: str | None = None) -> None:
        count = len(problems)
        noun = "problem" if count == 1 else "problems"
        super().__init__(
            f"{what} ({count} {noun})", hint or "fix the lines above; `rnix agents` checks them again"
        )
        self.problems = tuple(problems)
