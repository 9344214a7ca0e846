# Quick start: `make demo` runs Rapport on the bundled demo data; `make test` runs every test.
# Both create .venv and install what they need, so they work on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RUNTIME := $(VENV)/.installed-runtime
STAMP := $(VENV)/.installed
EDITOR := api/web/static/build/editor.js
PORT ?= 8000

.PHONY: demo test lint typecheck bench system-deps clean

demo: $(RUNTIME) $(EDITOR)
	$(BIN)/rapport demo --port $(PORT)

test: $(STAMP) $(EDITOR) system-deps
	$(BIN)/ruff check engine fatigue api tests bench
	$(BIN)/mypy
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check engine fatigue api tests bench
	$(BIN)/ruff format --check engine fatigue api tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

bench: $(STAMP)
	for script in bench/bench_*.py; do $(BIN)/python $$script || exit 1; done

# Services the tests start privately (a redis-server on a free port). Installed from the
# distribution's packages only when missing, so a developer machine is left alone.
system-deps:
	@command -v redis-server >/dev/null || { \
	  echo "installing redis-server (tests start a private one)"; \
	  (apt-get update -qq && apt-get install -y -qq redis-server) >/dev/null; }
	@test -x /usr/bin/chromium || { \
	  echo "installing chromium (the web studio's browser tests drive it)"; \
	  (apt-get update -qq && apt-get install -y -qq chromium) >/dev/null; }

# Rapport alone for the demo; its test and development tools on top for everything else.
$(RUNTIME): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e .
	touch $(RUNTIME)

$(STAMP): $(RUNTIME)
	$(BIN)/python -m pip install -q -e '.[test,dev]'
	touch $(STAMP)

# The studio's code editor (CodeMirror, from npm), rebuilt when its source or packages change;
# without it the pages use plain text areas.
$(EDITOR): api/web/package-lock.json api/web/assets/editor.js
	@if command -v npm >/dev/null; then \
	  (cd api/web && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build) \
	  || echo "web studio: code editor not built; the pages fall back to plain text areas"; \
	else echo "web studio: npm not found; the pages use plain text areas instead of CodeMirror"; fi

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
