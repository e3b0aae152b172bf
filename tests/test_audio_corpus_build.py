"""audio_corpus.build, the command line: ``python -m audio_corpus.build`` runs its module once, whichever
builder it calls (the builders import the recipe and the specs, never the command line)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# ``python -m audio_corpus.build ARGS`` as runpy runs it, counting each execution of build.py's
# module body: an import of audio_corpus.build besides __main__ would run it a second time.
RUN_COUNTING = """
import runpy, sys
build_py, runs = sys.argv[1], []
def count(event, args):
    if event == "exec" and getattr(args[0], "co_name", "") == "<module>" and args[0].co_filename == build_py:
        runs.append(event)
sys.addaudithook(count)
sys.argv = ["audio_corpus.build", *sys.argv[2:]]
try:
    runpy.run_module("audio_corpus.build", run_name="__main__", alter_sys=True)
except SystemExit as exit:
    print("exit", exit.code)
print("module runs", len(runs))
"""


@pytest.mark.parametrize(
    ("args", "status", "error"),
    [
        (["--from-text", "missing-phrases.csv", "--out", "OUT"], 2, "phrases file missing-phrases.csv not found"),
        (["--from-dir", "missing-folder", "--labels", "labels.csv"], 2, "recordings folder missing-folder not found"),
        (["--check", "--out", "OUT"], 1, "manifest.csv not found"),
    ],
)
def test_python_m_runs_the_module_once_in_every_mode(tmp_path, args, status, error):
    args = [str(tmp_path / "out") if arg == "OUT" else arg for arg in args]
    done = subprocess.run(
        [sys.executable, "-W", "error::RuntimeWarning", "-c", RUN_COUNTING, str(ROOT / "audio_corpus" / "build.py"),
         *args],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert error in done.stderr and "Traceback" not in done.stderr
    assert done.stdout.splitlines() == [f"exit {status}", "module runs 1"]
