"""Autobahn|Testsuite's client cases through the harness's WebSocket client, and the gate.

``python tests/autobahn_client.py run --url ws://127.0.0.1:9001`` plays the testee client
for ``wstest -m fuzzingserver``: it asks for the case count, then runs every case on a
:class:`voiceharness.connection.Connection` (the harness's own client: the handshake, its frame
reader, its pings, closes and close codes — under gevent, as in a Locust worker), echoing each
message as it came. A violation is closed with the code the harness uses (1002, 1007 or 1009).

``python tests/autobahn_client.py report DIR`` reads ``DIR/index.json`` (the way wsproto's
``compliance/run-autobahn-tests.py`` does), prints counts per behaviour and each case that is
not OK, writes ``DIR/summary.json`` and exits 1 unless every case's ``behavior`` is OK,
NON-STRICT or INFORMATIONAL. ``scripts/autobahn.sh`` runs both.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse
import json
import sys
import urllib.parse
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from voiceharness import framing
from voiceharness.connection import Connection, ConnectOptions

AGENT = "voice-harness"
PASSING = ("OK", "NON-STRICT", "INFORMATIONAL")
# Failures that belong to a library, not to our code, each with its reason; ``report --known``
# lets them pass the gate, and reports them. A known failure that starts passing is reported too.
KNOWN_FAILURES = {
    "7.1.5": "websockets (the gateway's server library) answers a close frame that arrives between "
    "the fragments of a message with 1002 'incomplete fragmented message' instead of echoing 1000; "
    "RFC 6455 5.4 allows control frames there. Browsers never send it.",
}
CASE_TIMEOUT_S = 30.0


class EchoSession:
    """What a Connection feeds its session with, for a testee that echoes every message: the
    harness's ClientSession would judge voice turns; here each message goes straight back."""

    def __init__(self) -> None:
        self.connection: Connection | None = None
        self.messages: list[str | bytes] = []

    def receive(self, message, now):
        self.messages.append(message)
        connection = self.connection
        opcode = framing.OPCODE_TEXT if isinstance(message, str) else framing.OPCODE_BINARY
        connection.send_frame(framing.client_frame(message, connection.mask_key, opcode))
        return []

    def frame_received(self, now) -> None:
        pass

    def pong_received(self, payload, now) -> None:
        return None

    def abandon_turn(self, now, why, detail, *, close_code=None):
        return []

    def connection_lost(self, now, close_code=None, reason=""):
        return []


def _connect(url: str) -> tuple[Connection, EchoSession]:
    session = EchoSession()
    connection = Connection(url, session, ConnectOptions(connect_timeout_s=10))
    session.connection = connection
    connection.open(send_header=False)
    connection.sock.settimeout(CASE_TIMEOUT_S)
    return connection, session


def _first_message(connection: Connection, session: EchoSession) -> str | bytes | None:
    while not session.messages and not connection.closed:
        connection.receive()
    return session.messages[0] if session.messages else None


def case_count(base: str) -> int:
    connection, session = _connect(f"{base}/getCaseCount")
    session.receive = lambda message, now: session.messages.append(message) or []
    try:
        return int(_first_message(connection, session))
    finally:
        connection.lost(1000, "done")


def run_case(base: str, case: int, agent: str = AGENT) -> str:
    """One case: echo until the server closes; how it ended (for the log)."""
    query = urllib.parse.urlencode({"case": case, "agent": agent})
    connection, _session = _connect(f"{base}/runCase?{query}")
    try:
        while not connection.closed:
            connection.receive()
    except OSError as error:  # the timeout: a case that never ends is recorded by the server
        connection.lost(None, f"{type(error).__name__}: {error}")
    return f"closed with {connection.close_code}: {connection.close_reason}"


def update_reports(base: str, agent: str = AGENT) -> None:
    connection, session = _connect(f"{base}/updateReports?{urllib.parse.urlencode({'agent': agent})}")
    session.receive = lambda message, now: session.messages.append(message) or []
    try:
        while not connection.closed:  # the server closes once the reports are written
            connection.receive()
    except OSError:
        connection.lost(None, "timed out")


def summarize(report_dir: Path, known: dict[str, str] | None = None) -> dict[str, object]:
    """Counts per behaviour and the cases that do not pass, from ``report_dir/index.json``."""
    known = known or {}
    index = json.loads((report_dir / "index.json").read_text())
    behaviors: Counter = Counter()
    close_behaviors: Counter = Counter()
    failing: dict[str, dict[str, object]] = {}
    not_ok: dict[str, str] = {}
    cases = 0
    for agent, results in index.items():
        for case_id, result in results.items():
            cases += 1
            behaviors[result["behavior"]] += 1
            close_behaviors[result["behaviorClose"]] += 1
            if result["behavior"] != "OK" or result["behaviorClose"] not in ("OK", "INFORMATIONAL"):
                not_ok[case_id] = f"{result['behavior']} / close {result['behaviorClose']}"
            if result["behavior"] not in PASSING:
                detail = json.loads((report_dir / result["reportfile"]).read_text())
                failing[case_id] = {
                    "agent": agent,
                    "behavior": result["behavior"],
                    "behaviorClose": result["behaviorClose"],
                    "description": detail.get("description", ""),
                    "result": detail.get("result", ""),
                    "resultClose": detail.get("resultClose", ""),
                }
    known_failing = {case_id: known[case_id] for case_id in failing if case_id in known}
    unexpected = {case_id: detail for case_id, detail in failing.items() if case_id not in known}
    return {
        "cases": cases,
        "behavior": dict(sorted(behaviors.items())),
        "behaviorClose": dict(sorted(close_behaviors.items())),
        "not_ok": dict(sorted(not_ok.items(), key=lambda kv: [int(p) for p in kv[0].split(".")])),
        "failing": failing,
        "known_failures": known_failing,
        "known_now_passing": sorted(set(known) - set(failing)),
        "passed": cases > 0 and not unexpected,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run every case of a wstest fuzzingserver")
    run.add_argument("--url", required=True, help="the fuzzingserver, e.g. ws://127.0.0.1:9001")
    run.add_argument("--agent", default=AGENT)
    report = sub.add_parser("report", help="summarize DIR/index.json and apply the gate")
    report.add_argument("dir", type=Path)
    report.add_argument("--known", action="store_true", help="let the library failures in KNOWN_FAILURES pass")
    args = parser.parse_args(argv)
    if args.command == "run":
        base = args.url.rstrip("/")
        count = case_count(base)
        print(f"autobahn_client: {count} cases from {base}", flush=True)
        for case in range(1, count + 1):
            outcome = run_case(base, case, args.agent)
            print(f"case {case}/{count}: {outcome}", flush=True)
        update_reports(base, args.agent)
        return 0
    summary = summarize(args.dir, KNOWN_FAILURES if args.known else None)
    (args.dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"{args.dir}: {summary['cases']} cases; behavior {summary['behavior']}; close {summary['behaviorClose']}")
    for case_id, why in summary["not_ok"].items():
        print(f"  {case_id}: {why}")
    for case_id, detail in summary["failing"].items():
        tag = "KNOWN (library)" if case_id in summary["known_failures"] else "FAIL"
        print(f"{tag} {case_id}: {detail['description']} -> {detail['result']} ({detail['resultClose']})")
    for case_id in summary["known_now_passing"] if args.known else ():
        print(f"note: known failure {case_id} passes now; drop it from KNOWN_FAILURES")
    return 0 if summary["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
