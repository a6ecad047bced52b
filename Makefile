# Entry points. Everything real lives in scripts/ and CMake; this file only names the steps.
#   make run       set up (packages, weights), build, start the server on ./data
#   make cluster   a throwaway PostgreSQL, Redis, three vigil nodes and nginx on loopback ports
#                  (scripts/cluster.sh; CLUSTER_ARGS="--sqlite" for a shared SQLite file instead,
#                  "--database URL" for an existing database); Ctrl-C stops all
#   make test      set up, build twice (gcc release; clang ASan+UBSan+fuzzers), run every test
#   make bench     set up, build, run the benchmark suite (results in docs/BENCHMARKS.md)
#   make fuzz      long fuzzing runs (FUZZ_SECONDS per target, default 300)
#   make loadtest  a short locust load test against a local server (pass/fail against the SLA)
#   make soak      kill -9 soak: 1,000 kills of `vigil serve` under a mixed write load, every
#                  acknowledged write checked after each restart (SOAK_CYCLES; CI runs 20)
#   make fuzz-http the whole HTTP server (ASan+UBSan) fuzzed through its socket, 10^6 requests
#                  (FUZZ_HTTP_REQUESTS; CI runs 20,000); inputs that fail in fuzz/crashes/http/
#   make soak-api  10^6 mixed API requests: RSS growth and descriptor count (SOAK_API_REQUESTS)
#   make overload  3x capacity for 60 s: only 503/429 + Retry-After, recovery time
#   make diskfull  the data dir on an 8 MiB tmpfs (needs root): clean errors, recovery
#   make fairness  one tenant floods (bombs, then more HD photos than fit): another tenant's
#                  analyses still succeed within the deadline (FAIRNESS_SECONDS, default 20)
#   make format    clang-format every C file in place
.PHONY: all setup build run cluster test bench fuzz format format-check loadtest clean soak fuzz-http \
	soak-api overload diskfull fairness

BUILD ?= build
JOBS ?= $(shell nproc)
VIGIL = $(BUILD)/src/cli/vigil

all: build

setup:
	@scripts/setup.sh run

build: setup
	@scripts/build.sh release $(BUILD)

run: build
	@scripts/run.sh $(VIGIL)

cluster:
	@scripts/setup.sh cluster
	@scripts/build.sh release $(BUILD)
	@scripts/cluster.sh --vigil $(VIGIL) $(CLUSTER_ARGS)

test:
	@scripts/setup.sh test
	@scripts/test.sh

bench:
	@scripts/setup.sh bench
	@scripts/build.sh release $(BUILD)
	@scripts/bench.sh $(VIGIL)

fuzz:
	@scripts/setup.sh test
	@scripts/build.sh asan build-asan
	@FUZZ_SECONDS=$${FUZZ_SECONDS:-300} scripts/fuzz.sh build-asan

loadtest:
	@scripts/setup.sh bench
	@scripts/build.sh release $(BUILD)
	@scripts/loadtest.sh $(VIGIL)

soak:
	@scripts/setup.sh test
	@scripts/reliability.sh kill9

fuzz-http soak-api overload diskfull fairness:
	@scripts/setup.sh test
	@scripts/reliability.sh $@

format:
	@clang-format -i $$(git ls-files '*.c' '*.h')

format-check:
	@clang-format --dry-run --Werror $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) build-asan
