"""voiceharness.live_stats: the Voice tab's running tallies."""

from voiceharness.live_stats import LiveStats


def _record(**fields):
    base = {"utterance_id": "greeting_1", "expected_intent": "GREETING", "intent": "GREETING", "failure": "",
            "roundtrip_ms": 80.0, "ping_ms": 3.0, "chunks_sent": 60, "reconnections": 0}
    base.update(fields)
    return base


def _row(rows, section, item_prefix):
    return next(r for r in rows if r["section"] == section and str(r["item"]).startswith(item_prefix))


def test_bands_intents_and_diagnoses_are_counted():
    live = LiveStats()
    live.add(_record())
    live.add(_record(roundtrip_ms=500.0, ping_ms=150.0, chunks_sent=20, reconnections=2))
    live.add(_record(intent="ECHO", failure="wrong_intent", failure_detail="expected GREETING, got ECHO",
                     roundtrip_ms=1500.0))
    live.add(_record(failure="run_stopped", roundtrip_ms=""))
    rows = live.rows()
    assert _row(rows, "Turns", "succeeded")["turns"] == "2 / 3"
    assert _row(rows, "Roundtrip", "excellent")["turns"] == 1
    assert _row(rows, "Roundtrip", "good")["turns"] == 1  # 500 ms is good
    assert _row(rows, "Roundtrip", "bad")["turns"] == 1
    assert _row(rows, "Latency (ping)", "average")["turns"] == 1
    assert _row(rows, "Audio chunks sent", "few")["turns"] == 1
    assert _row(rows, "Reconnections", "minor")["turns"] == 1
    accuracy = _row(rows, "Intent accuracy", "greeting_1")
    assert accuracy["turns"] == "2 / 3"
    diagnosis = _row(rows, "Diagnoses", "No audio response")
    assert diagnosis["turns"] == 1 and "expected GREETING, got ECHO" in diagnosis["detail"]


def test_reset_forgets_everything():
    live = LiveStats()
    live.add(_record())
    live.reset()
    assert _row(live.rows(), "Turns", "succeeded")["turns"] == "0 / 0"
