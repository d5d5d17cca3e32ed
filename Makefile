# Two commands do all the set-up on a fresh machine:
#   make run   - create .venv, install, create the SYNTHETIC demo project and open the desktop app
#                (without a display: run the headless demo pipeline and print where its output is)
#   make test  - create .venv, install, start a throwaway PostgreSQL 15 and run the whole test suite
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= demo-project

.PHONY: run test install clean

$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "python 3.11 is required ($(PYTHON) not found)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/python -m pathomics_desktop.launch --demo-dir $(DEMO_DIR)

test: $(STAMP)
	bash tests/run_tests.sh

clean:
	rm -rf $(VENV) $(DEMO_DIR)
