"""The result and the exit report files (exitreport.py)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from rnix.supervisor import exitreport
from rnix.supervisor.api import ExitInfo
from rnix.supervisor.exitreport import RESULT_LIMIT, read_exit_report, read_result, write_exit_report

# -- the files ---------------------------------------------------------------------------------------


def test_result_limit_is_one_mebibyte() -> None:
    assert RESULT_LIMIT == 1024 * 1024


def test_read_result_is_the_whole_output_up_to_the_limit(tmp_path: Path) -> None:
    out = tmp_path / "a.out"
    out.write_bytes(b"0123456789")
    assert read_result(out, limit=10) == "0123456789"
    out.write_bytes(b"0123456789X")
    note = f"\n[rnix: result truncated at 10 bytes; the whole output is in {out}]"
    assert read_result(out, limit=10) == "0123456789" + note
    assert read_result(str(out), limit=10) == "0123456789" + note


def test_read_result_truncates_at_result_limit_by_default(tmp_path: Path) -> None:
    out = tmp_path / "big.out"
    out.write_bytes(b"a" * (RESULT_LIMIT + 5))
    kept, note = read_result(out).split("\n[rnix: ")
    assert kept == "a" * RESULT_LIMIT
    assert note == f"result truncated at 1048576 bytes; the whole output is in {out}]"


def test_read_result_decodes_leniently_and_a_missing_file_is_empty(tmp_path: Path) -> None:
    out = tmp_path / "a.out"
    out.write_bytes(b"ok \xff " + "é".encode())
    assert read_result(out) == "ok \ufffd é"
    out.write_bytes("é".encode() * 3)  # cut in the middle of a character
    assert read_result(out, limit=3).startswith("é\ufffd\n[rnix: result truncated at 3 bytes")
    assert read_result(tmp_path / "none.out") == ""


def test_a_written_report_reads_back_and_leaves_no_temp_file(tmp_path: Path) -> None:
    path = str(tmp_path / "a.exit.json")
    write_exit_report(path, 0, None)
    assert read_exit_report(path) == ExitInfo(0, None)
    assert set(json.loads(Path(path).read_text())) == {"returncode", "signal", "ts"}
    write_exit_report(path, None, signal.SIGTERM)  # replaces it
    assert read_exit_report(Path(path)) == ExitInfo(None, signal.SIGTERM)
    assert os.listdir(tmp_path) == ["a.exit.json"]
    exitreport.remove_exit_report(path)
    exitreport.remove_exit_report(path)  # nothing there: fine
    assert os.listdir(tmp_path) == []


def test_writing_into_a_missing_directory_raises(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        write_exit_report(str(tmp_path / "nodir" / "a.exit.json"), 0, None)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b'{"returncode": 0, "signal": nu',
        b"[]",
        b'{"returncode": 0, "signal": null}',
        b'{"returncode": "0", "signal": null, "ts": 1.5}',
        b'{"returncode": true, "signal": null, "ts": 1.5}',
        b'{"returncode": null, "signal": null, "ts": 1.5}',
        b'{"returncode": 0, "signal": 9, "ts": 1.5}',
        b'{"returncode": 0, "signal": null, "ts": "now"}',
        b"\xff\xfe{}",
        b"[" * 4000,
        b'{"returncode": 0, "signal": null, "ts": 1.5, "pad": "' + b"x" * 5000 + b'"}',
    ],
    ids=lambda content: repr(content[:24]),
)
def test_a_corrupt_report_reads_as_none(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "a.exit.json"
    path.write_bytes(content)
    assert read_exit_report(path) is None


def test_no_report_or_an_unreadable_one_reads_as_none(tmp_path: Path) -> None:
    assert read_exit_report(tmp_path / "missing.exit.json") is None
    assert read_exit_report(tmp_path) is None  # a directory
