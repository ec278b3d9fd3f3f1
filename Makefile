# Two entry points: `make run` and `make test`. Both set up .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck pytest migrate simulator chat bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# With a Telegram token: the bot. Without one: the web chat (with the built-in simulator when
# Spark's credentials are missing too); bot/run_choice.py says which and why in its first lines.
run: $(STAMP)
	$(BIN)/python -m bot migrate
	$(BIN)/python -m bot $$($(BIN)/python -m bot.run_choice)

test: lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

# The tests mostly wait on sockets and child processes, so more workers than cores pay off;
# the count is measured (benchmarks/RESULTS.md, "Test suite time"). PYTEST_WORKERS=0: one process.
PYTEST_WORKERS ?= 4
pytest: $(STAMP)
	$(BIN)/pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

migrate: $(STAMP)
	$(BIN)/python -m bot migrate

simulator: $(STAMP)
	$(BIN)/python -m bot simulator

chat: $(STAMP)
	$(BIN)/python -m bot chat --simulate

bench: $(STAMP)
	$(BIN)/python benchmarks/spark_client.py
	$(BIN)/python benchmarks/storage.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
