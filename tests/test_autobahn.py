"""Autobahn|Testsuite through ``scripts/autobahn.sh``: the gateway (fuzzingclient) and the harness's client (fuzzingserver).

The script installs wstest into ``.autobahn/`` once (Python 2.7 and PyPI needed the first
time), runs cases 1-7, 9.1.1-9.2.3 and 10 in both directions (≈ 15 s each here) and applies the
gate: every case's behaviour OK, NON-STRICT or INFORMATIONAL, except the websockets library's
documented 7.1.5 on the gateway side (``KNOWN_FAILURES`` in ``tests/autobahn_client.py``).
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from conftest import ROOT, require_dependency

pytestmark = pytest.mark.slow
SCRIPT = ROOT / "scripts" / "autobahn.sh"


@pytest.fixture(scope="module")
def autobahn_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("autobahn")
    completed = subprocess.run(
        [str(SCRIPT), "all"], check=False, cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "AUTOBAHN_OUT": str(out)},
    )
    require_dependency(
        "Python 2.7 (Autobahn|Testsuite runs only on it)", "no Python 2.7 found" not in completed.stderr,
        "pyenv install 2.7.18 (Debian 12 has no python2 package), or set AUTOBAHN_PYTHON2=/path/to/python2.7",
    )
    return completed, out


def _summary(out, side):
    return json.loads((out / side / "summary.json").read_text())


def test_the_gateway_passes_autobahn_fuzzingclient_but_for_the_libraries_known_case(autobahn_run):
    completed, out = autobahn_run
    summary = _summary(out, "servers")
    assert summary["cases"] >= 250
    assert summary["passed"], completed.stdout + completed.stderr
    assert set(summary["failing"]) <= {"7.1.5"}, summary["failing"]
    assert "Traceback" not in (out / "gateway.log").read_text()


def test_the_harness_client_passes_autobahn_fuzzingserver(autobahn_run):
    completed, out = autobahn_run
    summary = _summary(out, "clients")
    assert summary["cases"] >= 250
    assert summary["failing"] == {}, summary["failing"]
    assert completed.returncode == 0, completed.stdout + completed.stderr
