# `make train` and `make test` set everything up on a fresh machine, then run.
PYTHON ?= python3
VENV ?= .venv
# Installed before the package so that the package's own `torch>=2.3` is already met; override to
# choose another build, e.g. `make test TORCH=torch` on a machine with a GPU.
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Training needs only the core; the tests need every extra (Ray Tune for the sweeps).
TEST_STAMP := $(VENV)/.installed-test

.PHONY: train test bench clean

$(STAMP): pyproject.toml setup.py src/ddpg/envs/reacher/_physics.c
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e .
	touch $(STAMP)

$(TEST_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(TEST_STAMP)

train: $(STAMP)
	$(BIN)/ddpg train --config configs/reacher.toml

test: $(TEST_STAMP)
	$(BIN)/python -m pytest -q

# Every figure of docs/benchmarks.md; takes about two hours on 2 cores.
bench: $(TEST_STAMP)
	$(BIN)/pip install --quiet -e ".[bench]"
	$(BIN)/python benchmarks/env_throughput.py
	$(BIN)/python benchmarks/reacher_calibration.py
	$(BIN)/python benchmarks/replay_speed.py
	$(BIN)/python benchmarks/compare_sb3.py
	$(BIN)/python benchmarks/reacher_minute.py
	$(BIN)/python benchmarks/checkpoint_speed.py
	$(BIN)/python benchmarks/acting_speed.py
	$(BIN)/python benchmarks/learner_speed.py
	$(BIN)/python benchmarks/update_floor.py
	$(BIN)/python benchmarks/update_floor.py --threads 2
	$(BIN)/python benchmarks/second_core.py
	$(BIN)/python benchmarks/memory.py
	$(BIN)/python benchmarks/sweep_overhead.py
	$(BIN)/python benchmarks/video_speed.py

clean:
	rm -rf $(VENV) runs
