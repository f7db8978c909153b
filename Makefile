# `make demo` and `make test` do all set-up themselves on a fresh Debian machine (as root).
SHELL := /bin/bash
PY := .venv/bin/python
STACK := $(PY) -m tests.stack.local run --

.PHONY: setup demo test lint bench clean

setup:
	@bash scripts/setup.sh

demo: setup
	@$(STACK) bash scripts/demo.sh

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

lint: setup
	.venv/bin/ruff check .
	.venv/bin/mypy

bench: setup
	@$(STACK) $(PY) bench/run.py

clean:
	rm -rf .venv build *.egg-info
