#!/usr/bin/env bash
# `make test-busy`: `make test` while a CPU burner takes one core, as another job on a shared
# 2-core CI machine would. The suite must pass there too: a test that fails only on a busy
# machine depends on its speed, which no test may do (the exclusive marker in tests/conftest.py
# keeps other *tests* away from one that needs the machine; it cannot stop other jobs, so such
# a test must pass with the burner running too). Extra arguments go to `make test` (TEST_WORKERS=2).
#
# The burner is a plain shell loop at normal priority, in a session of its own (setsid), as
# another job on the machine would be: on a kernel that groups CPU time by session (autogroup,
# Debian's default) it then takes one core from the suite, and does not also outweigh the
# suite's own niced processes (the gateway's recognition workers) inside the suite's share. It
# is stopped when this script ends, however it ends (pass, failure, Ctrl-C), and it stops by
# itself if this script is gone.
set -uo pipefail
cd "$(dirname "$0")/.."

script_pid=$$
# `kill -0` is a shell builtin: the loop stays on the CPU and ends as soon as this script is gone.
setsid sh -c 'while kill -0 "$1" 2>/dev/null; do :; done' burner "$script_pid" &
burner_pid=$!
stop_burner() {
  kill "$burner_pid" 2>/dev/null
  wait "$burner_pid" 2>/dev/null
}
trap stop_burner EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
echo "make test-busy: CPU burner running (pid $burner_pid, one core); make test follows"

started=$(date +%s)
"${MAKE:-make}" --no-print-directory test "$@"
status=$?
echo "make test-busy: make test exited $status after $(( $(date +%s) - started )) s with one core busy"
exit $status
