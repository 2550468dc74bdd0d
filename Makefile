# Two entry points, each self-contained on a fresh machine:
#   make demo   -> create .venv, install equijax (+ reference CHGNet), run the main job
#   make test   -> create .venv, install equijax with test + reference + cue + docs extras, check style
#                  (ruff) and the import layers (import-linter), run the whole suite
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# CPU build of torch for the optional reference CHGNet; a bare `torch` would pull a multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0
# the mace-torch reference, without its e3nn==0.4.4 pin (its other dependencies are in the
# reference extra)
MACE_SPEC ?= mace-torch==0.3.16

.PHONY: demo test install clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[test,reference,cue,docs]"
	$(PY) -m pip install -q --no-deps "$(MACE_SPEC)"
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/equijax demo

test: install
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/ruff format --check src tests
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q -n 2 --dist loadfile tests

clean:
	rm -rf $(VENV) build dist src/*.egg-info
