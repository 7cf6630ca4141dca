#!/usr/bin/env bash
# Configure, build and unit-test the C++ client.
#   client/cpp/build.sh              -> client/cpp/build/eft-client-cpp
#   client/cpp/build.sh --sanitize   -> client/cpp/build-asan/eft-client-cpp (ASan + UBSan)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
build_dir="$here/build"
sanitize=OFF
for arg in "$@"; do
  case "$arg" in
    --sanitize) sanitize=ON; build_dir="$here/build-asan" ;;
    -h|--help) echo "usage: $0 [--sanitize]"; exit 0 ;;
    *) echo "build.sh: unknown argument '$arg'" >&2; exit 2 ;;
  esac
done

jobs="$(nproc 2>/dev/null || echo 2)"
cmake -S "$here" -B "$build_dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEFT_SANITIZE="$sanitize" -DEFT_WERROR=ON
cmake --build "$build_dir" --parallel "$jobs"
(cd "$build_dir" && ctest --output-on-failure)
echo "eft-client-cpp built: $build_dir/eft-client-cpp"
