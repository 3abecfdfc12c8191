# Verbs of ablate. Each sets up .venv on first use (pip install -e '.[dev]').
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
EXP    ?= experiments/seed002_pooling_quick.yaml experiments/seed002_skips_quick.yaml
SEARCH ?= experiments/search_quick.yaml

.PHONY: install test ablation report search bench lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Under CI, also try to provide a PostgreSQL server for the multi-machine search test
# (skipped with a reason where none can be had).
test: $(STAMP)
	@if [ -n "$$CI" ]; then bash .ci/postgres.sh || true; fi
	$(BIN)/python -m pytest -q

ablation: $(STAMP)
	$(BIN)/ablate run $(EXP)

report: $(STAMP)
	$(BIN)/ablate report $(EXP)

search: $(STAMP)
	$(BIN)/ablate search $(SEARCH)

bench: $(STAMP)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev,bench]'
	$(BIN)/ablate bench

lint: $(STAMP)
	$(BIN)/python -m compileall -q ablate tests

clean:
	rm -rf $(VENV) .cache .pytest_cache
