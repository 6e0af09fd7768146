# The two commands: `make run` and `make test`. Both create the virtualenv and install what
# they need (pinned in requirements*.txt) on a machine with only Python 3.11+, make and git.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000
SIMULATOR_PORT ?= 8001
RECEIVER_PORT ?= 8002

.PHONY: run manage test install install-dev lint importlint typecheck migrations-check pytest lock clean

$(BIN)/python:
	$(PYTHON) -c 'import sys; sys.exit("Python 3.11+ is required") if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-run: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@ $(VENV)/.installed-run

install: $(VENV)/.installed-run
install-dev: $(VENV)/.installed-dev

## make run: migrate, create the demo admin and API key, start web + worker + beat + simulator
# (python -m core.devrun: Ctrl-C, or SIGTERM to the process group, stops every one of them).
# Derived URLs follow HOST/PORT/SIMULATOR_PORT unless the environment or .env sets them.
RUN_ENV = DJANGO_DEBUG=$${DJANGO_DEBUG:-true} \
	WEBHOOK_ALLOW_PRIVATE_TARGETS=$${WEBHOOK_ALLOW_PRIVATE_TARGETS:-true} \
	$$(test -n "$$MPESA_CALLBACK_URL" || grep -qs '^MPESA_CALLBACK_URL=.' .env || echo MPESA_CALLBACK_URL=http://$(HOST):$(PORT)/payments/callback/) \
	$$(test -n "$$MPESA_BASE_URL" || grep -qs '^MPESA_BASE_URL=.' .env || echo MPESA_BASE_URL=http://127.0.0.1:$(SIMULATOR_PORT))

run: install
	@env $(RUN_ENV) $(BIN)/python manage.py migrate --no-input
	@env $(RUN_ENV) $(BIN)/python manage.py bootstrap_demo --host $(HOST) --port $(PORT)
	@env $(RUN_ENV) $(BIN)/python manage.py bootstrap_demo_webhooks --url http://127.0.0.1:$(RECEIVER_PORT)/webhooks
	@exec env $(RUN_ENV) WEB_HOST=$(HOST) WEB_PORT=$(PORT) SIMULATOR_PORT=$(SIMULATOR_PORT) \
		RECEIVER_PORT=$(RECEIVER_PORT) \
		$(BIN)/python -m core.devrun Procfile.dev

## make manage ARGS="...": a manage.py command beside `make run`, with the same environment
# (e.g. make manage ARGS="create_api_key shop", make manage ARGS=shell).
manage: install
	@env $(RUN_ENV) $(BIN)/python manage.py $(ARGS)

## make test: lint, types, migrations check and the whole pytest suite.
TEST_ENV := DJANGO_SECRET_KEY=$${DJANGO_SECRET_KEY:-test-only-secret-key-do-not-use-in-production} \
            VAR_DIR=$${VAR_DIR:-$(CURDIR)/var/test}

test: install-dev lint importlint typecheck migrations-check pytest

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The one-way app graph (pyproject.toml, [tool.importlinter]): an import up a layer fails.
importlint: install-dev
	$(BIN)/lint-imports --no-cache

typecheck: install-dev
	$(TEST_ENV) $(BIN)/mypy .

migrations-check: install-dev
	$(TEST_ENV) $(BIN)/python manage.py makemigrations --check --dry-run

pytest: install-dev
	$(TEST_ENV) $(BIN)/pytest $(PYTEST_ARGS)

## make lock: re-pin requirements*.txt from pyproject.toml (needs network); the one command that
# regenerates both files. They name no package index and no local folder (where packages come
# from is each machine's own pip configuration), and carry the hash of every file, so that
# `pip install -r` refuses a download that is not the one that was locked. The dev file is
# constrained by the runtime one, so tests run on the versions production installs.
PIP_TOOLS := pip-tools==7.7.0
PIP_COMPILE := $(BIN)/pip-compile --quiet --strip-extras --no-header --allow-unsafe \
	--no-emit-index-url --no-emit-find-links --generate-hashes

# Needs only pip-tools, not the project's requirements: it must work when a requirement was
# added by hand without its hashes (pip then refuses to install the file until it is re-locked).
lock: | $(BIN)/python
	$(BIN)/pip install --quiet $(PIP_TOOLS)
	$(PIP_COMPILE) -o requirements.txt pyproject.toml
	$(PIP_COMPILE) --extra dev --constraint requirements.txt -o requirements-dev.txt pyproject.toml

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache .hypothesis
