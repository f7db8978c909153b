# `make demo` and `make test` do all set-up themselves on a fresh Debian machine (as root).
SHELL := /bin/bash
PY := .venv/bin/python
STACK := $(PY) -m tests.stack.local run --

.PHONY: setup demo test lint bench clean policy

setup:
	@bash scripts/setup.sh

demo: setup
	@$(STACK) bash scripts/demo.sh

# The suite runs on TEST_JOBS pytest-xdist workers, each with its own local stack; a file's tests stay
# on one worker (--dist loadgroup), so a module's shared fixture is set up once. TEST_JOBS=0 runs it in
# one process. Four on two cores: with the CLI forked from a preloaded zygote (tests/stack/cli_zygote.py)
# three workers kept the cores busy 149% of 200%: the rest is waiting on the stacks. Five were slower
# than four (docs/development.md, "How long the suite takes").
TEST_JOBS ?= 4

test: setup
	$(PY) -m pytest -n $(TEST_JOBS) --dist loadgroup $(PYTEST_ARGS)

# docs/aws-policy.json from the AWS requests the product makes in a recorded integration run
# (scripts/aws_policy.py; minutes, as it runs the integration files that call AWS).
policy: setup
	$(PY) scripts/aws_policy.py record
	$(PY) scripts/aws_policy.py write

lint: setup
	.venv/bin/ruff check .
	.venv/bin/mypy

bench: setup
	@$(STACK) $(PY) bench/run.py

clean:
	rm -rf .venv build *.egg-info
