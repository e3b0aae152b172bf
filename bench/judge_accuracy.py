"""How accurately the reply listener judges reply audio: each method, tuned and held-out voices.

::

    python -m bench.judge_accuracy                      # all methods, both expectation sets
    python -m bench.judge_accuracy --methods lm --sets smartjarvis --voices festival

Builds an evaluation set of reply sentences — SmartJARVIS-style replies written here in
several variants per intent (DESIGN.md's facts, in our own words: times, echo words and
lead-ins vary) and the reference gateway's own replies (``gateway.synthesizer.reply_text``) —
speaks each with espeak-ng (the voices the judge was tuned on) and festival (held out: never
tuned on), and judges every clip with :class:`voiceharness.listener.ReplyListener` in each
method. Clips are cached in ``bench/results/tmp/judge_clips/`` (not in git). Prints accuracy,
confusion matrices and decode CPU time per reply, and writes ``bench/results/judge_accuracy.json``.

Decode times are CPU time (time.process_time) on a shared 2-core machine: compare methods
within one run, not across runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

from voiceharness.listener import METHODS, ReplyListener

REPO = Path(__file__).resolve().parents[1]
CLIPS = REPO / "bench" / "results" / "tmp" / "judge_clips"
RESULT = REPO / "bench" / "results" / "judge_accuracy.json"
REPEATED_CLIPS = 10
INTENTS = ("GREETING", "ECHO", "TIME_NOW", "WEATHER_SIMPLE", "UNKNOWN")
NONE = "(none)"

# espeak-ng voices the judge may be tuned on; festival voices it must never be tuned on.
ESPEAK_VOICES = (("en-us", 170), ("en-us+f3", 155), ("en-gb", 150), ("en+m3", 190))
FESTIVAL_VOICES = ("kal_diphone", "cmu_us_slt_arctic_hts")

# (request the harness said, echoed words) for ECHO replies.
_ECHOES = (
    ("echo hello world", "hello world"),
    ("echo open the door", "open the door"),
    ("repeat testing one two three", "testing one two three"),
    ("say good morning", "good morning"),
    ("echo the blue car is fast", "the blue car is fast"),
    ("tell me see you later", "see you later"),
    ("echo pizza for dinner", "pizza for dinner"),
    ("repeat turn off the lights", "turn off the lights"),
)
_ECHO_LEAD_INS = ("You said: {}.", "I heard: {}.", "You mentioned {}.", "You told me {}.")
_TIMES = ("9:05 AM", "4:30 PM", "12:15", "7 o'clock", "11:45 PM", "2:20 in the afternoon", "6:10")
_TIME_TEMPLATES = ("The time is {}.", "It's {} right now.", "Right now it's {}.", "The current time is {}.")

# SmartJARVIS-style replies: (intent, text, request text). Written for this benchmark from the
# facts in DESIGN.md, not taken from any gateway's templates.
SMARTJARVIS_SENTENCES: tuple[tuple[str, str, str], ...] = (
    ("GREETING", "Hello! How can I help you today?", "hello jarvis"),
    ("GREETING", "Hi there, what can I do for you?", "hi jarvis"),
    ("GREETING", "Hey! How can I help?", "hey jarvis"),
    ("GREETING", "Hello, I'm here to help. What can I do for you?", "good morning jarvis"),
    ("GREETING", "Hi! What can I help you with?", "hello"),
    ("GREETING", "Good morning! How may I help you?", "good morning jarvis"),
    *(
        ("ECHO", _ECHO_LEAD_INS[i % len(_ECHO_LEAD_INS)].format(words), request)
        for i, (request, words) in enumerate(_ECHOES)
    ),
    *(
        ("TIME_NOW", _TIME_TEMPLATES[i % len(_TIME_TEMPLATES)].format(clock), "what time is it")
        for i, clock in enumerate(_TIMES)
    ),
    ("WEATHER_SIMPLE", "Sorry, weather information is not available right now. Can I help with something else?",
     "how is the weather"),
    ("WEATHER_SIMPLE", "I don't have weather information at the moment, but I can help with other things.",
     "what's the weather like"),
    ("WEATHER_SIMPLE", "Weather data isn't available yet. Is there anything else I can do for you?",
     "how is the weather"),
    ("WEATHER_SIMPLE", "Unfortunately the weather forecast is not available. Anything else I can help with?",
     "what is the weather today"),
    ("WEATHER_SIMPLE", "I can't check the weather, sorry. Is there something else you need?",
     "jarvis how is the weather"),
    ("UNKNOWN", "I'm not sure I understood. Could you rephrase that?", "play some music"),
    ("UNKNOWN", "Sorry, I didn't quite catch that. Can you say it another way?", "order a pizza"),
    ("UNKNOWN", "Could you clarify what you mean?", "set an alarm for seven"),
    ("UNKNOWN", "I'm not sure what you mean. Please rephrase your request.", "turn off the lights"),
    ("UNKNOWN", "Hmm, I didn't understand that. Could you try saying it differently?", "play some music"),
)


def reference_sentences() -> tuple[tuple[str, str, str], ...]:
    """The reference gateway's own replies (gateway.synthesizer.reply_text)."""
    from gateway.synthesizer import reply_text

    sentences = [
        ("GREETING", reply_text("GREETING"), "hello jarvis"),
        ("WEATHER_SIMPLE", reply_text("WEATHER_SIMPLE"), "how is the weather"),
        ("UNKNOWN", reply_text("UNKNOWN"), "play some music"),
    ]
    for hour, minute in ((9, 5), (16, 30), (0, 15), (11, 45), (19, 2)):
        text = reply_text("TIME_NOW", now=dt.datetime(2026, 1, 1, hour, minute))
        sentences.append(("TIME_NOW", text, "what time is it"))
    for request in ("echo hello world", "echo good morning", "echo open the door", "echo testing one two three",
                    "echo the blue car is fast"):
        sentences.append(("ECHO", reply_text("ECHO", {"words": request.split(" ", 1)[1]}), request))
    return tuple(sentences)


