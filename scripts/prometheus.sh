#!/usr/bin/env bash
# A Prometheus of our own, on loopback, scraping the harness and the gateway: for a local run and
# for the live-metrics tests. It never uses the system's Prometheus service (Debian's package may
# start one on :9090): its own port, config and data folder.
#
#   scripts/prometheus.sh [--port 9090] [--dir DIR] [--scrape-interval 5s] JOB=HOST:PORT...
#
#   .venv/bin/python -m gateway --port 7090 &
#   .venv/bin/locust -f locustfiles/voice.py --host ws://127.0.0.1:7090 --voice-metrics-port 9646 &
#   scripts/prometheus.sh --port 9090 voiceharness=127.0.0.1:9646 gateway=127.0.0.1:7090
#
# then http://127.0.0.1:9090 (or point Grafana at it and import deploy/grafana/voice-harness.json).
# It writes DIR/prometheus.yml (every target's /metrics, one job each) and keeps its data in
# DIR/data (default DIR: a new temporary folder), then runs prometheus in the foreground:
# stop it with Ctrl-C or SIGTERM. Debian's prometheus package (scripts/bootstrap.sh installs it)
# provides prometheus and promtool.
set -euo pipefail

port=9090
dir=""
interval=5s
targets=()
while (($#)); do
  case "$1" in
    --port) port=$2; shift 2 ;;
    --dir) dir=$2; shift 2 ;;
    --scrape-interval) interval=$2; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "prometheus.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *=*:*) targets+=("$1"); shift ;;
    *) echo "prometheus.sh: target '$1' is not JOB=HOST:PORT, e.g. voiceharness=127.0.0.1:9646" >&2; exit 2 ;;
  esac
done
if ((${#targets[@]} == 0)); then
  echo "prometheus.sh: name at least one target to scrape, JOB=HOST:PORT (see --help)" >&2
  exit 2
fi
if ! command -v prometheus >/dev/null; then
  echo "prometheus.sh: prometheus is not installed; run scripts/bootstrap.sh (it installs Debian's prometheus)" >&2
  exit 2
fi
dir=${dir:-$(mktemp -d -t voice-prometheus.XXXXXX)}
mkdir -p "$dir/data"

{
  echo "# written by scripts/prometheus.sh"
  echo "global:"
  echo "  scrape_interval: $interval"
  echo "  evaluation_interval: $interval"
  echo "scrape_configs:"
  for target in "${targets[@]}"; do
    echo "  - job_name: \"${target%%=*}\""
    echo "    static_configs:"
    echo "      - targets: [\"${target#*=}\"]"
  done
} >"$dir/prometheus.yml"
promtool check config "$dir/prometheus.yml" >/dev/null

echo "prometheus.sh: http://127.0.0.1:$port (config $dir/prometheus.yml, data $dir/data)" >&2
exec prometheus \
  --config.file="$dir/prometheus.yml" \
  --storage.tsdb.path="$dir/data" \
  --web.listen-address="127.0.0.1:$port" \
  --log.level=warn
