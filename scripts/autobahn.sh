#!/usr/bin/env bash
# WebSocket conformance with Autobahn|Testsuite (Python 2.7 only), for the gateway and the harness.
#
#   scripts/autobahn.sh install   install wstest into .autobahn/ (idempotent; needs PyPI once)
#   scripts/autobahn.sh server    wstest -m fuzzingclient against the reference gateway
#                                 (python -m gateway --conformance-echo: echo after the framing layer)
#   scripts/autobahn.sh client    wstest -m fuzzingserver against tests/autobahn_client.py
#                                 (the harness's own client, voiceharness/connection.py, under gevent)
#   scripts/autobahn.sh [all]     install, server, client; exit 1 if either gate fails
#
# Reports: $AUTOBAHN_OUT (default results/autobahn)/{servers,clients}/index.html, index.json and
# summary.json. The gate (tests/autobahn_client.py report) fails unless every case's behaviour is
# OK, NON-STRICT or INFORMATIONAL.
#
# Cases: 1-7, 9.1.1-9.1.3 and 9.2.1-9.2.3 (64 KiB to 1 MiB messages), 10. Excluded, and why:
#   9.1.4-9.1.6, 9.2.4-9.2.6  4-16 MiB messages: over the gateway's 1 MiB --max-message-bytes
#                             (1009 by design) and the harness's 4 MiB cap; timing cases anyway
#   9.3-9.8                   throughput with many small frames/messages: performance, minutes
#   12, 13                    permessage-deflate: off in the gateway and the harness by design
# Python 2.7: $AUTOBAHN_PYTHON2, pyenv's 2.7.18, or python2.7/python2 on PATH.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
AB_DIR="${AUTOBAHN_DIR:-$ROOT/.autobahn}"
SITE="$AB_DIR/site"
OUT="${AUTOBAHN_OUT:-$ROOT/results/autobahn}"
PY3="${PYTHON:-$ROOT/.venv/bin/python}"
[ -x "$PY3" ] || PY3="$(command -v python3)"
PINS=(
  "autobahntestsuite==25.10.1" "autobahn[twisted]==0.10.9" "Twisted==19.10.0" "cryptography==3.3.2"
  "pyOpenSSL==19.1.0" "zope.interface==4.6.0" "txaio==2.1.0" "klein==17.10.0" "jinja2==2.11.3"
)
CASES='["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "9.1.1", "9.1.2", "9.1.3", "9.2.1", "9.2.2", "9.2.3", "10.*"]'

find_python2() {
  local candidate
  for candidate in "${AUTOBAHN_PYTHON2:-}" /root/.pyenv/versions/2.7.18/bin/python \
      "$(command -v python2.7 || true)" "$(command -v python2 || true)"; do
    [ -n "$candidate" ] && [ -x "$candidate" ] || continue
    if "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (2, 7))' 2>/dev/null; then
      echo "$candidate"
      return 0
    fi
  done
  echo "autobahn.sh: no Python 2.7 found (Autobahn|Testsuite runs only on Python 2.7)." >&2
  echo "  Install one (e.g. 'pyenv install 2.7.18') or point AUTOBAHN_PYTHON2 at it." >&2
  return 1
}

install() {
  local py2 stamp
  py2="$(find_python2)"
  stamp="$SITE/.installed"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$py2 ${PINS[*]}" ]; then
    return 0
  fi
  echo "autobahn.sh: installing Autobahn|Testsuite into $SITE with $py2"
  rm -rf "$SITE"
  mkdir -p "$SITE"
  # From inside .autobahn, so pip does not see this repo's own (Python 3) package metadata.
  (cd "$AB_DIR" && "$py2" -m pip install --disable-pip-version-check --no-warn-script-location -q \
      --target "$SITE" "${PINS[@]}")
  echo "$py2 ${PINS[*]}" > "$stamp"
}

# A site dir, not PYTHONPATH: zope's namespace package needs its .pth file processed.
WSTEST_PY='import site, sys
site.addsitedir(sys.argv[1])
sys.argv = ["wstest"] + sys.argv[2:]
from autobahntestsuite.wstest import run
run()'

