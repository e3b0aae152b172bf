"""gateway.dialects and ``python -m gateway --dialect smartjarvis``: the published SmartJARVIS
gateway's wire behaviour, in memory and over real loopback sockets.

The in-memory tests drive :class:`gateway.dialects.SmartJarvisSession` and the reply encoders.
The socket tests run ``python -m gateway`` as a subprocess (real worker processes, pocketsphinx
recognition, espeak-ng synthesis) and talk to it with the ``websockets`` client, speaking clean
corpus utterances that the recognizer gets right (tests/test_gateway_corpus_accuracy.py), so a
reply's WAV can be compared sample for sample with the sentence espeak-ng says for its intent.
No timing is asserted.
"""

from __future__ import annotations

import io
import json
import re
import struct
import time
import urllib.request
from collections.abc import Iterator

import numpy as np
import psutil
import pytest
import soundfile
from conftest import Gateway, free_port
from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from audio_corpus import load_corpus
from gateway.config import parse_args
from gateway.dialects import (
    REFERENCE,
    SMARTJARVIS,
    SMARTJARVIS_BAD_HEADER_REASON,
    Reply,
    ReplyFormat,
    SmartJarvisSession,
    wav_message,
)
from gateway.nlg import reply_text, sentences
from gateway.synthesizer import Synthesizer
from voiceharness import guide
from voiceharness.protocol import AudioReceived, HeaderAccepted, ProtocolError
from voiceharness.vad import AUDIBLE_WINDOW_MS, first_audible_sample, is_digital_silence

CHUNK = guide.CHUNK_BYTES
SJ_RATE = 22_050
HEADER = {"sessionId": "s-1", "correlationId": "c-1", "sampleRate": 16000, "protocolVersion": 1}
END_MARKER = '{"type": "end"}'  # as the harness sends it: 15 bytes


def header(**fields: object) -> str:
    data = {**HEADER, **fields}
    return json.dumps({key: value for key, value in data.items() if value is not None})


# ----------------------------------------------------------------------------- in memory


@pytest.mark.parametrize("as_binary", [False, True], ids=["text", "binary"])
def test_smartjarvis_accepts_the_header_as_text_or_binary_json(as_binary):
    session = SmartJarvisSession()
    first = header().encode() if as_binary else header()
    [event] = session.receive(first)
    assert isinstance(event, HeaderAccepted)
    assert (event.header.session_id, event.header.correlation_id) == ("s-1", "c-1")


@pytest.mark.parametrize(
    "first",
    [
        "not json",
        b"\xff\xfe binary garbage",
        "[1, 2]",
        header(sessionId=None),
        header(correlationId=""),
        header(sessionId=7),
        header(sampleRate=None),  # the real gateway requires it; the reference one assumes 16000
        header(sampleRate=8000),
        header(sampleRate="16000"),
        header(sampleRate=True),
    ],
    ids=[
        "not-json",
        "not-utf8",
        "array",
        "no-session",
        "empty-correlation",
        "numeric-session",
        "no-rate",
        "8k",
        "rate-string",
        "rate-bool",
    ],
)
def test_smartjarvis_rejects_a_bad_header_with_1008_invalid_message_format(first):
    session = SmartJarvisSession()
    assert session.receive(first) == [ProtocolError(1008, SMARTJARVIS_BAD_HEADER_REASON)]
    assert session.receive(b"\x00\x00") == []  # closed: nothing more is read


def test_smartjarvis_takes_16000_as_a_json_float_too():
    [event] = SmartJarvisSession().receive(header(sampleRate=16000.0))
    assert isinstance(event, HeaderAccepted)


def test_smartjarvis_treats_every_message_after_the_header_as_audio():
    session = SmartJarvisSession()
    session.receive(header())
    messages = [END_MARKER, b"\x01\x02\x03", json.dumps({"type": "reply_end"}).encode(), b"\x00" * 2048]
    events = [event for message in messages for event in session.receive(message)]
    assert all(isinstance(event, AudioReceived) for event in events)
    assert [event.pcm for event in events] == [
        END_MARKER.encode(),
        b"\x01\x02\x03",
        b'{"type": "reply_end"}',
        b"\x00" * 2048,
    ]
    assert len(events[0].pcm) == 15  # the marker is 15 bytes of "audio" to this gateway


