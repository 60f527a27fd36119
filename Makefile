# Two commands on a fresh clone: `make run` (install, then a local search on the default space)
# and `make test` (install, then the test suite). Everything goes into ./.venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is pinned first: this CPU build of 2.13.0 is what CI and the tests run on; on a machine
# with a GPU, pip takes the CUDA build of the same version.
TORCH ?= torch==2.13.0

.PHONY: install run test lint bench seed-study clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

run: install
	$(BIN)/adder search spaces/default.yaml

# Two workers, a test file each at a time: most tests wait on Ray and subprocesses, and two
# overlap well even on 2 cores. PYTEST_ARGS adds to it (e.g. PYTEST_ARGS="-n 0 -k space").
test: install
	$(BIN)/python -m pytest -q -n 2 --dist loadfile $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

# The benchmark suite behind BENCHMARKS.md, at full size: about half an hour on 2 CPUs.
# Tables go to stdout and bench/out/; each script also takes --smoke (tests/test_bench.py).
bench: install
	$(BIN)/python bench/datagen.py
	$(BIN)/python bench/train_speed.py
	$(BIN)/python bench/overhead.py
	$(BIN)/python bench/efficiency.py
	$(BIN)/python bench/soak.py
	PYTHON=$(BIN)/python bash bench/gpu.sh

# The seed report's study again (spaces/seed/, 3 seeds each), then docs/seed-study.md.
seed-study: install
	BIN=$(BIN) bash scripts/seed_study.sh results/seed-study

clean:
	rm -rf $(VENV) results runs .pytest_cache
