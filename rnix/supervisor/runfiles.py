"""The files of one run under `RNIX_HOME/runs/<run_id>/`: each agent's task, stdout and stderr.

`<agent>.task.json` is the agent's stdin (an agent forked early reads the same document from a FIFO,
`task_channel`); `<agent>.out` its stdout (truncated at each attempt, so it
holds the final attempt's result); `<agent>.log` its stderr, appended across attempts after a header
line. Secret values are masked in the task before it is written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rnix.core.definition import definition_prompt, tools_as_json
from rnix.core.model import AgentSpec
from rnix.core.secrets import mask
from rnix.core.task import task_document


@dataclass(frozen=True)
class AgentPaths:
    task: Path
    out: Path
    log: Path
    exit: Path  # the exit report its leader writes when it ends by itself (rnix.supervisor.exitreport)
    task_data: bytes = b""  # what `write` writes to `task` (an agent forked early gets it on a FIFO)


class RunFiles:
    def __init__(
        self,
        directory: Path,
        *,
        run_id: str,
        project: str,
        project_intent: str | None,
        base_dir: Path,
        secrets: tuple[str, ...] = (),
    ) -> None:
        self.directory = directory
        self.run_id = run_id
        self.project = project
        self.project_intent = project_intent
        self.base_dir = base_dir  # the compose file's directory: relative working_dirs start here
        self.secrets = secrets

    def paths(self, agent: str) -> AgentPaths:
        return AgentPaths(
            self.directory / f"{agent}.task.json",
            self.directory / f"{agent}.out",
            self.directory / f"{agent}.log",
            self.directory / f"{agent}.exit.json",
        )

    def task_channel(self, agent: str) -> tuple[str, int]:
        """A FIFO for the task of an agent forked before its release (early spawn), and our end of
        it, opened read-write and non-blocking: with a writer always present, the agent's read
        blocks until we have written the task and closed this fd. The caller unlinks the path once
        the agent has opened it (its fd 0)."""
        path = self.directory / f"{agent}.task.fifo"
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        os.mkfifo(path, 0o600)
        return str(path), os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)

    def task(
        self,
        spec: AgentSpec,
        attempt: int,
        budget: int,
        upstream: dict[str, str],
        stdin_input: str | None,
        *,
        messages: Sequence[tuple[str, str]] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> AgentPaths:
        """The attempt's paths with its task document (`task_data`), nothing written yet (`write`).

        `messages`: the upstream results as the built-in agent's messages, in order (default: one
        per `upstream` entry); `extra`: pipeline fields of the task (item, index, iteration,
        previous)."""
        paths = self.paths(spec.name)
        document = task_document(
            name=spec.name,
            intent=spec.intent,
            upstream=upstream,
            budget=budget,
            model=spec.model,
            run_id=self.run_id,
            project=self.project,
            attempt=attempt,
            project_intent=self.project_intent,
            stdin_input=stdin_input,
            max_steps=spec.max_steps,
            instructions=definition_prompt(spec.definition),
            tools=tools_as_json(spec.definition),
            workspace=self.cwd_for(spec),
            upstream_messages=messages,
            output_schema=spec.output_schema,
        )
        if extra:
            document.update(extra)
        data = json.dumps(mask(document, self.secrets), ensure_ascii=False).encode("utf-8")
        return dataclasses.replace(paths, task_data=data)

    def write(self, paths: AgentPaths, attempt: int, *, empty_out: bool = True) -> None:
        """Write the task file, empty the stdout file (unless `empty_out` is False: an agent forked
        early, whose fresh file it may already be writing to) and mark the attempt in the log."""
        _write_private(paths.task, paths.task_data)
        if empty_out:
            _write_private(paths.out, b"")
        if attempt > 1:
            with open(paths.log, "ab") as log:
                log.write(f"--- rnix: attempt {attempt} ---\n".encode())

    def cwd_for(self, spec: AgentSpec) -> str:
        if spec.working_dir is None:
            return str(self.base_dir)
        return str((self.base_dir / spec.working_dir).resolve())

    @staticmethod
    def last_log_line(path: Path, tail: int = 4096) -> str | None:
        """The last non-empty line of an agent's stderr, for error messages."""
        try:
            with open(path, "rb") as handle:
                handle.seek(max(0, os.fstat(handle.fileno()).st_size - tail))
                lines = handle.read().decode("utf-8", errors="replace").splitlines()
        except OSError:
            return None
        for line in reversed(lines):
            if line.strip() and not line.startswith("--- rnix:"):
                return line.strip()[:300]
        return None


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
