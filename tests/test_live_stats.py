"""voiceharness.live_stats: the Voice tab's running tallies."""

from voiceharness.live_stats import LiveStats, MsHistogram


def _record(**fields):
    base = {"utterance_id": "greeting_1", "expected_intent": "GREETING", "intent": "GREETING", "failure": "",
            "roundtrip_ms": 80.0, "ping_ms": 3.0, "chunks_sent": 60, "reconnections": 0, "pace": "realtime",
            "intent_source": "metadata"}
    base.update(fields)
    return base


def _row(rows, section, item_prefix):
    return next(r for r in rows if r["section"] == section and str(r["item"]).startswith(item_prefix))


def _sections(rows):
    return {r["section"] for r in rows}


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


def test_fast_turns_get_their_own_row_and_stay_out_of_the_bands_and_accuracy():
    live = LiveStats()
    live.add(_record(roundtrip_ms=320.0))
    for roundtrip in (40.0, 60.0, 80.0):
        live.add(_record(pace="fast", roundtrip_ms=roundtrip))
    live.add(_record(pace="fast", roundtrip_ms="", intent="", intent_source="", failure="no_intent"))
    rows = live.rows()
    turns = _row(rows, "Turns", "succeeded")
    assert turns["turns"] == "1 / 1" and "4 fast-paced, shown apart" in turns["detail"]
    assert _row(rows, "Roundtrip", "excellent")["turns"] == 0 and _row(rows, "Roundtrip", "good")["turns"] == 1
    assert _row(rows, "Intent accuracy", "greeting_1")["turns"] == "1 / 1"
    fast = _row(rows, "Fast-paced turns (apart)", "succeeded")
    assert fast["turns"] == "3 / 4" and "p50 60 ms" in fast["detail"] and "no_intent 1" in fast["detail"]
    assert "not banded" in fast["detail"]
    assert "Diagnoses" not in _sections(rows)  # the only failure was a fast turn's


def test_intent_source_the_judges_agreement_and_unjudged_turns():
    live = LiveStats()
    live.add(_record())
    live.add(_record(intent_source="metadata", audio_intent="GREETING"))
    live.add(_record(intent_source="metadata", audio_intent="UNKNOWN"))
    live.add(_record(intent_source="audio", audio_intent="GREETING"))
    live.add(_record(intent="", intent_source=""))  # not sampled for judging
    live.add(_record(intent="", intent_source="", failure="unjudged", failure_detail="heard 'blah'"))
    live.add(_record(intent="", intent_source="", pace="realtime", expected_intent="ECHO", utterance_id="echo_1",
                     failure="silent_reply"))
    rows = live.rows()
    assert _row(rows, "Intent source", "gateway metadata")["turns"] == 3
    assert _row(rows, "Intent source", "reply audio")["turns"] == 1
    not_judged = _row(rows, "Intent source", "not judged")
    assert not_judged["turns"] == 3
    assert "not sampled for judging 1" in not_judged["detail"] and "unjudged 1" in not_judged["detail"]
    agreement = _row(rows, "Intent source", "judge agrees with metadata")
    assert agreement["turns"] == "1 / 2" and agreement["share"] == "50.0%"
    assert _row(rows, "Intent accuracy", "greeting_1")["turns"] == "4 / 4"  # judged turns only
    assert not any(r["item"] == "echo_1" for r in rows)
    silent = _row(rows, "Diagnoses", "No audio response: the reply audio is digital silence")
    assert "silent WAV" in silent["detail"] and "fix: check the TTS service" in silent["detail"]
    assert "could not be classified" in _row(rows, "Diagnoses", "No audio response: the reply audio could")["item"]


def test_audible_reply_and_playback_stalls_rows():
    live = LiveStats()
    for roundtrip, audible, stalls in ((100.0, 180.0, 0), (200.0, 290.0, 2), (300.0, 400.0, "")):
        live.add(_record(roundtrip_ms=roundtrip, audible_ms=audible, playback_stalls=stalls))
    rows = live.rows()
    audible = _row(rows, "Time to audible reply", "end of speech")
    assert audible["turns"] == 3 and "max 400 ms" in audible["detail"] and "not banded" in audible["item"]
    assert "after the first reply byte: p50 90 ms" in audible["detail"]
    assert sum(r["turns"] for r in rows if r["section"] == "Roundtrip") == 3  # bands of the roundtrip only
    assert _row(rows, "Replies", "playback stalls")["turns"] == "1 / 2"


def test_harness_errors_are_apart_with_the_advice_to_read_the_traceback():
    live = LiveStats()
    live.add(_record())
    live.add(_record(failure="harness_error", failure_detail="TypeError: boom", roundtrip_ms=""))
    rows = live.rows()
    assert _row(rows, "Turns", "succeeded")["turns"] == "1 / 1"
    assert "1 harness error(s), shown apart" in _row(rows, "Turns", "succeeded")["detail"]
    errors = _row(rows, "Harness errors (apart)", "Harness error")
    assert errors["turns"] == 1 and "TypeError: boom" in errors["detail"]
    assert "read the traceback" in errors["detail"]
    assert "Diagnoses" not in _sections(rows)


def test_the_histogram_gives_percentiles_within_ten_milliseconds():
    histogram = MsHistogram()
    for value in range(1, 1001):
        histogram.add(float(value))
    assert abs(histogram.percentile(50) - 500) < 10 and abs(histogram.percentile(95) - 950) < 10
    assert histogram.percentile(100) == 1000.0 and MsHistogram().percentile(50) is None
    histogram.add(45_000.0)  # beyond the last bin: still counted, and the max is exact
    assert histogram.max_ms == 45_000.0 and histogram.percentile(100) == 45_000.0


def test_turns_on_network_profiles_get_a_row_per_profile_and_others_none():
    stats = LiveStats()
    for i in range(10):
        slow = i % 2 == 0
        stats.add({"roundtrip_ms": 1800.0 if slow else 300.0, "ping_ms": 320.0 if slow else 30.0,
                   "uplink_backlog_ms": 600.0 if slow else 0.0, "network_profile": "3g" if slow else "wifi",
                   "failure": "gateway_timeout" if i == 0 else "", "chunks_sent": 20, "reconnections": 0})
    stats.add({"roundtrip_ms": 250.0, "ping_ms": 1.0, "chunks_sent": 20, "reconnections": 0})  # no profile
    rows = [row for row in stats.rows() if row["section"] == "By network profile"]
    assert [row["item"] for row in rows] == ["3g", "wifi"]
    assert rows[0]["turns"] == "4 / 5" and rows[1]["turns"] == "5 / 5"
    assert "roundtrip p50 1800 ms" in rows[0]["detail"] and "uplink backlog p50 600 ms" in rows[0]["detail"]
    assert "roundtrip p50 300 ms" in rows[1]["detail"]
    plain = LiveStats()
    plain.add({"roundtrip_ms": 250.0, "ping_ms": 1.0})
    assert not [row for row in plain.rows() if row["section"] == "By network profile"]
