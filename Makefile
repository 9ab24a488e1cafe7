# Lightbox task index. `make run` and `make test` are the two set-up commands in the README.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8000
export PORT

# The first Python 3.13 or 3.12 that actually runs (pyenv shims exist even when inactive).
PYTHON_CANDIDATES := python3.13 python3.12 $(wildcard $(HOME)/.pyenv/versions/3.13*/bin/python3.13) \
	$(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python3.12) /usr/bin/python3.13 /usr/bin/python3.12 python3
FIND_PYTHON = for p in $(PYTHON_CANDIDATES); do \
	if $$p -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1; then echo $$p; break; fi; done

.PHONY: help venv run test test-fast lint migrations-check bench clean

help:
	@echo "make run    - set up .venv, migrate, load demo data, serve on http://127.0.0.1:$(PORT)"
	@echo "make test   - set up .venv and run the whole test suite"
	@echo "make lint   - ruff"
	@echo "make bench  - run the benchmarks in bench/"

$(VENV)/.installed: pyproject.toml
	@python=$$($(FIND_PYTHON)); \
	if [ -z "$$python" ]; then echo "Lightbox needs Python 3.12 or 3.13 (python3.13 / python3.12 not found)." >&2; exit 1; fi; \
	if [ ! -x $(PY) ]; then echo "Creating $(VENV) with $$python"; $$python -m venv $(VENV); fi
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	@touch $@

venv: $(VENV)/.installed

run: venv
	$(PY) manage.py migrate --noinput
	$(PY) manage.py demo --if-empty
	$(PY) -m uvicorn config.asgi:application --host 127.0.0.1 --port $(PORT) --no-server-header --ws websockets-sansio --ws-per-message-deflate false

test: venv
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: venv
	$(PY) -m pytest -m "not e2e and not live" $(PYTEST_ARGS)

lint: venv
	$(PY) -m ruff check .

migrations-check: venv
	$(PY) manage.py makemigrations --check --dry-run

bench: venv
	$(PY) bench/render_bare.py
	$(PY) bench/render_pool.py
	$(PY) bench/render_http.py
	$(PY) bench/ingest.py
	$(PY) bench/ws_load.py
	$(PY) bench/viewer.py

clean:
	rm -rf $(VENV) .pytest_cache