def riff_chunks(data: bytes) -> dict[str, tuple[int, int]]:
    """RIFF chunk id -> (offset of its payload, declared size), checking the RIFF size field."""
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    (riff_size,) = struct.unpack("<I", data[4:8])
    assert riff_size == len(data) - 8, "RIFF size must be the file length minus 8"
    chunks, offset = {}, 12
    while offset + 8 <= len(data):
        chunk_id = data[offset : offset + 4].decode("ascii")
        (size,) = struct.unpack("<I", data[offset + 4 : offset + 8])
        chunks[chunk_id] = (offset + 8, size)
        offset += 8 + size + (size % 2)
    assert offset == len(data), "chunks must end where the file ends"
    return chunks


def test_a_wav_message_is_a_whole_riff_file_with_its_sizes_filled_in():
    pcm = (np.arange(-500, 501, dtype="<i2") * 30).tobytes()
    message = wav_message(pcm, SJ_RATE)
    offset, size = riff_chunks(message)["data"]
    assert size == len(pcm) and message[offset : offset + size] == pcm
    samples, rate = soundfile.read(io.BytesIO(message), dtype="int16")
    assert rate == SJ_RATE and samples.tobytes() == pcm


def test_a_smartjarvis_reply_is_one_wav_message_and_no_audio_is_no_reply():
    reply = Reply("GREETING", 0.9, "hello", {}, "Hello!", b"\x01\x00" * 800, SJ_RATE, "c-1")
    [message] = SMARTJARVIS.reply_messages(reply)
    assert isinstance(message, bytes)
    assert soundfile.info(io.BytesIO(message)).samplerate == SJ_RATE
    assert SMARTJARVIS.reply_messages(Reply("GREETING", 0.9, "", {}, "", b"", SJ_RATE)) == []


def test_the_reference_dialect_still_sends_metadata_audio_and_reply_end():
    reply = Reply("ECHO", 0.9, "echo hi", {"words": "hi"}, "hi", b"\x01\x00" * 3000, 16000, "c-1")
    messages = REFERENCE.reply_messages(reply, ReplyFormat(chunk_bytes=2048))
    assert json.loads(messages[0])["intent"] == "ECHO"
    assert [len(m) for m in messages[1:-1]] == [2048, 2048, 1904]
    assert json.loads(messages[-1]) == {"type": "reply_end"}


def test_smartjarvis_options_reach_the_config():
    config = parse_args(["--dialect", "smartjarvis", "--port", "0"])
    assert config.wire is SMARTJARVIS
    assert config.reply_rate_hz == SJ_RATE
    assert config.ping_interval_s == 5.0 and config.effective_ping_timeout_s is None  # pongs never checked
    assert config.pipeline_options == {"style": "smartjarvis", "reply_sample_rate_hz": SJ_RATE, "phrasing_seed": None,
                                       "fixed_clock": ""}
    assert parse_args(["--dialect", "smartjarvis", "--phrasing-seed", "3"]).pipeline_options["phrasing_seed"] == 3
    reference = parse_args(
        ["--reply-wav", "--reply-sample-rate-hz", "22050", "--reply-leading-silence-ms", "40"]
    )
    assert (reference.reply_rate_hz, reference.effective_ping_timeout_s) == (SJ_RATE, 20.0)
    assert reference.faults.reply_leading_silence_ms == 40.0
    faults = parse_args(["--dialect", "smartjarvis", "--fault-silent-reply", "--fault-broker-down"]).faults
    assert faults.silent_reply and faults.broker_down


# ----------------------------------------------------------------------------- helpers for real sockets


CORPUS = load_corpus(select="kind:clean,voice:en-us")


def speech(utterance_id: str) -> bytes:
    return CORPUS.by_id[utterance_id].pcm


GREETING = "greeting_hello_jarvis_en-us_160"
WEATHER = "weather_simple_how_is_the_weather_en-us_160"


