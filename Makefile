# eft: `make lab` runs the system, `make test` runs every test. Both set up .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CPP    := client/cpp
# Every stage of `make test` adds its time here; tools/ledger prints the table at the end.
export EFT_LEDGER ?= $(CURDIR)/.ledger.tsv
TIMED  := tools/timed

.PHONY: help venv lab test test-deep bench soak lint typecheck pytest cpp cpp-asan cpp-fuzz cpp-tidy \
	cpp-windows system-deps clean mutate mutate-sample coverage captures

help:
	@echo "make lab        run a server and 4 clients doing real transfers, then a summary"
	@echo "make test       lint, type-check, build the C++ client (Linux, Windows), run every test, a mutation sample"
	@echo "make test-deep  property tests x10 with fresh examples, every power-loss crash state"
	@echo "make bench      eft beside scp, sftp and rsync on loopback (BENCH_QUICK=1: ~1 min)"
	@echo "make soak       the lab for 15 min, server RSS sampled: flat in files stored? (make bench shows it)"
	@echo "make mutate     mutation testing, module by module (MUTATE_MODULES=cksum,wire to narrow)"
	@echo "make coverage   the tests with every process they start measured: coverage-html/"
	@echo "make captures   record docs/captures/*.pcapng again: each attack scenario on loopback (root)"
	@echo "make system-deps  install the Debian packages: C++ client, Prometheus, bench, Docker (root)"

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "eft needs Python 3.11 or newer; set PYTHON=python3.x"; exit 1; }
	@$(TIMED) "venv (python -m venv, pip install)" sh -c '$(PYTHON) -m venv $(VENV) && \
		$(BIN)/python -m pip install --quiet --upgrade pip && \
		$(BIN)/python -m pip install --quiet -e ".[dev]"'
	@touch $(STAMP)

venv: $(STAMP)

# make lab ATTACK=all (or ATTACK=steal-key,replay): eft-lab --attack, see README.
lab: $(STAMP)
	$(BIN)/eft-lab $(if $(ATTACK),--attack $(ATTACK)) $(LAB_ARGS)

lint: $(STAMP)
	@$(TIMED) "ruff check" $(BIN)/ruff check .
	@$(TIMED) "ruff format --check" $(BIN)/ruff format --check .

typecheck: $(STAMP)
	@$(TIMED) "mypy --strict" $(BIN)/mypy

# The C++ client needs cmake, g++ and Crypto++ (Debian: libcrypto++-dev); see system-deps.
cpp:
	@command -v cmake >/dev/null && pkg-config --exists libcrypto++ 2>/dev/null || \
		{ echo "The C++ client needs cmake, g++, pkg-config and libcrypto++-dev: run 'sudo make system-deps'"; exit 1; }
	@$(TIMED) "C++ release build + ctest" $(CPP)/build.sh

cpp-asan: cpp
	@$(TIMED) "C++ ASan/UBSan build + ctest" $(CPP)/build.sh --sanitize

# The C++ client's libFuzzer targets, FUZZ_SECONDS each, and clang-tidy
# (bugprone, cert, clang-analyzer). They need clang, clang-tidy and libclang-rt-dev.
FUZZ_SECONDS ?= 20
cpp-fuzz:
	@$(TIMED) "C++ fuzz targets ($(FUZZ_SECONDS) s each)" $(CPP)/fuzz.sh $(FUZZ_SECONDS)

cpp-tidy:
	@$(TIMED) "C++ clang-tidy" $(CPP)/tidy.sh

# The client for Windows: cross-built with MinGW-w64 against Crypto++ built from Debian's
# source (cached in ~/.cache/eft-cryptopp-mingw), unit tests under Wine; tests/cpp_windows
# runs the .exe. Needs g++-mingw-w64-x86-64, wine, dpkg-dev and deb-src (make system-deps).
cpp-windows:
	@$(TIMED) "C++ Windows build (MinGW-w64) + ctest under Wine" $(CPP)/windows/build.sh

# Each checkout's tests keep their temporary files in their own folder: pytest prunes
# older runs' folders in a shared /tmp/pytest-of-USER, even while another run uses them.
pytest: $(STAMP)
	@$(TIMED) "pytest" $(BIN)/pytest --basetemp=$(CURDIR)/.pytest-tmp $(PYTEST_ARGS)

# The ledger starts empty (KEEP_LEDGER=1: CI has added its install stage already), and
# is printed whether the tests passed or not.
test:
	@[ -n "$(KEEP_LEDGER)" ] || rm -f $(EFT_LEDGER)
	@$(MAKE) --no-print-directory lint typecheck cpp-asan cpp-fuzz cpp-tidy cpp-windows pytest mutate-sample; \
		code=$$?; tools/ledger; exit $$code

