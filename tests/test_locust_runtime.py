"""voiceharness.locust.runtime: one runtime per Locust environment, and Locust as a library.

These tests build Locust environments in their own process, as a program that uses Locust as a
library does; the module runs in a process that gevent patched first (tests/gevent_process.py).
"""

from __future__ import annotations

import ast
import csv
import importlib
import inspect
import json
import logging
import pkgutil
import random
import re
import types
from dataclasses import is_dataclass
from enum import Enum
from pathlib import Path

import pytest

pytestmark = pytest.mark.gevent

ROOT = Path(__file__).resolve().parent.parent


def _read_turns(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def test_locust_as_a_library_records_every_turn_of_a_20_s_run(tmp_path, shared_gateway):
    import gevent
    from locust import constant, task
    from locust.env import Environment

    from voiceharness.locust import VoiceUser, attach

    class Greeter(VoiceUser):
        wait_time = constant(0.2)

        @task
        def greet(self):
            self.client.say("greeting_hello_jarvis_en-us_160", expect="GREETING")

    environment = Environment(user_classes=[Greeter], host=shared_gateway.url)
    runner = environment.create_local_runner()
    prefix = tmp_path / "library"
    voice = attach(environment, csv_prefix=str(prefix), utterances="kind:clean")
    assert environment.voice is voice and voice.corpus is not None and len(voice.corpus) > 10
    runner.start(3, spawn_rate=3)
    gevent.sleep(20)
    runner.quit()
    voice.shutdown()

    turns = _read_turns(Path(f"{prefix}_turns.csv"))
    finished = [row for row in turns if row["failure"] != "run_stopped"]
    assert len(finished) >= 6, turns
    assert [row for row in finished if row["failure"]] == []
    assert {row["intent"] for row in finished} == {"GREETING"}
    status = json.loads(Path(f"{prefix}_run.json").read_text())
    assert status["complete"] and status["turns_started"] == status["turns_recorded"] == len(turns)
    # Locust's own stats saw every finished turn once, as an intent event.
    intent = environment.stats.get("greeting_hello_jarvis_en-us_160", "intent")
    assert intent.num_requests == len(finished) and intent.num_failures == 0


def test_two_environments_in_one_process_keep_their_own_runtime(tmp_path):
    from locust.env import Environment

    from voiceharness.locust import VoiceUser, attach

    class Quiet(VoiceUser):
        abstract = False

    first = Environment(user_classes=[Quiet])
    second = Environment(user_classes=[Quiet])
    first.create_local_runner()
    second.create_local_runner()
    a = attach(first, host="ws://127.0.0.1:9", turns_file=str(tmp_path / "a.csv"), utterances="GREETING")
    b = attach(second, host="ws://127.0.0.1:9", dialect="smartjarvis", utterances="kind:clean")
    try:
        assert first.voice is a and second.voice is b and a is not b
        assert a.pacer is not b.pacer and a.sink is not b.sink and a.run_status is not b.run_status
        assert a.config.dialect.name == "reference" and b.config.dialect.name == "smartjarvis"
        assert {u.expected_intent for u in a.corpus} == {"GREETING"} and len(b.corpus) > len(a.corpus)
        a.run_status.turn_started()
        assert (a.run_status.turns_started(), b.run_status.turns_started()) == (1, 0)
    finally:
        a.shutdown()
        b.shutdown()


def test_a_runtime_stops_gevent_recording_who_spawned_each_greenlet_unless_told_to(tmp_path, monkeypatch):
    # gevent keeps the spawner's last ten frames on every greenlet (~0.9 KB a user) by default.
    import gevent
    from locust.env import Environment

    from voiceharness.locust import VoiceUser, attach
    from voiceharness.locust.runtime import TRACK_GREENLET_TREE_ENV

    class Quiet(VoiceUser):
        abstract = False

    before = gevent.config.track_greenlet_tree
    runtimes = []
    try:
        for wanted in (None, "1"):
            if wanted is None:
                monkeypatch.delenv(TRACK_GREENLET_TREE_ENV, raising=False)
            else:
                monkeypatch.setenv(TRACK_GREENLET_TREE_ENV, wanted)
            gevent.config.track_greenlet_tree = True
            environment = Environment(user_classes=[Quiet])
            environment.create_local_runner()
            runtimes.append(attach(environment, host="ws://127.0.0.1:9", turns_file=str(tmp_path / f"{wanted}.csv"),
                                   utterances="GREETING"))
            spawned = gevent.spawn(lambda: None)
            spawned.join()
            if wanted is None:
                assert gevent.config.track_greenlet_tree is False and spawned.spawning_stack is None
            else:  # the variable set: gevent's setting is the user's
                assert gevent.config.track_greenlet_tree is True and spawned.spawning_stack is not None
    finally:
        for runtime in runtimes:
            runtime.shutdown()
        gevent.config.track_greenlet_tree = before


def test_corpus_users_share_one_order_each_from_its_own_place_and_say_every_utterance_alike(tmp_path):
    """No copy of the corpus per user (issue 27's memory): every CorpusUser walks the process's one
    shuffled order from a place of its own, so over a whole round each says each utterance once,
    and the users hold the same tuple, not copies of it."""
    from collections import Counter

    from locust.env import Environment

    from voiceharness.locust import attach
    from voiceharness.locust.scenarios import CorpusUser

    environment = Environment(user_classes=[CorpusUser])
    environment.create_local_runner()
    runtime = attach(environment, host="ws://127.0.0.1:9", turns_file=str(tmp_path / "t.csv"), utterances="kind:clean")
    try:
        runtime.rng = random.Random(27)  # the starting places are drawn: fixed here, so the test cannot depend on chance
        users = [CorpusUser(environment) for _ in range(7)]
        for user in users:
            user.on_start()
        size = len(runtime.corpus)
        assert size >= 5
        said = [[next(user.utterances) for _ in range(size)] for user in users]
        for user, theirs in zip(users, said, strict=True):
            assert Counter(u.id for u in theirs) == Counter(u.id for u in runtime.corpus), user
            assert user.rng is runtime.rng  # one random source per process
        assert len({id(user.utterances._order) for user in users}) == 1
        assert len({theirs[0].id for theirs in said}) > 1  # not all from the same place
    finally:
        runtime.shutdown()


def test_a_user_in_an_environment_without_a_runtime_is_told_how_to_make_one():
    from locust.env import Environment

    from voiceharness.errors import UsageError
    from voiceharness.locust import VoiceUser

    class Lonely(VoiceUser):
        abstract = False

    environment = Environment(user_classes=[Lonely])
    with pytest.raises(UsageError, match=r"voiceharness\.locust\.attach\(environment, host=\.\.\.\)"):
        Lonely(environment)


def test_attach_refuses_an_unknown_option_by_name():
    from locust.env import Environment

    from voiceharness.errors import UsageError
    from voiceharness.locust import attach

    with pytest.raises(UsageError, match="unknown voice option.*think_time"):
        attach(Environment(), host="ws://127.0.0.1:9", think_time="1000")


# -- no state of its own outside the environment


def _assigned_names(module: types.ModuleType) -> list[str]:
    return _assigned_names_in(inspect.getsource(module))


def _assigned_names_in(source: str) -> list[str]:
    """Names a module binds at its top level by assignment (not imports, functions or classes)."""
    tree = ast.parse(source)
    names = []
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
            node, ast.AnnAssign) else []
        for target in targets:
            names.extend(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
    return names


_IMMUTABLE = (int, float, complex, str, bytes, bool, type(None), tuple, frozenset, range, re.Pattern,
              types.FunctionType, types.BuiltinFunctionType, types.MethodType, types.MappingProxyType, type,
              logging.Logger, Enum)


def _mutable(value: object) -> bool:
    if isinstance(value, tuple | frozenset):
        return any(_mutable(item) for item in value)
    if isinstance(value, _IMMUTABLE):
        return False
    if is_dataclass(value) and not isinstance(value, type):
        return not type(value).__dataclass_params__.frozen
    return True


def test_no_module_of_the_locust_layer_holds_a_mutable_object_at_module_or_class_level():
    import voiceharness.locust

    found = []
    for info in pkgutil.iter_modules(voiceharness.locust.__path__, "voiceharness.locust."):
        module = importlib.import_module(info.name)
        for name in _assigned_names(module):
            if name.startswith("__") or name == "log":
                continue
            value = getattr(module, name)
            if _mutable(value):
                found.append(f"{info.name}.{name} = {type(value).__name__}")
        for class_name, cls in vars(module).items():
            if not isinstance(cls, type) or cls.__module__ != module.__name__:
                continue
            for name, value in vars(cls).items():
                if name.startswith("__") or name == "tasks":  # Python's and Locust's own (its task list)
                    continue
                if isinstance(value, list | dict | set | bytearray):
                    found.append(f"{info.name}.{class_name}.{name} = {type(value).__name__}")
    assert found == [], "module- or class-level mutable state (it belongs on environment.voice): " + ", ".join(found)


def test_the_walker_tells_state_from_constants():
    import threading

    source = "import logging\nfrom x import y\nlog = logging.getLogger('x')\nLIMIT: int = 5\nSEEN = {}\ndef f(): pass\n"
    assert _assigned_names_in(source) == ["log", "LIMIT", "SEEN"]
    assert not any(map(_mutable, (5, "s", ("a", 1), frozenset({1}), logging.getLogger("x"), re.compile("x"))))
    assert all(map(_mutable, ({}, [], ("a", []), threading.Lock(), object())))
    assert not _mutable(types.MappingProxyType({}))
