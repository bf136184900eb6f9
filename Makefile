# Two commands do all set-up on a fresh machine (see README):
#   make pipeline   # the main job: every notebook, in order, on the embedded default
#   make test       # the test suite
#   make report     # runs/report/index.html: one shareable file (make pipeline writes it too)
# Both create or reuse .venv and install what they need. torch is installed first, alone, as
# TORCH_SPEC (a CPU build where one is on disk or TORCH_PIP_ARGS points at the CPU index), so that
# no other package pulls a multi-GB CUDA build; an already-installed torch is kept.

PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
TORCH_PIP_ARGS ?=
PROFILE ?= smoke
PYTEST_ARGS ?=
BIN := $(VENV)/bin
STAMP := $(VENV)/.appsneo-installed

.PHONY: pipeline test report install clean-runs

pipeline: $(STAMP)
	HF_HUB_DISABLE_TELEMETRY=1 $(BIN)/python -m appsneo_utils.pipeline --profile $(PROFILE)

report: $(STAMP)
	$(BIN)/python -m appsneo_utils.report

test: $(STAMP)
	HF_HUB_DISABLE_TELEMETRY=1 $(BIN)/python -m pytest $(PYTEST_ARGS)

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "appsneo needs Python 3.11 or newer: make PYTHON=python3.11")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c 'import torch' 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH_SPEC)" $(TORCH_PIP_ARGS)
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

clean-runs:
	rm -rf runs
