"""Tests of ``python -m audio_corpus.build --from-dir``: a corpus of one's own recordings.

The "recordings" are real espeak-ng speech written the way people's files come: 44.1 kHz
stereo, FLAC, cut short, silent, broken.
"""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile
from conftest import run_locust
from scipy.signal import resample_poly

from audio_corpus import CorpusWarning, load_corpus
from audio_corpus import build as corpus_build
from audio_corpus.recordings import build_from_dir, read_labels
from audio_corpus.synthesis import synthesise
from voiceharness import diagnoses
from voiceharness.errors import CorpusError
from voiceharness.guide import SAMPLE_RATE_HZ


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """'turn off the lights': 300 ms silence, speech, 200 ms silence, float at 16 kHz."""
    return synthesise("turn off the lights", "en-us", 160)


def write(path: Path, signal: np.ndarray, rate_hz: int = SAMPLE_RATE_HZ, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), signal, rate_hz, **kwargs)
    return path


def labels(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def recordings(tmp_path, speech) -> Path:
    folder = tmp_path / "recordings"
    write(folder / "alice" / "lights off.wav", speech, subtype="PCM_16")
    stereo = resample_poly(speech, 441, 160)
    write(folder / "bob" / "lights.wav", np.stack([stereo, stereo], axis=1), 44_100, subtype="PCM_16")
    write(folder / "carol.flac", speech, subtype="PCM_16")
    return folder


def test_recordings_are_checked_converted_and_listed_for_the_harness(tmp_path, recordings, speech):
    table = labels(tmp_path / "labels.csv", (
        "file,expected_intent,text,reply_check\n"
        "alice/lights off.wav,LIGHTS_OFF,turn off the lights,\n"
        "bob/lights.wav,LIGHTS_OFF,turn off the lights,nonempty\n"
        "carol.flac,LIGHTS_OFF\n"
    ))  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        corpus = build_from_dir(recordings, table, quiet=True)
    messages = [str(w.message) for w in caught if issubclass(w.category, CorpusWarning)]
    assert messages == [
        (f"{table}, line 3: {recordings / 'bob' / 'lights.wav'}: 44100 Hz resampled to 16000 Hz; 2 channels "
         f"mixed down to mono; converted copy written to {recordings / 'converted' / 'bob' / 'lights.wav'}")
    ]  # fmt: skip
    assert [u.id for u in corpus] == ["alice_lights_off", "bob_lights", "carol"]
    rows = list(csv.DictReader((recordings / "manifest.csv").open(encoding="utf-8")))
    assert [row["path"] for row in rows] == ["alice/lights off.wav", "converted/bob/lights.wav", "carol.flac"]
    converted = soundfile.info(str(recordings / "converted" / "bob" / "lights.wav"))
    assert (converted.samplerate, converted.channels, converted.subtype) == (16_000, 1, "PCM_16")
    assert corpus.by_id["bob_lights"].reply_check == "nonempty" and corpus.by_id["carol"].text == ""
    # the speech end is found in each, and agrees with the original's within a window or two
    original = corpus.by_id["alice_lights_off"]
    assert original.speech_end_ms == pytest.approx(len(speech) / 16 - 200, abs=20)
    assert corpus.by_id["bob_lights"].speech_end_ms == pytest.approx(original.speech_end_ms, abs=20)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CorpusWarning)  # the harness loads it with no conversion left
        assert [u.id for u in load_corpus(recordings / "manifest.csv")] == [u.id for u in corpus]


def test_a_separate_output_folder_points_at_the_originals(tmp_path, recordings, capsys):
    table = labels(tmp_path / "labels.csv", "alice/lights off.wav,LIGHTS_OFF\nbob/lights.wav,LIGHTS_OFF\n")
    out = tmp_path / "elsewhere" / "corpus"
    assert corpus_build.main(["--from-dir", str(recordings), "--labels", str(table), "--out", str(out),
                              "--quiet"]) == 0  # fmt: skip
    printed = capsys.readouterr()
    assert printed.err == (
        f"warning: {table}, line 2: {recordings / 'bob' / 'lights.wav'}: 44100 Hz resampled to 16000 Hz; "
        f"2 channels mixed down to mono; converted copy written to {out / 'converted' / 'bob' / 'lights.wav'}\n"
    )
    assert f"use them with --corpus-manifest {out / 'manifest.csv'}" in printed.out
    corpus = load_corpus(out / "manifest.csv")
    assert corpus[0].path.resolve() == (recordings / "alice" / "lights off.wav").resolve()
    assert corpus[1].path.resolve() == (out / "converted" / "bob" / "lights.wav").resolve()
    assert not (recordings / "manifest.csv").exists()


