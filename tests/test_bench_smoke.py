"""The benchmarks still run, and their parts do what the tables claim.

Tiny versions of each benchmark (``python -m bench X --smoke``) are checked for the fields
and sane values of their result files — never for timing goals (CI machines are noisy) —
and the pieces the figures rest on are checked on their own: the baseline clients' reply
parser, the sink's speech-end stamps over a real socket, the spread and merge arithmetic,
the matching of harness turns with the sink's.
"""

from __future__ import annotations

import csv
import json
import math
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import baseline_raw, capacity, common, sink, truth
from bench.baseline_stream import PreframedCorpus, StreamState
from voiceharness import framing

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
CLIENTS = {"harness", "asyncio_fair", "asyncio_naive", "raw"}


def _run(benchmark: str, timeout_s: float, *extra: str) -> None:
    completed = subprocess.run([sys.executable, "-m", "bench", benchmark, "--smoke", *extra], cwd=ROOT,
                               capture_output=True, text=True, timeout=timeout_s, check=False)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]


def _result(name: str) -> dict:
    return json.loads((RESULTS / f"{name}.json").read_text())


def _finite(value) -> bool:
    return isinstance(value, int | float) and not math.isnan(value)


# -- the parts


def test_spread_gives_median_min_max_and_ignores_what_is_not_a_number():
    assert common.spread([3.0, 1.0, 2.0, math.nan, None]) == {"median": 2.0, "min": 1.0, "max": 3.0, "n": 3}
    assert common.spread([4, 1, 3, 2])["median"] == 2.5
    empty = common.spread([])
    assert empty["n"] == 0 and math.isnan(empty["median"])


def test_lateness_of_several_processes_merges_per_second():
    one = {"pid": 1, "seconds": {"10": {"frames": 3, "max_ms": 2.0, "hist": {"5": 2, "20": 1}}}, "streams_max": 4}
    two = {"pid": 2, "seconds": {"10": {"frames": 1, "max_ms": 7.5, "hist": {"5": 1}},
                                 "11": {"frames": 2, "max_ms": 1.0, "hist": {"1": 2}}}, "streams_max": 6}
    merged = capacity.merge_stats([one, two])
    assert merged["seconds"]["10"] == {"frames": 4, "max_ms": 7.5, "hist": {"5": 3, "20": 1}}
    assert merged["seconds"]["11"]["frames"] == 2 and merged["streams_max"] == 10


def test_the_strict_capacity_definition_names_every_rule_it_fails():
    ok = {"lateness_p99_ms": 4.9, "achieved_ratio": 0.995, "cpu_percent_max_process": 69.0, "failed_turns": 0}
    assert capacity._verdict(ok) == (True, "")
    met, why = capacity._verdict({**ok, "lateness_p99_ms": 5.1, "achieved_ratio": 0.97, "cpu_percent_max_process": 75.0})
    assert not met and "p99" in why and "97.0 %" in why and "CPU 75 %" in why
    assert not capacity._verdict({**ok, "missing_processes": 1})[0]
    assert "2 turns failed" in capacity._verdict({**ok, "failed_turns": 2})[1]


def test_baseline_reader_parses_the_sinks_reply_in_any_chunking():
    corpus = PreframedCorpus()
    reply = sink.reply_bytes()
    for chunk in (1, 7, 2048, len(reply)):
        state = StreamState()
        state.begin_turn(corpus.utterances[0], 100.0)
        state.speech_end_at = 100.0
        state.awaiting_reply = True
        for i in range(0, len(reply), chunk):
            assert state.feed(reply[i : i + chunk], 100.25, corpus) == b""
        assert not state.awaiting_reply and state.turns == 1 and state.intent == "GREETING"
        assert state.roundtrips_ms == [pytest.approx(250.0)]
        assert state.audio_bytes == sink.REPLY_AUDIO_MS * 32  # 16 kHz PCM16: 32 bytes a ms


def test_baseline_reader_times_pongs_and_answers_pings():
    corpus = PreframedCorpus()
    state = StreamState()
    state.ping_sent(b"\x00\x00\x00\x01", 5.0)
    pong = framing.frame_header(4, framing.OPCODE_PONG, masked=False) + b"\x00\x00\x00\x01"
    ping = framing.frame_header(2, framing.OPCODE_PING, masked=False) + b"hi"
    out = state.feed(pong + ping, 5.002, corpus)
    assert state.ping_ms == [pytest.approx(2.0)]
    opcode, fin, length, key, header = framing.parse_frame_header(out)
    assert (opcode, fin, length) == (framing.OPCODE_PONG, True, 2) and framing.mask(out[header:], key) == b"hi"


