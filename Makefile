# The README's two commands: `make demo` and `make test`. Both create .venv if needed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
OUT    ?= runs/demo
CACHE  ?= runs/cache

.PHONY: setup demo test test-slow lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/coretune sweep demo --out $(OUT) --cache $(CACHE)

test: setup
	$(BIN)/ruff check .
	$(BIN)/pytest -q

# pytest exits 5 when it selects no test: no slow test (yet) is a pass, not a failure
test-slow: setup
	$(BIN)/pytest -q -m slow; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "test-slow: no tests marked slow"; exit 0; fi; exit $$rc

bench: setup
	$(BIN)/python bench/bench_trials.py

clean:
	rm -rf runs .pytest_cache .ruff_cache
