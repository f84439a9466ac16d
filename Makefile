# Two commands for a fresh clone: `make book` and `make test` (README.md); `make test-fast` for
# the inner loop.
VENV    ?= .venv
PY      := $(VENV)/bin/python
PROFILE ?= demo
SEED    ?= 0
# auto: bf16 where the CPU has it natively; PRECISION=fp32 times a CPU without it (book/speed.md)
PRECISION ?= auto

.PHONY: book test test-fast browser rehearsal clean

# The virtual environment is rebuilt when pyproject.toml changes. uv lays out and byte-compiles
# the 3 GB of torch and its CUDA libraries in parallel, about half pip's time on 2 cores
# (benchmarks/bench_install.py); it does not read pip's configuration, so pip's configured indexes,
# wheel folders and constraints are handed to it (camtrap_ssl/core/pip_to_uv.py, stdlib only).
# The byte code stays: where PYTHONDONTWRITEBYTECODE is set, every kernel would otherwise
# recompile torch (book/speed.md).
# Debian's python3 lacks venv's pip (python3-venv) on a fresh machine: install it only then.
$(VENV)/.installed: pyproject.toml
	@python3 -m venv $(VENV) 2>/dev/null || { [ "$$(id -u)" = 0 ] && \
	  apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null && python3 -m venv $(VENV); } || \
	  { echo "python3 -m venv failed: install python3-venv (Debian) and rerun"; exit 1; }
	$(PY) -m pip install --quiet uv
	eval "$(VENV)/bin/uv pip install --python $(PY) --compile-bytecode $$($(PY) -m camtrap_ssl.core.pip_to_uv) -e '.[test]'"
	touch $@

# The book serves its JavaScript itself (no CDN): camtrap_ssl.studies.book fetches the three npm
# tarballs pinned in package-lock.json with Python and checks their sha512, so neither Node.js nor
# npm is needed.
book: $(VENV)/.installed
	$(VENV)/bin/camtrap-ssl book --profile $(PROFILE) --seed $(SEED) --precision $(PRECISION)

# Headless Chromium and its driver for the browser test of the built book (Debian packages).
# Only what is missing is installed, and nothing else: a machine with Node.js from NodeSource
# refuses Debian's npm ("held broken packages"), so asking for more than needed can fail it all.
browser:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || missing=" chromium"; \
	command -v chromedriver >/dev/null 2>&1 || missing="$$missing chromium-driver"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then echo "installing$$missing (Debian) for the browser test"; \
	    apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else echo "missing:$$missing; install it (Debian: apt-get install$$missing) or the browser test is skipped"; fi; \
	fi

test: $(VENV)/.installed browser
	$(PY) -m pytest -q

# The inner loop: everything but the tests marked slow (notebooks, book, browser, spawned processes).
test-fast: $(VENV)/.installed
	$(PY) -m pytest -q -m "not slow"

# The paper path rehearsed end to end on fabricated data and checkpoints in the published
# formats (book/reproduce.md, "Running the study at paper scale"): 12.5 minutes on 2 shared CPU
# cores (book/speed.md).
REHEARSAL ?= /tmp/camtrap_ssl_rehearsal
rehearsal: $(VENV)/.installed
	rm -rf $(REHEARSAL)
	$(PY) -m camtrap_ssl.studies.rehearsal --workdir $(REHEARSAL)

clean:
	rm -rf book/_build book/studies/*.ipynb runs
