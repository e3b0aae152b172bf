#!/usr/bin/env bash
# A virtual audio loopback for mic_probe.py and its tests: a private PulseAudio server with
# a null sink "vsink" at 16 kHz mono whose monitor "vsink.monitor" is the default source, so
# whatever is played to the default output comes back on the default input.
#
#   scripts/virtual-audio.sh start    start it (idempotent: a running one is kept)
#   scripts/virtual-audio.sh env      print export lines:  eval "$(scripts/virtual-audio.sh env)"
#   scripts/virtual-audio.sh status   exit 0 when it answers, 1 when not
#   scripts/virtual-audio.sh stop     stop it and remove its folder
#
# PortAudio (and so python-sounddevice) reaches it through ALSA's "pulse"/"default" devices
# (Debian package libasound2-plugins) once the exported variables are set.
#
# Everything lives in one folder, $VIRTUAL_AUDIO_DIR (default ${TMPDIR:-/tmp}/voiceharness-audio-$UID):
# runtime/ (XDG_RUNTIME_DIR, PULSE_RUNTIME_PATH: the socket runtime/native), state/
# (PULSE_STATE_PATH), pulseaudio.log, pulseaudio.pid and the startup script virtual.pa.
#
# Running as root (CI containers, this project's VM): PulseAudio 16 only *warns* that it is
# "not intended to be run as root" unless --system is given; --system is what we must not use
# (it wants the "pulse" user, /var/run/pulse and disallows module loading by clients). What
# works is a per-user daemon started with
#     pulseaudio -n -F virtual.pa --daemonize=no --exit-idle-time=-1 --disallow-exit \
#                --realtime=no --high-priority=yes --log-target=file:...
# in the background with XDG_RUNTIME_DIR, PULSE_RUNTIME_PATH and PULSE_STATE_PATH pointing at
# our folder (root has no /run/user/0), and module-native-protocol-unix with
# auth-anonymous=1 so clients need no cookie. The D-Bus warnings in the log are harmless.
# libpulse never autospawns a server for root, so clients without our variables see no device.

set -euo pipefail

DIR="${VIRTUAL_AUDIO_DIR:-${TMPDIR:-/tmp}/voiceharness-audio-$(id -u)}"
RUNTIME="$DIR/runtime"
STATE="$DIR/state"
PIDFILE="$DIR/pulseaudio.pid"
LOG="$DIR/pulseaudio.log"
SINK="vsink"
RATE_HZ=16000
CHANNELS=1
START_TIMEOUT_S=10

export_lines() {
    cat <<EOF
export XDG_RUNTIME_DIR='$RUNTIME'
export PULSE_RUNTIME_PATH='$RUNTIME'
export PULSE_STATE_PATH='$STATE'
export PULSE_SERVER='unix:$RUNTIME/native'
EOF
}

use_env() {
    export XDG_RUNTIME_DIR="$RUNTIME" PULSE_RUNTIME_PATH="$RUNTIME" PULSE_STATE_PATH="$STATE"
    export PULSE_SERVER="unix:$RUNTIME/native"
}

answers() {
    use_env
    pactl info >/dev/null 2>&1
}

our_pid() {
    # The pid we recorded, if that process is still alive and still a pulseaudio.
    [[ -f "$PIDFILE" ]] || return 1
    local pid
    pid="$(cat "$PIDFILE")"
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
    [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == pulseaudio ]] || return 1
    echo "$pid"
}

start() {
    if our_pid >/dev/null && answers; then
        echo "virtual audio already running (pid $(our_pid)) in $DIR" >&2
        return 0
    fi
    for tool in pulseaudio pactl; do
        if ! command -v "$tool" >/dev/null; then
            echo "virtual-audio: $tool not found; install it: apt-get install pulseaudio pulseaudio-utils" >&2
            return 3
        fi
    done
    stop_quietly
    mkdir -p "$RUNTIME" "$STATE"
    chmod 700 "$DIR" "$RUNTIME" "$STATE"
    cat >"$DIR/virtual.pa" <<EOF
load-module module-native-protocol-unix auth-anonymous=1
load-module module-null-sink sink_name=$SINK rate=$RATE_HZ channels=$CHANNELS sink_properties=device.description=VirtualLoopback
set-default-sink $SINK
set-default-source $SINK.monitor
EOF
    use_env
    # setsid: the daemon must outlive the shell (and pytest's process group) that started it.
    setsid pulseaudio -n -F "$DIR/virtual.pa" --daemonize=no --exit-idle-time=-1 --disallow-exit \
        --realtime=no --high-priority=yes --use-pid-file=no --log-level=notice \
        --log-target="file:$LOG" </dev/null >/dev/null 2>&1 &
    echo $! >"$PIDFILE"
    local waited=0
    until answers; do
        # kill -0, not our_pid: until setsid has exec'd, the process is not named pulseaudio yet.
        if ! kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
            echo "virtual-audio: pulseaudio exited at start; its log ($LOG):" >&2
            tail -n 20 "$LOG" >&2 2>/dev/null || true
            return 1
        fi
        if (( waited >= START_TIMEOUT_S * 10 )); then
            echo "virtual-audio: pulseaudio did not answer within ${START_TIMEOUT_S}s; log: $LOG" >&2
            return 1
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
    echo "virtual audio running (pid $(cat "$PIDFILE")): sink $SINK ${RATE_HZ} Hz ${CHANNELS} ch," \
        "default source $SINK.monitor, folder $DIR" >&2
}

stop_quietly() {
    local pid
    if pid="$(our_pid)"; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -rf "$DIR"
}

stop() {
    if our_pid >/dev/null; then
        stop_quietly
        echo "virtual audio stopped; removed $DIR" >&2
    else
        stop_quietly
        echo "virtual audio was not running" >&2
    fi
}

status() {
    if our_pid >/dev/null && answers; then
        echo "running (pid $(our_pid)) in $DIR"
        pactl list short sinks
        pactl list short sources
    else
        echo "not running"
        return 1
    fi
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    env) export_lines ;;
    status) status ;;
    *)
        echo "usage: $0 start|stop|env|status" >&2
        exit 2
        ;;
esac
