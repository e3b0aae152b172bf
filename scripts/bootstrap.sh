#!/usr/bin/env bash
# Set up everything the project needs on a fresh Debian machine, idempotently:
# Debian packages (installed with apt-get when missing and we are root; otherwise the exact
# apt command is printed and we stop), then .venv/ at the repo root with the exact versions of
# requirements-lock.txt (hash-checked: runtime and test dependencies, resolved for Python 3.11
# on Linux x86_64 by `make lock`) and the project itself on top. Called by `make demo` and
# `make test`; safe to run again (it reinstalls when the lock or pyproject.toml changes).
set -euo pipefail
cd "$(dirname "$0")/.."

DEBIAN_PACKAGES=(
  espeak-ng          # speech synthesis: corpus build and the gateway's replies
  festival festvox-kallpc16k festvox-us-slt-hts festvox-kdlpc16k  # a second synthesizer: held-out voices for the reply judge's checks
  flite              # a third synthesizer: held-out (awb) and tuning (rms) voices of the reply judge's benchmark
  libsndfile1        # soundfile (reading and writing WAV)
  libportaudio2      # sounddevice (mic_probe.py)
  pulseaudio         # the virtual loopback audio device for mic_probe tests
  pulseaudio-utils   # pactl
  libasound2-plugins # ALSA's "pulse" device, through which PortAudio reaches PulseAudio
  alsa-utils
  sox                # audio conversions in demos and checks
  chromium           # headless browser for the web UI and report tests
  chromium-driver
  iproute2 nftables iptables  # network namespaces and faults in the fault tests
  procps psmisc
  make
  python3-venv
  prometheus         # prometheus and promtool: the live-metrics tests scrape the harness (scripts/prometheus.sh)
)

missing=()
for package in "${DEBIAN_PACKAGES[@]}"; do
  [[ "$package" == \#* ]] && continue
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -eq 0 ]]; then
    echo "bootstrap: installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "bootstrap: missing Debian packages. Run this, then try again:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "bootstrap: $PYTHON is not Python 3.11 or newer; set PYTHON=/path/to/python3.11" >&2
  exit 1
fi
LOCK=requirements-lock.txt
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
  echo "bootstrap: warning: $LOCK was resolved for Python 3.11; $PYTHON is $("$PYTHON" --version 2>&1)" >&2
fi
stamp=.venv/.installed-$(cat "$LOCK" pyproject.toml | sha1sum | cut -c1-12)
if [[ ! -f "$stamp" ]]; then
  [[ -x .venv/bin/python ]] || "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
  # The locked versions only, each file checked against its hash; then the project without
  # dependencies (they are all in the lock: scripts/check_lock.py, run by scripts/test.sh, says
  # "run make lock" when pyproject.toml asks for something the lock does not have).
  .venv/bin/python -m pip install -q --require-hashes -r "$LOCK"
  .venv/bin/python -m pip install -q --no-deps -e .
  rm -f .venv/.installed-* && touch "$stamp"
fi
echo "bootstrap: ready (.venv with $(.venv/bin/python --version))"
