# The two commands of the README: `make run` and `make test`. Both set up .venv on first use.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: run test lint docs

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

run: $(BIN)/.installed
	$(BIN)/audimeter run --config examples/audimeter.toml

lint: $(BIN)/.installed
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

# The documentation site (docs/, mkdocs.yml) into site/; warnings are errors.
docs: $(BIN)/.installed
	$(BIN)/mkdocs build --strict --site-dir site

test: $(BIN)/.installed lint
	scripts/install-test-deps
	$(BIN)/pytest
