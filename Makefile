# The two commands of README.md: `make demo` and `make test`. Each creates .venv when absent.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_WORKERS ?= 2

.PHONY: demo test test-slow test-all clean

# Tests read real data only from $KERAZOO_DATA; default it to ../shared/data when that folder exists.
export KERAZOO_DATA ?= $(if $(wildcard ../shared/data),$(abspath ../shared/data))

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m kerazoo.demo

# Notebooks run as tests (nbmake) in their quick configuration.
test: $(STAMP)
	KERAZOO_NOTEBOOK_QUICK=1 $(PY) -m pytest -n $(PYTEST_WORKERS) -m "not slow and not benchmark and not matrix" tests --nbmake notebooks

test-slow: $(STAMP)
	$(PY) -m pytest -n $(PYTEST_WORKERS) -m "slow and not benchmark and not matrix" tests

test-all: $(STAMP)
	KERAZOO_NOTEBOOK_QUICK=1 $(PY) -m pytest -n $(PYTEST_WORKERS) tests --nbmake notebooks

clean:
	rm -rf $(VENV) .pytest_cache
