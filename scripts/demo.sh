#!/usr/bin/env bash
# The demo (called by `make demo` after bootstrap): start the reference gateway on
# 127.0.0.1:7090, run a short headless Locust load over the audio corpus, and end with
# the band report of the analysis package and what to try next. Tunables: USERS,
# SPAWN_RATE, RUN_TIME, PORT, GATEWAY_NICE.
#
# The demo measures the gateway, so the load generator gets the CPU first: in a real test
# they run on different machines, here they share one (two cores, maybe busy with other
# work). Without that, the gateway's speech recognition took the CPU the load generator
# needed to send audio on time, and the verdict depended on what else the machine was doing.
# The gateway runs at a lower scheduling priority (nice GATEWAY_NICE) and in a session of its
# own (setsid): where Linux shares CPU time between sessions first (autogroup: on in the
# Debian 12 machines this was measured on), the load generator's session, mostly idle, is served first
# when it wakes, and a CPU-bound job started from the same terminal cannot outweigh the niced
# gateway inside one shared session (measured: 87 % of the turns failed that way); elsewhere
# nice alone orders them. The load (5 users) is the one measured to stay in the guide's good
# band on a quiet 2-core machine (roundtrip p95 425 ms; 10 users: 571 ms, 20 users: 741 ms).
# About 256 ms of every roundtrip is the client's own: the clip's trailing silence streamed in
# real time, then the end marker.
set -euo pipefail
cd "$(dirname "$0")/.."
USERS=${USERS:-5}
GATEWAY_NICE=${GATEWAY_NICE:-10}
SPAWN_RATE=${SPAWN_RATE:-5}
RUN_TIME=${RUN_TIME:-45s}
PORT=${PORT:-7090}
OUT=${OUT:-results/demo}
PY=.venv/bin/python

mkdir -p "$OUT"
if curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1; then
  echo "demo: something already listens on port $PORT; stop it or run PORT=7091 make demo" >&2
  exit 2
fi
echo "demo: starting the reference gateway on 127.0.0.1:$PORT at a lower scheduling priority (nice $GATEWAY_NICE," \
  "its own session), so that the load generator gets the CPU first, as on a machine of its own (log: $OUT/gateway.log)"
setsid nice -n "$GATEWAY_NICE" $PY -m gateway --host 127.0.0.1 --port "$PORT" >"$OUT/gateway.log" 2>&1 &
gateway_pid=$!
trap 'kill $gateway_pid 2>/dev/null; wait $gateway_pid 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do
  curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break
  kill -0 $gateway_pid 2>/dev/null || { echo "demo: the gateway exited; see $OUT/gateway.log" >&2; tail -20 "$OUT/gateway.log" >&2; exit 1; }
  sleep 0.5
done

echo "demo: one voice first: every clean corpus utterance through the gateway once"
# A misheard utterance is shown, not fatal: the load run below is what the demo judges.
$PY -m voiceharness.replay --url "ws://127.0.0.1:$PORT/ws/audio" || status=$?
if [[ ${status:-0} -gt 1 ]]; then
  echo "demo: the one-voice replay could not run (exit $status); see above" >&2
  exit "$status"
fi
echo

echo "demo: $USERS simulated users for $RUN_TIME over the clean corpus (Locust, headless)"
# Failed turns are the report's business (--exit-code-on-error 0); Locust itself failing is the demo's.
if ! .venv/bin/locust -f locustfiles/voice.py --host "ws://127.0.0.1:$PORT" \
  --headless -u "$USERS" -r "$SPAWN_RATE" -t "$RUN_TIME" --stop-timeout 15 \
  --csv "$OUT/run" --csv-full-history --only-summary --loglevel WARNING --exit-code-on-error 0 \
  2>"$OUT/locust.log"; then
  echo "demo: the load run failed; the end of $OUT/locust.log:" >&2
  tail -20 "$OUT/locust.log" >&2
  exit 1
fi

echo
$PY -m analysis "$OUT/run" --html "$OUT/report.html" --json "$OUT/report.json" --junit "$OUT/junit.xml"

cat <<NEXT

Try next (the demo's files are in $OUT/; report.html has the plots):
  the Locust web UI, with the Voice quality tab, against a gateway you start:
    setsid nice -n $GATEWAY_NICE $PY -m gateway --port $PORT &
    .venv/bin/locust -f locustfiles/voice.py --host ws://127.0.0.1:$PORT        # then open http://localhost:8089
  a gateway that speaks the published SmartJARVIS dialect (start it with --dialect smartjarvis):
    .venv/bin/locust -f locustfiles/voice.py --host ws://127.0.0.1:$PORT --dialect smartjarvis
  users on a slow mobile link (emulated by the harness, no root; docs/networks.md):
    .venv/bin/locust -f locustfiles/voice.py --host ws://127.0.0.1:$PORT --network "wifi:70,4g:25,3g:5"
  calls arriving on their own clock, and the rate where the gateway slows (docs/open-model.md):
    .venv/bin/locust -f locustfiles/calls.py --host ws://127.0.0.1:$PORT --headless -u 2 -r 2 -t 300s --call-rate 1/s:5/s:1/s:60s --csv results/calls
  your own gateway:  --host ws://your-gateway:port (wss:// with --tls-ca FILE; options: .venv/bin/voice-options)
  your own scenario: .venv/bin/locust -f examples/dialogue.py --host ws://127.0.0.1:$PORT  (README: "Write your own scenario")
NEXT
