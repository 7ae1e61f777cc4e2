# make demo | make attention-demo | make ablation | make web-demo | make test | make test-slow | make lint -- each creates .venv and installs
# r2d2lib on first use, with exactly the versions of the lock (requirements/lock.txt).
# make lock: refresh the lock after changing setup.py (UPGRADE=1: every package to its newest allowed version).
# make test-latest: the suite on the newest versions setup.py allows, in .venv-latest (the drift check).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The full dependency set of '.[dev]', pinned by `uv pip compile` for linux x86_64 and Python 3.11 (the
# torch wheel PyPI serves there; it runs on CPU, and on CUDA 13 where there is a GPU).
LOCK := requirements/lock.txt
LOCK_PYTHON := 3.11
LOCK_PLATFORM := x86_64-manylinux_2_28
UV_VERSION := 0.13.8
LOCK_VENV := .venv-lock
LATEST_VENV := .venv-latest
# Debian packages the test suite needs, as command:package: chromium (tests/web drives it through
# Playwright), Java for pycocoevalcap's METEOR (CaptionMetric; reported unavailable without it), a CJK
# font for the caption PNG (tools/caption_grid.py; the "command" is its font folder, relative to /usr/bin).
SYSTEM_PACKAGES := chromium:chromium java:default-jre-headless ../share/fonts/truetype/wqy:fonts-wqy-microhei

.PHONY: demo attention-demo caption-demo generate-demo ablation web-demo test test-slow test-latest lint install lock system-deps clean

$(STAMP): setup.py $(LOCK)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -r $(LOCK)
	$(PY) -m pip install --no-deps -e .
	$(PY) -m pip check  # a requirement added to setup.py but not to the lock fails here: run make lock
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) tools/demo.py

# One caption per shape, 2,000 iterations (about 11 minutes): the demo whose entity attention localises
# (docs/inference.md, "4. Entity attention").
attention-demo: $(STAMP)
	$(PY) tools/demo.py --captions objects

# Captioning on the toy corpus from the demo model's image encoder (run make demo first): trains the
# decoder and prints CIDEr-D etc. next to two baselines (docs/captioning.md).
caption-demo: $(STAMP)
	$(PY) tools/caption_demo.py

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

# Text-to-image on the toy corpus conditioned on the demo model's text encoder (trained first if missing):
# trains a small diffusion model and prints attribute accuracy and R-precision at guidance 1 and 3 next to
# chance, writes docs/images/generate_demo.png (docs/text2image.md).
generate-demo: $(STAMP) $(DEMO_MODEL)
	$(PY) tools/generate_demo.py

# As root, installs the missing system packages quietly (apt-get); otherwise stops at once, naming them.
system-deps:
	@missing=; for pair in $(SYSTEM_PACKAGES); do test -x /usr/bin/$${pair%%:*} || missing="$$missing $${pair#*:}"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then \
			echo "installing the system packages the tests need:$$missing (apt-get)"; \
			log=$$(mktemp); export DEBIAN_FRONTEND=noninteractive; \
			{ apt-get update -qq && apt-get install -y -qq$$missing; } >$$log 2>&1 || { cat $$log >&2; exit 1; }; \
		else \
			echo "make test needs the Debian package(s)$$missing: run sudo apt-get install -y$$missing" >&2; \
			exit 1; \
		fi; \
	fi

test: system-deps $(STAMP)
	$(PY) -m pytest -q tests

test-slow: $(STAMP)
	$(PY) -m pytest -m slow

# Newest versions that setup.py allows, in a fresh $(LATEST_VENV); the lock and .venv stay as they are.
test-latest: system-deps
	rm -rf $(LATEST_VENV)
	$(PYTHON) -m venv $(LATEST_VENV)
	$(LATEST_VENV)/bin/python -m pip install -q --upgrade pip
	$(LATEST_VENV)/bin/python -m pip install -q --upgrade --upgrade-strategy eager -e '.[dev]'
	$(LATEST_VENV)/bin/python -m pip freeze --exclude-editable | grep -iE '^(torch|torchvision|transformers|numpy|mmengine)=='
	$(LATEST_VENV)/bin/python -m pytest -q tests

lock:
	test -x $(LOCK_VENV)/bin/uv || { $(PYTHON) -m venv $(LOCK_VENV) && $(LOCK_VENV)/bin/pip install -q uv==$(UV_VERSION); }
	$(LOCK_VENV)/bin/uv pip compile setup.py --extra dev --python-version $(LOCK_PYTHON) \
		--python-platform $(LOCK_PLATFORM) $(if $(UPGRADE),--upgrade) --custom-compile-command 'make lock' -o $(LOCK)

lint: $(STAMP)
	$(PY) -m ruff check r2d2lib tools tests configs demo

clean:
	rm -rf $(VENV) work_dirs data/toy_shapes data/toy_shapes_objects
