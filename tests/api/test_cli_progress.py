"""The command line's progress of a running job: plain lines where stderr is no terminal (one at
the first counts, one every interval, one at the end), rich's live line on a terminal."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from api.cli_common import JobProgress
from tests.api.test_dashboard import until

LINE = re.compile(r"job 7: (?P<what>.+), (?P<seconds>\d+\.\d) s")
COUNTS = {"nodes": 9, "minima": 4, "rides": 12, "branch_points": 1, "outstanding": 3, "hvps": 1064}
AT_THE_END = COUNTS | {"rides": 16, "outstanding": 0, "hvps": 1500}


def plain(output: io.StringIO) -> list[re.Match[str]]:
    """The progress lines written so far, each parsed (a line that does not parse fails)."""
    lines = output.getvalue().splitlines()
    parsed = [LINE.fullmatch(line) for line in lines]
    assert all(parsed), lines
    return parsed


def pipe() -> tuple[Console, io.StringIO]:
    output = io.StringIO()
    return Console(file=output, force_terminal=False, width=60), output


def test_off_a_terminal_the_first_counts_and_the_last_are_printed_at_once():
    console, output = pipe()
    with JobProgress(7, 10**6, console) as progress:
        progress.update(COUNTS)
        assert len(plain(output)) == 1  # at once, not at the next interval
        progress.update(COUNTS | {"rides": 13})  # within the interval: no line
        progress.update(AT_THE_END)
        assert len(plain(output)) == 1
    first, last = plain(output)
    assert first["what"] == "9 points, 4 minima, 12 rides, 1 branch points, 3 to go, 1,064 HVPs"
    assert last["what"] == "9 points, 4 minima, 16 rides, 1 branch points, 0 to go, 1,500 HVPs"
    assert float(first["seconds"]) <= float(last["seconds"])


def test_off_a_terminal_a_line_comes_every_interval_even_while_nothing_changes():
    console, output = pipe()
    with JobProgress(7, 0.01, console) as progress:
        until(lambda: len(plain(output)) >= 2, every=0.01)  # before any counts: still a line
        progress.update(COUNTS)
        before = len(plain(output))
        until(lambda: len(plain(output)) >= before + 3, every=0.01)
    lines = plain(output)
    assert {line["what"] for line in lines[:2]} == {"starting"}
    counted = "9 points, 4 minima, 12 rides, 1 branch points, 3 to go, 1,064 HVPs"
    assert lines[before]["what"] == lines[-1]["what"] == counted
    seconds = [float(line["seconds"]) for line in lines]
    assert seconds == sorted(seconds) and seconds[-1] > 0


def test_a_job_that_fails_gets_no_last_line():
    console, output = pipe()
    with pytest.raises(RuntimeError), JobProgress(7, 10**6, console) as progress:
        progress.update(COUNTS)
        raise RuntimeError("the job failed")
    assert len(plain(output)) == 1


def test_on_a_terminal_the_live_line_replaces_the_plain_lines():
    output = io.StringIO()
    console = Console(file=output, force_terminal=True, width=120)
    with JobProgress(7, 0.01, console) as progress:
        progress.update(COUNTS)
    text = output.getvalue()
    assert "job 7: 9 points, 4 minima, 12 rides" in text  # drawn by the live display
    assert not re.search(r"HVPs, \d+\.\d s", text)  # and no plain line