def test_sink_tells_every_speech_end_frame_from_the_other_frames_at_its_index():
    length, table = sink.speech_end_fingerprints("GREETING")
    assert length >= 8 and len(table) >= 10  # one entry per distinct speech-end frame of the corpus
    corpus = PreframedCorpus()
    for utterance in corpus.utterances:
        assert any(index == utterance.speech_end_frame for index, _prefix in table)


def test_sink_stamps_speech_end_marker_and_reply_of_each_turn_over_a_real_socket(tmp_path):
    port = common.free_port()
    turns_path = tmp_path / "turns.csv"
    process = subprocess.Popen([sys.executable, "-m", "bench.sink", "--port", str(port), "--speech-ends", "GREETING",
                                "--turns", str(turns_path)], cwd=ROOT, env=common.python_env(),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the sink did not listen"
                time.sleep(0.1)
        corpus = PreframedCorpus()
        header = corpus.header()
        _opcode, _fin, _length, key, offset = framing.parse_frame_header(header)
        session_id = json.loads(framing.mask(header[offset:], key))["sessionId"]
        sock = baseline_raw._open("127.0.0.1", port, "/ws/audio", header)
        sock.setblocking(True)
        sent = [corpus.utterances[1], corpus.utterances[-4]]
        for utterance in sent:
            for frame in utterance.frames:
                sock.sendall(frame)
            sock.sendall(corpus.end_marker)
            state = StreamState()
            state.begin_turn(utterance, 0.0)
            state.awaiting_reply = True
            while state.awaiting_reply:
                state.feed(sock.recv(65536), 1.0, corpus)
        sock.close()
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(15)
    rows = list(csv.DictReader(turns_path.open()))
    assert [(r["session_id"], r["turn"], r["utterance_id"]) for r in rows] == \
        [(session_id, str(k), u.id) for k, u in enumerate(sent)]
    for row, utterance in zip(rows, sent, strict=True):
        assert int(row["frames"]) == len(utterance.frames)
        assert float(row["speech_end_read_s"]) <= float(row["marker_read_s"]) <= float(row["reply_written_s"])


def test_harness_turns_pair_with_the_sinks_by_session_and_order():
    def harness(connection, index, utterance, roundtrip="200.0", chunks="23"):
        return {"connection_id": connection, "turn_index": str(index), "utterance_id": utterance,
                "roundtrip_ms": roundtrip, "chunks_sent": chunks}

    def sink_row(session, turn, utterance):
        return {"session_id": session, "turn": str(turn), "utterance_id": utterance}

    turns = [harness("a", 0, "u1"), harness("a", 1, "u2", roundtrip=""), harness("a", 2, "u3"),
             harness("b", 5, "u1"), harness("b", 6, "u9")]
    sinks = [sink_row("a", 0, "u1"), sink_row("a", 1, "u2"), sink_row("a", 2, "u3"), sink_row("b", 0, "u1"),
             sink_row("b", 1, "u2")]
    pairs, mismatched = truth.match_turns(turns, sinks)
    assert [(t["connection_id"], t["utterance_id"], s["turn"]) for t, s in pairs] == \
        [("a", "u1", "0"), ("a", "u3", "2"), ("b", "u1", "0")]
    assert mismatched == 1  # b's second turn: the sink heard u2, the harness sent u9


# -- the benchmarks, tiny


@pytest.mark.slow
def test_capacity_smoke_measures_every_client_side_by_side_and_each_process():
    _run("capacity", 600, "--processes", "1,2")
    result = _result("capacity-processes-smoke")
    assert result["machine"]["cores"] >= 1 and result["frame_bytes"] == 2048
    runs = {r["label"]: r for r in result["runs"]}
    assert set(runs) == CLIENTS | {"harness x2 processes"}
    for name, r in runs.items():
        assert "frames_per_s" in r, (name, r.get("log_tail"))
        # Invariants only (no timing bound: the CI machine is loaded; the figures are in bench/).
        assert r["frames_per_s"] > 0 and 0 < r["achieved_ratio"] < 1.5, (name, r["achieved_ratio"])
        assert 0 <= r["lateness_p50_ms"] <= r["lateness_p99_ms"] <= 100.1, name  # the histogram's range
        assert r["frames_per_cpu_s"] > 0 and _finite(r["cpu_s_per_1000_frames"]), name
        assert r["rss_kb_per_user"] > r["uss_kb_per_user"] > 0, name
        # The same work in every client: turns completed, each with the reply read and its roundtrip timed.
        assert r["turns"] > 0 and _finite(r["roundtrip_p50_ms"]) and r["roundtrip_p50_ms"] > 0, name
        assert isinstance(r["met"], bool) and (r["met"] or r["why_not"]), name
        assert _finite(r["others_cpu_percent"]) and _finite(r["others_cpu_percent_tick"]), name
    assert runs["harness"]["failed_turns"] == 0
    # The harness times its own collector pauses (voice_collector) and writes them with the pacer's stats.
    assert set(runs["harness"]["collector"]) == {"count", "total_ms", "max_ms", "collected"}
    assert runs["harness"]["processes_reported"] == 1 and runs["harness"]["missing_processes"] == 0
    # Two Locust workers and their master are all sampled; each worker's statistics were read or
    # counted as missing, never silently dropped.
    two = runs["harness x2 processes"]
    assert len(two["per_process"]) >= 3 and two["processes_reported"] + two["missing_processes"] == 2
    assert not (two["missing_processes"] and two["met"])  # a row with a worker's numbers missing is never met
    rows = {(row["label"]): row for row in result["summary"]["per_n"]}
    assert rows["harness"]["frames_per_cpu_s"]["n"] == 1 and isinstance(rows["harness"]["met"], bool)
    assert rows["harness x2 processes"]["missing_process_reports"] == two["missing_processes"]
    ratio = result["summary"]["ratio_vs_asyncio_fair"]
    assert _finite(next(iter(ratio.values()))["median"])


@pytest.mark.slow
def test_truth_smoke_compares_reported_times_with_the_sinks_own_stamps():
    _run("truth", 400)
    result = _result("truth-smoke")
    runs = result["runs"]
    assert {(r["gateway_delay_ms"], r["one_way_delay_ms"]) for r in runs} == {(0.0, 0.0), (50.0, 0.0), (50.0, 10.0)}
    for r in runs:
        assert r["steady_turns"] > 0 and r["failed_turns"] == 0, r
        # Every steady turn found its twin at the sink (same session, same place, same utterance).
        assert r["matched_turns"] == r["steady_turns"] and r["mismatched_turns"] == 0, r
        # The sink's own delay is D or more (a timer fires late, never early).
        assert r["sink_delay_p50_ms"] >= r["gateway_delay_ms"] - 0.5, r
        # Every error is measured (no timing bound here: the CI machine is loaded; the figures are in bench/).
        for key in ("roundtrip_error_p50_ms", "roundtrip_error_p99_ms", "roundtrip_error_model_p50_ms"):
            assert _finite(r[key]), (key, r)
        # A ping crosses the proxy's delay twice: it cannot come back sooner than 2d.
        assert r["ping_error_p50_ms"] >= -0.5, r
        assert r["locust_vs_exact"]["roundtrip"]["exact"]["count"] > 0
        assert r["verdict"]
    (proxied,) = [r for r in runs if r["one_way_delay_ms"]]
    # The proxy measured its own writes (a timer never fires early) and the error is also given against that.
    assert proxied["proxy_late_up_ms"] >= 0 and proxied["proxy_late_down_ms"] >= 0, proxied
    assert proxied["roundtrip_error_vs_measured_p50_ms"] <= proxied["roundtrip_error_p50_ms"]
    (row,) = [row for row in result["summary"]["per_config"] if row["one_way_delay_ms"]]
    assert row["roundtrip_error_p50_ms"]["n"] == 1 and isinstance(row["goal_met"], bool)


@pytest.mark.slow
def test_analysis_smoke_writes_its_result_with_its_spread():
    _run("analysis", 300)
    result = _result("analysis-smoke")
    assert result["records"] == 10_000 and result["load_analyse_s"] > 0
    assert result["spread"]["html_s"]["n"] == result["repeat"] == 1


@pytest.mark.slow
def test_judge_smoke_builds_the_held_out_audio_and_scores_every_method():
    _run("judge", 600)
    from bench.judge import CURRENT_HELDOUT

    result = _result(f"judge-{CURRENT_HELDOUT}-smoke")
    assert result["set"] == CURRENT_HELDOUT and result["smoke"] and len(result["voices"]) == 1
    assert result["sentences"] == 10 and result["per_intent"] == dict.fromkeys(
        ("GREETING", "ECHO", "TIME_NOW", "WEATHER_SIMPLE", "UNKNOWN"), 2)
    assert set(result["methods"]) == {"grammar", "lm", "hybrid"}
    for method, figures in result["methods"].items():
        overall = figures["overall"]
        # every reply counted once, as right, wrong or unjudged, and in the confusion matrix
        assert overall["replies"] == 10 == overall["right"] + overall["wrong"] + overall["unjudged"], method
        assert sum(sum(row.values()) for row in overall["confusion"].values()) == 10, method
        assert all(ms > 0 for ms in overall["cpu_ms_p10_p50_p90"]), method
        assert len(figures["rows"]) == 10 and all(r["transcript"] or r["heard"] == "(none)" for r in figures["rows"])
