#!/usr/bin/env bash
# Builds the status checkers the tests use: `kstatus` (sigs.k8s.io/cli-utils' kstatus, what Flux
# `wait` computes) and `luahealth` (Argo CD's health-script interpreter, gopher-lua), from the Go
# module in this directory, once into a cache directory outside the repository keyed by a hash of
# the module's sources; later runs reuse it. Prints the bin directory on stdout, build times on stderr.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${KEYWARD_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/keyward}
hash=$(cd "$here" && find go.mod go.sum cmd -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-12)
bin="$cache/tools/kstatus-$hash/bin"
tools=(kstatus luahealth)

complete() { local t; for t in "${tools[@]}"; do [ -x "$bin/$t" ] || return 1; done; }
if complete; then echo "$bin"; exit 0; fi

mkdir -p "$cache/tools"
# Test runs started together on a cold cache: one builds, the others wait and reuse its result.
exec 9>"$cache/tools/.kstatus-build.lock"
command -v flock >/dev/null && flock 9
if complete; then echo "$bin"; exit 0; fi
command -v go >/dev/null || { echo "kstatus/build.sh: Go is required to build kstatus and luahealth; install it with: apt-get install -y golang-go (1.26+)" >&2; exit 1; }

rm -rf "$bin.partial" && mkdir -p "$bin.partial"
cd "$here"
export CGO_ENABLED=0 GOFLAGS=-mod=readonly
for t in "${tools[@]}"; do
  echo "kstatus/build.sh: building $t ..." >&2
  start=$(date +%s)
  go build -trimpath -ldflags "-s -w" -o "$bin.partial/$t" "./cmd/$t"
  echo "kstatus/build.sh: built $t in $(( $(date +%s) - start ))s" >&2
done
mkdir -p "$bin"
for t in "${tools[@]}"; do mv "$bin.partial/$t" "$bin/$t"; done
rmdir "$bin.partial" 2>/dev/null || true
echo "$bin"
