# Every target installs what it needs: a fresh machine needs only make and apt-get.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: setup system-deps browser-deps test test-fast lint demo run serve bench mutation chaos synth deploy layer migrate clean rehearse

system-deps:
	@command -v python3 >/dev/null && python3 -c 'import venv, ensurepip' 2>/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv python3-dev gcc; }

$(STAMP): pyproject.toml
	@$(MAKE) --no-print-directory system-deps
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,infra]'
	touch $(STAMP)

setup: $(STAMP)

# Debian's chromium for the real-browser test of the web phone (tests/browser); installed once. Where it
# cannot be installed the test skips, except in CI (CI set), where that is a failure.
browser-deps:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } || \
	  { [ -z "$$CI" ] && echo "chromium could not be installed: tests/browser will be skipped"; }

# Most tests wait on real-time audio rather than the CPU (about 4 CPU-minutes in 16 wall-minutes run one at
# a time), so four workers share the 2 cores; each test file stays on one worker (its fixtures with it).
TEST_WORKERS ?= 4
test: setup browser-deps
	$(PY) -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy shared streaming_service functions local infra bench/call_bench.py bench/run_all.py \
	  bench/turn_bench.py bench/capacity_bench.py bench/memory_bench.py bench/offline_stt_load.py \
	  bench/worker_scaling.py bench/agent_request_bench.py bench/media_floor_bench.py

demo: setup
	$(VENV)/bin/voice-agent demo

run serve: setup
	$(VENV)/bin/voice-agent serve

bench: setup
	$(PY) -m bench.run_all

# Mutants of the modules that guard callers and tenants (cosmic-ray, in private copies of the committed tree,
# each module against its own tests); report in .bench/mutation/report.md. Not part of make test.
# MUTATION_ARGS="egress --budget-s 600" runs one target with a time limit; a later run resumes.
mutation: setup
	$(PY) -m bench.mutation $(MUTATION_ARGS)

# Faults, fuzzing, security and deploy drain (tests/chaos, long runs included), then 100 calls for 10 min.
# SOAK_ARGS="--soak --duration-s 7200" runs the longer, bounded soak instead.
chaos: setup
	$(PY) -m pytest -q -p no:cacheprovider -m "chaos or chaos_long" tests/chaos $(PYTEST_ARGS)
	$(PY) -m bench.soak $(SOAK_ARGS) --out .bench/soak.json

migrate: setup
	$(VENV)/bin/voice-agent db migrate

# --- AWS (infra/, see infra/README.md). No Docker, account or network needed for synth. ---
ENV ?= dev
CDK_CLI_VERSION ?= 2.1148.1
CDK := JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION=20 node_modules/.bin/cdk
CDK_ARGS ?=

node_modules/.bin/cdk:
	npm install --no-save --no-audit --no-fund --silent aws-cdk@$(CDK_CLI_VERSION)

synth: setup node_modules/.bin/cdk
	$(CDK) synth --quiet -c env=$(ENV) $(CDK_ARGS)

# The deploy rehearsal: synthesize ENV's templates and run what they say on this machine (no Docker, account
# or network), then place a Twilio call that books through every hop. The deploy checklist's first step.
rehearse: setup
	$(PY) -m local.rehearsal --env $(ENV)

# The Lambda layer for Lambda's platform (manylinux x86_64, CPython 3.11, as infra RUNTIME); pins come from pyproject.toml.
# python3.11 Lambdas run on Amazon Linux 2 (glibc 2.26): only manylinux tags up to 2_24 load there (every pin
# has such a wheel; checked with pip download for these platforms).
layer: setup
	rm -rf build/layer && mkdir -p build/layer/python
	$(PY) -m infra.layer_requirements > build/layer/requirements.txt
	$(PY) -m pip install -q --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
	  --platform manylinux_2_24_x86_64 --implementation cp --python-version 3.11 \
	  --only-binary=:all: -r build/layer/requirements.txt -t build/layer/python
	rm -rf $(addprefix build/layer/python/,$(shell $(PY) -c 'from infra.layer_requirements import PROVIDED_BY_RUNTIME as p; print(*p)' 2>/dev/null))
	find build/layer/python -name __pycache__ -prune -exec rm -rf {} +
	@du -sh build/layer/python

# make deploy ENV=prod CDK_ARGS="-c certificate_arn=arn:aws:acm:... -c domain_name=voice.example.com"
deploy: setup layer node_modules/.bin/cdk
	$(CDK) deploy --all -c env=$(ENV) --require-approval broadening $(CDK_ARGS)

clean:
	rm -rf $(VENV) cdk.out .data .bench build
