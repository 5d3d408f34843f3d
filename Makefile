# ember — build, test and lint entry points. `make` lists the targets.
#
# Works from a fresh clone: `make venv` (a prerequisite of everything that
# runs Python) creates .venv and installs the SDK and its pinned dev tools.
# Needs: Rust (cargo, rustfmt, clippy), Go 1.26, Python >= 3.10, git.

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:
# Targets run one after another, in the order given (cargo and go test
# parallelize themselves; `test` relies on the order).
.NOTPARALLEL:

PYTHON ?= python3
VENV := .venv
CARGO ?= cargo
GO ?= go
# Extra arguments for pytest, e.g. `make test-python PYTEST_ARGS='-x -k put'`.
PYTEST_ARGS ?=

VENV_PY := $(VENV)/bin/python
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
# The example workers of the Go and Rust SDKs (`make workers`): the SDK and
# Python tests start them to call across languages.
export EMBER_GO_WORKER := $(abspath $(TARGET_DIR))/go-worker
export EMBER_RUST_WORKER := $(abspath $(TARGET_DIR))/release/examples/worker
VENV_STAMP := $(VENV)/.installed
PY_TEST_DIRS := sdk-python/tests tests/python
RUFF_PATHS := sdk-python/src tests benches examples

# No ANSI colour in CI logs.
ifneq ($(filter true 1 yes,$(CI)),)
export CARGO_TERM_COLOR ?= never
endif
# What scripts/gen-proto.sh and check-proto.sh use.
SCRIPT_ENV = CARGO='$(CARGO)' GO='$(GO)' VENV='$(abspath $(VENV))'

