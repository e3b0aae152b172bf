"""analysis.progress: shown for large files on a terminal or when forced, never otherwise."""

import io

from analysis import progress


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_small_file_on_a_terminal_shows_nothing():
    assert not progress.wanted("auto", 1000, Terminal())


def test_large_file_shows_only_on_a_terminal():
    assert progress.wanted("auto", progress.LARGE_FILE_BYTES, Terminal())
    assert not progress.wanted("auto", progress.LARGE_FILE_BYTES, io.StringIO())


def test_forced_and_never():
    assert progress.wanted("always", 1, io.StringIO())
    assert not progress.wanted("never", 10**12, Terminal())


def test_forced_progress_off_a_terminal_prints_one_line_per_tenth():
    stream = io.StringIO()
    meter = progress.Progress("run_turns.csv", 1000, mode="always", stream=stream)
    for done in range(0, 1001, 50):
        meter.update(done)
    meter.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 12 and "100%" in lines[-2] and "done in" in lines[-1]


def test_progress_on_a_terminal_redraws_one_line():
    stream = Terminal()
    meter = progress.Progress("x.csv", 100, mode="always", stream=stream)
    meter.update(100)
    meter.close()
    assert (
        stream.getvalue().startswith("\ranalysis: reading x.csv: 100%") and stream.getvalue().count("\n") == 1
    )


def test_disabled_progress_writes_nothing():
    stream = io.StringIO()
    meter = progress.Progress("x.csv", 100, mode="never", stream=stream)
    meter.update(50)
    meter.close()
    assert stream.getvalue() == ""
