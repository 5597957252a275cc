#!/usr/bin/env bash
# Builds Traefik (the ingress end-to-end tests run ForwardAuth through it) from its published Go
# module via the wrapper module in tools/, once into a cache directory outside the repository keyed
# by the Traefik version and a hash of the wrapper's go.mod and go.sum; later runs reuse it. Prints
# the bin directory on stdout, the build time on stderr.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
module="$here/tools"
version=$(awk '$1 == "require" && $2 == "github.com/traefik/traefik/v3" { print $3; exit }' "$module/go.mod")
[ -n "$version" ] || { echo "traefik/build.sh: no github.com/traefik/traefik/v3 requirement in $module/go.mod" >&2; exit 1; }
cache=${KEYWARD_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/keyward}
hash=$(cd "$module" && cat go.mod go.sum | sha256sum | cut -c1-12)
bin="$cache/tools/traefik-$version-$hash/bin"
if [ -x "$bin/traefik" ]; then echo "$bin"; exit 0; fi

mkdir -p "$cache/tools"
# Test runs started together on a cold cache: one builds, the others wait and reuse its result.
exec 9>"$cache/tools/.traefik-build.lock"
command -v flock >/dev/null && flock 9
if [ -x "$bin/traefik" ]; then echo "$bin"; exit 0; fi
command -v go >/dev/null || { echo "traefik/build.sh: Go is required to build Traefik; install it with: apt-get install -y golang-go (1.26+)" >&2; exit 1; }

rm -rf "$bin.partial" && mkdir -p "$bin.partial"
cd "$module"
export CGO_ENABLED=0 GOFLAGS=-mod=readonly
pkg=github.com/traefik/traefik/v3/pkg/version
echo "traefik/build.sh: building traefik $version (module downloads included; several minutes on 2 cores) ..." >&2
start=$(date +%s)
go build -trimpath -ldflags "-s -w -X $pkg.Version=$version -X $pkg.BuildDate=1970-01-01T00:00:00Z" \
  -o "$bin.partial/traefik" github.com/traefik/traefik/v3/cmd/traefik
echo "traefik/build.sh: built traefik $version in $(( $(date +%s) - start ))s" >&2
mkdir -p "$bin"
mv "$bin.partial/traefik" "$bin/traefik"
rmdir "$bin.partial" 2>/dev/null || true
echo "$bin"
