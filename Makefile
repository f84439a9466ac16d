# Two commands for a fresh clone: `make book` and `make test` (README.md); `make test-fast` for
# the inner loop.
VENV    ?= .venv
PY      := $(VENV)/bin/python
PROFILE ?= demo
SEED    ?= 0

.PHONY: book test test-fast browser clean

# The virtual environment is rebuilt when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

# The book serves its JavaScript itself (no CDN): npm installs the versions pinned in
# package-lock.json, camtrap_ssl.studies.book copies them into book/_vendor.
book: $(VENV)/.installed
	@command -v npm >/dev/null || \
	  { if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq npm >/dev/null; \
	    else echo "install Node.js with npm to build the book"; exit 1; fi; }
	$(VENV)/bin/camtrap-ssl book --profile $(PROFILE) --seed $(SEED)

# Headless Chromium for the browser test of the built book, and npm for the book's JavaScript
# (Debian packages).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null && command -v npm >/dev/null || \
	  { if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium chromium-driver npm >/dev/null; \
	    else echo "install chromium, chromium-driver and npm to run the browser test"; fi; }

test: $(VENV)/.installed browser
	$(PY) -m pytest -q

# The inner loop: everything but the tests marked slow (notebooks, book, browser, spawned processes).
test-fast: $(VENV)/.installed
	$(PY) -m pytest -q -m "not slow"

clean:
	rm -rf book/_build book/studies/*.ipynb runs
