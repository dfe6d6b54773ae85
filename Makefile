# The README's two commands: `make run` (main job) and `make test` (test suite).
# Both install what they need into .venv first; the Dockerfile runs the same `make install`.
PYTHON ?= python3
VENV   ?= .venv
# The Docker image sets --system-site-packages so the base image's CUDA torch is reused.
VENV_FLAGS ?=
BIN    := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: install run test test-fast lint repro clean

$(BIN)/ganzoo: pyproject.toml
	$(PYTHON) -m venv $(VENV_FLAGS) $(VENV)
	$(BIN)/pip install --upgrade --quiet pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

install: $(BIN)/ganzoo

# Main job: prepare -> train -> evaluate on the embedded digits data, reproduced by DVC.
run: install
	@git rev-parse --git-dir >/dev/null 2>&1 || { echo "ganzoo: make run needs the git clone (DVC tracks it)"; exit 2; }
	$(BIN)/dvc repro
	@echo; echo "metrics:"; $(BIN)/dvc metrics show
	@echo "samples: eval/$$($(BIN)/python -c 'import yaml;print(yaml.safe_load(open("params.yaml"))["variant"])')/sheets/samples.png"

test: install
	$(BIN)/python -m pytest -q

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

# Lint: ruff (config in pyproject.toml [tool.ruff]) and mypy on the package ([tool.mypy]).
lint: install
	$(BIN)/ruff check src tests flows benchmarks
	$(BIN)/mypy src/ganzoo

clean:
	rm -rf data checkpoints metrics eval mlruns mlartifacts mlflow.db .dvc/tmp
