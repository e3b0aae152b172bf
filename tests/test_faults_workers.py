"""A worker of a distributed run shuts down mid-run: its turns still reach the master, counted.

A master and two workers against one reference gateway; one worker gets SIGTERM mid-run, once
the master has three turns from each worker (waited for, not timed). Its users stop, record their turns in progress as ``run_stopped`` and the worker
ships its records and its count of started turns to the master before it exits. The master's
turns file then holds every turn of both workers: started (summed over the workers) = rows.
"""

from __future__ import annotations

import signal
from collections import Counter

import pytest
from conftest import LOCUST, LOCUSTFILE, free_port, wait_until
from fault_runs import check_invariant, failures, finish, rows_so_far, start_locust

pytestmark = pytest.mark.slow


def test_a_worker_stopped_mid_run_loses_no_turn(tmp_path, gateway_factory):
    gateway = gateway_factory("--fast-sink")
    prefix = tmp_path / "dist"
    port = str(free_port())
    common = [LOCUST, "-f", LOCUSTFILE, "--host", gateway.url]
    master = start_locust(prefix, gateway.url, command=[
        *common, "--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", port, "--headless",
        "-u", "6", "-r", "6", "-t", "15s", "--expect-workers", "2", "--csv", str(prefix), "--only-summary",
        "--tags", "basic",
    ])
    workers = [
        start_locust(tmp_path / f"worker{i}", gateway.url, command=[
            *common, "--worker", "--master-host", "127.0.0.1", "--master-port", port])
        for i in range(2)
    ]

    def three_turns_from_each_worker() -> bool:
        per_worker = Counter(row["worker"] for row in rows_so_far(f"{prefix}_turns.csv"))
        return len(per_worker) == 2 and min(per_worker.values()) >= 3

    wait_until(three_turns_from_each_worker, 60, "three turns from each worker at the master")
    assert master.poll() is None, "the worker must stop mid-run"
    workers[0].send_signal(signal.SIGTERM)
    stopped_worker = finish(workers[0], timeout_s=30)
    run = finish(master, timeout_s=60)
    other = finish(workers[1], timeout_s=30)
    rows = check_invariant(run, complete=None)
    assert len({row["worker"] for row in rows}) == 2, failures(rows)
    by_worker = {w: [r for r in rows if r["worker"] == w] for w in {row["worker"] for row in rows}}
    assert all(len(worker_rows) >= 3 for worker_rows in by_worker.values())
    for output in (stopped_worker.output, other.output):
        assert "Traceback" not in output
    print(f"\nworkers: rows {len(rows)} per worker {[len(v) for v in by_worker.values()]} {dict(failures(rows))}")
