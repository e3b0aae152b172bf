"""Tests of ``python -m audio_corpus.build --from-text``: a corpus of one's own phrases.

Real espeak-ng; the built corpus is loaded with load_corpus and, in the slow test, streamed
by a real headless Locust run (``--corpus-manifest``) to the real reference gateway.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from conftest import run_locust

from audio_corpus import build as corpus_build
from audio_corpus import load_corpus
from audio_corpus.phrases import build_from_text, read_phrases
from audio_corpus.synthesis import espeak_version, synthesise, to_wav_bytes
from voiceharness import diagnoses
from voiceharness.errors import CorpusError

PACKAGE_DIR = Path(corpus_build.__file__).parent


def write_phrases(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def phrases(tmp_path) -> Path:
    return write_phrases(tmp_path / "phrases.csv", (
        "text,expected_intent,reply_check\n"
        "# our product's commands\n"
        "hello jarvis,GREETING,\n"
        "echo open the pod bay doors,ECHO,contains:open the pod bay doors\n"
        "\n"
        "play some jazz,PLAY_MUSIC,any:jazz|playing\n"
        "order a pizza,UNKNOWN\n"
    ))  # fmt: skip


def all_files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_every_phrase_in_every_voice_at_every_rate_loads_as_a_corpus(tmp_path, phrases):
    out = tmp_path / "mine"
    assert corpus_build.main(["--from-text", str(phrases), "--voices", "en-us,en+m3", "--rates", "130,160",
                              "--out", str(out), "--quiet"]) == 0  # fmt: skip
    corpus = load_corpus(out / "manifest.csv")
    assert len(corpus) == 4 * 2 * 2
    assert corpus.counts("expected_intent") == {"GREETING": 4, "ECHO": 4, "PLAY_MUSIC": 4, "UNKNOWN": 4}
    assert corpus.counts("kind") == {"clean": 12, "unknown": 4}
    assert {(u.voice, u.words_per_minute) for u in corpus} == {("en-us", 130), ("en-us", 160), ("en+m3", 130),
                                                                ("en+m3", 160)}  # fmt: skip
    jazz = corpus.by_id["play_music_play_some_jazz_en-m3_130"]
    assert (jazz.text, jazz.reply_check, jazz.path) == ("play some jazz", "any:jazz|playing",
                                                        out / "wav" / "play_music_play_some_jazz_en-m3_130.wav")  # fmt: skip
    for utterance in corpus:  # the bundled corpus's recipe: 300 ms before the speech, 200 ms after
        assert utterance.speech_start_ms == pytest.approx(300, abs=20)
        assert utterance.duration_ms - utterance.speech_end_ms == pytest.approx(200, abs=20)
    assert jazz.pcm == to_wav_bytes(synthesise("play some jazz", "en+m3", 130))[44:]
    info = json.loads((out / "build-info.json").read_text())
    assert (info["espeak_ng"], info["utterances"], info["voices"]) == (espeak_version(), 16, ["en-us", "en+m3"])


def test_the_same_phrases_build_byte_identical_files(tmp_path, phrases):
    for name in ("one", "two"):
        build_from_text(phrases, tmp_path / name, ["en-us+f3"], [160, 200], quiet=True)
    first = all_files(tmp_path / "one")
    assert len(first) == 4 * 2 + 2  # WAVs, manifest, build-info
    assert first == all_files(tmp_path / "two")


def test_phrases_of_the_bundled_corpus_give_its_very_files(tmp_path):
    phrases = write_phrases(tmp_path / "p.csv", "hello jarvis,GREETING\necho hello world,ECHO,contains:hello world\n")
    build_from_text(phrases, tmp_path / "out", ["en-us"], [160], quiet=True)
    mine = load_corpus(tmp_path / "out" / "manifest.csv")
    bundled = load_corpus().by_id
    same_espeak = espeak_version() in (PACKAGE_DIR / "build-info.json").read_text()
    for utterance in mine:
        assert utterance.id in bundled  # the same ids
        assert utterance.reply_check == bundled[utterance.id].reply_check
        if same_espeak:
            assert utterance.pcm == bundled[utterance.id].pcm


def test_a_rebuild_with_fewer_phrases_removes_only_its_own_stale_wavs(tmp_path, phrases):
    out = tmp_path / "out"
    build_from_text(phrases, out, ["en-us"], [160], quiet=True)
    (out / "wav" / "mine.txt").write_text("not the build's")
    fewer = write_phrases(tmp_path / "fewer.csv", "hello jarvis,GREETING\n")
    build_from_text(fewer, out, ["en-us"], [160], quiet=True)
    assert sorted(p.name for p in (out / "wav").iterdir()) == ["greeting_hello_jarvis_en-us_160.wav", "mine.txt"]
    assert [u.id for u in load_corpus(out / "manifest.csv")] == ["greeting_hello_jarvis_en-us_160"]


def test_a_header_may_list_the_columns_in_another_order(tmp_path):
    path = write_phrases(tmp_path / "p.csv", "expected_intent,text\nGREETING,hi there\n")
    (phrase,) = read_phrases(path)
    assert (phrase.text, phrase.expected_intent, phrase.reply_check, phrase.line) == ("hi there", "GREETING", "", 2)


def test_every_bad_line_is_reported_at_once_with_its_number(tmp_path):
    path = write_phrases(tmp_path / "bad.csv", (
        "hello,greeting\n"
        '"a,b",X,Y,Z\n'
        "Hello!,GREETING\n"
        ",FOO\n"
        "ok then,ECHO,contains:\n"
        "fine,GOOD_ONE\n"
    ))  # fmt: skip
    with pytest.raises(CorpusError) as caught:
        read_phrases(path)
    message = str(caught.value)
    assert message.startswith(f"phrases file {path} has 5 problems:\n")
    lines = message.splitlines()[1:]
    assert [line.split(":")[0].strip() for line in lines] == ["line 1", "line 2", "line 3", "line 4", "line 5"]
    assert "expected_intent 'greeting' is not an intent name" in lines[0] and "(e.g. GREETING)" in lines[0]
    assert "4 cells, but the columns are text,expected_intent,reply_check" in lines[1]
    assert "the same as line 1's once case and punctuation are ignored" in lines[2]
    assert "no text" in lines[3]
    assert "contains needs text after the colon" in lines[4]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--voices", "en-us,nosuchvoice"], "error: espeak-ng has no voice 'nosuchvoice'"),
        (["--voices", "en-us+F3"], "error: espeak-ng has no voice variant 'F3'"),
        (["--rates", "160,9000"], "error: speaking rate 9000 wpm is outside espeak-ng's 80-450 wpm"),
        (["--rates", "slow"], "error: speaking rate 'slow' is not a whole number of words per minute"),
        (["--rates", ","], "error: --rates ',' names no rate"),
    ],
)
def test_a_bad_voice_or_rate_is_one_line_and_exit_2_with_nothing_written(tmp_path, phrases, capsys, args, message):
    out = tmp_path / "out"
    assert corpus_build.main(["--from-text", str(phrases), "--out", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


def test_the_output_folder_must_be_given_and_not_the_bundled_corpus(phrases, capsys):
    assert corpus_build.main(["--from-text", str(phrases)]) == 2
    assert "error: --from-text needs --out DIR" in capsys.readouterr().err
    with pytest.raises(CorpusError, match="would overwrite the bundled corpus"):
        build_from_text(phrases, PACKAGE_DIR, ["en-us"], [160])


def test_a_file_named_manifest_csv_that_is_not_one_is_never_overwritten(tmp_path, phrases):
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.csv").write_text("my shopping list\n")
    with pytest.raises(CorpusError, match=r"manifest\.csv exists and is not a corpus manifest"):
        build_from_text(phrases, out, ["en-us"], [160], quiet=True)
    assert (out / "manifest.csv").read_text() == "my shopping list\n"


def test_options_of_another_mode_are_refused(phrases, capsys):
    with pytest.raises(SystemExit) as caught:
        corpus_build.main(["--from-text", str(phrases), "--labels", "x.csv", "--out", "o"])
    assert caught.value.code == 2
    assert "--labels does not go with the chosen mode" in capsys.readouterr().err


@pytest.mark.slow
def test_a_phrase_corpus_runs_in_locust_with_its_own_intents(tmp_path, shared_gateway):
    """--corpus-manifest takes the built folder as it is; a custom intent is judged, not refused."""
    phrases = write_phrases(tmp_path / "p.csv", "hello jarvis,GREETING\nwhat time is it,TIME_NOW\n"
                                                "play some jazz,PLAY_MUSIC\n")  # fmt: skip
    build_from_text(phrases, tmp_path / "mine", ["en-us"], [130, 160], quiet=True)
    built = {u.id: u for u in load_corpus(tmp_path / "mine" / "manifest.csv")}
    # A corpus user says its corpus round and round from a shuffled start: one user's first
    # len(built) turns say every utterance once, the PLAY_MUSIC ones included, whatever the order
    # and however slow the machine (the run ends after those turns; 120 s only guards a hang).
    run = run_locust(tmp_path / "run", shared_gateway.url, "--corpus-manifest", str(tmp_path / "mine" / "manifest.csv"),
                     "--tags", "corpus", users=1, run_time="120s", stop_after_turns=len(built))  # fmt: skip
    turns = run.file("_turns.csv")
    assert turns.exists(), run.output[-3000:]
    with turns.open(newline="", encoding="utf-8") as file:
        rows = [row for row in csv.DictReader(file) if row["failure"] != "run_stopped"]
    assert sorted(row["utterance_id"] for row in rows) == sorted(built), run.output[-3000:]
    for row in rows:
        assert row["expected_intent"] == built[row["utterance_id"]].expected_intent
        assert row["failure"] == "" or row["failure"] in diagnoses.DIAGNOSES
    standard = [row for row in rows if row["expected_intent"] != "PLAY_MUSIC"]
    assert standard and all(row["success"] == "1" for row in standard), standard
    # the reference gateway knows no PLAY_MUSIC: the turn is judged a wrong intent, not an error
    jazz = [row for row in rows if row["expected_intent"] == "PLAY_MUSIC"]
    assert jazz and all(row["failure"] == "wrong_intent" for row in jazz), jazz
