# make demo | make attention-demo | make ablation | make web-demo | make test | make test-slow | make lint -- each creates .venv and installs
# r2d2lib on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo attention-demo ablation web-demo test test-slow lint install clean

$(STAMP): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) tools/demo.py

# One caption per shape, 2,000 iterations (about 11 minutes): the demo whose entity attention localises
# (docs/inference.md, "4. Entity attention").
attention-demo: $(STAMP)
	$(PY) tools/demo.py --captions objects

ablation: $(STAMP)
	$(PY) tools/demo.py --ablation

# The web demo serves the demo model (trained by `make demo`, which saves it with save_pretrained into
# work_dirs/demo/model; trained here first if it is missing) over the 200 toy test images at
# http://127.0.0.1:$(WEB_PORT).
DEMO_MODEL := work_dirs/demo/model/model.safetensors
WEB_PORT ?= 8000

$(DEMO_MODEL): | $(STAMP)
	@echo "The demo model is not trained yet: training it first (tools/demo.py, about 5 minutes on 2 CPU cores)."
	$(PY) tools/demo.py

web-demo: $(STAMP) $(DEMO_MODEL)
	$(PY) -m demo.server --model work_dirs/demo/model --images data/toy_shapes/images --glob 'test_*' \
		--port $(WEB_PORT)

test: $(STAMP)
	$(PY) -m pytest -q tests

test-slow: $(STAMP)
	$(PY) -m pytest -m slow

lint: $(STAMP)
	$(PY) -m ruff check r2d2lib tools tests configs demo

clean:
	rm -rf $(VENV) work_dirs data/toy_shapes data/toy_shapes_objects
