"""How each turn's intent was judged: from the gateway's metadata, by ear from the reply audio, or not.

A gateway that sends JSON metadata says its intent; one that sends only audio (the published
SmartJARVIS gateway: one WAV, no metadata) is judged by the harness's reply judge, which
transcribes the reply and classifies it (``intent_source = "audio"``). Where both exist the judge
cross-checks the metadata, and how often the two agree is the judge's accuracy.

* :func:`effective_source` -- each turn's source; a turn with an intent but no recorded source
  (older files, or a client that does not write the column yet) took it from the metadata.
* :func:`intent_sources` -- how many turns were judged from each source, and why the rest were not.
* :func:`judge_agreement` -- audio intent against metadata intent, with its confusion matrix.

Intent accuracy counts judged turns only (a turn with no reply is a failure with a diagnosis, not
a wrong intent); :func:`not_judged` says how many were left out and why.
"""

from __future__ import annotations

import numpy as np

from analysis.readers import Categorical, Turns
from analysis.stats import label_counts, share
from analysis.summary import (
    IntentSources,
    JudgeAgreement,
    JudgeConfusion,
    NotJudged,
    NotJudgedReason,
    SourceAccuracy,
    SourceCount,
)

METADATA = "metadata"
AUDIO = "audio"
SOURCES = (METADATA, AUDIO)
NOT_SAMPLED = "not sampled for judging"
_SOURCE_TITLES = {METADATA: "gateway metadata", AUDIO: "reply audio (the judge)"}


def _codes_of(column: Categorical, values: tuple[str, ...]) -> np.ndarray:
    return np.isin(column.codes, np.flatnonzero(np.isin(column.labels, values)))


def effective_source(turns: Turns) -> np.ndarray:
    """Each turn's intent source as an object array: "metadata", "audio" or "" (not judged)."""
    recorded = turns.text("intent_source").decode().astype(object)
    has_intent = ~_codes_of(turns.text("intent"), ("",))
    return np.where((recorded == "") & has_intent, METADATA, recorded)


def judged(turns: Turns) -> np.ndarray:
    """Boolean mask of the turns whose intent was judged (from either source)."""
    return effective_source(turns) != ""


def not_judged(turns: Turns) -> NotJudged:
    """How many turns with an expected intent were not judged, by reason (the turn's diagnosis)."""
    expected = ~_codes_of(turns.text("expected_intent"), ("",))
    left_out = expected & ~judged(turns)
    failure = turns.text("failure")
    reasons = tuple(
        NotJudgedReason(code or NOT_SAMPLED, count)
        for code, count in label_counts(failure.labels, failure.codes[left_out])
    )
    return NotJudged(int(left_out.sum()), reasons)


def intent_sources(turns: Turns) -> IntentSources:
    """Turns per intent source, and whether the file recorded the source at all."""
    source = effective_source(turns)
    total = len(source)
    rows = []
    for name in SOURCES:
        count = int((source == name).sum())
        rows.append(SourceCount(name, _SOURCE_TITLES[name], count, share(count, total)))
    none = int((source == "").sum())
    rows.append(SourceCount("", "not judged", none, share(none, total)))
    recorded = "intent_source" in turns.texts
    note = None if recorded else "older turns file without intent_source: a turn with an intent took it from the metadata"
    return IntentSources(total, tuple(rows), recorded, note)


def judge_agreement(turns: Turns) -> JudgeAgreement:
    """Does the reply audio say what the metadata claims? Over turns judged both ways.

    The judge's accuracy where the gateway's metadata gives the truth: the share of turns whose
    audio intent equals the metadata intent, and a confusion matrix (rows: metadata, columns: audio).
    """
    source = effective_source(turns)
    audio = turns.text("audio_intent").decode().astype(object)
    metadata = turns.text("intent").decode().astype(object)
    both = (source == METADATA) & (audio != "")
    n = int(both.sum())
    heard_alone = int(((source == AUDIO) & (audio != "")).sum())
    if not n:
        return JudgeAgreement(
            0, 0, None, heard_alone, JudgeConfusion(),
            "no turn was judged both from metadata and from its reply audio "
            "(--judge-replies cross-checks a gateway that sends metadata)",
        )  # fmt: skip
    said, heard = metadata[both], audio[both]
    labels = sorted(set(said) | set(heard))
    position = {label: i for i, label in enumerate(labels)}
    rows = np.array([position[x] for x in said], dtype=np.int64)
    columns = np.array([position[x] for x in heard], dtype=np.int64)
    k = len(labels)
    matrix = np.bincount(rows * k + columns, minlength=k * k).reshape(k, k)
    used_rows = [i for i in range(k) if matrix[i].sum()]
    used_columns = [i for i in range(k) if matrix[:, i].sum()]
    agreed = int((rows == columns).sum())
    return JudgeAgreement(
        turns=n,
        agreed=agreed,
        agreement=agreed / n,
        audio_only_turns=heard_alone,
        confusion=JudgeConfusion(
            metadata=tuple(labels[i] for i in used_rows),
            audio=tuple(labels[i] for i in used_columns),
            counts=tuple(tuple(row) for row in matrix[np.ix_(used_rows, used_columns)].tolist()),
        ),
    )


def accuracy_by_source(turns: Turns) -> tuple[SourceAccuracy, ...]:
    """Intent accuracy of the turns judged from each source (turns with an expected intent only)."""
    source = effective_source(turns)
    expected = turns.text("expected_intent").decode()
    recognised = turns.text("intent").decode()
    rows = []
    for name in SOURCES:
        mine = (source == name) & (expected != "")
        n = int(mine.sum())
        if n:
            correct = int((expected[mine] == recognised[mine]).sum())
            rows.append(SourceAccuracy(name, _SOURCE_TITLES[name], n, correct, correct / n))
    return tuple(rows)
