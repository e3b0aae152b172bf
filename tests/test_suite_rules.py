"""The suite's own rules (see conftest): reproducible property tests, and no skip that hides a
missing dependency in CI."""

from __future__ import annotations

import ast
import importlib.util
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DEPENDENCIES, HYPOTHESIS_PROFILE, ROOT, in_ci, require_dependency
from hypothesis import settings

TESTS = Path(__file__).resolve().parent


def _settings_calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name in ("settings", "seed", "load_profile", "register_profile", "reproduce_failure"):
                yield name, node


def test_no_test_overrides_the_profiles_determinism():
    """Every @settings(...) inherits the loaded profile (ci: derandomized, no database); one that
    set derandomize, a database, a parent or its own seed would make CI runs differ silently."""
    offences = []
    for path in sorted(TESTS.glob("*.py")):
        for name, node in _settings_calls(ast.parse(path.read_text(), str(path))):
            where = f"{path.name}:{node.lineno}"
            if name in ("seed", "reproduce_failure"):
                offences.append(f"{where}: @{name} pins examples outside the profile")
            elif name in ("load_profile", "register_profile") and path.name != "conftest.py":
                offences.append(f"{where}: profiles belong in conftest.py")
            elif name == "settings":
                for keyword in node.keywords:
                    is_none = isinstance(keyword.value, ast.Constant) and keyword.value.value is None
                    if keyword.arg in ("derandomize", "parent") or keyword.arg == "database" and not is_none:
                        offences.append(f"{where}: settings({keyword.arg}=...) overrides the profile")
    assert offences == []


def test_the_profile_follows_ci():
    assert HYPOTHESIS_PROFILE == ("ci" if in_ci() else "dev")
    if settings.get_current_profile_name() == "ci":
        assert settings.default.derandomize and settings.default.database is None
        assert settings.default.deadline is None


def test_a_missing_dependency_fails_in_ci_and_skips_elsewhere(monkeypatch):
    hint = "apt-get install -y no-such-tool"
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=f"no-such-tool is missing: {hint}"):
        require_dependency("no-such-tool", False, hint)
    require_dependency("no-such-tool", lambda: True, hint)  # present: nothing happens
    for unset in ("", "0", "false"):
        monkeypatch.setenv("CI", unset)
        with pytest.raises(pytest.skip.Exception, match=f"no-such-tool is missing: {hint}"):
            require_dependency("no-such-tool", lambda: False, hint)


def test_every_known_dependency_names_its_install_command():
    for name, (check, install_hint) in DEPENDENCIES.items():
        assert callable(check), name
        assert "apt-get install" in install_hint or "bootstrap" in install_hint or "root" in install_hint, name


@pytest.mark.parametrize("ci", [True, False])
def test_recognition_tests_without_espeak_fail_in_ci_and_skip_locally(tmp_path, ci):
    """The check of issue 15: espeak-ng hidden from PATH (only the venv's bin on it)."""
    env = {key: value for key, value in os.environ.items() if key != "CI"}
    env["PATH"] = str(Path(sys.executable).parent)
    if ci:
        env["CI"] = "true"
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", "--no-header",
         "tests/test_gateway_recognizer.py::test_silence_and_noise_give_an_empty_rejected_transcript"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    output = completed.stdout + completed.stderr
    assert "espeak-ng is missing: apt-get install -y espeak-ng (Debian package espeak-ng)" in output, output
    if ci:
        assert completed.returncode == 1 and " error" in output.splitlines()[-1], output[-2000:]
    else:
        assert completed.returncode == 0 and " skipped" in output.splitlines()[-1], output[-2000:]


# -- the lock (scripts/check_lock.py, run by scripts/test.sh before the tests)


def _check_lock():
    spec = importlib.util.spec_from_file_location("check_lock", ROOT / "scripts" / "check_lock.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_lock_matches_pyproject():
    completed = subprocess.run([sys.executable, str(ROOT / "scripts" / "check_lock.py")], cwd=ROOT,
                               capture_output=True, text=True, timeout=60, check=False)
    assert completed.returncode == 0, completed.stderr


def test_a_dependency_missing_from_the_lock_or_outside_its_bound_says_run_make_lock(tmp_path):
    check_lock = _check_lock()
    pyproject = (ROOT / "pyproject.toml").read_text()
    lock = (ROOT / "requirements-lock.txt").read_text()
    locked = check_lock.locked_versions(lock)
    assert locked["websockets"] and locked["pytest"]  # runtime and test extra both locked
    assert check_lock.mismatches(pyproject, lock) == []
    added = pyproject.replace('"numpy>=1.26",', '"numpy>=1.26",\n    "no-such-package>=1",')
    assert check_lock.mismatches(added, lock) == ["no-such-package>=1 is not in the lock"]
    raised = pyproject.replace('"websockets>=13"', f'"websockets>{locked["websockets"]}"')
    assert check_lock.mismatches(raised, lock) == [
        f"websockets>{locked['websockets']} does not allow the locked websockets=={locked['websockets']}"
    ]
    windows_only = pyproject.replace('"numpy>=1.26",', '"numpy>=1.26",\n    "pywin32>=300; sys_platform == \'win32\'",')
    assert check_lock.mismatches(windows_only, lock) == []  # not for the lock's platform
    (tmp_path / "pyproject.toml").write_text(added)
    (tmp_path / "requirements-lock.txt").write_text(lock)
    completed = subprocess.run([sys.executable, str(ROOT / "scripts" / "check_lock.py"), str(tmp_path / "pyproject.toml"),
                                str(tmp_path / "requirements-lock.txt")], capture_output=True, text=True, timeout=60,
                               check=False)
    assert completed.returncode == 1
    assert "does not match pyproject.toml: run make lock" in completed.stderr
    assert "no-such-package>=1 is not in the lock" in completed.stderr


# -- several workers (make test: pytest-xdist), and the tests that need the machine alone

_TIMED = """
import json, os, time
import pytest

def _timed(name, seconds):
    start = time.monotonic()
    time.sleep(seconds)
    with open(os.environ["TIMES"], "a") as file:
        file.write(json.dumps([name, start, time.monotonic()]) + "\\n")
"""


def test_an_exclusive_test_runs_while_no_other_test_does(tmp_path):
    """Three workers, tests of 0.3 s around one exclusive test: the others overlap each other
    (so there is parallelism to exclude) but none overlaps the exclusive one."""
    suite = tmp_path / "suite"
    suite.mkdir()
    for index in range(3):
        tests = [f"def test_{index}_{n}():\n    _timed('{index}_{n}', 0.3)\n" for n in range(8)]
        if index == 1:
            tests.insert(3, "@pytest.mark.exclusive\ndef test_alone():\n    _timed('alone', 1.0)\n")
        (suite / f"test_{index}.py").write_text(_TIMED + "\n\n".join(tests))
    times = tmp_path / "times.jsonl"
    env = {**os.environ, "TIMES": str(times), "PYTHONPATH": str(TESTS)}
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "conftest", "-p", "no:cacheprovider", "-q", "-n", "3",
         "--dist", "load", str(suite)],
        cwd=suite, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    spans = {name: (start, end) for name, start, end in map(json.loads, times.read_text().splitlines())}
    assert len(spans) == 25
    alone_start, alone_end = spans.pop("alone")
    overlapping = [name for name, (start, end) in spans.items() if start < alone_end and end > alone_start]
    assert overlapping == [], (overlapping, (alone_start, alone_end), spans)
    ordered = sorted(spans.values())
    assert any(later[0] < earlier[1] for earlier, later in itertools.pairwise(ordered)), "no two tests ran at once"
