# make demo | make ablation | make test | make test-slow | make lint -- each creates .venv and installs r2d2lib on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo ablation test test-slow lint install clean

$(STAMP): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) tools/demo.py

ablation: $(STAMP)
	$(PY) tools/demo.py --ablation

test: $(STAMP)
	$(PY) -m pytest -q tests

test-slow: $(STAMP)
	$(PY) -m pytest -m slow

lint: $(STAMP)
	$(PY) -m ruff check r2d2lib tools tests configs

clean:
	rm -rf $(VENV) work_dirs data/toy_shapes
