# btcpred: two commands do all the set-up.
#   make test  - create .venv, install what is missing, run ruff, mypy and pytest
#   make run   - create .venv, install what is missing, run the main job (the local replay)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test run lint typecheck pytest services bench layers clean synth deploy

CDK := node_modules/.bin/cdk
ENV ?= dev

test: $(STAMP) services lint typecheck pytest

run: $(STAMP) services
	$(BIN)/btcpred replay

$(STAMP): requirements.txt requirements-dev.txt requirements-lambda.txt requirements-train.txt \
		requirements-cdk.txt requirements-ingest.txt requirements-history.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "btcpred needs Python >= 3.11 (found $$($(PYTHON) --version))"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { \
		rm -rf $(VENV); \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv \
			&& $(PYTHON) -m venv $(VENV); \
		else echo "Python's venv module is missing: sudo apt-get install -y python3-venv"; exit 1; fi; }
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

services:
	bash scripts/ensure-services.sh

# The CDK CLI, pinned in package.json/package-lock.json (needs Node >= 20 and npm).
$(CDK): package.json package-lock.json
	@command -v npm >/dev/null || { echo "make synth needs Node >= 20 with npm: sudo apt-get install -y nodejs npm"; exit 1; }
	npm ci --no-audit --no-fund --silent
	touch $(CDK)

# Every environment, offline: no Docker, no AWS credentials (availability zones come from the
# committed cdk.context.json). Fails on an unacknowledged cdk-nag finding or a cfn-lint error.
synth: $(STAMP) layers $(CDK)
	bash scripts/synth.sh

# One environment into the account of your AWS credentials: docs/deploy.md lists the steps
# before the first deploy (bootstrap, secrets). ACCOUNT and REGION override the config table;
# INGESTOR_TASKS=0 deploys the ingestor without a task (first deploy, before the Binance key).
deploy: $(STAMP) layers $(CDK)
	JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION=20 $(CDK) deploy --no-notices -c env=$(ENV) \
		$(if $(ACCOUNT),-c account=$(ACCOUNT)) $(if $(REGION),-c region=$(REGION)) \
		$(if $(INGESTOR_TASKS),-c ingestor_tasks=$(INGESTOR_TASKS)) \
		--require-approval broadening

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP) services
	$(BIN)/btcpred bench sbe
	$(BIN)/btcpred bench aggregator
	$(BIN)/btcpred bench model
	$(BIN)/btcpred bench inference

# the Lambda layers (aarch64, Python 3.12) into build/layers; incremental (docs/layers.md)
layers: $(STAMP)
	$(BIN)/python -m layers.build

clean:
	rm -rf $(VENV) cdk.out node_modules .mypy_cache .pytest_cache .ruff_cache .hypothesis build src/*.egg-info
