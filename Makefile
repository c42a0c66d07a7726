# flameqa — thin targets over the CLI. `make test` and `make demo` work from a clean clone.
SHELL := /bin/bash
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= demo_out
PIPELINE ?= pipelines/demo.yaml  # CPU defaults; pipelines/flameqa.yaml is the CUDA production config
INPUT ?=
REPO_ID ?=
export FLAMEQA_MODEL_DIR ?= $(HOME)/.cache/flameqa/models
STAMP := $(VENV)/.flameqa-setup-$(shell cat pyproject.toml requirements/*.txt scripts/setup.sh scripts/fetch_models.py 2>/dev/null | sha256sum | cut -c1-16)

.PHONY: setup test test-fast demo pipeline publish bench soak train clean

# The stamp skips the package installs when nothing they depend on changed; the model cache lives
# outside the venv (FLAMEQA_MODEL_DIR may be emptied or pointed elsewhere), so it is checked on every
# run: fetch_models.py reads one _done.json marker per model (~0.2 s) and fetches only what is missing.
setup: $(STAMP)
	$(BIN)/python scripts/fetch_models.py

$(STAMP): pyproject.toml requirements/constraints.txt requirements/nodeps.txt requirements/models.txt scripts/setup.sh scripts/fetch_models.py
	PY=$(PY) VENV=$(VENV) bash scripts/setup.sh
	touch $@

test: setup
	$(BIN)/python -m pytest -q -x --timeout=900 tests

demo: setup
	$(BIN)/flameqa demo --out $(OUT)

# Checked when the Makefile is read, before set-up: an empty INPUT would make --input swallow --out.
ifneq ($(filter pipeline,$(MAKECMDGOALS)),)
ifeq ($(strip $(INPUT)),)
$(error make pipeline needs INPUT=<video, folder, glob or manifest>, e.g. make pipeline INPUT=videos/ OUT=out)
endif
endif
# INPUT is quoted so a glob reaches flameqa (which expands it) rather than the shell
pipeline: setup
	$(BIN)/flameqa run $(PIPELINE) --input "$(INPUT)" --out $(OUT)
	$(BIN)/flameqa export $(OUT) --dest $(OUT)/export

publish: setup
	$(BIN)/flameqa publish $(OUT)/export --repo-id $(REPO_ID)

bench: setup
	$(BIN)/python bench/run_all.py

DATA ?= $(OUT)/export
NAME ?= reference
train: setup
	$(BIN)/flameqa train --data $(DATA) --config pipelines/train.yaml --out runs/$(NAME)

soak: setup
	$(BIN)/python -m pytest -q -m slow tests

clean:
	rm -rf $(OUT) .pytest_cache
