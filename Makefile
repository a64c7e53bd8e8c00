# The README's commands. Each target sets up .venv on first use (a fresh machine needs only
# python3 >= 3.10 and make), then runs.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch: installed before the project so pip never picks a build for us. On this project's CPU
# machines torch==2.13.0 is a CPU wheel on local disk; on a GPU machine the same pin is the CUDA
# build from PyPI. For a CPU-only build elsewhere: make TORCH_INDEX_URL=<PyTorch's CPU wheel index>.
TORCH  ?= torch==2.13.0
TORCH_INDEX_URL ?=
ARGS   ?=

.PHONY: sweep run test lint ui bench clean

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || \
	  $(BIN)/python -m pip install -q "$(TORCH)" $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL))
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

sweep: $(BIN)/.installed   ## the default sweep: python train.py -m (offline, ~2 min on 2 cores)
	$(BIN)/python train.py -m $(ARGS)

run: $(BIN)/.installed     ## one fine-tuning run with the offline defaults
	$(BIN)/python train.py $(ARGS)

# the suite runs one pytest worker per core (pytest-xdist; each test has its own directory,
# ports and PostgreSQL cluster); the longest tests go first so no worker is left with them at the
# end. PYTEST_WORKERS=0 runs it in one process.
PYTEST_WORKERS ?= auto
test: $(BIN)/.installed    ## the test suite (tiny model, real MLflow / Optuna stores)
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist worksteal $(ARGS)

lint: $(BIN)/.installed
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

ui: $(BIN)/.installed      ## the MLflow UI on ./mlflow.db
	$(BIN)/python -m sweep ui $(ARGS)

clean:
	rm -rf multirun outputs .sweep mlflow.db mlflow.db.lock mlartifacts
