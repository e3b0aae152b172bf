"""What came back: the time to the first audible reply sample, and the reply audio itself.

``roundtrip_ms`` ends at the first reply *byte*; ``audible_ms`` ends at the first reply sample
above the speech threshold, so a TTS that starts with silence makes the user wait that long too
(voicebench's "measure at the audio"). The guide's bands stay on the roundtrip, as it defines
them; the audible time is shown beside it with its own percentiles and the gap between the two.

:func:`reply_audio` describes the replies: their formats (JSON metadata, PCM frames, WAV), sample
rates, durations, and, for replies streamed as frames, the playback stalls (times the audio would
have run out if played as it arrived).
"""

from __future__ import annotations

import numpy as np

from analysis.readers import Turns
from analysis.stats import Percentiles, finite, label_counts, percentiles, share
from analysis.summary import Audible, FormatCount, PlaybackStalls, RateCount, ReplyAudio

AUDIBLE_DEFINITION = (
    "end of speech -> first reply sample above the speech threshold (the TTS's leading silence counts as waiting)"
)


def audible(turns: Turns) -> Audible:
    """Percentiles of ``audible_ms`` and of its lead over the roundtrip (audible - roundtrip)."""
    values = turns.numbers.get("audible_ms")
    if values is None or not len(finite(values)):
        note = (
            "not recorded (older turns file)" if values is None else "no turn recorded an audible reply sample"
        )
        return Audible(0, Percentiles(), Percentiles(), AUDIBLE_DEFINITION, note)
    lead = values - turns.numbers["roundtrip_ms"]
    return Audible(
        count=len(finite(values)),
        percentiles=percentiles(values),
        lead=percentiles(lead),
        definition=AUDIBLE_DEFINITION,
        note="not banded: the guide's bands are for the roundtrip",
    )


def reply_audio(turns: Turns) -> ReplyAudio:
    """Reply formats, sample rates, audio duration and playback stalls of ``turns``."""
    formats = turns.text("reply_format")
    format_rows = tuple(
        FormatCount(name, count, share(count, len(turns)))
        for name, count in label_counts(formats.labels, formats.codes)
        if name
    )
    rates = turns.numbers.get("reply_sample_rate_hz")
    rate_rows: tuple[RateCount, ...] = ()
    if rates is not None:
        known = finite(rates)
        known = known[known > 0]  # 0: no reply audio, or a format that does not say
        values, counts = np.unique(known.astype(np.int64), return_counts=True)
        rate_rows = tuple(RateCount(int(v), int(c)) for v, c in zip(values, counts))
    duration = turns.numbers.get("reply_audio_ms")
    stalls = turns.numbers.get("playback_stalls")
    measured = finite(stalls) if stalls is not None else np.empty(0)
    stalled = int((measured > 0).sum())
    return ReplyAudio(
        formats=format_rows,
        sample_rates=rate_rows,
        audio_ms=percentiles(duration if duration is not None else np.empty(0)),
        audio_count=len(finite(duration)) if duration is not None else 0,
        playback_stalls=PlaybackStalls(
            turns=len(measured),  # replies streamed as frames, where stalls can be counted
            stalled_turns=stalled,
            share=share(stalled, len(measured)),
            total=int(measured.sum()) if len(measured) else 0,
            max=int(measured.max()) if len(measured) else None,
        ),
    )
