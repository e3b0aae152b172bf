"""Synthetic runs for the analysis tests: a turns file written by the harness's own TurnWriter,
and real Locust CSVs made by running Locust headless on a tiny locustfile.

Nothing here is a pytest fixture by itself; the test modules wrap these in fixtures.
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

from voiceharness.turns import TurnRecord, TurnWriter, turns_path

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable

# (utterance id, expected intent) in the corpus's naming style.
UTTERANCES = (
    ("greeting_hello_jarvis_en-us_160", "GREETING"),
    ("echo_hello_world_en-us_160", "ECHO"),
    ("time_what_time_is_it_en-us_160", "TIME_NOW"),
    ("weather_how_is_the_weather_en-us_160", "WEATHER_SIMPLE"),
)


def make_records(
    n: int = 400,
    *,
    seed: int = 7,
    roundtrip_ms: float | None = None,
    wrong_share: float = 0.05,
    fail_share: float = 0.03,
    reconnections_max: int = 2,
    start: float = 1_700_000_000.0,
    workers: int = 2,
    users: int = 10,
    lateness_ms: float = 1.5,
    fast_share: float = 0.0,
    fast_roundtrip_ms: float | None = None,
    audible_lead_ms: float | None = 60.0,
    audio_judged_share: float = 0.0,
    cross_checked_share: float = 0.0,
    judge_wrong_share: float = 0.0,
    stall_share: float = 0.0,
    harness_error_share: float = 0.0,
) -> list[TurnRecord]:
    """Realistic turn records: lognormal roundtrips, a few wrong intents and failed turns.

    The newer columns are filled as a client that writes them would: ``fast_share`` of the turns
    are fast-paced (roundtrip ``fast_roundtrip_ms``, default a third of a real-time one),
    ``audible_ms`` trails the roundtrip by ``audible_lead_ms`` (None: not recorded),
    ``audio_judged_share`` of the turns have their intent from the reply audio alone (no metadata),
    ``cross_checked_share`` of the metadata turns were also judged by ear, ``judge_wrong_share`` of
    those heard another intent, ``stall_share`` of the streamed replies stalled, and
    ``harness_error_share`` of the turns were broken by the harness itself.
    """
    rng = random.Random(seed)
    records = []
    for i in range(n):
        utterance, expected = UTTERANCES[i % len(UTTERANCES)]
        user = i % users
        failed = rng.random() < fail_share
        wrong = not failed and rng.random() < wrong_share
        intent = expected if not wrong else ("UNKNOWN" if expected != "ECHO" else "GREETING")
        fast = rng.random() < fast_share
        rt = roundtrip_ms if roundtrip_ms is not None else rng.lognormvariate(math.log(180), 0.5)
        if fast:
            rt = fast_roundtrip_ms if fast_roundtrip_ms is not None else rt / 3
        by_ear = rng.random() < audio_judged_share
        record = TurnRecord(
            timestamp=start + i * 0.05,
            worker=f"host:{100 + user % workers}",
            user=user,
            connection_id=f"c{user}",
            turn_index=i // users,
            scenario="performance" if fast else "basic",
            utterance_id=utterance,
            expected_intent=expected,
            intent=intent,
            confidence=0.9,
            transcript='hello, "jarvis"',
            success=not failed and not wrong,
            failure="wrong_intent" if wrong else "",
            connect_ms=rng.uniform(2, 20),
            roundtrip_ms=rt,
            intent_ms=rt * 0.6,
            reply_ms=rt + 900,
            ping_ms=rng.uniform(5, 80),
            speech_ms=1600.0,
            chunks_sent=rng.randint(30, 220),
            chunks_received=rng.randint(10, 40),
            reply_audio_bytes=64000,
            reply_complete=True,
            reconnections=min(reconnections_max, i // (n // (reconnections_max + 1) or 1))
            if user == 0
            else 0,
            send_lateness_max_ms=rng.uniform(0.2, lateness_ms) * 2,
            pace="fast" if fast else "realtime",
            reply_format="wav" if by_ear else "metadata+pcm",
            intent_source="audio" if by_ear else "metadata",
            audible_ms=math.nan if audible_lead_ms is None else rt + audible_lead_ms,
            reply_audio_ms=rng.uniform(900, 2100),
            reply_sample_rate_hz=22050 if by_ear else 16000,
            playback_stalls=None if by_ear else int(rng.random() < stall_share),
        )
        changes: dict = {}
        if by_ear:
            changes["audio_intent"] = intent
        elif rng.random() < cross_checked_share:
            heard_wrong = rng.random() < judge_wrong_share
            changes["audio_intent"] = ("UNKNOWN" if intent != "UNKNOWN" else "GREETING") if heard_wrong else intent
        if failed:
            failure = rng.choice(["no_intent", "no_audio_tts", "connection_refused"])
            failed_intent = "" if failure != "no_audio_tts" else expected
            changes.update(success=False, failure=failure, intent=failed_intent,
                           intent_source="metadata" if failed_intent else "", audio_intent="",
                           roundtrip_ms=math.nan, audible_ms=math.nan, reply_ms=math.nan, reply_audio_ms=math.nan,
                           reply_format="metadata" if failed_intent else "", playback_stalls=None)
            if failure == "connection_refused":
                changes.update(chunks_sent=0, ping_ms=math.nan)
        elif rng.random() < harness_error_share:
            changes.update(success=False, failure="harness_error",
                           failure_detail="TypeError: unsupported operand type(s) for -: 'float' and 'NoneType'",
                           roundtrip_ms=math.nan, audible_ms=math.nan, reply_ms=math.nan)
        record = dataclasses.replace(record, **changes)
        records.append(record)
    return records


def write_turns(prefix: str | os.PathLike[str], records: list[TurnRecord]) -> str:
    path = turns_path(os.fspath(prefix))
    writer = TurnWriter(path)
    writer.write_many(records)
    writer.close()
    return path


# A plain Locust run (no harness) whose CSV files hold what the locust-only tests read, for sure:
# every 10th turn a wrong intent, every 50th an exception in user code; the run ends itself once
# TURNS turns were fired and Locust's CSV writer has rewritten its files three times since (each
# pass also adds a stats-history row, with all 4 users running). A fixed --run-time made this a
# race on a busy machine: gevent's timer for it counts from a clock last read before the imports,
# so the run could end before Locust had written a single row.
LOCUSTFILE = textwrap.dedent(
    """
    import os
    import random

    import gevent
    from locust import User, constant, events, task

    UTTERANCES = ["greeting_hello_jarvis_en-us_160", "echo_hello_world_en-us_160"]
    TURNS = 400
    WRITER_PASSES = 3
    fired = 0


    class Voice(User):
        wait_time = constant(0.02)

        @task
        def turn(self):
            global fired
            fired += 1
            number = fired
            fire = self.environment.events.request.fire
            name = random.choice(UTTERANCES)
            fire(request_type="connect", name=name, response_time=random.uniform(1, 20),
                 response_length=0, exception=None, context={})
            fire(request_type="roundtrip", name=name, response_time=random.lognormvariate(5, 0.5),
                 response_length=2048, exception=None, context={})
            wrong = number % 10 == 0
            fire(request_type="intent", name=name, response_time=random.uniform(50, 300), response_length=0,
                 exception=Exception("wrong_intent: expected GREETING, got UNKNOWN") if wrong else None,
                 context={})
            fire(request_type="ping", name="ping", response_time=random.uniform(1, 90),
                 response_length=0, exception=None, context={})
            if number % 50 == 0:
                raise ValueError("boom in user code")


    def modified_ns(path):
        try:
            return os.stat(path).st_mtime_ns
        except OSError:
            return -1


    @events.init.add_listener
    def end_once_written(environment, **_kwargs):
        stats_path = environment.parsed_options.csv_prefix + "_stats.csv"

        def watch():
            while fired < TURNS:
                gevent.sleep(0.05)
            passes, seen = 0, modified_ns(stats_path)
            while passes < WRITER_PASSES:
                gevent.sleep(0.02)
                if modified_ns(stats_path) != seen:
                    passes, seen = passes + 1, modified_ns(stats_path)
            environment.runner.quit()

        gevent.spawn(watch)
    """
)


def run_locust(directory: Path, name: str = "run", guard_s: int = 120) -> str:
    """Run real Locust headless on the tiny locustfile until it has written what the tests read
    (it ends itself; ``guard_s`` is --run-time, against a hang); returns the --csv prefix."""
    directory.mkdir(parents=True, exist_ok=True)
    locustfile = directory / "tiny_locustfile.py"
    locustfile.write_text(LOCUSTFILE)
    prefix = directory / name
    locust = Path(PYTHON).with_name("locust")
    # Locust exits 1 when requests failed, which this locustfile makes some do on purpose.
    result = subprocess.run(
        [
            str(locust),
            "-f",
            str(locustfile),
            "--headless",
            "-u",
            "4",
            "-r",
            "4",
            "-t",
            f"{guard_s}s",
            "--csv",
            str(prefix),
            "--only-summary",
            "--loglevel",
            "ERROR",
            "--exit-code-on-error",
            "0",
        ],
        cwd=directory,
        capture_output=True,
        text=True,
        check=False,
        timeout=guard_s + 60,
    )
    if result.returncode != 0 or not Path(f"{prefix}_stats.csv").exists():
        raise RuntimeError(f"locust failed ({result.returncode}): {result.stderr[-2000:]}")
    return str(prefix)


_LOCUST_RUNS: dict[str, str] = {}


def shared_locust_run(tmp_path_factory) -> str:  # type: ignore[no-untyped-def]
    """One real Locust run per test session, shared by the modules that need it (copy before changing)."""
    if "run" not in _LOCUST_RUNS:
        _LOCUST_RUNS["run"] = run_locust(tmp_path_factory.mktemp("locust"), "run")
    return _LOCUST_RUNS["run"]


def copy_run(prefix: str, directory: Path, name: str = "run") -> str:
    """Copy every file of the run at ``prefix`` to ``directory/name_*``; returns the new prefix."""
    import shutil

    source = Path(prefix)
    directory.mkdir(parents=True, exist_ok=True)
    for path in source.parent.glob(source.name + "_*.csv"):
        shutil.copy(path, directory / (name + path.name[len(source.name) :]))
    return str(directory / name)


def analysis_command(*args: str) -> subprocess.CompletedProcess:
    """``python -m analysis ARGS`` from the repository root."""
    return subprocess.run(
        [PYTHON, "-m", "analysis", *args], cwd=REPO, capture_output=True, text=True, check=False, timeout=300
    )
