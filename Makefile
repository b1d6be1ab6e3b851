# Two commands for a newcomer (see README):
#   make demo   set up .venv and run the demo scenario on the embedded SQLite store
#   make test   set up .venv and run every test (PostgreSQL tests run when a server is reachable)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test setup bench clean check lint typecheck

# Install output goes to .venv/install.log and is shown only if the install fails.
$(STAMP): pyproject.toml
	@echo "setting up $(VENV) (pinned dependencies from pyproject.toml) ..."
	$(PYTHON) -m venv $(VENV)
	@{ $(BIN)/pip install --upgrade pip && $(BIN)/pip install -e '.[test]'; } > $(VENV)/install.log 2>&1 \
		|| { cat $(VENV)/install.log; echo "install failed (log above, also in $(VENV)/install.log)"; exit 1; }
	@# bytecode written once: where PYTHONDONTWRITEBYTECODE is set, every start would compile the project again
	$(BIN)/python -m compileall -q clearing projections cli > /dev/null
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	rm -rf demo.db demo.db-wal demo.db-shm demo-reports
	$(BIN)/clearing --db demo.db demo

# PostgreSQL tests use this server when it is reachable and are skipped (with the reason) when not.
export CLEARING_TEST_POSTGRES ?= postgresql://postgres@127.0.0.1:5432/test

test: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

# Contracts the tools enforce (ADR 15): ruff with the project's rules, mypy --strict (pyproject.toml).
lint: $(STAMP)
	$(BIN)/ruff check clearing projections cli tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck

bench: $(STAMP)
	$(BIN)/python bench/bench_trades.py

clean:
	rm -rf $(VENV) demo.db demo.db-wal demo.db-shm demo-reports
