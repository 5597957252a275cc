#!/usr/bin/env bash
# Builds the chart-check tools (helm, kubeconform) from their Go modules into a cache directory
# outside the repository, one directory per pinned version, and skips what is already there.
# `go install module@version` builds with the module's own go.mod, and the Go checksum database
# verifies every download. Also fetches the CRDs of the chart's optional peers (cert-manager's
# Certificate, the Prometheus Operator's ServiceMonitor/PodMonitor) from their Go modules, so the
# chart is validated against their real schemas too.
# Usage: build.sh [name...] (default: all); prints `name=path` lines.
set -euo pipefail
declare -A module=(
  [helm]=helm.sh/helm/v3/cmd/helm@v3.22.0
  [kubeconform]=github.com/yannh/kubeconform/cmd/kubeconform@v0.8.0
)
# name → module@version and the directory in it that holds the CRD YAML.
declare -A crds=(
  [cert-manager-crds]="github.com/cert-manager/cert-manager@v1.21.2 deploy/crds"
  [prometheus-operator-crds]="github.com/prometheus-operator/prometheus-operator@v0.85.0 example/prometheus-operator-crd"
)
cache=${KEYWARD_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/keyward}
tools=("$@")
[ ${#tools[@]} -gt 0 ] || tools=(helm kubeconform cert-manager-crds prometheus-operator-crds)

mkdir -p "$cache/tools"
# Outside any Go module, so `go` resolves exactly the pinned versions.
cd "$cache/tools"
# Test runs started together on a cold cache: one builds, the others wait and reuse its result.
exec 9>"$cache/tools/.build.lock"
command -v flock >/dev/null && flock 9

for t in "${tools[@]}"; do
  if [ -n "${crds[$t]:-}" ]; then
    read -r mod dir <<<"${crds[$t]}"
    # The module cache is read-only and content-addressed: the directory is the module's as published.
    moddir=$(GOFLAGS=-mod=mod go mod download -json "$mod" | awk -F'"' '$2 == "Dir" { print $4 }')
    [ -d "$moddir/$dir" ] || { echo "build.sh: $mod has no $dir" >&2; exit 1; }
    echo "$t=$moddir/$dir"
    continue
  fi
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
      # `helm lint` assume (its client-go v0.N → 1.N) instead of the compiled-in 1.20.
      v=helm.sh/helm/v3
      ldflags="$ldflags -X $v/internal/version.version=$version -X $v/internal/version.gitTreeState=clean"
      gomod=$(GOFLAGS=-mod=mod go mod download -json "helm.sh/helm/v3@$version" | awk -F'"' '$2 == "GoMod" { print $4 }')
      minor=$(awk '$1 == "k8s.io/client-go" { split($2, v, "."); print v[2]; exit }' "$gomod")
      for p in pkg/lint/rules pkg/chartutil; do ldflags="$ldflags -X $v/$p.k8sVersionMajor=1 -X $v/$p.k8sVersionMinor=$minor"; done
    fi
    CGO_ENABLED=0 GOFLAGS=-mod=mod GOBIN="$bin.partial" go install -trimpath -ldflags "$ldflags" "$spec"
    mkdir -p "$bin" && mv "$bin.partial/$t" "$bin/$t" && rmdir "$bin.partial"
    echo "build.sh: built $t in $(( $(date +%s) - start ))s" >&2
  fi
  echo "$t=$bin/$t"
done
