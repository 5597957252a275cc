#!/usr/bin/env bash
# Builds what a local Kubernetes node needs, each part once into a cache directory outside the
# repository keyed by its version (or, for our own tools, by a hash of their sources), and skips
# every part already there. Prints one `part=directory` line per part on stdout:
#   kube        kubelet, kube-scheduler, kube-proxy (the control plane's wrapper module)
#   containerd  containerd, ctr, containerd-shim-runc-v2
#   cni         bridge, host-local, loopback, portmap
#   crictl      crictl
#   tools       pause, imagearchive (devenv/node/tools), pause-image.tar (the sandbox image)
# Arguments name the parts to build and print (default: all). Build progress and times go to
# stderr. One Go build runs at a time.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${KEYWARD_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/keyward}
containerd_version=v2.4.2
cni_version=v1.9.1
crictl_version=v1.37.0
pause_image=registry.k8s.io/pause:3.10.1
# Drivers this node never uses; without them containerd builds without cgo headers for btrfs etc.
containerd_tags="no_btrfs no_devmapper no_zfs"

command -v go >/dev/null || { echo "node/build.sh: Go is required; install it with: apt-get install -y golang-go (1.26+)" >&2; exit 1; }
mkdir -p "$cache/node"
exec 9>"$cache/node/.build.lock"
command -v flock >/dev/null && flock 9

parts=("$@")
[ ${#parts[@]} -gt 0 ] || parts=(kube containerd cni crictl tools)
wants() { local p; for p in "${parts[@]}"; do [ "$p" = "$1" ] && return 0; done; return 1; }

export CGO_ENABLED=0 GOFLAGS=-mod=mod
timed() {
  local what=$1; shift
  echo "node/build.sh: building $what ..." >&2
  local start; start=$(date +%s)
  "$@"
  echo "node/build.sh: built $what in $(( $(date +%s) - start ))s" >&2
}

# go install <module>/<commands>@<version> into $dir, unless every command is already there.
install_part() {
  local dir=$1 version=$2 tags=$3; shift 3
  local missing=0 pkg
  for pkg in "$@"; do [ -x "$dir/$(basename "$pkg")" ] || missing=1; done
  if [ $missing -eq 1 ]; then
    rm -rf "$dir.partial"; mkdir -p "$dir.partial"
    local targets=()
    for pkg in "$@"; do targets+=("$pkg@$version"); done
    GOBIN="$dir.partial" timed "$(basename "$dir")" go install -trimpath -tags "$tags" -ldflags "-s -w" "${targets[@]}"
    rm -rf "$dir"; mv "$dir.partial" "$dir"
  fi
}

if wants containerd; then
  dir="$cache/node/containerd-$containerd_version"
  install_part "$dir" "$containerd_version" "$containerd_tags" \
    github.com/containerd/containerd/v2/cmd/containerd \
    github.com/containerd/containerd/v2/cmd/ctr \
    github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2
  echo "containerd=$dir"
fi
if wants cni; then
  dir="$cache/node/cni-plugins-$cni_version"
  install_part "$dir" "$cni_version" "" \
    github.com/containernetworking/plugins/plugins/main/bridge \
    github.com/containernetworking/plugins/plugins/main/loopback \
    github.com/containernetworking/plugins/plugins/ipam/host-local \
    github.com/containernetworking/plugins/plugins/meta/portmap
  echo "cni=$dir"
fi
if wants crictl; then
  dir="$cache/node/crictl-$crictl_version"
  install_part "$dir" "$crictl_version" "" sigs.k8s.io/cri-tools/cmd/crictl
  echo "crictl=$dir"
fi
if wants tools; then
  hash=$(cd "$here/tools" && find . -type f \( -name '*.go' -o -name 'go.mod' -o -name 'go.sum' \) -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
  dir="$cache/node/tools-$hash"
  if [ ! -x "$dir/pause" ] || [ ! -x "$dir/imagearchive" ] || [ ! -f "$dir/pause-image.tar" ]; then
    rm -rf "$dir.partial"; mkdir -p "$dir.partial/pause-root"
    (cd "$here/tools" && GOFLAGS=-mod=readonly timed tools go build -trimpath -ldflags "-s -w" -o "$dir.partial/" ./pause ./imagearchive)
    # The pod sandbox image, under the name the kubelet and containerd expect (pinned, never pulled).
    cp "$dir.partial/pause" "$dir.partial/pause-root/pause"
    "$dir.partial/imagearchive" --out "$dir.partial/pause-image.tar" --tag "$pause_image" \
      --layer "$dir.partial/pause-root" --entrypoint '["/pause"]' --user 65535:65535 >/dev/null
    rm -rf "$dir.partial/pause-root" "$dir"; mv "$dir.partial" "$dir"
  fi
  echo "tools=$dir"
fi
if wants kube; then
  # The control plane's wrapper module: one k8s.io/kubernetes version for every component.
  echo "kube=$(bash "$repo/devenv/controlplane/build.sh" kubelet kube-scheduler kube-proxy)"
fi
