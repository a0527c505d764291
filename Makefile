# Every target installs what it needs: a fresh machine needs only make and apt-get.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: setup system-deps test test-fast lint demo run serve bench chaos synth deploy layer migrate clean

system-deps:
	@command -v python3 >/dev/null && python3 -c 'import venv, ensurepip' 2>/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv python3-dev gcc; }

$(STAMP): pyproject.toml
	@$(MAKE) --no-print-directory system-deps
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

test: setup
	$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy shared streaming_service functions

demo: setup
	$(VENV)/bin/voice-agent demo

run serve: setup
	$(VENV)/bin/voice-agent serve

bench: setup
	$(PY) -m bench.run_all

clean:
	rm -rf $(VENV) cdk.out .data .bench
