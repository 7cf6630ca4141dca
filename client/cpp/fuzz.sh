#!/usr/bin/env bash
# Build the libFuzzer targets (fuzz/) with Clang, ASan and UBSan, and run each one for a
# bounded time. A crash, a leak, a sanitizer report or a time-out fails the run; the input
# that did it is left in client/cpp/build-fuzz/ (crash-*, leak-*, timeout-*).
#   client/cpp/fuzz.sh [SECONDS_PER_TARGET]     (default 20; FUZZ_SECONDS works too)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
seconds="${1:-${FUZZ_SECONDS:-20}}"
build_dir="$here/build-fuzz"
command -v clang++ >/dev/null || { echo "fuzz.sh: clang++ is missing (Debian: clang libclang-rt-dev)" >&2; exit 1; }

cmake -S "$here" -B "$build_dir" -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DEFT_FUZZ=ON -DEFT_BUILD_TESTS=OFF -DEFT_WERROR=ON >/dev/null
cmake --build "$build_dir" --parallel "$(nproc 2>/dev/null || echo 2)"

for target in response_parser exchange config; do
  corpus="$build_dir/corpus-$target"  # grows across local runs; CI starts from nothing
  log="$build_dir/fuzz_$target.log"
  mkdir -p "$corpus"
  if (cd "$build_dir" && ./"fuzz_$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
      -print_final_stats=1 "$corpus" >"$log" 2>&1); then
    echo "fuzz_$target: ${seconds}s, $(grep -Eo 'number_of_executed_units: [0-9]+' "$log" | grep -Eo '[0-9]+') inputs, no failure"
  else
    tail -n 40 "$log" >&2
    echo "fuzz_$target: FAILED (log: $log)" >&2
    exit 1
  fi
done
