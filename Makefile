# Two entry points: `make demo` runs the demo workflow, `make test` runs lint and the test suite.
# Both create .venv on first use; torch is installed first so pip takes the pinned CPU build.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CORES ?= 2

.PHONY: demo test lint bench cluster-test clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/snakemake --cores $(CORES)

# A real one-node SLURM cluster on this machine (installs slurm-wlm and munge; needs root).
cluster-test: $(STAMP)
	BIN=$(abspath $(BIN)) bash tests/workflow/slurm_cluster.sh

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	TRITON_INTERPRET=1 $(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
