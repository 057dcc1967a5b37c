# opsplane: `make setup` once on a fresh machine, then `make test`.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
APT    := prometheus redis-server redis-tools

.PHONY: setup system-packages test lint format render bench clean

setup: system-packages $(BIN)/pytest

# promtool (Debian `prometheus`) for the alert rule tests, redis-server/redis-cli for backup tests,
# Debian's psql (15.14+ knows pg_dump's `\restrict`, which pgserver's 16.2 psql predates).
system-packages:
	@missing=""; \
	command -v promtool >/dev/null || missing="$$missing prometheus"; \
	[ -x /usr/bin/psql ] || missing="$$missing postgresql-client"; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v redis-cli >/dev/null || missing="$$missing redis-tools"; \
	if [ -n "$$missing" ]; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(BIN)/pytest: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements-dev.txt
	@touch $@

test: setup
	$(BIN)/pytest -rs

# The on-call loop on embedded PostgreSQL, S3, Redis and an app stand-in (docs/demo.md).
.PHONY: demo
demo: setup
	$(BIN)/python -m automation demo

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Offline render of both stacks (no cloud account, no Pulumi CLI): out/dev, out/prod.
render: setup
	$(BIN)/python -m automation render --stack dev --out out/dev
	$(BIN)/python -m automation render --stack prod --out out/prod --placeholder-secrets

bench: setup
	$(BIN)/python bench/backup_bench.py
	$(BIN)/python bench/restore_bench.py
	$(BIN)/python bench/replay_bench.py

clean:
	rm -rf out .pytest_cache .ruff_cache .hypothesis
