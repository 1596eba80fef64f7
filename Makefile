# Two entry points on a fresh machine: `make demo` and `make test` (each creates .venv and installs first).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test install lint bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: $(BIN)/.installed

demo: install
	$(BIN)/sockdrill demo

test: install
	$(BIN)/ruff check sockdrill tests
	$(BIN)/pytest -q -p no:cacheprovider --durations=20

lint: install
	$(BIN)/ruff check sockdrill tests
	$(BIN)/mypy sockdrill

bench: install
	$(BIN)/sockdrill bench all

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
