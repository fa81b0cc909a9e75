# make demo   set up a virtual environment and run the whole chain on the built-in dataset:
#             train, QAT, INT8 + fp32 export, bench on this machine, report (runs/quickstart/report)
# make test   set up what the tests need and run them (what .ci/run calls)

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# A local wheel folder, where the machine has one, holds the CPU build of torch;
# without it pip could resolve torch to a multi-GB CUDA build.
PIP_LOCAL := $(if $(wildcard /opt/wheels),--find-links /opt/wheels)
RUN    ?= runs/quickstart

.PHONY: install install-full install-dev demo test test-fast clean board board-stop

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# The stamp files make a second `make` skip pip entirely (it is slow even when satisfied).
# --no-compile: pip would byte-compile every module of torch, executorch and openvino (about 50 s of CPU on
# 2 cores); Python compiles the few it imports on first use instead.
# pip -q says nothing for the half minute to minutes an install takes: a line every 5 s while it runs shows
# the install is alive (no step of `make demo` silent for more than 10 s).
FULL := .[export,report]
DEV  := .[dev,export,report,geo]
define pip_install
	@echo '$(BIN)/pip install -q --no-compile $(PIP_LOCAL) -e "$(1)"'
	@( s=0; while sleep 5; do s=$$((s + 5)); echo "  pip: still installing ($$s s)"; done ) & \
	  $(BIN)/pip install -q --no-compile $(PIP_LOCAL) -e "$(1)"; rc=$$?; kill $$! 2>/dev/null; exit $$rc
endef

$(VENV)/.core: pyproject.toml | $(BIN)/python
	$(call pip_install,.)
	touch $@

$(VENV)/.full: pyproject.toml | $(BIN)/python
	$(call pip_install,$(FULL))
	touch $@ $(VENV)/.core

$(VENV)/.dev: pyproject.toml | $(BIN)/python
	$(call pip_install,$(DEV))
	touch $@ $(VENV)/.core $(VENV)/.full

install: $(VENV)/.core
install-full: $(VENV)/.full
install-dev: $(VENV)/.dev

# A second `make demo` after an interruption resumes: finished stages are skipped.
demo: install-full
	$(BIN)/edgecnn run recipes/quickstart.yaml --out $(RUN)

# Two pytest processes (pytest-xdist, a module each at a time: module fixtures are built once), then the few
# tests that bound a wall-clock time, alone. TEST_JOBS=1 runs everything in one process.
TEST_JOBS ?= 2
test: install-dev
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest -q -m "not serial" $(if $(filter-out 1,$(TEST_JOBS)),-n $(TEST_JOBS) --dist loadfile)
	$(BIN)/python -m pytest -q -m serial

# make test-fast   the day-to-day tier: everything not marked slow (no training, export or runner
#                  end-to-end tests); CI still runs the whole suite through `make test`
test-fast: install-dev
	$(BIN)/python -m pytest -q -m "not slow"

# make board        an emulated arm64 Raspberry Pi (Debian bookworm under qemu-user, its own sshd on a loopback
#                   port, the aarch64 runtimes); prints the exports: eval "$(make -s board)". Needs root. tools/board.py
# make board-stop   stop its sshd and unmount it (the cached root stays in /var/cache/edgecnn-board)
board: | $(BIN)/python
	@$(BIN)/python tools/board.py start

board-stop:
	@$(PYTHON) tools/board.py stop

clean:
	rm -rf $(VENV) runs .pytest_cache
