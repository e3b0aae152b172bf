"""The project as a user installs it: a wheel built by ``python -m build``, installed into a fresh
virtual environment outside the checkout, used from an empty folder with no checkout in sight.

One wheel and one environment serve the whole module (the install downloads the dependencies).
Every command runs from a folder outside the checkout, without PYTHONPATH or the checkout's
virtual environment, and the environment is checked to import the installed files.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import textwrap
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import PYTHON, ROOT, STOP_AFTER_TURNS, Gateway, free_port, stop_after_turns_env

from audio_corpus import text_utterance_id
from audio_corpus.resolve import DEFAULT_RATE_WPM, DEFAULT_VOICE

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

CONSOLE_SCRIPTS = {
    "voice-gateway": "gateway.__main__:main",
    "voice-replay": "voiceharness.replay:main",
    "voice-calibrate": "voiceharness.calibrate:main",
    "voice-analysis": "analysis.cli:main",
    "voice-mic-probe": "mic_probe:main",
    "voice-corpus-build": "audio_corpus.build:main",
    "voice-options": "voiceharness.locust.options:print_help",
    "voice-locust": "voiceharness.locust.__main__:main",
}
PACKAGES = ("voiceharness", "audio_corpus", "gateway", "analysis", "audio_probe")
# What of the packages' folders an install needs: code and the data the code reads.
INSTALLED_SUFFIXES = (".py", ".wav", ".csv", ".json", ".jsgf", ".gram", ".j2")

# The README's "Write your own scenario", and nothing else: a plain-text phrase that the bundled
# corpus does not have, its intent checked with expect=, and one turn failed with catch_response.
PHRASE = "good evening jarvis"
USER_LOCUSTFILE = f'''
from locust import task

from voiceharness.locust import VoiceUser


class Evening(VoiceUser):
    failed_on_purpose = False  # one turn of the whole run is failed by the check below

    @task
    def good_evening(self):
        with self.client.say("{PHRASE}", expect="GREETING", name="good evening", catch_response=True) as turn:
            if turn.ok and not Evening.failed_on_purpose:
                Evening.failed_on_purpose = True
                turn.failure("failed on purpose")
'''


def _outside_checkout(path: Path) -> Path:
    assert not path.resolve().is_relative_to(ROOT), f"{path} is inside the checkout; run pytest with --basetemp elsewhere"
    return path


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment without anything that points at the checkout or its virtual environment."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PYTHONSAFEPATH")}
    env["PATH"] = os.pathsep.join(entry for entry in env.get("PATH", "").split(os.pathsep)
                                  if entry and not Path(entry).resolve().is_relative_to(ROOT))
    return {**env, **extra}


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """``python -m build``: the sdist, then the wheel built from it in a clean folder (so no stale
    build/ of the checkout can slip files in, and the sdist is proved complete)."""
    dist = _outside_checkout(tmp_path_factory.mktemp("dist"))
    completed = subprocess.run([PYTHON, "-m", "build", "--outdir", str(dist), str(ROOT)], cwd=dist,
                               capture_output=True, text=True, timeout=600, check=False)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    wheels = list(dist.glob("*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    """A fresh virtual environment (no system site-packages) with the wheel installed by pip."""
    root = _outside_checkout(tmp_path_factory.mktemp("venv"))
    subprocess.run([PYTHON, "-m", "venv", str(root)], cwd=root, check=True, timeout=120,
                   env=_clean_env())
    completed = subprocess.run([str(root / "bin" / "python"), "-m", "pip", "install", "--quiet", str(wheel)],
                               cwd=root, capture_output=True, text=True, timeout=1200, env=_clean_env(), check=False)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return root


@pytest.fixture(scope="module")
def elsewhere(tmp_path_factory) -> Path:
    """An empty folder outside the checkout: the user's own repository."""
    return _outside_checkout(tmp_path_factory.mktemp("own-repo"))


@pytest.fixture(scope="module")
def installed_gateway(venv, elsewhere, tmp_path_factory) -> Iterator[Gateway]:
    """The reference gateway, started with the install's ``voice-gateway``."""
    gateway = Gateway(free_port(), (), tmp_path_factory.mktemp("gateway") / "gateway.log",
                      command=(str(venv / "bin" / "voice-gateway"),), cwd=elsewhere, env=_clean_env())
    try:
        yield gateway.start(timeout_s=120)
    finally:
        gateway.stop()


