# Two commands do all set-up on a fresh machine:
#   make demo   install, ingest the bundled sample corpus, answer a sample question
#   make test   install, run the test suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN = $(VENV)/bin
DEMO_DATA = .ragline-demo
QUESTION ?= How many days of annual leave do employees get?

.PHONY: install demo test bench-ingest clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, pinned: the CPU build on this machine's disk; any other version pulls CUDA.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test,dask,bench]'
	touch $@

demo: install
	$(BIN)/ragline ingest samples/corpus --source sample --data-dir $(DEMO_DATA)
	$(BIN)/ragline ask "$(QUESTION)" -k 3 --data-dir $(DEMO_DATA)

test: install
	$(BIN)/python -m pytest

clean:
	rm -rf $(DEMO_DATA) .pytest_cache
