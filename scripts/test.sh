#!/usr/bin/env bash
# The whole test run behind `make test` (and so CI):
#   1. format check;
#   2. release tree (gcc, -Werror): build, then every CTest test (label reliability: 20 kill -9
#      cycles of the server, and in the sanitizer tree also 20,000 fuzzed HTTP requests);
#   3. sanitizer tree (clang, ASan+UBSan, -Werror): build, then every CTest test again;
#   4. each libFuzzer target for FUZZ_SECONDS (default 20) from its seed corpus.
# A throwaway redis-server on a free loopback port serves the Redis-tier tests
# (VIGIL_TEST_REDIS_URL), and a throwaway PostgreSQL the store suite's PostgreSQL run
# (test_store_pg, VIGIL_TEST_PG_URL); both are stopped on exit whatever happens.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=${JOBS:-$(nproc)}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

step() { printf '\n=== %s\n' "$*"; }

step "format check (clang-format)"
make -s format-check

source scripts/redis-tmp.sh
redis_tmp_start
source scripts/pg-tmp.sh
pg_tmp_start
# setup.sh installed PostgreSQL: a server that cannot start here is a failure, not a reason to
# skip the PostgreSQL half of the store suite and the cluster test.
if [ -z "${VIGIL_TEST_PG_URL:-}" ]; then
  echo "test: the throwaway PostgreSQL did not start (see above)" >&2
  exit 1
fi

step "release build (gcc)"
scripts/build.sh release build
step "tests: release"
(cd build && ctest --output-on-failure -j "$jobs" --timeout 600)

step "sanitizer build (clang, ASan+UBSan)"
scripts/build.sh asan build-asan
step "tests: ASan+UBSan"
# test_video_regions hashes all 14 sample videos at every frame for the README's matrix: 132 s
# under ASan, a sixth of make test's budget, for arithmetic the release run checks. Its code
# (region hashing in the decoder child, the tagged index) runs under ASan in test_video and
# test_video_cli, which hash and match with regions at 1 frame/s. test_video itself runs its
# every-frame hashing and planned-decode checks on a subset of the sample videos in this tree
# (VG_SANITIZE; VIGIL_TEST_VIDEO_FULL=1 for all): docs/ARCHITECTURE.md "Build".
(cd build-asan && ctest --output-on-failure -j "$jobs" --timeout 900 -E '^test_video_regions$')

step "fuzzing (${FUZZ_SECONDS:-20}s per target)"
FUZZ_SECONDS=${FUZZ_SECONDS:-20} scripts/fuzz.sh build-asan

step "all tests passed"
