# Quick start: `make demo` runs the built-in demo study, `make test` the test suite.
# Both create .venv and install ethnicmer into it when needed.
PYTHON ?= python3
VENV ?= .venv
# torch/torchvision are pinned to the builds this project is tested with.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1

BIN := $(VENV)/bin
STAMP := $(VENV)/.ethnicmer-installed

.PHONY: demo test test-min lint install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_SPEC)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/ethnicmer demo

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	HF_HUB_OFFLINE=1 ETHNICMER_NO_PROGRESS=1 $(BIN)/python -m pytest -q -n auto --dist worksteal --durations=15

# the declared minimum versions of the scientific stack (.ci/min-versions.txt) in
# .venv-min, on the torch-free tests (data, config, statistics, bad inputs)
test-min:
	bash .ci/min-versions

clean:
	rm -rf runs .pytest_cache .ruff_cache
