# opsplane: `make setup` once on a fresh machine, then `make test`.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
CHECKOV_VENV ?= .venv-checkov
LOCK   := $(BIN)/uv pip compile --quiet --generate-hashes --universal --python-version 3.11 \
          --custom-compile-command "make lock" $(if $(UPGRADE),--upgrade)
APT    := prometheus redis-server redis-tools

.PHONY: setup system-packages test lint format render checkov lock bench clean

setup: system-packages $(BIN)/pytest

# promtool (Debian `prometheus`) for the alert rule tests, redis-server/redis-cli for backup tests,
# Debian's psql (15.14+ knows pg_dump's `\restrict`, which pgserver's 16.2 psql predates),
# libpq-dev (pg_config) to build psycopg2 for barman-cloud (point-in-time recovery).
system-packages:
	@missing=""; \
	command -v promtool >/dev/null || missing="$$missing prometheus"; \
	[ -x /usr/bin/psql ] || missing="$$missing postgresql-client"; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v redis-cli >/dev/null || missing="$$missing redis-tools"; \
	command -v pg_config >/dev/null || missing="$$missing libpq-dev"; \
	if [ -n "$$missing" ]; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi

# Installs exactly the hashed lock (requirements-dev.lock includes requirements.lock's pins).
$(BIN)/pytest: requirements.lock requirements-dev.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q --require-hashes -r requirements-dev.lock
	@touch $@

# Re-pin the locks from the ranges in requirements*.txt (keeps current pins that still fit;
# `make lock UPGRADE=1` takes the newest that fit). tests/test_locks.py checks they agree.
lock: setup
	$(LOCK) -o requirements.lock requirements.txt
	$(LOCK) -o requirements-dev.lock -c requirements.lock requirements-dev.txt
	$(LOCK) -o requirements-checkov.lock requirements-checkov.txt
	$(LOCK) -o components/pitr_image/requirements.lock -c requirements.lock \
	  components/pitr_image/requirements.txt

test: setup
	$(BIN)/pytest -rs -n 2  # two workers: 2 cores, and most tests wait on servers

# The on-call loop on embedded PostgreSQL, S3, Redis and an app stand-in (docs/demo.md).
.PHONY: demo
demo: setup
	$(BIN)/python -m automation demo

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Offline render of both stacks (no cloud account, no Pulumi CLI): out/dev, out/prod.
render: setup
	$(BIN)/python -m automation render --stack dev --out out/dev
	$(BIN)/python -m automation render --stack prod --out out/prod --placeholder-secrets

# checkov in its own venv (its pins would fight the project's), from its own hashed lock.
$(CHECKOV_VENV)/bin/checkov: requirements-checkov.lock
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install -q --require-hashes -r requirements-checkov.lock
	@touch $@

# Both offline renders (and the ops-runner and PITR Dockerfiles) through checkov, offline: no download, no
# vendor mapping. Fails on any failed check; skips are in .checkov.yaml (two inline), with reasons.
checkov: render $(CHECKOV_VENV)/bin/checkov
	for stack in prod dev; do \
	  BC_SKIP_MAPPING=TRUE $(CHECKOV_VENV)/bin/checkov --config-file .checkov.yaml \
	    --framework kubernetes --skip-download -d out/$$stack/kubernetes || exit 1; \
	done
	BC_SKIP_MAPPING=TRUE $(CHECKOV_VENV)/bin/checkov --config-file .checkov.yaml \
	  --framework dockerfile --skip-download -f automation/Dockerfile \
	  -f components/pitr_image/Dockerfile

bench: setup
	$(BIN)/python bench/backup_bench.py
	$(BIN)/python bench/restore_bench.py
	$(BIN)/python bench/replay_bench.py
	$(BIN)/python bench/startup_bench.py

clean:
	rm -rf out .pytest_cache .ruff_cache .hypothesis $(CHECKOV_VENV)