def test_the_wheel_holds_every_module_and_data_file_and_no_checkout_folder(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    tracked = subprocess.run(["git", "ls-files", *PACKAGES], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    wanted = {name for name in tracked if name.endswith(INSTALLED_SUFFIXES)} | {"mic_probe.py"}
    assert any(name.startswith("audio_corpus/wav/") for name in wanted)
    assert {"audio_corpus/manifest.csv", "audio_corpus/build-info.json", "gateway/commands.jsgf",
            "voiceharness/locust/scenarios.py", "analysis/templates/report.html.j2"} <= wanted
    assert sorted(wanted - names) == []
    top_level = {name.split("/", 1)[0] for name in names if not name.split("/", 1)[0].endswith(".dist-info")}
    assert top_level == {*PACKAGES, "mic_probe.py"}  # not locustfiles/, tests/, examples/, bench/

    dist_info = next(name for name in names if name.endswith(".dist-info/entry_points.txt"))
    scripts = {}
    section = ""
    for line in zipfile.ZipFile(wheel).read(dist_info).decode().splitlines():
        if line.startswith("["):
            section = line.strip("[]")
        elif "=" in line and section == "console_scripts":
            command, target = (part.strip() for part in line.split("=", 1))
            scripts[command] = target
    assert scripts == CONSOLE_SCRIPTS


def test_a_path_install_gives_the_files_and_commands_of_the_wheel(wheel, tmp_path):
    """``pip install /path/to/checkout`` (here into a folder, without the dependencies) installs what the wheel holds."""
    target = _outside_checkout(tmp_path) / "target"
    completed = subprocess.run([PYTHON, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target),
                                str(ROOT)], cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    installed = {path.relative_to(target).as_posix() for path in target.rglob("*")
                 if path.is_file() and path.relative_to(target).parts[0] != "bin"
                 and "__pycache__" not in path.parts and not path.relative_to(target).parts[0].endswith(".dist-info")}
    in_wheel = {name for name in zipfile.ZipFile(wheel).namelist() if ".dist-info/" not in name}
    assert sorted(installed ^ in_wheel) == []
    assert {path.name for path in (target / "bin").iterdir()} == set(CONSOLE_SCRIPTS)


def test_the_install_imports_its_own_files_not_the_checkout(venv, elsewhere):
    script = ("import json, voiceharness, voiceharness.locust, audio_corpus, gateway, analysis, audio_probe, mic_probe\n"
              "print(json.dumps({m.__name__: m.__file__ for m in (voiceharness, voiceharness.locust, audio_corpus,"
              " gateway, analysis, audio_probe, mic_probe)}))")
    completed = subprocess.run([str(venv / "bin" / "python"), "-c", script], cwd=elsewhere, capture_output=True,
                               text=True, timeout=120, env=_clean_env(), check=False)
    assert completed.returncode == 0, completed.stderr[-3000:]
    files = json.loads(completed.stdout.strip().splitlines()[-1])
    for module, file in files.items():
        assert Path(file).resolve().is_relative_to(venv.resolve()), (module, file)
    missing = subprocess.run([str(venv / "bin" / "python"), "-c", "import locustfiles"], cwd=elsewhere,
                             capture_output=True, text=True, timeout=60, env=_clean_env(), check=False)
    assert "No module named 'locustfiles'" in missing.stderr


@pytest.mark.parametrize("command", sorted(CONSOLE_SCRIPTS))
def test_every_console_script_answers_help(venv, elsewhere, command):
    completed = subprocess.run([str(venv / "bin" / command), "--help"], cwd=elsewhere, capture_output=True,
                               text=True, timeout=120, env=_clean_env(), check=False)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "options:" in completed.stdout.lower(), completed.stdout[:500]  # argparse's and Locust's help
    assert "Traceback" not in completed.stderr, completed.stderr[-3000:]


def test_voice_options_lists_the_harness_options(venv, elsewhere):
    completed = subprocess.run([str(venv / "bin" / "voice-options")], cwd=elsewhere, capture_output=True,
                               text=True, timeout=120, env=_clean_env(), check=False)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "--think-time-ms" in completed.stdout and "--dialect" in completed.stdout


def test_voice_locust_refuses_a_locustfile_of_ones_own_in_one_line(venv, elsewhere):
    completed = subprocess.run([str(venv / "bin" / "voice-locust"), "-f", "mine.py"], cwd=elsewhere,
                               capture_output=True, text=True, timeout=120, env=_clean_env(), check=False)
    assert completed.returncode == 2
    assert completed.stderr.strip().count("\n") == 0 and "locust -f FILE" in completed.stderr


def test_a_locustfile_written_from_the_readme_runs_from_the_install(venv, elsewhere, installed_gateway, tmp_path):
    corpus_texts = {row["text"] for row in _read_csv(ROOT / "audio_corpus" / "manifest.csv")}
    assert PHRASE not in corpus_texts  # so the install must synthesise it
    folder = _outside_checkout(tmp_path / "scenario")
    folder.mkdir()
    (folder / "my_locustfile.py").write_text(textwrap.dedent(USER_LOCUSTFILE), encoding="utf-8")
    # The run ends after 6 answered turns (the test helper, copied out of the checkout with the
    # locustfile); 120 s only guards against a hang: the first turn waits for the phrase's synthesis.
    shutil.copy(STOP_AFTER_TURNS, folder / STOP_AFTER_TURNS.name)
    cache = tmp_path / "speech-cache"
    prefix = tmp_path / "results" / "run"
    completed = subprocess.run(
        [str(venv / "bin" / "locust"), "-f", f"my_locustfile.py,{STOP_AFTER_TURNS.name}", "--host",
         installed_gateway.url, "--headless", "-u", "3", "-r", "3", "-t", "120s", "--csv", str(prefix),
         "--json-file", f"{prefix}_final", "--think-time-ms", "200-600"],
        cwd=folder, capture_output=True, text=True, timeout=300,
        env=_clean_env(VOICE_HARNESS_CACHE=str(cache), **stop_after_turns_env(6)), check=False,
    )
    output = completed.stdout[-3000:] + completed.stderr[-3000:]
    assert completed.returncode == 1, output  # Locust's exit code for a run with a failure: the deliberate one

    # Locust's final counts (--json-file; its _stats.csv is a snapshot taken every second).
    stats = json.loads(Path(f"{prefix}_final.json").read_text())
    assert sum(entry["num_failures"] for entry in stats) == 1, stats
    assert {entry["name"] for entry in stats if entry["num_failures"]} == {"good evening"}

    turns = _read_csv(Path(f"{prefix}_turns.csv"))
    answered = [turn for turn in turns if turn["failure"] != "run_stopped"]
    assert len(answered) >= 6, output
    assert {turn["utterance_id"] for turn in turns} == {text_utterance_id(PHRASE, DEFAULT_VOICE, DEFAULT_RATE_WPM)}
    assert {turn["intent"] for turn in answered} == {"GREETING"}
    failed = [turn for turn in answered if turn["failure"]]
    assert [(turn["failure"], turn["failure_detail"]) for turn in failed] == [("check_failed", "failed on purpose")]
    assert sum(turn["success"] == "1" for turn in answered) == len(answered) - 1
    assert list(cache.rglob("*.wav")), "the phrase was not synthesised into the speech cache"


def test_voice_locust_runs_a_built_in_scenario_from_the_install(venv, elsewhere, installed_gateway, tmp_path):
    prefix = _outside_checkout(tmp_path) / "basic"
    completed = subprocess.run(
        [str(venv / "bin" / "voice-locust"), "--host", installed_gateway.url, "--headless", "-u", "2", "-r", "2",
         "-t", "10s", "--csv", str(prefix), "--think-time-ms", "200-600", "BasicUser"],
        cwd=elsewhere, capture_output=True, text=True, timeout=300, env=_clean_env(), check=False,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    turns = _read_csv(Path(f"{prefix}_turns.csv"))
    answered = [turn for turn in turns if turn["failure"] != "run_stopped"]
    assert answered and {turn["scenario"] for turn in turns} == {"basic"}
    assert {(turn["intent"], turn["success"]) for turn in answered} == {("GREETING", "1")}
