# The two commands a newcomer needs: `make demo` and `make test`. Each sets up .venv itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck docs bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/better-auth-obo demo

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples

typecheck: $(STAMP)
	$(BIN)/mypy

# The documentation site, into site/ (ignored by git); --strict turns every warning (a broken
# link or anchor, a docstring mkdocstrings cannot read) into a failure. Its tools need Python
# 3.11.5+ (see the docs block of the dev extra): an older venv skips it, saying so.
docs: $(STAMP)
	@if $(BIN)/python -c 'import sys; sys.exit(sys.version_info < (3, 11, 5))'; then \
		NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs build --strict; \
	else \
		echo "docs: skipped, mkdocs-material needs Python 3.11.5 or later"; \
	fi

# The suite in PYTEST_WORKERS processes (pytest-xdist), each with its own databases, emulator
# and leak-scan registry; worksteal evens out the long tests. Twice the cores of a small machine:
# many tests wait on sockets and subprocesses. `pytest path::test` alone stays one process.
PYTEST_WORKERS ?= 4

test: lint typecheck docs
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist worksteal

bench: $(STAMP)
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache site
