#!/usr/bin/env bash
# deb-src.sh [BINARY-PACKAGE]: make `apt-get source` work for BINARY-PACKAGE's source
# (default libcrypto++-dev, whose source Crypto++ is cross-built from; see build.sh).
#
# Run as root. The host's apt sources stay untouched: a separate file,
# /etc/apt/sources.list.d/eft-deb-src.sources, gets a `deb-src` twin of each of the host's
# own `deb` entries (one-line or deb822) that serves BINARY-PACKAGE, with the same URIs,
# suites, components and Signed-By. No mirror is named here: they all come from the host's
# files at run time, so the sources come from wherever the host's packages come from.
# Idempotent: a second run finds the same file and only refreshes its index if it is missing.
set -euo pipefail

package=${1:-libcrypto++-dev}
target=/etc/apt/sources.list.d/eft-deb-src.sources

# A host whose own sources list deb-src already needs nothing more.
if [[ ! -f $target ]] && apt-get source --print-uris -qq "$package" >/dev/null 2>&1; then
  echo "deb-src.sh: apt already lists the source of $package"
  exit 0
fi

# The archives (URIs) that apt says serve the binary package, from the host's own sources.
serving_archives() {
  apt-cache madison "$package" |
    awk -F'|' '$3 ~ / Packages *$/ { split($3, f, " "); print f[1] }' | sort -u
}
mapfile -t serving < <(serving_archives)
if ((${#serving[@]} == 0 && EUID == 0)); then  # a fresh machine whose lists were cleaned
  apt-get update -qq
  mapfile -t serving < <(serving_archives)
fi
if ((${#serving[@]} == 0)); then
  echo "deb-src.sh: apt knows no archive with $package (run apt-get update first)" >&2
  exit 1
fi

host_files=()
[[ -f /etc/apt/sources.list ]] && host_files+=(/etc/apt/sources.list)
for file in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
  [[ -f $file && $file != "$target" ]] && host_files+=("$file")
done

# deb822 stanzas (.sources) and one-line entries (.list) -> deb822 deb-src stanzas.
derive() {
  local file
  for file in "${host_files[@]}"; do
    case "$file" in
      *.sources)
        awk -v serving="${serving[*]}" '
          BEGIN { RS = ""; FS = "\n"; n = split(serving, list, " "); for (i = 1; i <= n; i++) ok[list[i]] = 1 }
          {
            delete value; key = ""
            for (i = 1; i <= NF; i++) {
              line = $i
              if (line ~ /^#/) continue
              if (line ~ /^[ \t]/ && key != "") { value[key] = value[key] "\n" line; continue }
              key = tolower(substr(line, 1, index(line, ":") - 1))
              value[key] = substr(line, index(line, ":") + 1)
              sub(/^[ \t]+/, "", value[key])
            }
            if (tolower(value["enabled"]) == "no") next
            if ((" " value["types"] " ") !~ / deb /) next
            wanted = ""; n = split(value["uris"], uris, /[ \t]+/)
            for (u = 1; u <= n; u++) if (uris[u] in ok) wanted = wanted (wanted == "" ? "" : " ") uris[u]
            if (wanted == "") next
            print "Types: deb-src"
            print "URIs: " wanted
            print "Suites: " value["suites"]
            if (value["components"] != "") print "Components: " value["components"]
            if (value["signed-by"] != "") print "Signed-By: " value["signed-by"]
            print ""
          }' "$file"
        ;;
      *)
        awk -v serving="${serving[*]}" '
          BEGIN { n = split(serving, list, " "); for (i = 1; i <= n; i++) ok[list[i]] = 1 }
          $1 == "deb" {
            signed = ""; i = 2
            if ($2 ~ /^\[/) {
              for (; i <= NF; i++) {
                if ($i ~ /^\[?signed-by=/) { signed = $i; sub(/^\[?signed-by=/, "", signed); sub(/\]$/, "", signed) }
                if ($i ~ /\]$/) { i++; break }
              }
            }
            if (!($i in ok)) next
            components = ""
            for (j = i + 2; j <= NF && $j !~ /^#/; j++) components = components (components == "" ? "" : " ") $j
            print "Types: deb-src"
            print "URIs: " $i
            print "Suites: " $(i + 1)
            if (components != "") print "Components: " components
            if (signed != "") print "Signed-By: " signed
            print ""
          }' "$file"
        ;;
    esac
  done
}

stanzas=$(derive)
if [[ -z $stanzas ]]; then
  echo "deb-src.sh: none of the host's apt source files has a deb entry for ${serving[*]}" >&2
  exit 1
fi
content="# Written by eft's client/cpp/windows/deb-src.sh: the source packages of the host's own
# archives that serve $package (derived from the host's apt sources; safe to delete).

$stanzas"

if [[ -f $target ]] && [[ "$(cat "$target")" == "$content" ]] &&
  apt-get source --print-uris -qq "$package" >/dev/null 2>&1; then
  echo "deb-src.sh: $target is current"
  exit 0
fi
if ((EUID != 0)); then
  echo "deb-src.sh: writing $target needs root: sudo $0 $*" >&2
  exit 1
fi
printf '%s\n' "$content" >"$target.tmp"
mv "$target.tmp" "$target"
echo "deb-src.sh: wrote $target:"
sed 's/^/  /' "$target"
# Only this file's index is fetched: the host's other lists (third-party archives without
# sources, say) are neither refreshed nor able to fail this step.
apt-get update -qq -o Dir::Etc::SourceList="$target" -o Dir::Etc::SourceParts=- \
  -o APT::Get::List-Cleanup=0