# $(call require,<command>,<what to install>)
require = command -v $(1) >/dev/null 2>&1 || { echo "make: '$(1)' not found: install $(2)" >&2; exit 1; }
NEED_CARGO = @$(call require,$(CARGO),Rust with cargo (https://rustup.rs))
NEED_GO = @$(call require,$(GO),Go 1.26 (https://go.dev/dl))
NEED_PYTHON = @$(call require,$(PYTHON),Python 3.10 or newer (set PYTHON=...))

.PHONY: help venv build workers demo test check-proto gen-proto test-rust test-go \
	test-python test-examples bench bench-compare lint clean redis

help: ## list the targets
	@echo "ember make targets (run from a fresh clone; each sets up what it needs):"
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) \
		| awk -F':.*## ' '{ printf "  %-12s %s\n", $$1, $$2 }'

venv: $(VENV_STAMP) ## create .venv with the Python SDK (editable) and pinned dev tools

$(VENV_STAMP): sdk-python/pyproject.toml sdk-python/requirements-dev.txt
	$(NEED_PYTHON)
	if [[ ! -x $(VENV_PY) ]]; then $(PYTHON) -m venv $(VENV); fi
	$(VENV_PY) -m pip install -q --disable-pip-version-check --root-user-action=ignore \
		-r sdk-python/requirements-dev.txt -e sdk-python
	touch $@

build: venv ## build the `ember` binary (release) and put it in .venv/bin
	$(NEED_CARGO)
	$(CARGO) build --release -p ember-server
	cp $(TARGET_DIR)/release/ember $(VENV)/bin/.ember.tmp
	mv -f $(VENV)/bin/.ember.tmp $(VENV)/bin/ember  # rename: safe while one runs

workers: build ## build the example Go and Rust workers (sdk-go/cmd/worker, sdk-rust/examples/worker.rs)
	$(NEED_CARGO)
	$(NEED_GO)
	$(CARGO) build --release -p ember --example worker
	cd sdk-go && $(GO) build -o $(EMBER_GO_WORKER) ./cmd/worker

demo: build ## build, then run examples/rollouts.py
	$(VENV_PY) examples/rollouts.py

test: build workers check-proto test-rust test-go test-examples test-python ## everything CI checks, in order (pytest last: its summary closes the log)

gen-proto: venv ## regenerate Rust, Python and Go code from proto/ember/v1
	$(SCRIPT_ENV) scripts/gen-proto.sh

check-proto: venv ## fail if the committed generated code is stale
	$(NEED_CARGO)
	$(NEED_GO)
	$(SCRIPT_ENV) scripts/check-proto.sh

test-rust: workers ## cargo test (release) of the whole workspace (its tests start the example workers)
	$(NEED_CARGO)
	$(CARGO) test --release --workspace --lib --bins --tests

test-go: build workers ## go vet + go test of sdk-go (against a real node it starts)
	$(NEED_GO)
	cd sdk-go && $(GO) vet ./... && $(GO) test ./...
	cd examples/go-scoring-service && $(GO) vet ./... && $(GO) test ./...

# Runs the test directories that exist; pytest's "no tests collected" (exit
# code 5) is a failure, not a pass.
# The head-storage tests start a real redis-server: installed here from the
# machine's package manager when missing (as root, or with sudo).
redis: ## install redis-server (for the head-storage tests) if it is missing
	@if ! command -v redis-server >/dev/null 2>&1; then \
		command -v apt-get >/dev/null 2>&1 \
			|| { echo "make: redis-server not found: install it with your package manager" >&2; exit 1; }; \
		sudo=""; if [[ $$(id -u) != 0 ]]; then sudo="sudo"; fi; \
		echo "installing redis-server (apt-get)"; \
		$$sudo apt-get update -qq; \
		DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends redis-server >/dev/null; \
	fi

test-python: build workers redis ## pytest of sdk-python/tests and tests/python
	@dirs=(); \
	for d in $(PY_TEST_DIRS); do if [[ -d $$d ]]; then dirs+=("$$d"); fi; done; \
	if (( $${#dirs[@]} == 0 )); then \
		echo "test-python: none of $(PY_TEST_DIRS) exists yet: nothing to run"; exit 0; \
	fi; \
	echo "$(strip $(VENV_PY) -m pytest -q $(PYTEST_ARGS)) $${dirs[*]}"; \
	rc=0; $(VENV_PY) -m pytest -q $(PYTEST_ARGS) "$${dirs[@]}" || rc=$$?; \
	if (( rc == 5 )); then \
		echo "test-python: pytest collected no tests from $${dirs[*]} (exit code 5)" >&2; exit 1; \
	fi; \
	exit $$rc

test-examples: build workers ## run the examples (short settings) and a quick benchmark pass
	$(VENV_PY) examples/zeros_dot.py
	$(VENV_PY) examples/rollouts.py --iterations 2
	$(VENV_PY) examples/counter.py
	$(VENV_PY) examples/parameter_server.py --iterations 10
	$(VENV_PY) examples/es_cluster.py --iterations 2
	GO='$(GO)' $(VENV_PY) examples/cross_language.py
	GO='$(GO)' CARGO='$(CARGO)' $(VENV_PY) benches/bench_all.py --quick --no-cluster

bench: build workers ## every benchmark (Python suite on 1 and 4 nodes, Go and Rust clients): one table
	GO='$(GO)' CARGO='$(CARGO)' $(VENV_PY) benches/bench_all.py --json bench-results/bench.json

bench-compare: build ## ember vs Ray 2.60 on the same Python workloads (Ray installed once into .venv-ray)
	benches/setup_ray_venv.sh
	$(VENV_PY) benches/bench_compare.py --json bench-results/compare.json

lint: venv ## cargo fmt/clippy, gofmt/go vet, ruff
	$(NEED_CARGO)
	$(NEED_GO)
	$(CARGO) fmt --all --check
	$(CARGO) clippy --release --workspace -- -D warnings
	@unformatted="$$(gofmt -l sdk-go examples/go-scoring-service)"; \
	if [[ -n $$unformatted ]]; then \
		echo "gofmt: these files need formatting (gofmt -w):" >&2; echo "$$unformatted" >&2; exit 1; \
	fi
	cd sdk-go && $(GO) vet ./...
	@if [[ -x $(VENV)/bin/ruff ]]; then \
		echo "$(VENV)/bin/ruff check $(wildcard $(RUFF_PATHS))"; \
		$(VENV)/bin/ruff check $(wildcard $(RUFF_PATHS)); \
	else \
		echo "lint: ruff is not installed in $(VENV): skipping Python lint (make venv installs it)"; \
	fi

clean: ## remove target/, .venv, .venv-ray and .tools
	rm -rf target $(VENV) .venv-ray .tools