@dataclass(frozen=True)
class Clip:
    intent: str
    text: str
    request_text: str
    synthesizer: str  # "espeak-ng" or "festival"
    voice: str
    path: Path


def _synthesize(synthesizer: str, voice: str, text: str) -> bytes:
    """WAV bytes of ``text`` from espeak-ng (voice "name/rate") or festival's text2wave."""
    if synthesizer == "espeak-ng":
        name, rate = voice.split("/")
        command = ["espeak-ng", "-v", name, "-s", rate, "--stdout", "--", text]
        done = subprocess.run(command, capture_output=True, check=True, timeout=30)
        return done.stdout
    # text2wave fixes up its WAV header by seeking back, which a pipe cannot: write a file.
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "reply.wav"
        command = ["text2wave", "-eval", f"(voice_{voice})", "-o", str(path)]
        subprocess.run(command, input=text.encode(), capture_output=True, check=True, timeout=60)
        return path.read_bytes()


def build_clips(sets: list[str], synthesizers: list[str]) -> dict[str, list[Clip]]:
    """Synthesize (or reuse from the cache) every clip of the chosen sets and voices."""
    for tool in ("espeak-ng", "text2wave"):
        if shutil.which(tool) is None:
            sys.exit(f"judge_accuracy: {tool} is not installed (apt-get install espeak-ng festival "
                     "festvox-kallpc16k festvox-us-slt-hts)")
    CLIPS.mkdir(parents=True, exist_ok=True)
    voices = [("espeak-ng", f"{v}/{r}") for v, r in ESPEAK_VOICES if "espeak-ng" in synthesizers]
    voices += [("festival", v) for v in FESTIVAL_VOICES if "festival" in synthesizers]
    clips: dict[str, list[Clip]] = {}
    for name in sets:
        sentences = SMARTJARVIS_SENTENCES if name == "smartjarvis" else reference_sentences()
        clips[name] = []
        for synthesizer, voice in voices:
            for intent, text, request in sentences:
                key = hashlib.sha1(f"{synthesizer}|{voice}|{text}".encode()).hexdigest()[:16]
                path = CLIPS / f"{key}.wav"
                if not path.exists():
                    # espeak-ng streams its WAV with placeholder sizes: decode, then write a clean file.
                    samples, rate_hz = soundfile.read(io.BytesIO(_synthesize(synthesizer, voice, text)),
                                                      dtype="int16")
                    # Written aside and renamed, so that parallel runs never read half a file.
                    partial = path.with_suffix(f".{os.getpid()}.part")
                    soundfile.write(partial, samples, rate_hz, subtype="PCM_16", format="WAV")
                    partial.replace(path)
                clips[name].append(Clip(intent, text, request, synthesizer, voice, path))
    return clips


