# Two commands for a fresh clone: `make book` and `make test` (README.md).
VENV    ?= .venv
PY      := $(VENV)/bin/python
PROFILE ?= demo
SEED    ?= 0

.PHONY: book test browser clean

# The virtual environment is rebuilt when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

book: $(VENV)/.installed
	$(VENV)/bin/camtrap-ssl book --profile $(PROFILE) --seed $(SEED)

# Headless Chromium for the browser test of the built book (Debian packages).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null; \
	    else echo "install chromium and chromium-driver to run the browser test"; fi; }

test: $(VENV)/.installed browser
	$(PY) -m pytest -q

clean:
	rm -rf book/_build book/studies/*.ipynb runs
