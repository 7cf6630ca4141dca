# eft: `make lab` runs the system, `make test` runs every test. Both set up .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CPP    := client/cpp

.PHONY: help venv lab test bench lint typecheck pytest cpp cpp-asan system-deps clean

help:
	@echo "make lab        run a server and 3 clients doing real transfers, then a summary"
	@echo "make test       lint, type-check, build the C++ client, run every test"
	@echo "make bench      eft beside scp, sftp and rsync on loopback (BENCH_QUICK=1: ~1 min)"
	@echo "make system-deps  install the Debian packages: C++ client, Prometheus, bench (root)"

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "eft needs Python 3.11 or newer; set PYTHON=python3.x"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

lab: $(STAMP)
	$(BIN)/eft-lab $(LAB_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# The C++ client needs cmake, g++ and Crypto++ (Debian: libcrypto++-dev); see system-deps.
cpp:
	@command -v cmake >/dev/null && pkg-config --exists libcrypto++ 2>/dev/null || \
		{ echo "The C++ client needs cmake, g++, pkg-config and libcrypto++-dev: run 'sudo make system-deps'"; exit 1; }
	$(CPP)/build.sh

cpp-asan: cpp
	$(CPP)/build.sh --sanitize

pytest: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

test: lint typecheck cpp-asan pytest

# Issue 15: every power-loss crash state (`make test` checks a sample of 50); needs strace.
.PHONY: test-deep
test-deep: $(STAMP)
	EFT_POWERLOSS_STATES=all $(BIN)/pytest tests/powerloss -q

# scp, sftp and rsync rows need Debian's openssh-server and rsync (make system-deps);
# without them the bench says so and measures eft alone.
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python -m bench

system-deps:
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		cmake g++ make pkg-config libcrypto++-dev python3-venv prometheus \
		openssh-server openssh-client rsync strace

clean:
	rm -rf $(VENV) $(CPP)/build $(CPP)/build-asan lab-runs .pytest_cache .mypy_cache .ruff_cache