def say(ws: ClientConnection, pcm: bytes, *, trailing_silence_ms: int = 1000, marker: bool = False) -> int:
    """Stream ``pcm`` in guide-sized frames (optionally an end marker after it), then digital
    silence for the endpointer; return the number of messages sent."""
    frames = [pcm[i : i + CHUNK] for i in range(0, len(pcm), CHUNK)]
    if marker:
        frames.append(END_MARKER)
    silence = bytes(2 * guide.SAMPLE_RATE_HZ * trailing_silence_ms // 1000)
    frames += [silence[i : i + CHUNK] for i in range(0, len(silence), CHUNK)]
    for frame in frames:
        ws.send(frame)
    return len(frames)


def receive_wav(ws: ClientConnection, timeout_s: float = 60.0) -> bytes:
    message = ws.recv(timeout=timeout_s)
    assert isinstance(message, bytes), f"a text frame came from the smartjarvis dialect: {message!r}"
    return message


def assert_nothing_more(ws: ClientConnection, wait_s: float = 1.0) -> None:
    with pytest.raises(TimeoutError):
        extra = ws.recv(timeout=wait_s)
        pytest.fail(f"unexpected extra message of {len(extra)} bytes")


def decode(message: bytes) -> tuple[np.ndarray, int]:
    riff_chunks(message)
    info = soundfile.info(io.BytesIO(message))
    assert (info.channels, info.subtype) == (1, "PCM_16")
    samples, rate = soundfile.read(io.BytesIO(message), dtype="int16")
    return samples, rate


def scrape(gateway: Gateway) -> dict[str, float]:
    """Every sample of /metrics, by name and labels ('name{le="100.0"}')."""
    with urllib.request.urlopen(f"http://127.0.0.1:{gateway.port}/metrics", timeout=5) as response:
        body = response.read().decode()
    values = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            labels = ",".join(f'{key}="{value}"' for key, value in sorted(sample.labels.items()))
            values[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return values


@pytest.fixture(scope="module")
def spoken_lengths() -> Iterator:
    """intent -> the lengths (samples) of every phrasing of its reply, spoken as the gateway speaks it."""
    cache: dict[tuple[str, str, int], set[int]] = {}

    def lengths(intent: str, style: str = "smartjarvis", rate_hz: int = SJ_RATE) -> set[int]:
        key = (intent, style, rate_hz)
        if key not in cache:
            synthesizer = Synthesizer(sample_rate_hz=rate_hz)
            cache[key] = {
                len(synthesizer.synthesize(reply_text(intent, style=style, variant=v))) // 2
                for v in range(len(sentences(intent, style)))
            }
        return cache[key]

    yield lengths


@pytest.fixture(scope="module")
def smartjarvis_gateway(tmp_path_factory) -> Iterator[Gateway]:
    gateway = Gateway(
        free_port(),
        ("--dialect", "smartjarvis", "--workers", "1"),
        tmp_path_factory.mktemp("smartjarvis") / "gateway.log",
    )
    try:
        yield gateway.start()
    finally:
        gateway.stop()


def wait_for_log(gateway: Gateway, text: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in gateway.log_text():
        assert time.monotonic() < deadline, f"the gateway never logged {text!r}"
        time.sleep(0.05)


def json_object(message: str | bytes) -> dict | None:
    """The JSON object a reference-dialect message holds, or None for audio (which may start with '{')."""
    try:
        data = json.loads(message)
    except ValueError:  # UnicodeDecodeError included
        return None
    return data if isinstance(data, dict) else None


def url(gateway: Gateway, path: str = "/ws/audio") -> str:
    return f"{gateway.url}{path}"


# ----------------------------------------------------------------------------- the smartjarvis gateway


@pytest.mark.slow
@pytest.mark.parametrize("path", ["/", "/ws/audio", "/ws", "/any/path/at/all?x=1"])
def test_smartjarvis_upgrades_any_path(smartjarvis_gateway, path):
    with connect(url(smartjarvis_gateway, path), compression=None) as ws:
        ws.send(header(sessionId=f"path-{path}"))
        assert ws.ping().wait(10), "the session should be open and answering"


@pytest.mark.slow
@pytest.mark.parametrize(
    "first",
    ["{bad json", header(sampleRate=44100), header(correlationId=None), b"\x00\x01"],
    ids=["not-json", "44k", "no-correlation", "pcm-first"],
)
def test_smartjarvis_closes_a_bad_header_with_1008_invalid_message_format(smartjarvis_gateway, first):
    with connect(url(smartjarvis_gateway), compression=None) as ws:
        ws.send(first)
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1008, SMARTJARVIS_BAD_HEADER_REASON)


@pytest.mark.slow
def test_smartjarvis_does_not_close_for_odd_bytes_or_text_messages(smartjarvis_gateway):
    """The reference dialect closes 1007 on an odd byte count; to this one it is all audio."""
    with connect(url(smartjarvis_gateway), compression=None) as ws:
        ws.send(header(sessionId="odd-bytes"))
        ws.send(b"\x00\x01\x02")
        ws.send("some text that is not JSON")
        ws.send(END_MARKER)
        assert ws.ping().wait(10)
        assert_nothing_more(ws, 0.5)  # silence and clicks: no utterance, no reply, no close


@pytest.mark.slow
def test_smartjarvis_replies_with_one_22050_hz_wav_per_utterance_and_never_a_text_frame(
    smartjarvis_gateway, spoken_lengths
):
    with connect(url(smartjarvis_gateway, "/ws"), compression=None) as ws:
        ws.send(header(sessionId="two-turns").encode())  # binary header, as the browser sends it
        for utterance, intent in ((GREETING, "GREETING"), (WEATHER, "WEATHER_SIMPLE")):
            say(ws, speech(utterance))
            samples, rate = decode(receive_wav(ws))
            assert rate == SJ_RATE
            # The whole reply is one message: its sound is one of the sentences for that intent.
            assert len(samples) in spoken_lengths(intent), f"{intent}: {len(samples)} samples"
            assert not is_digital_silence(samples)
        assert_nothing_more(ws)


@pytest.mark.slow
def test_an_end_marker_is_audio_and_only_trailing_silence_ends_the_utterance(smartjarvis_gateway):
    before = scrape(smartjarvis_gateway)
    with connect(url(smartjarvis_gateway), compression=None) as ws:
        ws.send(header(sessionId="marker-is-audio"))
        sent = say(ws, speech(GREETING), marker=True)
        receive_wav(ws)
        assert_nothing_more(ws)
    after = scrape(smartjarvis_gateway)

    def delta(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    assert delta("voicegw_audio_frames_received_total") == sent  # the marker was counted as audio
    assert delta('voicegw_utterances_total{reason="silence"}') == 1
    assert delta('voicegw_utterances_total{reason="marker"}') == 0


@pytest.mark.slow
def test_a_second_connection_with_the_same_session_id_takes_the_replies(smartjarvis_gateway, spoken_lengths):
    with (
        connect(url(smartjarvis_gateway), compression=None) as first,
        connect(url(smartjarvis_gateway), compression=None) as second,
    ):
        first.send(header(sessionId="shared-id", correlationId="c-first"))
        wait_for_log(smartjarvis_gateway, "event=session_start session=shared-id")
        second.send(header(sessionId="shared-id", correlationId="c-second"))
        wait_for_log(smartjarvis_gateway, "event=session_taken_over session=shared-id")
        say(first, speech(GREETING))
        samples, _ = decode(receive_wav(second))
        assert len(samples) in spoken_lengths("GREETING")
        assert_nothing_more(first)


@pytest.mark.slow
def test_metrics_have_the_process_tree_cpu_and_the_voice_roundtrip_histogram(smartjarvis_gateway):
    with connect(url(smartjarvis_gateway), compression=None) as ws:
        ws.send(header(sessionId="metrics"))
        say(ws, speech(WEATHER))
        receive_wav(ws)
    main = psutil.Process(smartjarvis_gateway.process.pid)
    children = main.children(recursive=True)
    worker_cpu_s = sum(
        t.user + t.system + t.children_user + t.children_system for t in (p.cpu_times() for p in children)
    )
    values = scrape(smartjarvis_gateway)

    # The workers loaded pocketsphinx's model and decoded: the main process's own CPU misses that.
    assert worker_cpu_s > 0.2
    tree_s, main_s = values["gateway_process_tree_cpu_seconds_total"], values["process_cpu_seconds_total"]
    assert tree_s - main_s >= worker_cpu_s - 0.02  # clock-tick resolution
    assert values["gateway_process_tree_processes"] == 1 + len(children)
    assert values["gateway_process_tree_resident_memory_bytes"] > values["process_resident_memory_bytes"]

    # voice_roundtrip_ms: one observation per reply, the same values the turn log lines carry.
    logged = [
        float(ms)
        for ms in re.findall(r"event=turn .*?voice_roundtrip_ms=([\d.]+)", smartjarvis_gateway.log_text())
    ]
    assert values["voice_roundtrip_ms_count"] == len(logged) >= 1
    assert values["voice_roundtrip_ms_sum"] == pytest.approx(sum(logged), abs=0.05 * len(logged) + 1e-6)
    edges = {float(key.split('"')[1]) for key in values if key.startswith("voice_roundtrip_ms_bucket")}
    assert {100.0, 500.0, 1000.0} <= edges  # the guide's roundtrip band edges
    assert len(edges - {float("inf")}) > 3


# ----------------------------------------------------------------------------- test knobs and faults


@pytest.mark.slow
def test_leading_silence_is_exact_in_a_smartjarvis_wav(gateway_factory):
    gateway = gateway_factory(
        "--dialect", "smartjarvis", "--workers", "1", "--reply-leading-silence-ms", "250"
    )
    with connect(url(gateway), compression=None) as ws:
        ws.send(header(sessionId="lead"))
        say(ws, speech(GREETING))
        samples, rate = decode(receive_wav(ws))
    lead = round(250 * SJ_RATE / 1000)
    assert np.flatnonzero(samples)[0] == lead  # exactly that many zero samples, then sound
    audible_ms = first_audible_sample(samples, rate) * 1000 / rate
    assert abs(audible_ms - 250) <= AUDIBLE_WINDOW_MS


@pytest.mark.slow
def test_leading_silence_is_exact_in_reference_pcm_frames(gateway_factory):
    gateway = gateway_factory("--workers", "1", "--reply-leading-silence-ms", "120")
    with connect(url(gateway), compression=None) as ws:
        ws.send(header(sessionId="lead-ref"))
        say(ws, speech(GREETING), marker=True, trailing_silence_ms=0)
        audio = b""
        while (data := json_object(message := ws.recv(timeout=60))) is None or "type" not in data:
            if data is None:
                audio += message
    samples = np.frombuffer(audio, dtype="<i2")
    assert np.flatnonzero(samples)[0] == round(120 * guide.SAMPLE_RATE_HZ / 1000)


@pytest.mark.slow
def test_silent_reply_fault_sends_digital_silence_as_long_as_the_sentence(gateway_factory, spoken_lengths):
    gateway = gateway_factory("--dialect", "smartjarvis", "--workers", "1", "--fault-silent-reply")
    with connect(url(gateway), compression=None) as ws:
        ws.send(header(sessionId="silent"))
        say(ws, speech(WEATHER))
        samples, rate = decode(receive_wav(ws))
    assert rate == SJ_RATE and not np.any(samples)
    assert len(samples) in spoken_lengths("WEATHER_SIMPLE")


@pytest.mark.slow
def test_silent_reply_in_a_22050_hz_reference_wav_keeps_the_metadata(gateway_factory):
    gateway = gateway_factory(
        "--workers", "1", "--reply-wav", "--reply-sample-rate-hz", "22050", "--fault-silent-reply"
    )
    with connect(url(gateway), compression=None) as ws:
        ws.send(header(sessionId="silent-ref"))
        say(ws, speech(GREETING), marker=True, trailing_silence_ms=0)
        metadata = json.loads(ws.recv(timeout=60))
        samples, rate = decode(ws.recv(timeout=10))
        assert json.loads(ws.recv(timeout=10)) == {"type": "reply_end"}
    assert metadata["intent"] == "GREETING"
    assert rate == SJ_RATE and not np.any(samples)
    spoken = Synthesizer(sample_rate_hz=SJ_RATE).synthesize(metadata["reply"])
    assert len(samples) == len(spoken) // 2


@pytest.mark.slow
def test_broker_down_keeps_the_socket_open_and_answers_nothing(gateway_factory):
    gateway = gateway_factory("--dialect", "smartjarvis", "--fast-sink", "--fault-broker-down")
    with connect(url(gateway), compression=None) as ws:
        ws.send(header(sessionId="broker-down"))
        sent = say(ws, speech(GREETING))
        assert_nothing_more(ws, 1.5)
        assert ws.ping().wait(10)
    values = scrape(gateway)
    assert values["voicegw_audio_frames_received_total"] == sent
    assert not any(key.startswith("voicegw_utterances_total") for key in values)


def test_a_fixed_clock_is_the_time_every_time_reply_tells():
    import datetime as dt

    from gateway.pipeline import _fixed_time

    assert parse_args(["--clock", "9:05"]).pipeline_options["fixed_clock"] == "09:05"
    assert parse_args([]).pipeline_options["fixed_clock"] == ""
    assert _fixed_time(dt.time(9, 5)).strftime("%H:%M") == "09:05"
    for bad in ("25:00", "9.05", "noon"):
        with pytest.raises(SystemExit):
            parse_args(["--clock", bad])
