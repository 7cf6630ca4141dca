#!/usr/bin/env bash
# Cross-build the C++ client for 64-bit Windows with MinGW-w64, then run its unit tests
# under Wine:
#   client/cpp/windows/build.sh   -> client/cpp/build-windows/eft-client-cpp.exe
#
# Needs Debian's g++-mingw-w64-x86-64, cmake, dpkg-dev (apt-get source) and, for ctest,
# wine (make system-deps). Crypto++ is built for Windows from Debian's own source package
# (apt-get source libcrypto++-dev; deb-src.sh makes the host's archives list their sources
# when run as root), only the units the client links (see CRYPTOPP_UNITS), and kept in
# ${XDG_CACHE_HOME:-~/.cache}/eft-cryptopp-mingw/, keyed on the source version, the
# compiler and this recipe: a second build reuses it.
#
# Environment: EFT_CRYPTOPP_WHOLE=1 builds the whole library instead of the units (to
# find the units a newer Crypto++ needs); EFT_WINDOWS_CTEST=0 skips ctest; EFT_WINEPREFIX
# replaces ~/.cache/eft-wine, the Wine prefix shared with tests/cpp_windows.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cpp_dir="$(dirname "$here")"
build_dir="$cpp_dir/build-windows"
triplet=x86_64-w64-mingw32
cxx=$triplet-g++-posix
jobs="$(nproc 2>/dev/null || echo 2)"
source_package=libcrypto++-dev

# The Crypto++ units the client and its unit tests link, found with the linker's map
# (-Wl,-Map: "Archive member included to satisfy reference") against the whole library.
# Building only these takes a third of the whole library's time.
CRYPTOPP_UNITS=(
  algparam allocate asn base64 basecode cpu cryptlib dll ec2n ecp filters fips140 gf2n gf2n_simd
  gfpcrypt hex hmac hrtimer integer iterhash misc modes mqueue nbtheory oaep osrng pkcspad
  pubkey queue randpool rdtables rijndael rijndael_simd rng rsa sha sha_simd sse_simd
)

need() {
  command -v "$1" >/dev/null || {
    echo "windows/build.sh: $1 is missing: $2" >&2
    exit 1
  }
}
need "$cxx" "apt-get install g++-mingw-w64-x86-64 (or: sudo make system-deps)"
need cmake "apt-get install cmake"
need dpkg-source "apt-get install dpkg-dev (apt-get source unpacks with it)"

# ---------------------------------------------------------------- Crypto++ for Windows
# Empty when apt lists no source for it (no deb-src yet).
source_version() {
  { apt-get source --print-uris -qq "$source_package" 2>/dev/null || true; } |
    awk '$2 ~ /\.dsc$/ { sub(/\.dsc$/, "", $2); sub(/^[^_]*_/, "", $2); print $2; exit }'
}
version="$(source_version)"
if [[ -z $version ]]; then
  if ((EUID == 0)); then
    "$here/deb-src.sh" "$source_package"
    version="$(source_version)"
  fi
  if [[ -z $version ]]; then
    echo "windows/build.sh: apt lists no source for $source_package; run once as root:" >&2
    echo "  sudo $here/deb-src.sh" >&2
    exit 1
  fi
fi

whole=${EFT_CRYPTOPP_WHOLE:-0}
cxxflags="-O2 -DNDEBUG -D_WIN32_WINNT=0x0601"
recipe="$("$cxx" --version | sed -n 1p) | $cxxflags | whole=$whole | ${CRYPTOPP_UNITS[*]}"
recipe_hash="$(printf '%s' "$recipe" | sha256sum | cut -c1-12)"
cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/eft-cryptopp-mingw"
prefix="$cache_root/$version-$recipe_hash"

if [[ -f $prefix/lib/libcryptopp.a ]]; then
  echo "Crypto++ $version for Windows: cached in $prefix"
