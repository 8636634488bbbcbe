# The two commands a new machine needs: `make demo` and `make test`. Both create .venv and install
# tenfold with the exact versions in constraints.txt (torch==2.13.0, the CPU wheel) before they run.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.tenfold-installed
PYTEST_ARGS ?=

.PHONY: install demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade "pip==26.3"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/tenfold demo

lint: install
	$(BIN)/ruff check src tests bench

test: install lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: install
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[bench]"

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .ruff_cache
