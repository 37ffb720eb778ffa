# The two set-up commands from README. Each works on a fresh machine.
PY ?= python3
PIP = $(PY) -m pip install --disable-pip-version-check -q

.PHONY: example test browser

# Train the spurious-background example with CAMTracker: GIFs, TensorBoard logs, review page.
example:
	$(PIP) -e ".[video]"
	$(PY) examples/spurious_background.py --out runs/spurious

# Install the package with its test extras and the JAX and PyTorch backends (CPU), a headless
# browser for the review-page test, and run the whole suite on TensorFlow, then the backend
# suite once more under each other Keras backend, each in its own pytest process.
# pytest's exit code 5 (nothing collected) is a failure, not silence.
BACKEND_SUITE = tests/test_cams.py tests/test_probes.py
test: browser
	$(PIP) -e ".[test,jax,torch]"
	@for run in "tensorflow:" "jax:$(BACKEND_SUITE)" "torch:$(BACKEND_SUITE)"; do \
	  backend=$${run%%:*}; files=$${run#*:}; \
	  echo "== KERAS_BACKEND=$$backend pytest $$files"; \
	  KERAS_BACKEND=$$backend $(PY) -m pytest $$files; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi; \
	  if [ $$rc -ne 0 ]; then exit $$rc; fi; \
	done

# Debian's chromium: Playwright's own browser download cannot reach its host here.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "Install Debian's chromium (apt-get install chromium) for the review-page test" >&2; exit 1; fi; }