else
  mkdir -p "$cache_root"
  work="$(mktemp -d "$cache_root/.build-XXXXXX")"
  trap 'rm -rf "$work"' EXIT
  start=$SECONDS
  (cd "$work" && apt-get source -qq "$source_package" >/dev/null 2>"$work/apt-get-source.log") || {
    cat "$work/apt-get-source.log" >&2
    exit 1
  }
  src="$(find "$work" -mindepth 1 -maxdepth 1 -type d -name 'libcrypto++-*' -print -quit)"
  fetched=$((SECONDS - start))
  # Crypto++'s own GNUmakefile knows each unit's ISA flags (-maes, -msha, -mpclmul...);
  # it is asked for the objects only, and the archive is made here.
  make_args=(-C "$src" -j"$jobs" CXX="$cxx" AR="$triplet-ar" RANLIB="$triplet-ranlib"
    CXXFLAGS="$cxxflags")
  if [[ $whole == 1 ]]; then
    make "${make_args[@]}" static >"$work/make.log" 2>&1 || { tail -40 "$work/make.log" >&2; exit 1; }
    # Debian's patches name it libcrypto++.a; upstream, libcryptopp.a.
    [[ -f $src/libcryptopp.a ]] || mv "$src/libcrypto++.a" "$src/libcryptopp.a"
  else
    objects=("${CRYPTOPP_UNITS[@]/%/.o}")
    make "${make_args[@]}" "${objects[@]}" >"$work/make.log" 2>&1 || { tail -40 "$work/make.log" >&2; exit 1; }
    (cd "$src" && "$triplet-ar" rcs libcryptopp.a "${objects[@]}")
  fi
  staging="$work/prefix"
  mkdir -p "$staging/include/cryptopp" "$staging/lib/pkgconfig"
  cp "$src"/*.h "$staging/include/cryptopp/"
  cp "$src/libcryptopp.a" "$staging/lib/"
  cat >"$staging/lib/pkgconfig/libcrypto++.pc" <<EOF
# Crypto++ $version from Debian's source, cross-built for Windows by client/cpp/windows/build.sh
prefix=$prefix
libdir=\${prefix}/lib
includedir=\${prefix}/include

Name: libcrypto++
Description: Crypto++ (MinGW-w64 static)
Version: ${version%%-*}
Cflags: -I\${includedir}
Libs: -L\${libdir} -lcryptopp
EOF
  # Whole or not at all (a stopped build leaves no half cache); rename(2) refuses to
  # replace a non-empty directory: then another build got there first with the same.
  if ! mv -T "$staging" "$prefix" 2>/dev/null && [[ ! -f $prefix/lib/libcryptopp.a ]]; then
    echo "windows/build.sh: cannot create $prefix" >&2
    exit 1
  fi
  echo "Crypto++ $version for Windows: $(((SECONDS - start))) s (apt-get source ${fetched} s," \
    "$([[ $whole == 1 ]] && echo "whole library" || echo "${#CRYPTOPP_UNITS[@]} units")) -> $prefix"
fi

# ---------------------------------------------------------------- the client
# PKG_CONFIG_LIBDIR: only the cross-built Crypto++'s .pc, never the Linux host's.
unset PKG_CONFIG_PATH
export PKG_CONFIG_LIBDIR="$prefix/lib/pkgconfig"
# CMake keeps what pkg-config said in its cache: another Crypto++ needs a fresh build dir.
if [[ -f $build_dir/CMakeCache.txt ]] &&
  ! grep -qxF "EFT_CRYPTOPP_PREFIX:UNINITIALIZED=$prefix" "$build_dir/CMakeCache.txt"; then
  rm -rf "$build_dir"
fi
cmake -S "$cpp_dir" -B "$build_dir" -DCMAKE_TOOLCHAIN_FILE="$here/mingw-w64.cmake" \
  -DEFT_CRYPTOPP_PREFIX="$prefix" -DCMAKE_BUILD_TYPE=Release -DEFT_WERROR=ON
cmake --build "$build_dir" --parallel "$jobs"
if [[ ${EFT_WINDOWS_CTEST:-1} != 0 ]]; then
  if command -v wine >/dev/null; then
    # The Wine prefix of tests/cpp_windows, created by the first run if need be; no Mono,
    # no Gecko (console programs need neither), no window. A wineserver that lingers
    # between the test programs saves starting Wine's services for each one; they are
    # started here, without pipes (ctest's would be held open as long as they live).
    export WINEPREFIX="${EFT_WINEPREFIX:-${XDG_CACHE_HOME:-$HOME/.cache}/eft-wine}" WINEDEBUG=-all \
      WINEDLLOVERRIDES="mscoree,mshtml=d"
    unset DISPLAY
    wineserver -p10 </dev/null >/dev/null 2>&1 || true
    wine "$build_dir/eft-client-cpp.exe" --version </dev/null >/dev/null 2>&1 || true
    (cd "$build_dir" && ctest --output-on-failure)
  else
    echo "windows/build.sh: wine is missing: the unit tests were built, not run" >&2
  fi
fi
echo "eft-client-cpp.exe built: $build_dir/eft-client-cpp.exe"
