# Two entry points for a fresh machine: `make serve` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN     = $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: install serve test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.runtime: pyproject.toml | $(BIN)/python
	@echo "make: installing n2n and what it needs to run into $(VENV) (pip; a few minutes the first time)"
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	@echo "make: installing n2n with its test extras into $(VENV) (pip; a few minutes the first time)"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@ $(VENV)/.runtime

install: $(VENV)/.installed

serve: $(VENV)/.runtime
	@echo "make: serving the shipped models on http://$(HOST):$(PORT)/ (change with: make serve PORT=8080 HOST=0.0.0.0)"
	$(BIN)/n2n serve --host $(HOST) --port $(PORT)

test: install
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python benchmarks/core_speed.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