# Fresh random examples (Hypothesis's "deep" profile) and ten times as many of them; what
# it finds is kept in .hypothesis/ and replayed by later runs.
# Every power-loss crash state too (`make test` checks a sample of 50; needs strace).
test-deep: $(STAMP)
	HYPOTHESIS_PROFILE=deep EFT_EXAMPLES_SCALE=10 $(BIN)/pytest tests/protocol tests/bench/test_usage.py $(PYTEST_ARGS)
	EFT_POWERLOSS_STATES=all $(BIN)/pytest tests/powerloss $(PYTEST_ARGS)
	# the C++ cksum over 2^32 - 1 bytes (13 CPU-s in a release build), when it is built
	if [ -x $(CPP)/build/eft-unit-tests ]; then EFT_DEEP_TESTS=1 $(CPP)/build/eft-unit-tests cksum; fi

# Mutation testing (mutmut 3) of the protocol core and the server's storage and registry:
# each module against its own fast tests, in a staging copy under .mutation/ (see
# tests/mutation/mutate.py). MUTATE_MODULES=cksum,wire,eft_server.storage narrows it.
# mutate-sample (part of `make test`): cksum, names, codes and sync_behind, about a minute, failing
# below 90 % killed.
MUTATE_JOBS ?= 2
mutate: $(STAMP)
	@MUTATE_MODULES="$(MUTATE_MODULES)" $(TIMED) "mutation testing" \
		$(BIN)/python -m tests.mutation.mutate --jobs $(MUTATE_JOBS)

mutate-sample: $(STAMP)
	@$(TIMED) "mutation testing (sample)" \
		$(BIN)/python -m tests.mutation.mutate --sample --jobs $(MUTATE_JOBS) --min-score 90

# Coverage of the tests and of every Python process they start (servers, clients, proxies,
# the lab): one data file per process in .coverage-data/, combined into a per-module
# report, printed and in coverage-html/. COVERAGE_TESTS picks the tests (no containers).
COVERAGE_TESTS ?= tests --ignore=tests/containers
COVERAGE_ENV := COVERAGE_FILE=$(CURDIR)/.coverage-data/data COVERAGE_RCFILE=$(CURDIR)/pyproject.toml
# A failing test (or a test path that does not exist) still gets its report, and then
# fails the target: a report of a partial run must not pass for a whole one.
coverage: $(STAMP)
	rm -rf .coverage-data coverage-html && mkdir -p .coverage-data
	@status=0; \
	$(COVERAGE_ENV) $(TIMED) "pytest under coverage" $(BIN)/coverage run -m pytest \
		--basetemp=$(CURDIR)/.pytest-tmp $(COVERAGE_TESTS) $(PYTEST_ARGS) || status=$$?; \
	$(COVERAGE_ENV) $(BIN)/coverage combine --quiet && \
	$(COVERAGE_ENV) $(BIN)/coverage report && \
	$(COVERAGE_ENV) $(BIN)/coverage html --quiet && \
	echo "coverage-html/index.html" || { [ "$$status" -ne 0 ] || status=1; }; \
	if [ "$$status" -ne 0 ]; then \
		echo "make coverage: pytest exited $$status: the report above is of a partial run" >&2; \
	fi; \
	exit $$status

# scp, sftp and rsync rows need Debian's openssh-server and rsync (make system-deps);
# without them the bench says so and measures eft alone.
bench: $(STAMP)
	$(BIN)/python -m bench

# Not part of `make test`: 15 minutes (SOAK_SECONDS) of the native lab; writes
# bench/results/soak.json, which the next `make bench` reports.
soak: $(STAMP)
	$(BIN)/python -m bench.soak

# The Wireshark dissector's captures (docs/WIRESHARK.md): tcpdump on lo, so as root.
captures: $(STAMP)
	$(BIN)/python -m eft_lab.captures

system-deps:
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		cmake g++ make pkg-config libcrypto++-dev python3-venv prometheus \
		openssh-server openssh-client rsync strace
	# the PostgreSQL registry's tests (tests/postgres): one cluster per test session
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql
	# HAProxy in front of server replicas (tests/haproxy, eft-lab --servers N)
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends haproxy
	# the container lab's test (tests/containers): its own dockerd, bridge and base images
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		docker.io iptables iproute2 mmdebstrap
	# make cpp-fuzz and cpp-tidy (the C++ client's fuzz targets and clang-tidy)
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		clang clang-tidy libclang-rt-dev
	# make cpp-windows: MinGW-w64, Wine, and Crypto++'s Debian source (deb-src, apt-get source)
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		g++-mingw-w64-x86-64 wine wine64 dpkg-dev
	# the Wireshark dissector's test (tshark) and make captures (tcpdump; editcap: tshark's)
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		tshark tcpdump
	$(CPP)/windows/deb-src.sh

clean:
	rm -rf $(VENV) $(CPP)/build $(CPP)/build-asan $(CPP)/build-fuzz $(CPP)/build-tidy $(CPP)/build-windows lab-runs .pytest_cache .mypy_cache .ruff_cache \
		.ledger.tsv .pytest-tmp eft.egg-info build dist .mutation .coverage-data coverage-html
