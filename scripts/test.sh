#!/usr/bin/env bash
# Run the test suite (called by `make test` after bootstrap, with CI=true). Extra arguments go
# to pytest. The header names the Hypothesis profile and what a missing dependency does (tests/conftest.py).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
