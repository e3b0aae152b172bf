"""What an expected intent may be called.

The bundled manifest uses exactly the SmartJARVIS NLU's intents
(:data:`voiceharness.guide.INTENTS`), so a typo in it is an error. A corpus of one's own
describes someone else's gateway, whose NLU has its own commands: any name of upper-case
letters, digits and ``_`` (``PLAY_MUSIC``, ``LIGHTS_OFF``) is accepted there, and
:func:`near_standard_intent` notes one that is one letter away from a standard intent
(``GREETNG``), for a :class:`~audio_corpus.CorpusWarning`.
"""

from __future__ import annotations

import difflib
import re

from voiceharness.guide import INTENTS

INTENT_PATTERN = re.compile(r"^[A-Z0-9][A-Z0-9_]*$")


def check_intent_name(intent: str, *, standard_only: bool = False) -> str | None:
    """What is wrong with ``intent`` as an expected intent, or None when it is fine.

    ``standard_only``: only the SmartJARVIS intents (``INTENTS``) are allowed (the bundled
    corpus). Otherwise any name of upper-case letters, digits and ``_`` is, since another
    gateway's NLU has its own commands.
    """
    if standard_only:
        if intent in INTENTS:
            return None
        return f"unknown expected_intent {intent!r}; use one of {', '.join(INTENTS)}"
    if INTENT_PATTERN.match(intent):
        return None
    if not intent:
        return "empty expected_intent; name the intent the gateway should answer (e.g. GREETING)"
    suggestion = re.sub(r"[^A-Z0-9_]+", "_", intent.upper()).strip("_")
    hint = f" (e.g. {suggestion})" if suggestion and INTENT_PATTERN.match(suggestion) else ""
    return (
        f"expected_intent {intent!r} is not an intent name: use upper-case letters, digits and _ "
        f"only{hint}"
    )


def near_standard_intent(intent: str) -> str | None:
    """A note when ``intent`` is one typo away from a standard intent (``GREETNG``), else None."""
    if intent in INTENTS:
        return None
    close = difflib.get_close_matches(intent, INTENTS, n=1, cutoff=0.85)
    if not close:
        return None
    return (
        f"expected_intent {intent!r} is not a SmartJARVIS intent; did you mean {close[0]}? "
        f"(other intents are fine for another gateway's NLU)"
    )
