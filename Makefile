# The README's two commands: `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(abspath $(VENV))/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-fast bench

$(STAMP): requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $(STAMP)

setup: $(STAMP)

# The user's own example, cvae_genre, on the generated demo corpus (full-size model, 128 x 1292
# windows), logged to mlflow.db; 8 epochs keep it within 10 minutes on a 2-core CPU.
demo: setup
	PATH=$(BIN):$$PATH mlflow run . -P model=cvae_genre -P train.epochs=8 --env-manager local

test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

# What a developer runs on every change: the logic on tiny shapes, without the tests marked slow
# (servers, subprocesses, end-to-end runs of every pipeline variant).
test-fast: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -m "not slow" -p no:cacheprovider

bench: setup
	$(BIN)/python -m benchmarks.prepare_speed
	$(BIN)/python -m benchmarks.trainer_overhead
	$(BIN)/python -m benchmarks.step_throughput --models conv_vae,vade --steps 3
	$(BIN)/python -m benchmarks.io_and_allocator
	$(BIN)/python -m benchmarks.startup
	$(BIN)/python -m benchmarks.full_scale_memory
	$(BIN)/python -m benchmarks.architectures --epochs 3
	$(BIN)/python -m benchmarks.cpu_precision
	$(BIN)/python -m benchmarks.tuning_efficiency --trials 12 --epochs 30
	$(BIN)/python -m benchmarks.config_check
	$(BIN)/python -m benchmarks.cluster_scaling
	$(BIN)/python -m benchmarks.protocol --epochs 8
	@# benchmarks.gpu needs a CUDA device (full-size steps at batch 32); see benchmarks/README.md, On a GPU
	$(BIN)/python -c 'import sys, torch; sys.exit(not torch.cuda.is_available())' \
		&& $(BIN)/python -m benchmarks.gpu || echo "benchmarks.gpu skipped: no CUDA device here"
