# make demo   set up a virtual environment and run the demo on the built-in dataset
# make test   set up what the tests need and run them (what .ci/run calls)

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# A local wheel folder, where the machine has one, holds the CPU build of torch;
# without it pip could resolve torch to a multi-GB CUDA build.
PIP_LOCAL := $(if $(wildcard /opt/wheels),--find-links /opt/wheels)
RUN    ?= runs/quickstart

.PHONY: install install-dev demo test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# The stamp files make a second `make` skip pip entirely (it is slow even when satisfied).
$(VENV)/.core: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q $(PIP_LOCAL) -e .
	touch $@

$(VENV)/.dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q $(PIP_LOCAL) -e ".[dev,export]"
	touch $@ $(VENV)/.core

install: $(VENV)/.core
install-dev: $(VENV)/.dev

demo: install
	@if [ -f $(RUN)/last.pt ]; then resume=--resume; fi; \
	$(BIN)/edgecnn train recipes/quickstart.yaml --out $(RUN) $$resume
	$(BIN)/edgecnn eval $(RUN)

test: install-dev
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs .pytest_cache
