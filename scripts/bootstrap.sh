#!/usr/bin/env bash
# Set up everything the project needs on a fresh Debian machine, idempotently:
# Debian packages (installed with apt-get when missing and we are root; otherwise the exact
# apt command is printed and we stop), then .venv/ at the repo root with the project and
# its test extra. Called by `make demo` and `make test`; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBIAN_PACKAGES=(
  espeak-ng          # speech synthesis: corpus build and the gateway's replies
  festival festvox-kallpc16k festvox-us-slt-hts  # a second synthesizer: held-out voices for the reply judge's checks
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
stamp=.venv/.installed-$(sha1sum pyproject.toml | cut -c1-12)
if [[ ! -f "$stamp" ]]; then
  [[ -x .venv/bin/python ]] || "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[test]'
  rm -f .venv/.installed-* && touch "$stamp"
fi
echo "bootstrap: ready (.venv with $(.venv/bin/python --version))"