wstest() {  # in a subshell that execs Python 2, so "wstest ... &" gives $! = wstest's own pid
  local py2
  py2="$(find_python2)"
  cd "$AB_DIR" && exec "$py2" -c "$WSTEST_PY" "$SITE" "$@"
}

free_port() {
  "$PY3" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_for_port() {  # port, pid, what
  local i
  for i in $(seq 1 150); do
    if ! kill -0 "$2" 2>/dev/null; then echo "autobahn.sh: $3 exited" >&2; return 1; fi
    if "$PY3" -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).close()' "$1" 2>/dev/null; then
      return 0
    fi
    sleep 0.2
  done
  echo "autobahn.sh: $3 not listening on $1" >&2
  return 1
}

stop_pid() {  # only the process we started, by its id
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

server() {
  local port pid status=0
  install
  port="$(free_port)"
  mkdir -p "$OUT/servers"
  rm -f "$OUT/servers/"*.json "$OUT/servers/"*.html
  (cd "$ROOT" && exec "$PY3" -m gateway --host 127.0.0.1 --port "$port" --conformance-echo) \
      > "$OUT/gateway.log" 2>&1 &
  pid=$!
  wait_for_port "$port" "$pid" "gateway" || { stop_pid "$pid"; return 1; }
  cat > "$OUT/fuzzingclient.json" <<EOF
{"outdir": "$OUT/servers",
 "servers": [{"agent": "voice-gateway", "url": "ws://127.0.0.1:$port/ws/audio"}],
 "cases": $CASES, "exclude-cases": [], "exclude-agent-cases": {}}
EOF
  echo "autobahn.sh: fuzzingclient -> gateway --conformance-echo on :$port"
  (wstest -m fuzzingclient -s "$OUT/fuzzingclient.json") > "$OUT/fuzzingclient.log" 2>&1 || status=$?
  stop_pid "$pid"
  if grep -q Traceback "$OUT/gateway.log"; then
    echo "autobahn.sh: the gateway logged a traceback, see $OUT/gateway.log" >&2
    status=1
  fi
  [ "$status" = 0 ] || { echo "autobahn.sh: wstest failed, see $OUT/fuzzingclient.log" >&2; return 1; }
  # --known: 7.1.5 is the websockets library's (see KNOWN_FAILURES in tests/autobahn_client.py).
  "$PY3" "$ROOT/tests/autobahn_client.py" report --known "$OUT/servers"
}

client() {
  local port pid status=0
  install
  port="$(free_port)"
  mkdir -p "$OUT/clients"
  rm -f "$OUT/clients/"*.json "$OUT/clients/"*.html
  cat > "$OUT/fuzzingserver.json" <<EOF
{"url": "ws://127.0.0.1:$port", "outdir": "$OUT/clients",
 "cases": $CASES, "exclude-cases": [], "exclude-agent-cases": {}}
EOF
  (wstest -m fuzzingserver -s "$OUT/fuzzingserver.json" -u 0) > "$OUT/fuzzingserver.log" 2>&1 &
  pid=$!
  wait_for_port "$port" "$pid" "wstest fuzzingserver" || { stop_pid "$pid"; return 1; }
  echo "autobahn.sh: tests/autobahn_client.py -> fuzzingserver on :$port"
  "$PY3" "$ROOT/tests/autobahn_client.py" run --url "ws://127.0.0.1:$port" > "$OUT/client.log" 2>&1 || status=$?
  stop_pid "$pid"
  if [ "$status" != 0 ] || grep -q Traceback "$OUT/client.log"; then
    echo "autobahn.sh: the client failed, see $OUT/client.log" >&2
    return 1
  fi
  "$PY3" "$ROOT/tests/autobahn_client.py" report "$OUT/clients"
}

case "${1:-all}" in
  install) install ;;
  server) server ;;
  client) client ;;
  all)
    install
    rc=0
    server || rc=1
    client || rc=1
    exit "$rc"
    ;;
  *) echo "usage: $0 [install|server|client|all]" >&2; exit 2 ;;
esac
