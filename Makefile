# clexp: every target creates the project-local virtual environment (.venv) when it is missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
RAY_STAMP := $(VENV)/.installed-ray
LOCK   := constraints.txt
EXTRAS := dev,sweeps,timm,docs
ARGS   ?=

.PHONY: install install-ray lock run test test-fast sweep bench bench-tiny docs lint clean

$(STAMP): pyproject.toml setup.py $(LOCK)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c $(LOCK) --upgrade pip
	$(BIN)/python -m pip install --quiet -c $(LOCK) -e ".[$(EXTRAS)]" --config-settings editable_mode=compat
	@touch $(STAMP)

# editable_mode=compat: the checkout itself on sys.path, so that Hydra's plugin scan (pkgutil) finds
# hydra_plugins/clexp_optuna, which setuptools' default editable finder hides from it
install: $(STAMP)  ## create .venv and install clexp (editable) with its test tools, at the tested versions of constraints.txt

# the ray extra (hydra/launcher=ray) on top, at the versions of the same lock (~30 s, an 80 MB ray wheel); CI installs it
$(RAY_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -c $(LOCK) -e ".[$(EXTRAS),ray]" --config-settings editable_mode=compat
	@touch $(RAY_STAMP)

install-ray: $(RAY_STAMP)  ## make install, plus the ray extra (Hydra's Ray launcher), at the versions of constraints.txt

# not on $(STAMP): that would first reinstall the old pins over what is being locked
lock:  ## refresh constraints.txt from the versions installed in .venv (e.g. after .venv/bin/pip install -U PKG)
	@test -x $(BIN)/python || { echo "make lock: no $(VENV); run make install-ray first" >&2; exit 1; }
	@$(BIN)/python -c 'import ray, hydra_plugins.hydra_ray_launcher' 2>/dev/null || \
	  { echo "make lock: no ray extra in $(VENV) (its pins would drop out of $(LOCK)); run make install-ray first" >&2; exit 1; }
	@{ echo "# The tested versions of every package in $(VENV); \`make install\` and \`make install-ray\` install them (pip install -c $(LOCK))."; \
	   echo "# Made by \`make lock\` (pip freeze --all --exclude-editable, clexp itself left out): do not edit by hand."; \
	   echo "# The version ranges stay in pyproject.toml. Locked with $$($(BIN)/python -c \
	     'import platform; print("Python", platform.python_version(), "on", platform.system(), platform.machine())')."; \
	   $(BIN)/python -m pip freeze --all --exclude-editable | grep -v -i -E '^clexp( |=|@|$$)'; } > $(LOCK).tmp
	@mv $(LOCK).tmp $(LOCK) && touch $(STAMP) $(RAY_STAMP)
	@echo "$(LOCK): $$(grep -c '==' $(LOCK)) packages pinned"

run: $(STAMP)  ## the default experiment: Split Digits, class-IL, MLP, naive (offline); ARGS="key=value ..." to override
	$(BIN)/clexp $(ARGS)

test: $(STAMP)  ## the whole test suite (CPU)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --durations=15 $(ARGS)

test-fast: $(STAMP)  ## the test suite without the slow end-to-end runs
	$(BIN)/python -m pytest -q -m "not slow" $(ARGS)

sweep: $(STAMP)  ## an example sweep: two methods x two seeds, then the report
	$(BIN)/clexp -m method=naive,ewc seed=0,1 hydra.sweep.dir=outputs/multirun/example
	$(BIN)/clexp-report outputs/multirun/example

bench: $(STAMP)  ## every benchmark, one table of side-by-side ratios
	$(BIN)/python -m bench $(ARGS)

bench-tiny: $(STAMP)  ## the benchmarks in their tiny smoke mode
	$(BIN)/python -m bench --tiny

docs: $(STAMP)  ## the documentation site into site/ (offline; every warning, broken link or missing reference fails it)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

lint: $(STAMP)
	$(BIN)/ruff check clexp tests bench

clean:
	rm -rf outputs/* .pytest_cache site
