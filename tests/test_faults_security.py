"""TLS and auth faults: a self-signed gateway certificate, a wrong token.

* wss with a certificate from a private CA (trustme): refused with verification on
  (``connection_tls``, with the fix in the message), accepted with ``--tls-ca``, accepted with
  ``--insecure`` and a warning.
* The reference gateway with ``--auth-token``: a wrong token gets HTTP 401 at the upgrade; the
  harness tries exactly once per user and stops that user; the token never reaches the
  output, the turns file or the exported log.
"""

from __future__ import annotations

import ssl

import pytest
import trustme
from conftest import Gateway, free_port
from fault_runs import check_invariant, failures, run_many
from misbehaving_gateway import MisbehavingGateway

pytestmark = pytest.mark.slow

GOOD_TOKEN = "gw-token-Zq8Rk2-good"
BAD_TOKEN = "gw-token-Wx4Lp9-wrong"
USERS = 3


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("security")
    ca = trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1", "localhost")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_cert.configure_cert(context)
    ca_file = folder / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))

    gateway = Gateway(free_port(), ("--fast-sink", "--auth-token", GOOD_TOKEN), folder / "gateway.log").start()
    try:
        with MisbehavingGateway(ssl_context=context) as tls_gateway:
            wss = tls_gateway.url("wss")
            tls = ("--tags", "basic", "--ws-path", "/ws/audio/normal", "--pace", "fast")
            auth = ("--tags", "basic", "--pace", "fast", "--log-export", "txt")
            specs = {
                "tls_verify": {"host": wss, "args": (*tls, "--max-retries", "2")},
                "tls_ca": {"host": wss, "args": (*tls, "--tls-ca", str(ca_file))},
                "tls_insecure": {"host": wss, "args": (*tls, "--insecure")},
                "auth_bad": {"host": gateway.url, "args": (*auth, "--auth-token", BAD_TOKEN), "users": USERS},
                "auth_good": {"host": gateway.url, "args": (*auth, "--auth-token", GOOD_TOKEN)},
            }
            for name, spec in specs.items():
                spec.update(prefix=folder / name, run_time=spec.get("run_time", "5s"))
            results = run_many(specs)
    finally:
        gateway.stop()
    return results, gateway.log_text()


def test_a_self_signed_certificate_is_refused_with_a_clear_message(runs):
    results, _ = runs
    run = results["tls_verify"]
    rows = check_invariant(run)
    # a certificate that fails verification does not fix itself: one attempt, then the user stops
    assert failures(rows) == {"connection_tls": 1}, failures(rows)
    assert "CERTIFICATE_VERIFY_FAILED" in rows[0]["failure_detail"]
    assert "TLS handshake failed" in run.output and "pass the CA with --tls-ca" in run.output


def test_the_certificate_passes_with_its_ca(runs):
    results, _ = runs
    rows = [r for r in check_invariant(results["tls_ca"]) if r["failure"] != "run_stopped"]
    assert rows and all(row["success"] == "1" for row in rows), failures(rows)


def test_insecure_skips_verification_and_warns(runs):
    results, _ = runs
    run = results["tls_insecure"]
    rows = [r for r in check_invariant(run) if r["failure"] != "run_stopped"]
    assert rows and all(row["success"] == "1" for row in rows), failures(rows)
    assert "--insecure: TLS certificates are NOT verified" in run.output


def test_a_wrong_token_is_refused_with_401_once_per_user_and_never_retried(runs):
    results, gateway_log = runs
    rows = check_invariant(results["auth_bad"])
    assert failures(rows) == {"connection_auth": USERS}, failures(rows)
    assert all("HTTP 401" in row["failure_detail"] for row in rows)
    refused = [line for line in gateway_log.splitlines() if "upgrade_refused" in line and "401" in line]
    assert len(refused) == USERS, refused
    assert "check --auth-token" in results["auth_bad"].output


def test_the_right_token_is_accepted(runs):
    results, _ = runs
    rows = [r for r in check_invariant(results["auth_good"]) if r["failure"] != "run_stopped"]
    assert rows and all(row["success"] == "1" for row in rows), failures(rows)


@pytest.mark.parametrize("name", ["auth_bad", "auth_good"])
def test_the_token_is_never_written_to_output_turns_or_log(runs, name):
    results, _ = runs
    run = results[name]
    log_export = run.file("_log.txt")
    assert log_export.exists()
    texts = {"output": run.output, "turns": run.file("_turns.csv").read_text(),
             "log": log_export.read_text(), "run.json": run.file("_run.json").read_text()}
    for token in (GOOD_TOKEN, BAD_TOKEN):
        for where, text in texts.items():
            assert token not in text, f"token in {where}"
