#!/usr/bin/env bash
# Builds the chart-check tools (helm, kubeconform) from their Go modules into a cache directory
# outside the repository, one directory per pinned version, and skips what is already there.
# `go install module@version` builds with the module's own go.mod, and the Go checksum database
# verifies every download. Usage: build.sh [tool...] (default: all); prints `tool=path` lines.
set -euo pipefail
declare -A module=(
  [helm]=helm.sh/helm/v3/cmd/helm@v3.22.0
  [kubeconform]=github.com/yannh/kubeconform/cmd/kubeconform@v0.8.0
)
cache=${KEYWARD_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/keyward}
tools=("$@")
[ ${#tools[@]} -gt 0 ] || tools=(helm kubeconform)

mkdir -p "$cache/tools"
# Test runs started together on a cold cache: one builds, the others wait and reuse its result.
exec 9>"$cache/tools/.build.lock"
command -v flock >/dev/null && flock 9

for t in "${tools[@]}"; do
  spec=${module[$t]:?"build.sh: unknown tool $t (known: ${!module[*]})"}
  version=${spec##*@}
  bin="$cache/tools/$t-$version/bin"
  if [ ! -x "$bin/$t" ]; then
    command -v go >/dev/null || { echo "build.sh: Go is required to build $t; install it with: apt-get install -y golang-go (1.26+)" >&2; exit 1; }
    echo "build.sh: building $t $version ..." >&2
    start=$(date +%s)
    rm -rf "$bin.partial" && mkdir -p "$bin.partial"
    ldflags="-s -w"
    if [ "$t" = helm ]; then
      # What helm's Makefile sets: its own version, and the Kubernetes version `helm template` and
      # `helm lint` assume (client-go v0.37 → 1.37) instead of the compiled-in 1.20.
      v=helm.sh/helm/v3
      ldflags="$ldflags -X $v/internal/version.version=$version -X $v/internal/version.gitTreeState=clean"
      for p in pkg/lint/rules pkg/chartutil; do ldflags="$ldflags -X $v/$p.k8sVersionMajor=1 -X $v/$p.k8sVersionMinor=37"; done
    fi
    CGO_ENABLED=0 GOFLAGS=-mod=mod GOBIN="$bin.partial" go install -trimpath -ldflags "$ldflags" "$spec"
    mkdir -p "$bin" && mv "$bin.partial/$t" "$bin/$t" && rmdir "$bin.partial"
    echo "build.sh: built $t in $(( $(date +%s) - start ))s" >&2
  fi
  echo "$t=$bin/$t"
done
