# Cinema: the two commands of the quick start are `make up` and `make test`.
SHELL := /bin/bash
PY := .venv/bin/python
PYTEST_ARGS ?=
# Where PYTHONDONTWRITEBYTECODE is set (this machine's shells, some CI images), every Python process
# (pytest, each service a test starts) would compile its ~1,000 modules again: ~2 s of CPU per
# start. Keep the bytecode outside the source tree instead (the supervisor does the same).
ifneq ($(PYTHONDONTWRITEBYTECODE),)
export PYTHONDONTWRITEBYTECODE :=
export PYTHONPYCACHEPREFIX ?= $(CURDIR)/.data/pycache
endif

.PHONY: help bootstrap up down status test check lint typecheck proto proto-check bench chaos audit clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

bootstrap: ## install what is missing (venv, server wheels, Go tools); idempotent
	@scripts/bootstrap

up: bootstrap ## start stores (and services) on 127.0.0.1, supervised; print where to look
	@$(PY) -m scripts.stack up

down: ## stop everything `make up` started
	@$(PY) -m scripts.stack down

status: ## what runs, where, healthy or not (exit 1 when anything is not)
	@$(PY) -m scripts.stack status

test: bootstrap lint typecheck ## everything: lint, types, contracts, unit, integration (throwaway stores)
	@$(PY) -m pytest $(PYTEST_ARGS)

check: bootstrap lint typecheck ## the edit loop: lint, import rules, types, unit and offline contract tests (no servers)
	@$(PY) -m pytest -q -n auto -m "not integration" tests/unit tests/contract $(PYTEST_ARGS)

lint: ## ruff (lint and format) and the architecture's import rules (import-linter, [tool.importlinter])
	@.venv/bin/ruff check .
	@.venv/bin/ruff format --check --quiet . || (echo "run: .venv/bin/ruff format ." && exit 1)
	@echo "ruff: clean"
	@out=$$(PYTHONPATH=gen/python:. .venv/bin/lint-imports --no-cache --no-logo 2>&1) || { echo "$$out"; exit 1; }; \
		echo "import rules: $$(echo "$$out" | grep -o '[0-9]* kept, [0-9]* broken')"

typecheck: ## mypy (strict)
	@.venv/bin/mypy services scripts tests mesh cinema_cli

proto: ## regenerate gen/python and the gateway's Go code from protos/
	@$(PY) scripts/genproto
	@services/gateway/generate

proto-check: ## fail when gen/python or the gateway's generated code is stale
	@$(PY) scripts/genproto --check
	@services/gateway/generate --check

chaos: bootstrap ## every chaos scenario under a steady reservation load, invariants checked from the stores (CHAOS_ARGS="--scenario kill-payment restart-nats"); report in .data/chaos/
	@$(PY) -m scripts.chaos $(CHAOS_ARGS)

bench: bootstrap ## the whole system under an open-loop mixed load, next to the raw limits (BENCH_ARGS="--rate 30"); report in .data/bench/
	@$(PY) -m scripts.bench $(BENCH_ARGS)

audit: bootstrap ## Lighthouse on the web screen (board, seat map): performance, accessibility, best practices >= 95 (AUDIT_ARGS="--url http://127.0.0.1:18080 --form-factor mobile"); reports in .data/audit/
	@$(PY) -m scripts.audit.lighthouse $(AUDIT_ARGS)

clean: down ## remove local data, caches and built tools (keeps nothing of `make up`)
	rm -rf .data .tools .venv .pytest_cache .mypy_cache .ruff_cache
