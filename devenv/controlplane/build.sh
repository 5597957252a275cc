#!/usr/bin/env bash
# Builds the local control plane (tests, benchmarks, `keyward sandbox`) into a cache directory outside the repository, keyed by version,
# and skips the build when every binary is already there. Prints the bin directory on stdout.
# Arguments name other commands of the same module to build into the same directory instead
# (devenv/node/build.sh asks for kubelet, kube-scheduler and kube-proxy this way).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
module="$here/tools"
k8s=$(awk '$1 == "k8s.io/kubernetes" { print $2; exit }' "$module/go.mod")
etcd=$(awk '$1 == "go.etcd.io/etcd/server/v3" { print $2; exit }' "$module/go.mod")
cache=${KEYWARD_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/keyward}
bin="$cache/controlplane/$k8s-etcd$etcd/bin"
tools=(kube-apiserver kube-controller-manager kubectl etcd)
if [ $# -gt 0 ]; then tools=("$@"); fi

find_missing() {
  missing=()
  for t in "${tools[@]}"; do [ -x "$bin/$t" ] || missing+=("$t"); done
}
find_missing
if [ ${#missing[@]} -eq 0 ]; then echo "$bin"; exit 0; fi

# Test runs started together on a cold cache: one builds, the others wait and reuse its result.
mkdir -p "$cache/controlplane"
exec 9>"$cache/controlplane/.build.lock"
if command -v flock >/dev/null; then
  flock 9
  find_missing
  if [ ${#missing[@]} -eq 0 ]; then echo "$bin"; exit 0; fi
fi

command -v go >/dev/null || { echo "build.sh: Go is required to build the local control plane; install it with: apt-get install -y golang-go (1.26+)" >&2; exit 1; }

minor=${k8s#v1.}; minor=${minor%%.*}
pkg=k8s.io/component-base/version
ldflags="-s -w -X $pkg.gitVersion=$k8s -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
ldflags="$ldflags -X k8s.io/client-go/pkg/version.gitVersion=$k8s -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor"
mkdir -p "$bin.partial"
cd "$module"
export CGO_ENABLED=0 GOFLAGS=-mod=mod
for t in "${missing[@]}"; do
  case "$t" in
    etcd) src=./etcd ;;
    *) src=k8s.io/kubernetes/cmd/$t ;;
  esac
  echo "build.sh: building $t ($k8s, etcd $etcd) ..." >&2
  start=$(date +%s)
  go build -trimpath -ldflags "$ldflags" -o "$bin.partial/$t" "$src"
  echo "build.sh: built $t in $(( $(date +%s) - start ))s" >&2
done
mkdir -p "$bin"
for t in "${missing[@]}"; do mv "$bin.partial/$t" "$bin/$t"; done
rmdir "$bin.partial" 2>/dev/null || true
echo "$bin"
