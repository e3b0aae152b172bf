"""Network faults between the harness and a gateway in a namespace of the test's own.

Each scenario gets a namespace (tests/netns.py: a veth pair and a private /30), the reference
gateway (``--fast-sink``) inside it, and a schedule; all run side by side:

* ``cut_3s``     the link goes down at 4 s for 3 s: connections survive, the ping spike shows
* ``cut_long``   the link goes down at 4 s and stays down past the run's end: the harness
                 declares the link dead after twice the ping interval, on its own
* ``delay_loss`` 50 ms more upstream delay (a proxy on loopback) and 5 % packet loss (nft in
                 the namespace): ping and roundtrip rise by the delay, no false timeouts
* ``bandwidth``  200 kbit/s (tc tbf), below the 256 kbit/s of real-time PCM16: the backlog is
                 measured (audio unsent at end of speech) and shows as roundtrip and ping; the
                 harness does not buffer without bound (RSS)
* ``blackhole``  SYNs dropped (nft): the connect times out (``connection_timeout``)
* ``baseline``   the same gateway setup without a fault, for comparison

Needs root (``ip netns``); marked ``netns``.
"""

from __future__ import annotations

import contextlib
import csv
import statistics
import threading
import time
from pathlib import Path

import pytest
from conftest import wait_until
from fault_proxy import DelayProxy
from fault_runs import check_invariant, failures, finish, read_turns, start_locust, users_with
from netns import Netns, requires_root

from analysis import metrics, readers

pytestmark = [pytest.mark.slow, pytest.mark.netns, requires_root]

# 2 x 3 s = 6 s of silence: a 3 s cut plus the TCP retransmission wait after it stays below
# (at the default 2 s interval, 4 s, a 3 s cut is sometimes declared dead)
PING_INTERVAL_MS = 3000
DELAY_MS = 50
COMMON = ("--tags", "basic", "--ping-interval-ms", str(PING_INTERVAL_MS))


