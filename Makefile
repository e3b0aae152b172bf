# The two commands of the README. Each bootstraps what it needs (Debian packages, .venv).
.PHONY: demo test lint bench

demo:
	@scripts/bootstrap.sh
	@scripts/demo.sh

test:
	@scripts/bootstrap.sh
	@scripts/test.sh

lint:
	@.venv/bin/ruff check .

bench:
	@scripts/bootstrap.sh
	@.venv/bin/python -m bench all
