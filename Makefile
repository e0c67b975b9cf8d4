# One command per chore. `make up` and `make test` work on a fresh machine with Python 3.11+,
# make and the system's package manager.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt

.PHONY: up test check bench lock clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Cumulo needs Python 3.11 or newer"'
	$(PYTHON) -m venv $(VENV)

# Reinstall only when the project's dependencies change.
$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt
	$(PIP) -e '.[dataframes,ml]'
	@touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) -e '.[test]'
	@touch $@

up: $(VENV)/.installed
	$(BIN)/cumulo up

test: $(VENV)/.installed-test
	@scripts/install-test-services
	$(BIN)/pytest

check: $(VENV)/.installed-test
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

bench: $(VENV)/.installed-test
	$(BIN)/python bench/storage.py
	$(BIN)/python bench/sql.py
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/jobs.py
	$(BIN)/python bench/train.py
	$(BIN)/python bench/tune.py
	$(BIN)/python bench/serving.py
	$(BIN)/python bench/pipelines.py

# Re-pin constraints.txt from what is installed now (after changing pyproject.toml).
lock: $(VENV)/.installed-test
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^-e' > constraints.txt

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
