#!/usr/bin/env bash
# clang-tidy over the C++ client's sources, tests and fuzz targets with the checks of
# .clang-tidy (bugprone, cert, clang-analyzer); any finding fails.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
build_dir="$here/build-tidy"
command -v clang-tidy >/dev/null || { echo "tidy.sh: clang-tidy is missing (Debian: clang-tidy clang)" >&2; exit 1; }

# Only the compile commands are needed (Clang's, so that clang-tidy reads the same flags).
cmake -S "$here" -B "$build_dir" -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_EXPORT_COMPILE_COMMANDS=ON \
  -DEFT_FUZZ=ON >/dev/null
cd "$here"
# (clang-tidy counts the warnings it suppressed in system headers on stderr: not shown.)
ls src/*.cpp src/platform/*.cpp tests/*.cpp fuzz/*.cpp |
  xargs -P "$(nproc 2>/dev/null || echo 2)" -n 3 clang-tidy -p "$build_dir" --quiet \
  2> >(grep -v -E '^[0-9]+ warnings? generated\.$' >&2)
echo "clang-tidy: no finding"
