# Two commands from a clean clone:  make run  (install + headline config)  and  make test.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch first, pinned: a bare `torch` requirement would pull a multi-GB CUDA build.
# Elsewhere, point TORCH_INDEX at a CPU wheel index (https://download.pytorch.org/whl/cpu).
TORCH_VERSION ?= 2.13.0
TORCH_INDEX   ?=
# The headline config; gam_cora once it exists.
CONFIG ?= $(firstword $(wildcard configs/gam_cora.yaml) configs/gcn_cora.yaml)
PYTEST_ARGS ?=

export DGLBACKEND := pytorch
# Offline datasets: the mirror beside the checkout (one sub-folder per dataset family),
# when there is one.
MIRROR := $(abspath ../shared/datasets)
ifneq ($(wildcard $(MIRROR)/*/SHA256SUMS),)
export ZOO_DATA_MIRROR ?= $(MIRROR)
endif

STAMP := $(VENV)/.zoo-installed

.PHONY: install run test test-fast lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet torch==$(TORCH_VERSION) $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	rm -rf zoo.egg-info  # a stale one in the checkout hides new entry points from pytest
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: install
	$(BIN)/zoo run $(CONFIG)

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: install
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check zoo plugins tests benchmarks examples scripts

bench: install
	$(BIN)/python benchmarks/bench_gcn.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache runs
