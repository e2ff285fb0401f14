# BoneXage: two commands do everything on a fresh clone.
#   make demo   create .venv, install, train and evaluate on built-in synthetic data (CPU, a few minutes)
#   make test   create .venv, install with dev extras, lint, check the notebooks/package sync, run all notebook tests
# The book (nbs/98_building_the_book.ipynb explains these):
#   make book   re-execute the notebooks at full settings and store their outputs (NB=nbs/04_layers.ipynb for one)
#   make docs   render the committed notebooks as an HTML book in _docs/ (no execution)
#   make lab    JupyterLab on nbs/, cleaning each notebook as it is saved
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# nbdev_test workers: one notebook per core by default
TEST_WORKERS ?= 2
# one torch/OpenMP thread per notebook process: with 2 notebooks on 2 cores, more threads only wait for each other
TEST_THREADS ?= 1
# make book: notebooks to run (default: all, in reading order), how many at once, extra flags whose cells to skip
NB ?=
BOOK_WORKERS ?= 2
SKIP ?=
# make browser-test: the notebook run through JupyterLab's UI (in nbs/)
BROWSER_NB ?= 11_tutorial.ipynb

.PHONY: install git-filter test lint demo lab sync-check import-check nbtest book size-check docs browser-test browser-reader \
        metrics readme export clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/python setup.py settings.ini
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

# extras on demand: docs (book execution and the HTML book), lab (JupyterLab), browser (Playwright)
$(VENV)/.docs-installed: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e ".[docs]"
	touch $@

$(VENV)/.lab-installed: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e ".[lab]"
	touch $@

$(VENV)/.browser-installed: $(VENV)/.docs-installed $(VENV)/.lab-installed
	$(BIN)/python -m pip install --quiet -e ".[browser]"
	touch $@

install: $(VENV)/.installed git-filter

## git stores notebooks cleaned by nbdev's rules whatever saved them (local git config, nothing tracked changes)
git-filter: $(VENV)/.installed
	@.ci/git_filter.sh

## test: the same checks CI runs (.ci/run calls this target)
test: install lint sync-check import-check nbtest

## unused imports and names, undefined names, syntax errors in the package and the benchmarks
lint: install
	@test -x $(BIN)/ruff || { echo "ruff is missing: it belongs to the dev extra (settings.ini dev_requirements)"; exit 1; }
	$(BIN)/ruff check --config .ci/ruff.toml --output-format concise bonexage benchmarks

## the package must be exactly what the notebooks export, the notebooks clean, README what index.ipynb says
sync-check: install
	.ci/check_sync

## `import bonexage` and every module in a plain Python process (catches imports hidden in test cells)
import-check: install
	$(BIN)/python .ci/import_all.py

nbtest: install
	OMP_NUM_THREADS=$(TEST_THREADS) $(BIN)/nbdev_test --n_workers $(TEST_WORKERS) --timing

## book: re-execute the notebooks at full settings (no IN_TEST), store outputs, clean; `make book NB=nbs/04_layers.ipynb`
book: install $(VENV)/.docs-installed
	OMP_NUM_THREADS=$(TEST_THREADS) $(BIN)/python .ci/book.py --workers $(BOOK_WORKERS) $(if $(SKIP),--skip "$(SKIP)") $(NB)

## nbs/ must stay small enough to clone quickly (25 MB)
size-check:
	$(BIN)/python .ci/book.py --size-only

## docs: the committed notebooks as an HTML book in _docs/ (open _docs/index.html)
docs: $(VENV)/.docs-installed
	NO_MKDOCS_2_WARNING=1 $(BIN)/python .ci/docs.py

## browser-test: the tutorial through JupyterLab's UI, then _docs/ in Chromium (apt-get install -y chromium)
browser-test: docs $(VENV)/.browser-installed
	OMP_NUM_THREADS=$(TEST_THREADS) $(BIN)/python .ci/browser_test.py --notebook $(BROWSER_NB)

## browser-reader: the interactive reader (nbs/14b_reader.ipynb) driven in JupyterLab: upload, sex, age, report
browser-reader: $(VENV)/.browser-installed
	OMP_NUM_THREADS=$(TEST_THREADS) $(BIN)/python .ci/browser_reader.py

## metrics: how the book reads, per notebook; fails when a target for chapters 01-10 is missed
metrics:
	$(BIN)/python .ci/reading_metrics.py --check

## demo: synthetic data set -> train a ResNet-18 with the BoneXage head on the CPU -> test MAE against the mean baseline, report, predictions
demo: install
	$(BIN)/bonexage-demo

## lab: JupyterLab to read the notebooks as a book; every save is cleaned like nbdev_clean (.ci/jupyter_server_config.py)
lab: install $(VENV)/.lab-installed
	$(BIN)/jupyter lab --config=.ci/jupyter_server_config.py $(if $(filter 0,$(shell id -u)),--allow-root) nbs

## developer helpers
export: install
	$(BIN)/nbdev_export
	$(BIN)/nbdev_clean
	$(BIN)/python .ci/readme.py

readme: install
	$(BIN)/python .ci/readme.py

clean:
	rm -rf $(VENV) build *.egg-info _proc _docs .browser-test
