# Every target creates the virtualenv and installs what it needs: `make test` on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DDB_DIR := .cache/dynamodb-local
# CI and `make test` run the heavy scenarios at this scale; the README gives the full-scale command.
SCALE ?= ci

.PHONY: test unit lint demo bench synth reliability dynamodb-local clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

$(DDB_DIR)/emulator/DynamoDBLocal.jar:
	bash scripts/fetch-dynamodb-local.sh $(DDB_DIR)

dynamodb-local: $(DDB_DIR)/emulator/DynamoDBLocal.jar

## test: lint, then every test (unit on moto, integration on DynamoDB Local started by the tests)
test: venv dynamodb-local
	$(VENV)/bin/ruff check .
	SOSW_SCALE=$(SCALE) $(PY) -m pytest

## demo: the whole stack on this machine (DynamoDB Local, moto's server, the local Lambda endpoint)
demo: venv
	@bash scripts/fetch-dynamodb-local.sh $(DDB_DIR) || echo "demo: continuing on moto's server instead of DynamoDB Local"
	$(VENV)/bin/sosw demo --tasks $(or $(TASKS),300)

## reliability: the reliability suite at full scale (5,000 tasks racing, 60 kill -9 rounds, ...), figures printed
reliability: venv dynamodb-local
	SOSW_SCALE=full $(PY) -m pytest tests/reliability -s -q -p no:cacheprovider

## bench: this stack against sosw 0.7.51 (PyPI, in its own virtualenv) on one DynamoDB Local, about 16 min on
## 2 cores, then the drain workload on the local stack (issue 13, about 4 min); writes bench/results.json and
## bench/results.md. BENCH_SCALE=0.1 for a quick run, BENCH_WORKLOADS=drain for the drain alone (bench/README.md)
BENCH_SOSW_VENV := .cache/bench-sosw-venv

$(BENCH_SOSW_VENV)/.installed:
	$(PYTHON) -m venv $(BENCH_SOSW_VENV)
	$(BENCH_SOSW_VENV)/bin/pip install --quiet --upgrade pip
	$(BENCH_SOSW_VENV)/bin/pip install --quiet 'sosw==0.7.51' boto3
	touch $@

bench: venv dynamodb-local $(BENCH_SOSW_VENV)/.installed
	$(PY) -m bench.run

## unit: the fast tests only (moto), no Java needed
unit: venv
	$(PY) -m pytest -m "not integration"

## synth: the CloudFormation template into cdk.out, checked by cdk-nag (no Docker, no AWS account;
## PyPI only when the layer's sources or requirements changed)
synth: venv
	$(PY) app.py

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) .cache cdk.out .pytest_cache .ruff_cache
