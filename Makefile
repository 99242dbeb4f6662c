# `make run` (set up + serve the API and a worker), `make demo` (the CLI on the example
# model) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
EXAMPLES := examples/out

.PHONY: install system run demo test lint typecheck pytest examples clean

install: system $(STAMP)

# bubblewrap isolates the .pt2 importer (see engine/io/_sandbox.py); docker-compose (v1, no
# engine needed) validates docker-compose.yml in tests/test_compose.py; curl and jq run the
# README's quickstart in tests/test_readme.py; chromium is the browser the dashboard tests
# drive through Playwright (tests/service/api/pages). Installed when we can.
system:
	@command -v bwrap >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get update -qq && apt-get install -y -qq bubblewrap) >/dev/null; \
	  else echo "warning: bubblewrap (bwrap) missing; .pt2 import will be refused" >&2; fi; }
	@command -v jq >/dev/null && command -v curl >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get update -qq && apt-get install -y -qq curl jq) >/dev/null; \
	  else echo "warning: curl or jq missing; tests/test_readme.py skips (fails when CI=true)" >&2; fi; }
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get update -qq && apt-get install -y -qq chromium) >/dev/null; \
	  else echo "warning: chromium missing; the dashboard's browser tests skip (fail when CI=true)" >&2; fi; }
	@command -v docker-compose >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get update -qq && apt-get install -y -qq docker-compose) >/dev/null; \
	  else echo "warning: docker-compose missing; tests/test_compose.py skips (fails when CI=true)" >&2; fi; }

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]' torch==2.13.0
	touch $(STAMP)

$(EXAMPLES)/digits.pt2: examples/digits.py $(STAMP)
	$(PY) examples/digits.py --out $(EXAMPLES)

examples: $(EXAMPLES)/digits.pt2

# The service on this machine: migrate, then the API and a worker (`mpq up` prints the URL
# and, on a fresh database, a first API key). Ctrl-C stops both.
run: install
	$(VENV)/bin/mpq db upgrade
	$(VENV)/bin/mpq up

# The CLI on the example model: its layer inventory, then a mixed-precision search.
demo: install examples
	$(VENV)/bin/mpq inspect $(EXAMPLES)/digits.pt2
	$(VENV)/bin/mpq search $(EXAMPLES)/digits.pt2 --data $(EXAMPLES)/digits.npz \
	  --metric accuracy --max-drop 0.01 --trials 60 --out $(EXAMPLES)/search

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: install
	$(VENV)/bin/mypy

# One process: `pytest -n 2 -m "not serial"` then `pytest -m serial` also passes, but saved
# only ~15% of the time on two cores (docs/testing.md).
pytest: install
	$(VENV)/bin/pytest

test: lint typecheck pytest

clean:
	rm -rf $(VENV) $(EXAMPLES) .mypy_cache .ruff_cache .pytest_cache
