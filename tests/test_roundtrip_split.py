"""The roundtrip in two, checked against the reference gateway's own stamps.

The harness splits each turn's roundtrip (end of speech → first reply audio) where the gateway's
part starts: ``client_tail_ms`` up to the last audio frame or end marker it handed to the socket,
``gateway_response_ms`` from then to the first reply audio. The reference gateway logs, per turn,
its own part: the utterance's end (its end marker's arrival, or its endpointer's decision) → the
reply's first message sent (``end_to_reply_ms``). Both clocks are the machine's monotonic clock,
so the two must nest: the harness's gateway part holds the gateway's own (the marker reaches the
gateway after we sent it, the reply reaches us after the gateway sent it), and holds none of the
client's tail.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict

import pytest
from conftest import run_locust, wait_until

pytestmark = pytest.mark.slow


def _turn_stamps(gateway) -> dict[str, list[tuple[str, float | None]]]:
    """Each session's turns, in order, by sessionId prefix: (what ended the utterance, its
    end_to_reply_ms or None when no reply went out)."""
    by_session: dict[str, list[tuple[str, float | None]]] = defaultdict(list)
    for line in gateway.log_text().splitlines():
        if not line.startswith("{"):
            continue
        event = json.loads(line)
        if event.get("event") == "turn":
            stamp = event.get("end_to_reply_ms")
            by_session[event["session"]].append((event["reason"], None if stamp in (None, "-") else float(stamp)))
    return by_session


def test_with_the_end_marker_the_split_nests_the_gateways_own_stamps(tmp_path, gateway_factory):
    """(Without a marker the microphone streams silence until the reply comes, and the gateway's
    part is what is left after its last frame: test_turn.py checks that case.)"""
    gateway = gateway_factory("--log-json")
    run = run_locust(tmp_path / "run", gateway.url, "--utterances", "kind:clean", "BasicUser",
                     users=2, spawn_rate=2, run_time="15s")
    with open(run.file("_turns.csv"), newline="", encoding="utf-8") as file:
        turns = list(csv.DictReader(file))
    assert sum(row["failure"] == "" for row in turns) >= 4, run.output[-2000:]
    stamps = wait_until(lambda: _turn_stamps(gateway) or None, 20, "the gateway's turn events")
    by_connection: dict[str, list[dict]] = defaultdict(list)
    for row in sorted(turns, key=lambda row: (row["connection_id"], int(row["turn_index"]))):
        by_connection[row["connection_id"]].append(row)
    checked = 0
    for connection_id, rows in by_connection.items():
        (session,) = [key for key in stamps if connection_id.startswith(key)]
        for row, (reason, gateway_ms) in zip(rows, stamps[session], strict=False):
            # Only turns the marker ended on the gateway: when its endpointer heard the clip's
            # trailing silence first, the gateway's part starts before our last frame went out.
            if row["failure"] != "" or reason != "marker" or gateway_ms is None:
                continue
            tail, response = float(row["client_tail_ms"]), float(row["gateway_response_ms"])
            roundtrip = float(row["roundtrip_ms"])
            assert tail + response == pytest.approx(roundtrip, abs=0.01)
            assert response >= gateway_ms - 0.1, (row, gateway_ms)  # ours holds the gateway's own part
            assert response < gateway_ms + tail, (row, gateway_ms)  # and none of the client's tail
            assert tail > 0  # the end marker left after the clip's trailing silence: the tail holds it
            checked += 1
    assert checked >= 4
