"""Helpers of the fault tests: Locust runs started side by side, and the turn invariant.

The fault tests run many short Locust runs; started together (``run_many``) they take the
time of the slowest instead of the sum. ``finish`` waits with ``os.wait4`` so each run also
reports its own peak RSS (``ru_maxrss``), the figure that shows memory stayed bounded.

``check_invariant`` is the rule of issue 8, read from the files a user reads: every started
turn has exactly one row (``PREFIX_run.json``'s independent count of starts equals the rows),
every row is a success or a failure with a known diagnosis, and no traceback was printed.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from conftest import LOCUST, LOCUSTFILE, ROOT, STOP_AFTER_TURNS, stop_after_turns_env

from voiceharness import diagnoses


@dataclass
class FaultRun:
    prefix: Path
    returncode: int
    output: str
    max_rss_mb: float
    wall_s: float
    ended_at: float  # wall clock (time.time()) when the run was seen to have ended

    def file(self, suffix: str) -> Path:
        return Path(f"{self.prefix}{suffix}")


def start_locust(prefix: Path, host: str, *args: str, users: int = 1, spawn_rate: float = 10,
                 run_time: str = "6s", env: dict | None = None, command: list[str] | None = None,
                 stop_after_turns: int = 0):
    """Start a headless run of the voice locustfile; its output goes to PREFIX.out.

    ``stop_after_turns=N``: the run ends once N turns ended by themselves (conftest.run_locust's
    option of the same name); ``run_time`` then only guards against a hang."""
    env = {**(env or {}), **stop_after_turns_env(stop_after_turns)}
    locustfiles = f"{LOCUSTFILE},{STOP_AFTER_TURNS}" if stop_after_turns else LOCUSTFILE
    command = command or [
        LOCUST, "-f", locustfiles, "--host", host, "--headless", "-u", str(users), "-r", str(spawn_rate),
        "-t", run_time, "--csv", str(prefix), "--only-summary",
        # Fault tests want turns in flight when the fault strikes, not people pausing between them.
        "--think-time-ms", "100-300", *args,
    ]
    with open(f"{prefix}.out", "w", encoding="utf-8") as out:  # the child keeps its own descriptor
        process = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                   env={**os.environ, **env})
    process.started_at = time.monotonic()  # type: ignore[attr-defined]
    process.prefix = prefix  # type: ignore[attr-defined]
    return process


def finish(process, timeout_s: float = 120) -> FaultRun:
    """Wait for a run started by ``start_locust``; kill it if it overstays ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            process.kill()
            pid, status, usage = os.wait4(process.pid, 0)
            break
        time.sleep(0.05)
    process.returncode = os.waitstatus_to_exitcode(status)
    prefix = process.prefix
    output = Path(f"{prefix}.out").read_text(encoding="utf-8", errors="replace")
    return FaultRun(prefix, process.returncode, output, usage.ru_maxrss / 1024,
                    time.monotonic() - process.started_at, time.time())


def run_many(specs: dict[str, dict], timeout_s: float = 120) -> dict[str, FaultRun]:
    """Start every run of ``specs`` at once and wait for all.

    A spec is ``start_locust``'s keyword arguments, with its positional ``*args`` under "args".
    """
    processes = {}
    for name, spec in specs.items():
        spec = dict(spec)
        args = spec.pop("args", ())
        processes[name] = start_locust(spec.pop("prefix"), spec.pop("host"), *args, **spec)
    return {name: finish(process, timeout_s) for name, process in processes.items()}


def read_turns(path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def rows_so_far(path) -> list[dict[str, str]]:
    """The complete rows of a turns file a run is still writing (none before it exists)."""
    try:
        with open(path, newline="", encoding="utf-8") as file:
            # a line caught half-written has missing cells (None): it is read next time
            return [row for row in csv.DictReader(file) if None not in row.values()]
    except FileNotFoundError:
        return []


def users_with(path, *, success: bool = False, failure: str = "", at_least: int = 1) -> set[str]:
    """Users with ``at_least`` rows so far that succeeded (``success``) or failed with ``failure``.

    What fault schedules wait on instead of fixed sleeps: "every user has talked", "every user
    was refused twice".
    """
    counts = Counter(
        row["user"] for row in rows_so_far(path) if (row["success"] == "1" if success else row["failure"] == failure)
    )
    return {user for user, count in counts.items() if count >= at_least}


def failures(rows) -> Counter:
    return Counter(row["failure"] for row in rows if row["success"] != "1")


def check_invariant(run: FaultRun, *, complete: bool | None = True) -> list[dict[str, str]]:
    """Started = succeeded + failed, each failure diagnosed; returns the rows."""
    rows = read_turns(run.file("_turns.csv"))
    for row in rows:
        if row["success"] == "1":
            assert row["failure"] == "", row
        else:
            assert row["failure"] in diagnoses.DIAGNOSES, row
    status = json.loads(run.file("_run.json").read_text())
    assert status["state"] == "finished", status
    assert status["turns_started"] == status["turns_recorded"] == len(rows), (status, len(rows))
    if complete is not None:
        assert status["complete"] is complete, status
    assert "Traceback" not in run.output, run.output[-3000:]
    return rows
