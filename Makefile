# The commands of the README. Each bootstraps what it needs (Debian packages, .venv).
.PHONY: demo test test-busy lint lock bench

LOCK = requirements-lock.txt
TEST_WORKERS ?= 3

demo:
	@scripts/bootstrap.sh
	@scripts/demo.sh

# CI mode (CI=true: a missing dependency fails instead of skipping; Hypothesis's derandomized
# profile), the lock check, the linter, then the whole suite with its 15 slowest tests. Every
# step runs; the target fails if any did. The suite runs on TEST_WORKERS pytest-xdist workers,
# a file's tests on one worker (module fixtures run once): most tests wait on audio played in
# real time, so 3 workers on 2 cores overlap those waits.
test:
	@scripts/bootstrap.sh
	@export CI=true; status=0; \
	.venv/bin/python scripts/check_lock.py || status=1; \
	.venv/bin/ruff check --output-format concise . || { status=1; echo "make test: ruff found problems (above)" >&2; }; \
	scripts/test.sh --numprocesses $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=15 || status=1; \
	[ $$status -eq 0 ] || echo "make test: FAILED (lock check, ruff or tests: see above)" >&2; \
	exit $$status

# make test while a CPU burner takes one of the two cores (another job on the CI machine): the
# suite passes on a busy machine too. The burner is always stopped, also on failure or Ctrl-C.
test-busy:
	@scripts/test-busy.sh TEST_WORKERS=$(TEST_WORKERS)

lint:
	@.venv/bin/ruff check .

# Re-resolve the pinned, hash-checked versions of every runtime and test dependency after
# pyproject.toml changes (PyPI; Python 3.11 on Linux x86_64); bootstrap then installs them.
lock:
	@[ -x .venv/bin/uv ] || scripts/bootstrap.sh
	@.venv/bin/uv pip compile pyproject.toml --extra test --generate-hashes --python-version 3.11 \
		--python-platform x86_64-unknown-linux-gnu --custom-compile-command "make lock" --quiet -o $(LOCK)
	@.venv/bin/python scripts/check_lock.py && echo "make lock: $(LOCK) written"

bench:
	@scripts/bootstrap.sh
	@.venv/bin/python -m bench all
