"""`.env` parsing: accepted line forms, quoting, comments and problems that never show values."""

from __future__ import annotations

import pytest

from rnix.store.dotenv import parse_dotenv


def values(text: str) -> dict[str, str]:
    parsed, problems = parse_dotenv(text, ".env")
    assert problems == ()
    return parsed


def test_key_value_lines_comments_and_blanks() -> None:
    text = "# a comment\n\nA=1\n  B = two  \n   # indented comment\nexport C=3\nexport\tD=4\n"
    assert values(text) == {"A": "1", "B": "two", "C": "3", "D": "4"}


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("K=", ""),
        ("K=plain value", "plain value"),
        ("K=value # comment", "value"),
        ("K=value\t#comment", "value"),
        ("K= #only a comment", ""),
        ("K=a#b", "a#b"),
        ("K=#not-a-comment", "#not-a-comment"),
        ("K=a=b=c", "a=b=c"),
        ("K='single $HOME \\n # kept'", "single $HOME \\n # kept"),
        ("K='quoted' # comment", "quoted"),
        ('K="line\\nnext"', "line\nnext"),
        ('K="tab\\there"', "tab\there"),
        ('K="say \\"hi\\""', 'say "hi"'),
        ('K="back\\\\slash"', "back\\slash"),
        ('K="other \\q escape"', "other \\q escape"),
        ('K="# not a comment" # a comment', "# not a comment"),
        ('K="  padded  "', "  padded  "),
        ("K=${OTHER}", "${OTHER}"),
    ],
)
def test_values(line: str, expected: str) -> None:
    assert values(line + "\n") == {"K": expected}


def test_later_lines_win() -> None:
    assert values("K=1\nK=2\n") == {"K": "2"}


def test_windows_line_endings() -> None:
    assert values("A=1\r\nB='x'\r\n") == {"A": "1", "B": "x"}


@pytest.mark.parametrize("line", ["JUSTAKEY", "1KEY=x", "BAD-KEY=x", "=value", "export", "export K", "K Y=1"])
def test_invalid_lines_are_problems_with_their_line(line: str) -> None:
    parsed, problems = parse_dotenv(f"GOOD=1\n\n{line}\nALSO=2\n", "proj/.env")
    assert parsed == {"GOOD": "1", "ALSO": "2"}
    assert [(p.file, p.line, p.key, p.message) for p in problems] == [
        ("proj/.env", 3, "", "invalid line: expected KEY=VALUE")
    ]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("K='unclosed", "invalid line: the single quote is not closed"),
        ('K="unclosed', "invalid line: the double quote is not closed"),
        ("K='a' b", "invalid line: unexpected text after the closing quote"),
        ('K="a"b', "invalid line: unexpected text after the closing quote"),
    ],
)
def test_bad_quoting_is_a_problem(line: str, message: str) -> None:
    parsed, problems = parse_dotenv(f"{line}\n", ".env")
    assert parsed == {}
    assert [(p.line, p.message) for p in problems] == [(1, message)]


def test_problems_never_contain_values() -> None:
    secret = "hunter2-secret"
    _, problems = parse_dotenv(f"TOKEN='{secret}\nOTHER={secret} {secret}=\nnope {secret}\n", ".env")
    assert len(problems) == 2
    assert all(secret not in str(problem) for problem in problems)
