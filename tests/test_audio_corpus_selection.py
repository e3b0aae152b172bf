"""audio_corpus.selection: ids, globs, intents and kinds narrow the bundled corpus, or say what there is."""

from __future__ import annotations

import pytest
from corpus_helpers import bundled_corpus

from audio_corpus import load_corpus
from voiceharness.errors import CorpusError


@pytest.fixture(scope="module")
def corpus():
    return bundled_corpus()


def test_select_by_ids_intents_and_kinds(corpus):
    assert {u.expected_intent for u in corpus.select("GREETING,ECHO")} == {"GREETING", "ECHO"}
    clean_greetings = corpus.select("greeting,kind:clean")
    assert clean_greetings and all(
        u.kind == "clean" and u.expected_intent == "GREETING" for u in clean_greetings
    )
    assert [u.id for u in corpus.select("greeting_hello_jarvis_en-us_160")] == [
        "greeting_hello_jarvis_en-us_160"
    ]
    assert all(u.id.startswith("time_now_") for u in corpus.select("time_now_*"))
    assert len(load_corpus(select="kind:unknown")) == 4


def test_select_matching_nothing_lists_what_is_available(corpus):
    with pytest.raises(CorpusError, match="'play_music' matches no utterance.*Available intents: GREETING"):
        corpus.select("play_music")
    with pytest.raises(CorpusError, match="ids: .*greeting_hello_jarvis_en-us_160"):
        load_corpus(select="kind:loud")