def test_every_bad_line_and_file_is_reported_at_once_naming_the_line_and_file(tmp_path, recordings, speech):
    write(recordings / "silent.wav", np.zeros(16_000), subtype="PCM_16")
    whole = (recordings / "alice" / "lights off.wav").read_bytes()
    (recordings / "broken.wav").write_bytes(whole[:5000])
    (recordings / "notes.wav").write_text("not audio\n")
    table = labels(tmp_path / "labels.csv", (
        "carol.flac,LIGHTS_OFF\n"
        "silent.wav,UNKNOWN\n"
        "broken.wav,LIGHTS_OFF\n"
        "nope.wav,LIGHTS_OFF\n"
        "carol.flac,GREETING\n"
        "alice,LIGHTS_OFF\n"
        "notes.wav,LIGHTS_OFF\n"
        "alice/lights off.wav,lights off\n"
    ))  # fmt: skip
    with pytest.raises(CorpusError) as caught:
        build_from_dir(recordings, table, quiet=True)
    lines = str(caught.value).splitlines()
    assert lines[0] == f"labels file {table} has 7 problems:"
    assert lines[1:] == [
        (f"  line 2: {recordings / 'silent.wav'}: no speech found (silence, or too quiet to tell from its "
         f"noise); re-record it or leave it out"),
        (f"  line 3: corpus file {recordings / 'broken.wav'} is truncated: its data chunk declares "
         f"{len(whole) - 44} bytes but only 4956 follow; the file was cut short, rebuild or re-copy it"),
        f"  line 4: file 'nope.wav' not found in {recordings}",
        "  line 5: file 'carol.flac' is labelled on line 1 too",
        f"  line 6: file 'alice' not found in {recordings} (it is a folder)",
        (f"  line 7: corpus file {recordings / 'notes.wav'} is not audio libsndfile can read "
         + lines[6].split("can read ", 1)[1]),
        ("  line 8: expected_intent 'lights off' is not an intent name: use upper-case letters, digits and _ "
         "only (e.g. LIGHTS_OFF)"),
    ]  # fmt: skip
    assert not (recordings / "manifest.csv").exists()  # nothing written


def test_speech_running_to_the_end_of_a_file_is_warned_about(tmp_path, recordings, speech):
    write(recordings / "cut.wav", speech[: -int(0.19 * SAMPLE_RATE_HZ)], subtype="PCM_16")
    table = labels(tmp_path / "labels.csv", "cut.wav,LIGHTS_OFF\n")
    with pytest.warns(CorpusWarning, match=r"labels\.csv, line 1: .*cut\.wav: speech ends \d+ ms before the end "
                                           r"of the file; a gateway that ends an utterance on silence may wait"):  # fmt: skip
        corpus = build_from_dir(recordings, table, quiet=True)
    assert corpus[0].id == "cut"


def test_a_near_miss_of_a_standard_intent_is_warned_about_with_its_line(tmp_path, recordings):
    table = labels(tmp_path / "labels.csv", "file,expected_intent\ncarol.flac,GREETNG\n")
    with pytest.warns(CorpusWarning, match=r"labels\.csv, line 2: expected_intent 'GREETNG' .*did you mean GREETING"):
        assert build_from_dir(recordings, table, quiet=True)[0].expected_intent == "GREETNG"


def test_labels_and_folder_must_exist(tmp_path, recordings, capsys):
    assert corpus_build.main(["--from-dir", str(tmp_path / "nowhere"), "--labels", str(tmp_path / "l.csv")]) == 2
    assert capsys.readouterr().err == f"error: recordings folder {tmp_path / 'nowhere'} not found (--from-dir names a folder)\n"
    assert corpus_build.main(["--from-dir", str(recordings), "--labels", str(tmp_path / "l.csv")]) == 2
    assert f"error: labels file {tmp_path / 'l.csv'} not found" in capsys.readouterr().err
    assert corpus_build.main(["--from-dir", str(recordings)]) == 2
    assert "error: --from-dir needs --labels CSV" in capsys.readouterr().err


def test_label_ids_come_from_paths_and_must_not_collide(tmp_path, recordings, speech):
    write(recordings / "alice_lights off.wav", speech, subtype="PCM_16")
    table = labels(tmp_path / "labels.csv", "alice/lights off.wav,LIGHTS_OFF\nalice_lights off.wav,LIGHTS_OFF\n")
    with pytest.raises(CorpusError, match=r"line 2: file 'alice_lights off\.wav' gets the id 'alice_lights_off' "
                                          r"of line 1's file"):  # fmt: skip
        read_labels(table, recordings)


@pytest.mark.slow
def test_converted_recordings_run_in_locust(tmp_path, shared_gateway, speech):
    """The from-dir manifest, with a converted 44.1 kHz stereo file, streamed to the real gateway."""
    folder = tmp_path / "recordings"
    hello = synthesise("hello jarvis", "en-us", 160)
    stereo = resample_poly(hello, 441, 160)
    write(folder / "hello44k.wav", np.stack([stereo, 0.8 * stereo], axis=1), 44_100, subtype="PCM_16")
    write(folder / "time.flac", synthesise("what time is it", "en-us", 130), subtype="PCM_16")
    table = labels(tmp_path / "labels.csv", "hello44k.wav,GREETING,hello jarvis\ntime.flac,TIME_NOW\n")
    with pytest.warns(CorpusWarning, match="hello44k.wav: 44100 Hz resampled"):
        build_from_dir(folder, table, quiet=True)
    # each user says its two-utterance corpus round from a random start: two turns say both
    run = run_locust(tmp_path / "run", shared_gateway.url, "--corpus-manifest", str(folder / "manifest.csv"),
                     "--tags", "corpus", users=2, run_time="120s", stop_after_turns=2, stop_each_user=True)  # fmt: skip
    turns = run.file("_turns.csv")
    assert turns.exists(), run.output[-3000:]
    with turns.open(newline="", encoding="utf-8") as file:
        rows = [row for row in csv.DictReader(file) if row["failure"] != "run_stopped"]
    assert {row["utterance_id"] for row in rows} == {"hello44k", "time"}, rows
    assert all(row["success"] == "1" for row in rows), [(r["utterance_id"], r["failure"]) for r in rows]
    assert all(row["failure"] in ("", *diagnoses.DIAGNOSES) for row in rows)
    assert "44100 Hz resampled" not in run.output  # the harness streams the converted copy as it is
