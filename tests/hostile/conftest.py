"""Shared checks of the hostile-input suite: how a clean refusal looks.

A clean refusal is the exit code asked for and, on stderr, one ``zoo: error: ...`` line
(after the command's usage line for a malformed command line): no traceback, no C++
stack, and at most a short excerpt of the offending input.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis.configuration import set_hypothesis_home_dir

import zoo.cli

# Hypothesis keeps a cache of its own; inside pytest's (ignored) cache, not the checkout.
set_hypothesis_home_dir(Path(__file__).resolve().parents[2] / ".pytest_cache" / "hypothesis")

MAX_ERROR_CHARS = 600  # one sentence, a path and an excerpt; never a whole file
NOISE = ("Traceback", "Exception raised from", "frame #", 'File "')


def check_refusal(code: int, err: str, codes: tuple[int, ...] = (2,)) -> str:
    """Assert that ``(code, err)`` is a clean refusal with one of ``codes``; return the
    error line."""
    assert code in codes, (code, err[-2000:])
    for noise in NOISE:
        assert noise not in err, err[-2000:]
    # Lines as a terminal shows them (str.splitlines would also split at \x1c-\x1e).
    lines = [line for line in re.split(r"\r\n|\r|\n", err)
             if line.strip() and not line.startswith("zoo: warning")]
    if lines and lines[0].startswith("usage:"):  # the command's usage, maybe wrapped
        lines = lines[1:]
        while lines and lines[0].startswith(" "):
            lines = lines[1:]
    assert len(lines) == 1 and lines[0].startswith("zoo: error: "), err[-2000:]
    assert len(lines[0]) <= MAX_ERROR_CHARS, lines[0][:2000]
    return lines[0]


def check_outcome(code: int, err: str) -> None:
    """A command on hostile input either succeeded or refused cleanly (exit 2)."""
    if code != 0:
        check_refusal(code, err)


@pytest.fixture
def zoo_main(capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """``zoo ARGS`` in this process: ``(exit code, stdout, stderr)``."""

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()  # what an earlier example of a property printed
        try:
            code = zoo.cli.main(list(args))
        except SystemExit as e:  # argparse's own errors exit (2) from inside main
            code = e.code if isinstance(e.code, int) else 1
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def refusal() -> Callable[..., str]:
    """:func:`check_refusal` for the tests of this folder."""
    return check_refusal


@pytest.fixture
def outcome() -> Callable[[int, str], None]:
    """:func:`check_outcome` for the tests of this folder."""
    return check_outcome


def temp_files_under(folder: Path) -> list[str]:
    """Temporary files (``.part``, ``.tmp``) left anywhere under ``folder``."""
    return sorted(str(p) for p in folder.rglob("*") if re.search(r"\.(part|tmp)$", p.name))


@pytest.fixture
def leftovers() -> Callable[..., list[str]]:
    """:func:`temp_files_under` for the tests of this folder."""
    return temp_files_under
