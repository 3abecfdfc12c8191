# Verbs of ablate. Each sets up .venv on first use (pip install -e '.[dev]').
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
EXP    ?= experiments/seed002_pooling_quick.yaml experiments/seed002_skips_quick.yaml
SEARCH ?= experiments/search_quick.yaml
# Worker processes of `make ablation` (ablate run --jobs): the setting `ablate bench` measured
# fastest on the project's CPU (results/bench/cpu.md, "Jobs"; tests/bench/test_jobs.py holds
# this line to it). JOBS=1 trains in one process; on a GPU machine see docs/parallel.md.
JOBS   ?= 2

.PHONY: install test test-fast ablation report search bench gpu-check gpu-wheels docs lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Under CI, also try to provide a PostgreSQL server for the multi-machine search test and
# SLURM for the job-array test (each skipped with a reason where none can be had).
test: $(STAMP)
	@if [ -n "$$CI" ]; then bash .ci/postgres.sh || true; bash .ci/slurm.sh || true; fi
	$(BIN)/python -m pytest -q

# The suite without the end-to-end trainings (marked slow): seconds per file, for a quick loop.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

ablation: $(STAMP)
	$(BIN)/ablate run $(EXP) --jobs $(JOBS)

report: $(STAMP)
	$(BIN)/ablate report $(EXP)

search: $(STAMP)
	$(BIN)/ablate search $(SEARCH)

bench: $(STAMP)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev,bench]'
	$(BIN)/ablate bench

# The first thing to run on a GPU machine that has CUDA torch and nothing else: installs ablate
# into .venv-gpu (seeing that torch), runs the CUDA tests, the bench and one seed of
# seed002_pooling_full, writes results/bench/cuda.md (.ci/gpu-check --help). WHEELS=.whl installs
# offline from the wheels `make gpu-wheels` downloads (Python 3.12, manylinux x86-64).
gpu-check:
	PYTHON=$(PYTHON) .ci/gpu-check $(if $(WHEELS),--wheels $(WHEELS))

gpu-wheels:
	PYTHON=$(PYTHON) .ci/gpu-wheels .whl

# Fails when a generated part of docs/ differs from what the registries give (`ablate docs`
# rewrites them).
docs: $(STAMP)
	$(BIN)/ablate docs --check

# pyflakes, pycodestyle, import order, bugbear and pyupgrade rules (pyproject.toml [tool.ruff]).
lint: $(STAMP)
	$(BIN)/ruff check ablate tests

clean:
	rm -rf $(VENV) .cache .pytest_cache
