# fcnlab: every target bootstraps .venv (pinned installs) itself, so a new machine needs only `make <target>`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
SEEDS  ?= 1

.PHONY: install test test-fast lint reproduce-table2 clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	@rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)  ## create .venv and install fcnlab with its pinned dependencies

lint: $(STAMP)  ## ruff over src/ and tests/
	$(VENV)/bin/ruff check .

test: lint  ## lint, then the whole test suite (slow end-to-end tests included)
	$(PY) -m pytest

test-fast: $(STAMP)  ## the test suite without the slow end-to-end runs
	$(PY) -m pytest -m "not slow"

clean:  ## remove generated data, runs and results (keeps .venv)
	rm -rf data outputs multirun results/runs lightning_logs wandb .pytest_cache
