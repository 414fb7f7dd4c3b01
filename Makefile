# clexp: every target creates the project-local virtual environment (.venv) when it is missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
ARGS   ?=

.PHONY: install run test test-fast sweep bench bench-tiny lint clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,sweeps]"
	@touch $(STAMP)

install: $(STAMP)  ## create .venv and install clexp (editable) with its test tools

run: $(STAMP)  ## the default experiment: Split Digits, class-IL, MLP, naive (offline); ARGS="key=value ..." to override
	$(BIN)/clexp $(ARGS)

test: $(STAMP)  ## the whole test suite (CPU)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile $(ARGS)

test-fast: $(STAMP)  ## the test suite without the slow end-to-end runs
	$(BIN)/python -m pytest -q -m "not slow" $(ARGS)

sweep: $(STAMP)  ## an example sweep: two methods x two seeds, then the report
	$(BIN)/clexp -m method=naive,ewc seed=0,1 hydra.sweep.dir=outputs/multirun/example
	$(BIN)/clexp-report outputs/multirun/example

bench: $(STAMP)  ## every benchmark, one table of side-by-side ratios
	$(BIN)/python -m bench $(ARGS)

bench-tiny: $(STAMP)  ## the benchmarks in their tiny smoke mode
	$(BIN)/python -m bench --tiny

lint: $(STAMP)
	$(BIN)/ruff check clexp tests bench

clean:
	rm -rf outputs/* .pytest_cache
