# BoneXage: two commands do everything on a fresh clone.
#   make demo   create .venv, install, train and evaluate on built-in synthetic data (CPU, a few minutes)
#   make test   create .venv, install with dev extras, check the notebooks/package sync, run all notebook tests
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# nbdev_test workers: one notebook per core by default
TEST_WORKERS ?= 2
# one torch/OpenMP thread per notebook process: with 2 notebooks on 2 cores, more threads only wait for each other
TEST_THREADS ?= 1

.PHONY: install test demo lab sync-check import-check nbtest readme export clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/python setup.py settings.ini
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

install: $(VENV)/.installed

## test: the same checks CI runs (.ci/run calls this target)
test: install sync-check import-check nbtest

## the package must be exactly what the notebooks export, the notebooks clean, README what index.ipynb says
sync-check: install
	.ci/check_sync

## `import bonexage` and every module in a plain Python process (catches imports hidden in test cells)
import-check: install
	$(BIN)/python .ci/import_all.py

nbtest: install
	OMP_NUM_THREADS=$(TEST_THREADS) $(BIN)/nbdev_test --n_workers $(TEST_WORKERS) --timing

## demo: synthetic data set -> train a ResNet-18 with the BoneXage head on the CPU -> test MAE against the mean baseline, report, predictions
demo: install
	$(BIN)/bonexage-demo

## lab: JupyterLab to read the notebooks as a book
lab: install
	$(BIN)/python -m pip install --quiet -e ".[lab]"
	$(BIN)/jupyter lab nbs

## developer helpers
export: install
	$(BIN)/nbdev_export
	$(BIN)/nbdev_clean
	$(BIN)/python .ci/readme.py

readme: install
	$(BIN)/python .ci/readme.py

clean:
	rm -rf $(VENV) build *.egg-info _proc _docs
