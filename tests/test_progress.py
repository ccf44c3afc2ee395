"""Progress reaches a log as well as a terminal: timestamped lines every 10 % on stderr."""

from __future__ import annotations

import io
import re

import pytest

from rlscale.progress import ProgressBar, ProgressLog

LINE = re.compile(r"^\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\] tuning: (\d+)/40 \((\d+)%\), "
                  r"(\d+ s|[\d.]+ min) elapsed(, about .* left)?$")


def test_a_line_at_the_start_every_tenth_and_at_the_end_with_time_and_eta() -> None:
    clock = [1_790_000_000.0]
    stream = io.StringIO()
    log = ProgressLog("tuning", 40, stream=stream, now=lambda: clock[0])
    for _ in range(40):
        clock[0] += 6.0
        log.advance()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 11, lines
    done = [int(LINE.match(line).group(1)) for line in lines]  # type: ignore[union-attr]
    assert done == [0, 4, 8, 12, 16, 20, 24, 28, 32, 36, 40]
    assert lines[0].startswith("[2026-09-21T")
    assert lines[5].endswith("tuning: 20/40 (50%), 2.0 min elapsed, about 2.0 min left")
    assert lines[-1].endswith("tuning: 40/40 (100%), 4.0 min elapsed")


def test_big_jumps_write_one_line_and_nothing_repeats() -> None:
    stream = io.StringIO()
    log = ProgressLog("PPO steps", 1000, stream=stream, now=lambda: 0.0)
    for done in (5, 50, 99, 350, 350, 1000, 1200):
        log.update(done)
    shares = re.findall(r"\((\d+)%\)", stream.getvalue())
    assert shares == ["0", "35", "100"]  # 9.9 % is not yet 10 %


def test_the_bar_writes_lines_to_stderr_when_it_is_not_a_terminal(
        capsys: pytest.CaptureFixture[str]) -> None:
    with ProgressBar(True, "evaluating", 10) as advance:
        for _ in range(10):
            advance()
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 11
    assert err[-1].split("] ")[1].startswith("evaluating: 10/10 (100%)")
    with ProgressBar(False, "quiet", 10) as advance:
        advance()
    assert capsys.readouterr().err == ""
