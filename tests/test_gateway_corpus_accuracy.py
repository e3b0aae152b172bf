"""The acceptance bar of the reference gateway's recognizer: every clean corpus utterance gets its
expected intent (and ECHO its words), every out-of-grammar one comes back UNKNOWN.

Runs the bundled audio corpus through :class:`gateway.pipeline.VoicePipeline` as the gateway
feeds it: the whole file (300 ms leading, 200 ms trailing silence), and the same speech with the
longer silence an endpointer may leave around it. The noisy copies are measured and printed,
not asserted (docs/recognition.md records them).
"""

from __future__ import annotations

import pytest

from audio_corpus import load_corpus
from gateway.pipeline import VoicePipeline
from voiceharness.reply_check import check_reply

pytestmark = pytest.mark.requires("espeak-ng")


def _padded(pcm: bytes, lead_ms: int, trail_ms: int) -> bytes:
    return b"\0\0" * (16 * lead_ms) + pcm + b"\0\0" * (16 * trail_ms)


FRAMINGS = {
    "as-recorded": lambda pcm: pcm,
    "endpointer-600ms": lambda pcm: _padded(pcm, 600, 600),
}


@pytest.fixture(scope="module")
def pipeline() -> VoicePipeline:
    pipeline = VoicePipeline()
    pipeline.warm_up()
    return pipeline


def _misses(pipeline: VoicePipeline, kind: str, framing: str) -> tuple[list[str], int]:
    misses = []
    corpus = load_corpus(select=f"kind:{kind}")
    for utterance in corpus:
        result = pipeline.process(FRAMINGS[framing](utterance.pcm), tts_enabled=False)
        problem = check_reply(utterance, result.intent, result.reply_text)
        if problem is not None:
            misses.append(f"{utterance.id}: heard {result.transcript!r} -> {problem}")
    return misses, len(corpus)


@pytest.mark.parametrize("framing", sorted(FRAMINGS))
def test_every_clean_utterance_gets_its_intent_and_reply(pipeline, framing):
    misses, total = _misses(pipeline, "clean", framing)
    assert total == 49
    assert not misses, f"{len(misses)}/{total} clean utterances wrong:\n" + "\n".join(misses)


@pytest.mark.parametrize("framing", sorted(FRAMINGS))
def test_every_out_of_grammar_utterance_is_unknown(pipeline, framing):
    misses, total = _misses(pipeline, "unknown", framing)
    assert total == 4
    assert not misses, "\n".join(misses)


def test_noisy_copies_accuracy_is_recorded(pipeline):
    misses, total = _misses(pipeline, "noisy", "as-recorded")
    print(f"noisy corpus: {total - len(misses)}/{total} right" + "".join(f"\n  {m}" for m in misses))
    assert total == 12
