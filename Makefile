# plantwatch — `make run` shows a live plant, `make test` proves it. `make help` lists targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | sha1sum | cut -c1-12)
ARGS ?=
BENCH_ARGS ?=
# `make run` shows a lively plant: 12 machines, ten simulated seconds per wall second, so the
# first injected faults appear within a minute. Override: make run RUN_ARGS="--machines 50".
RUN_ARGS ?= --machines 12 --speed 10

.DEFAULT_GOAL := help
.PHONY: help install run test lint fmt bench evaluate profile grafana clean sysdeps

help: ## list the targets
	@grep -E '^[a-z]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	@rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP) ## create .venv and install plantwatch with its dev tools

run: $(STAMP) ## run the embedded plant with a live view (RUN_ARGS="--machines 50 --speed 60")
	$(VENV)/bin/plantwatch run $(RUN_ARGS)

lint: $(STAMP) ## ruff (lint + format check) and mypy --strict on src/
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/ruff format --check src tests
	$(VENV)/bin/mypy

fmt: $(STAMP) ## format and auto-fix
	$(VENV)/bin/ruff format src tests
	$(VENV)/bin/ruff check --fix src tests

sysdeps: ## install the system packages the tests use (Prometheus Alertmanager, Debian)
	@command -v prometheus-alertmanager >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" -eq 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus-alertmanager; }

test: lint sysdeps ## lint, then the whole test suite
	$(VENV)/bin/pytest $(ARGS)

bench: $(STAMP) ## every shape measured in one run, ~25 min (BENCH_ARGS="--quick": under 2 min); docs/performance.md
	$(VENV)/bin/plantwatch bench --json bench-report.json $(BENCH_ARGS)

evaluate: $(STAMP) ## detection quality on NAB, TEP, C-MAPSS and the simulator, ~6 min; JSON in evaluation/ (docs/models.md)
	@mkdir -p evaluation
	$(VENV)/bin/plantwatch evaluate nab --json evaluation/nab.json
	$(VENV)/bin/plantwatch evaluate tep --json evaluation/tep.json
	$(VENV)/bin/plantwatch evaluate cmapss --json evaluation/cmapss.json
	$(VENV)/bin/plantwatch evaluate sim --json evaluation/sim.json

profile: $(STAMP) ## sample the embedded shape with py-spy, print where its time goes (docs/performance.md)
	rm -rf .cache/profile-data
	$(VENV)/bin/py-spy record --nonblocking --rate 250 --format raw --output profile.txt -- \
	  $(VENV)/bin/plantwatch run --machines 50 --duration 3600 --speed max --no-live \
	  --data-dir .cache/profile-data
	$(PY) -m plantwatch.bench.profile profile.txt

grafana: $(STAMP) ## regenerate deploy/grafana (datasource, dashboards, alert rules); a test checks it
	$(VENV)/bin/plantwatch grafana export --out deploy/grafana

clean: ## remove the venv, caches and the default data folder
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache data