def _watch_for(path: Path, failure: str, found: dict, timeout_s: float) -> None:
    """Note the time the first row with ``failure`` ('': a success) appears in a turns file (written per turn)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(FileNotFoundError):
            if any(row["failure"] == failure and (failure or row["success"] == "1") for row in read_turns(path)):
                found[failure] = time.monotonic()
                return
        time.sleep(0.02)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("network")
    figures: dict[str, dict] = {name: {} for name in
                                ("cut_3s", "cut_long", "delay_loss", "bandwidth", "blackhole", "baseline")}
    with contextlib.ExitStack() as stack:
        spaces = {name: stack.enter_context(Netns()) for name in figures}
        ports = {}
        for name, ns in spaces.items():
            if name != "blackhole":
                _process, ports[name] = ns.start_gateway("--fast-sink", log_path=folder / f"{name}-gateway.log")
        loss = spaces["delay_loss"]
        loss.nft(f"""table inet loss {{
            chain input {{ type filter hook input priority 0; policy accept;
                tcp dport {ports['delay_loss']} numgen random mod 100 < 5 drop
            }}
        }}""")
        spaces["blackhole"].nft("""table inet blackhole {
            chain input { type filter hook input priority 0; policy accept;
                tcp dport 7090 drop
            }
        }""")
        spaces["bandwidth"].tbf("200kbit")
        proxy = stack.enter_context(DelayProxy((loss.ns_ip, ports["delay_loss"]), upstream_delay_ms=DELAY_MS))

        def url(name):
            return f"ws://{spaces[name].ns_ip}:{ports[name]}"

        specs = {
            "cut_3s": (url("cut_3s"), 2, "13s", ()),
            # room for the cut (once every user has talked) and its detection 6-7 s later
            "cut_long": (url("cut_long"), 3, "20s", ()),
            "delay_loss": (f"ws://127.0.0.1:{proxy.port}", 2, "12s", ()),
            "bandwidth": (url("bandwidth"), 2, "12s", ()),
            "blackhole": (f"ws://{spaces['blackhole'].ns_ip}:7090", 2, "6s",
                          ("--connect-timeout-ms", "1000", "--max-retries", "1")),
            "baseline": (url("baseline"), 2, "12s", ()),
        }
        processes = {
            name: start_locust(folder / name, host, *COMMON, *extra, users=users, run_time=run_time)
            for name, (host, users, run_time, extra) in specs.items()
        }

        def schedule() -> None:
            # cut once every user of both runs has talked (waited for: a busy machine starts slowly)
            for name in ("cut_3s", "cut_long"):
                users = specs[name][1]
                wait_until(lambda name=name, users=users: len(users_with(folder / f"{name}_turns.csv", success=True))
                           == users, 60, f"{name}: every user's first turn")
            spaces["cut_3s"].link(False)
            spaces["cut_long"].link(False)
            cut_at = time.monotonic()
            figures["cut_long"]["cut_at"] = figures["cut_3s"]["cut_at"] = cut_at
            watcher = threading.Thread(target=_watch_for, args=(folder / "cut_long_turns.csv", "dead_link",
                                                                figures["cut_long"], 30.0))
            watcher.start()
            # The cut's length is the fault itself (3 s, under the 6 s a link may stay silent), so
            # this one sleep stays; cut_3s checks the cut really was shorter than that.
            time.sleep(max(0.0, cut_at + 3.0 - time.monotonic()))
            spaces["cut_3s"].link(True)
            figures["cut_3s"]["restored_at"] = time.monotonic()
            watcher.join()
            figures["cut_long"]["link_down_at_detection"] = True  # cut_long is restored only at teardown

        thread = threading.Thread(target=schedule, daemon=True)
        thread.start()
        results = {name: finish(process, timeout_s=90) for name, process in processes.items()}
        thread.join(30)
    return results, figures


def stats(run) -> dict:
    with open(run.file("_stats.csv"), newline="", encoding="utf-8") as file:
        return {(row["Type"], row["Name"]): row for row in csv.DictReader(file)}


def judged(rows):
    return [row for row in rows if row["failure"] != "run_stopped"]


def median(rows, column):
    return statistics.median(float(row[column]) for row in rows if row[column])


def test_a_3_second_link_cut_is_survived_and_shows_as_a_ping_spike(runs):
    results, figures = runs
    cut_s = figures["cut_3s"]["restored_at"] - figures["cut_3s"]["cut_at"]
    assert cut_s < 2 * PING_INTERVAL_MS / 1000 - 1, f"the cut lasted {cut_s:.1f} s: not the short cut this is about"
    run = results["cut_3s"]
    rows = judged(check_invariant(run))
    assert rows and all(row["success"] == "1" for row in rows), failures(rows)
    assert all(row["reconnections"] == "0" for row in rows)
    ping = stats(run)[("ping", "ping")]
    # the ping sent during the cut (one, at a 3 s interval) waits until the link is back
    assert float(ping["Max Response Time"]) > 150, ping
    print(f"\ncut_3s: turns {len(rows)}, ping max {float(ping['Max Response Time']):.0f} ms, "
          f"median {ping['Median Response Time']} ms")


def test_a_long_link_cut_is_detected_as_dead_link_within_twice_the_ping_interval(runs):
    results, figures = runs
    run = results["cut_long"]
    rows = check_invariant(run)
    dead = [row for row in rows if row["failure"] == "dead_link"]
    assert dead, failures(rows)
    assert all("dead link: nothing received for" in row["failure_detail"] for row in dead)
    detected_after_s = figures["cut_long"]["dead_link"] - figures["cut_long"]["cut_at"]
    # Silence counts from the last frame received, which came at or before the cut, so the rule
    # (2 x the ping interval) puts detection at most 6 s after it. The bound adds generous slack
    # for a loaded machine: what it guards against is waiting for TCP, which takes minutes.
    assert detected_after_s <= 2 * PING_INTERVAL_MS / 1000 + 4.0, detected_after_s
    # no turn hangs waiting for TCP: every later turn failed fast to connect (the link is still down)
    assert set(failures(rows)) <= {"dead_link", "connection_timeout", "connection_gave_up", "run_stopped"}
    print(f"\ncut_long: dead link recorded {detected_after_s:.2f} s after the cut; {dict(failures(rows))}")


def test_50ms_delay_and_5pct_loss_raise_ping_and_roundtrip_by_the_delay_without_false_timeouts(runs):
    results, _ = runs
    rows = judged(check_invariant(results["delay_loss"]))
    base = judged(check_invariant(results["baseline"]))
    assert rows and all(row["success"] == "1" for row in rows), failures(rows)
    ping_rise = median(rows, "ping_ms") - median(base, "ping_ms")
    roundtrip_rise = median(rows, "roundtrip_ms") - median(base, "roundtrip_ms")
    # The delay shows (it cannot be less); the upper bounds are generous, against a harness that
    # waits or times out, not a measure of its accuracy: bench/'s truth benchmark measures that.
    assert DELAY_MS * 0.9 <= ping_rise <= DELAY_MS + 250, ping_rise
    assert DELAY_MS * 0.8 <= roundtrip_rise <= DELAY_MS + 400, roundtrip_rise
    assert median(rows, "uplink_backlog_ms") < 64  # delay and loss are not a slow uplink
    print(f"\ndelay_loss: turns {len(rows)}, ping +{ping_rise:.1f} ms, roundtrip +{roundtrip_rise:.1f} ms "
          f"(baseline ping {median(base, 'ping_ms'):.1f}, roundtrip {median(base, 'roundtrip_ms'):.1f})")


def test_bandwidth_below_real_time_shows_as_a_backlog_with_bounded_memory(runs):
    """The kernel's send buffer (autotuned, megabytes) absorbs a 1.5 s utterance, so the frames
    leave the harness on time (low send lateness). The backlog is measured where it is: audio
    still unsent in the kernel at end of speech (``uplink_backlog_ms``), which the analysis
    calls a backlogged uplink; it also shows as roundtrip and ping (the ping waits behind the
    audio). Memory stays flat: nothing queues in the harness."""
    results, _ = runs
    run, base = results["bandwidth"], results["baseline"]
    rows = judged(check_invariant(run))
    base_rows = judged(read_turns(base.file("_turns.csv")))
    assert rows and all(row["success"] == "1" for row in rows), failures(rows)
    roundtrip_rise = median(rows, "roundtrip_ms") - median(base_rows, "roundtrip_ms")
    assert roundtrip_rise > 500, roundtrip_rise
    backlog_ms, base_backlog_ms = median(rows, "uplink_backlog_ms"), median(base_rows, "uplink_backlog_ms")
    assert backlog_ms > 200, backlog_ms
    assert base_backlog_ms < 64, base_backlog_ms  # a link that keeps up: under one frame queued
    # the queued audio is part of the roundtrip's rise, not more than it (slack: two medians of a
    # loaded machine's timings)
    assert backlog_ms < roundtrip_rise + 300, (backlog_ms, roundtrip_rise)
    summary = metrics.summarize(readers.read_run(str(run.prefix)))
    assert summary.uplink_backlog.status == "backlogged", summary.uplink_backlog
    assert any(text.startswith("uplink slower") for text in summary.verdict.warnings)
    worst_ms = max(float(row["send_lateness_max_ms"]) for row in rows if row["send_lateness_max_ms"])
    assert run.max_rss_mb < base.max_rss_mb + 15, (run.max_rss_mb, base.max_rss_mb)
    print(f"\nbandwidth: turns {len(rows)}, roundtrip +{roundtrip_rise:.0f} ms, uplink backlog median "
          f"{backlog_ms:.0f} ms (baseline {base_backlog_ms:.0f} ms), ping median "
          f"{median(rows, 'ping_ms'):.0f} ms, send lateness max {worst_ms:.1f} ms, "
          f"RSS {run.max_rss_mb:.0f} MB (baseline {base.max_rss_mb:.0f} MB)")


def test_a_blackholed_address_is_a_connection_timeout(runs):
    results, _ = runs
    run = results["blackhole"]
    rows = check_invariant(run)
    counts = failures(rows)
    assert counts["connection_timeout"] == 2 * 2 - 2 and counts["connection_gave_up"] == 2, counts
    assert "connection timed out" in run.output