def confusion(rows: list[tuple[str, str]]) -> dict[str, dict[str, int]]:
    """expected -> heard -> count (heard "(none)" when the listener could not classify)."""
    counts = Counter(rows)
    return {e: {h: counts[(e, h)] for h in (*INTENTS, NONE) if counts[(e, h)]} for e in INTENTS}


def evaluate(method: str, set_name: str, clips: list[Clip], repeats: int) -> dict:
    listener = ReplyListener(set_name, method=method)
    listener.warm_up()
    results = {}
    for synthesizer in sorted({c.synthesizer for c in clips}):
        rows, decode_ms, repeat_spread, mistakes = [], [], [], []
        for index, clip in enumerate(c for c in clips if c.synthesizer == synthesizer):
            samples, rate_hz = soundfile.read(clip.path, dtype="int16")
            times = []
            # The time spread of repeated decodes, on the first REPEATED_CLIPS clips of each voice set.
            for _ in range(repeats if index < REPEATED_CLIPS else 1):
                heard = listener.hear(samples, rate_hz, request_text=clip.request_text)
                times.append(heard.decode_ms)
            decode_ms.append(statistics.median(times))
            if len(times) > 1:
                repeat_spread.append((max(times) - min(times)) / statistics.median(times))
            rows.append((clip.intent, heard.intent or NONE))
            if heard.intent != clip.intent:
                mistakes.append({"voice": clip.voice, "text": clip.text, "expected": clip.intent,
                                 "heard": heard.intent, "transcript": heard.transcript, "scores": heard.scores})
        correct = sum(1 for e, h in rows if e == h)
        quantiles = np.percentile(decode_ms, [10, 50, 90])
        results[synthesizer] = {
            "clips": len(rows),
            "correct": correct,
            "accuracy": round(correct / len(rows), 4),
            "unjudged": sum(1 for _, h in rows if h == NONE),
            "decode_ms_p10_p50_p90": [round(float(q), 1) for q in quantiles],
            "repeat_spread_median": round(statistics.median(repeat_spread), 3) if repeat_spread else None,
            "confusion": confusion(rows),
            "mistakes": mistakes,
        }
    return results


def _print_result(method: str, set_name: str, synthesizer: str, result: dict) -> None:
    p10, p50, p90 = result["decode_ms_p10_p50_p90"]
    print(f"\n{method:8} {set_name:12} {synthesizer:10} accuracy {result['correct']}/{result['clips']} "
          f"= {result['accuracy']:.1%}  unjudged {result['unjudged']}  decode CPU ms p50 {p50} "
          f"(p10 {p10}, p90 {p90})  repeat spread {result['repeat_spread_median']}")
    header = "expected \\ heard".ljust(16) + "".join(h[:8].rjust(9) for h in (*INTENTS, NONE))
    print(header)
    for expected in INTENTS:
        row = result["confusion"][expected]
        print(expected[:16].ljust(16) + "".join(str(row.get(h, 0)).rjust(9) for h in (*INTENTS, NONE)))
    for mistake in result["mistakes"][:12]:
        print(f"   x {mistake['voice']}: {mistake['text']!r} -> {mistake['heard']} heard {mistake['transcript']!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--sets", nargs="+", choices=["smartjarvis", "reference"],
                        default=["smartjarvis", "reference"])
    parser.add_argument("--voices", nargs="+", choices=["espeak-ng", "festival"], default=["espeak-ng", "festival"])
    parser.add_argument("--repeats", type=int, default=3, help=f"decodes of each of the first {REPEATED_CLIPS} clips per voice set, for the time spread")
    parser.add_argument("--output", type=Path, default=RESULT)
    args = parser.parse_args(argv)
    clips = build_clips(args.sets, args.voices)
    report = {"when": time.strftime("%Y-%m-%dT%H:%M:%S"), "repeats": args.repeats,
              "espeak_voices": [f"{v}/{r}" for v, r in ESPEAK_VOICES], "festival_voices": list(FESTIVAL_VOICES),
              "results": {}}
    for method in args.methods:
        for set_name in args.sets:
            result = evaluate(method, set_name, clips[set_name], args.repeats)
            report["results"][f"{method}/{set_name}"] = result
            for synthesizer, numbers in result.items():
                _print_result(method, set_name, synthesizer, numbers)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=1) + "\n")
    print(f"\nwrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
