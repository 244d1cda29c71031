# Every target creates the virtualenv and installs what it needs: `make test` on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DDB_DIR := .cache/dynamodb-local
# sosw 0.7.51 from PyPI in its own virtualenv: make bench runs it, make test compares job chunking with it.
BENCH_SOSW_VENV := .cache/bench-sosw-venv
# CI and `make test` run the heavy scenarios at this scale; docs/reliability.md gives the full-scale command.
SCALE ?= ci

.PHONY: test unit lint demo bench synth reliability dynamodb-local docs chromium clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

$(DDB_DIR)/emulator/DynamoDBLocal.jar:
	bash scripts/fetch-dynamodb-local.sh $(DDB_DIR)

dynamodb-local: $(DDB_DIR)/emulator/DynamoDBLocal.jar

# sosw 0.7.51 from PyPI in its own virtualenv: the other side of `make bench` and of the drop-in differential suite
$(BENCH_SOSW_VENV)/.installed:
	$(PYTHON) -m venv $(BENCH_SOSW_VENV)
	$(BENCH_SOSW_VENV)/bin/pip install --quiet --upgrade pip
	$(BENCH_SOSW_VENV)/bin/pip install --quiet 'sosw==0.7.51' boto3
	touch $@

# The console's browser tests drive Debian's chromium through Playwright (never `playwright install`, which
# downloads a browser build of its own)
/usr/bin/chromium:
	apt-get update -qq && apt-get install -y -qq chromium

chromium: /usr/bin/chromium

## test: lint, then every test (unit on moto, integration on DynamoDB Local started by the tests, the drop-in
## differential suite and the chunking of jobs against sosw 0.7.51, from PyPI in its own virtualenv)
test: venv dynamodb-local $(BENCH_SOSW_VENV)/.installed chromium
	$(VENV)/bin/ruff check .
	SOSW_SCALE=$(SCALE) SOSW_REQUIRE_DIFFERENTIAL=1 SOSW_REQUIRE_BROWSER=1 $(PY) -m pytest

## demo: the whole stack on this machine (DynamoDB Local, moto's server, the local Lambda endpoint)
demo: venv
	@bash scripts/fetch-dynamodb-local.sh $(DDB_DIR) || echo "demo: continuing on moto's server instead of DynamoDB Local"
	$(VENV)/bin/sosw demo --tasks $(or $(TASKS),300)

## reliability: the reliability suite at full scale (5,000 tasks racing, 60 kill -9 rounds, ...), figures printed
reliability: venv dynamodb-local
	SOSW_SCALE=full $(PY) -m pytest tests/reliability -s -q -p no:cacheprovider

## bench: this stack against sosw 0.7.51 (PyPI, in its own virtualenv) on one DynamoDB Local, about 16 min on
## 2 cores, then the drain workload on the local stack (issue 13, about 4 min); writes bench/results.json,
## bench/results.md and bench/results.png; then an idle run before and after continuous dispatch
## (bench/idle_results.md, 2 min, needs the git history), the job figures (bench/jobs_results.md, 5 min) and the
## hot labourer through the emulation of DynamoDB's limits, before and after the slot counter redesign
## (bench/hot_results.md, about 50 min by an estimate from BENCH_SCALE=0.2 (13 min), needs the git history).
## BENCH_SCALE=0.1 for a quick run; BENCH_WORKLOADS=drain (or jobs, lifecycle, ...) for some parts (bench/README.md)
# matplotlib, for the chart (bench/results.png): only in the `bench` extras
$(VENV)/.bench-installed: pyproject.toml $(VENV)/.installed
	$(VENV)/bin/pip install --quiet -e '.[dev,bench]'
	touch $@

bench: venv dynamodb-local $(BENCH_SOSW_VENV)/.installed $(VENV)/.bench-installed
	case ",$${BENCH_WORKLOADS:-all}," in *,lifecycle,*|*,retry,*|*,scaling,*|*,drain,*|*,all,*) $(PY) -m bench.run;; esac
	case ",$${BENCH_WORKLOADS:-idle}," in *,idle,*) $(PY) -m bench.idle;; esac
	case ",$${BENCH_WORKLOADS:-jobs}," in *,jobs,*) $(PY) -m bench.jobs;; esac
	case ",$${BENCH_WORKLOADS:-hot}," in *,hot,*) $(PY) -m bench.hot;; esac
	case ",$${BENCH_WORKLOADS:-console}," in *,console,*) $(PY) -m bench.console;; esac

## unit: the fast tests only (moto), no Java needed
unit: venv
	$(PY) -m pytest -m "not integration"

## synth: the CloudFormation template into cdk.out, checked by cdk-nag (no Docker, no AWS account;
## PyPI only when the layer's sources or requirements changed)
synth: venv
	$(PY) app.py

## docs: the documentation site (docs/, Markdown) into docs/_build/html, any static host serves it; strict as in
## make test (tests/docs/test_docs.py): a warning, a broken link or a reference that no longer matches the code fails
docs: venv
	$(VENV)/bin/sphinx-build -W --keep-going -n -q -b html docs docs/_build/html

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) .cache cdk.out .pytest_cache .ruff_cache docs/_build
