#!/usr/bin/env bash
# Builds the keyward image without a container engine, by the Dockerfile's steps, into a
# docker-archive (what `ctr images import` and `docker load` read) under the cache directory,
# named by a hash of everything that goes into it, so a rerun with the same sources is a no-op.
# Prints `archive=<file>` and `image=<reference>` on stdout; progress goes to stderr.
#
# The registry's node:24 base image is replaced by a local one made from the npm registry's Node
# binary and the host's glibc (the Dockerfile takes its base as the NODE_IMAGE build argument).
# Stages, as in the Dockerfile: build (npm ci && npm run build), deps (npm ci --omit=dev), runtime
# (production node_modules and the compiled JavaScript only); USER, ENV, WORKDIR, ENTRYPOINT, CMD
# and LABELs are read from the Dockerfile's runtime stage.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${KEYWARD_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/keyward}
images="$cache/images"
log() { echo "image/build.sh: $*" >&2; }

node_bin=$(bash "$repo/devenv/runtime/node.sh")
node_version=$("$node_bin/node" --version)
node_version=${node_version#v}
tools=$(bash "$repo/devenv/node/build.sh" tools | sed -n 's/^tools=//p')
version=$("$node_bin/node" -p "require('$repo/package.json').version")
revision=$(git -C "$repo" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)

# The build context, as .dockerignore admits it (sources only: no node_modules, dist or caches).
context_files() {
  (cd "$repo" && find package.json package-lock.json tsconfig.json vitest.config.ts Dockerfile \
    api credentials lib store operator webhook cli devenv test bench \
    -path devenv/controlplane/tools -prune -o -path devenv/node/tools -prune -o -path devenv/traefik/tools -prune -o -type f -print | LC_ALL=C sort)
}
# The name hashes what ends up in the image: the product's sources (not its tests: the build stage
# compiles devenv/, which cli/sandbox.ts imports, and test/ and bench/, which tsconfig includes, but
# none of them reach the runtime stage), the lock file, the Dockerfile, the Node version and this script.
image_inputs() {
  (cd "$repo" && find package.json package-lock.json tsconfig.json Dockerfile \
    api credentials lib store operator webhook cli -type f ! -name '*.test.ts' -print | LC_ALL=C sort)
}
hash=$( { (cd "$repo" && image_inputs | tr '\n' '\0' | xargs -0 sha256sum); echo "node $node_version tools $tools"; sha256sum < "$0"; } \
  | sha256sum | cut -c1-16)
archive="$images/keyward-$version-$hash.tar"
image="localhost/keyward:$version-$hash"
if [ -f "$archive" ]; then
  echo "archive=$archive"; echo "image=$image"; exit 0
fi

mkdir -p "$images"
exec 9>"$images/.build.lock"
command -v flock >/dev/null && flock 9
if [ -f "$archive" ]; then echo "archive=$archive"; echo "image=$image"; exit 0; fi
start=$(date +%s)
work=$(mktemp -d "$images/.work-XXXXXX")
trap 'rm -rf "$work"' EXIT
export PATH="$node_bin:$PATH"

# The runtime stage's instructions from the Dockerfile (single-line instructions only).
runtime_stage() { awk '/^FROM .* AS runtime$/ { on = 1; next } /^FROM / { on = 0 } on' "$repo/Dockerfile"; }
instruction() { runtime_stage | sed -n "s/^$1 //p"; }
expand_args() { sed -e "s|\${VERSION}|$version|g" -e "s|\${REVISION}|$revision|g" -e "s|\${NODE_IMAGE}|localhost/node:$node_version-keyward-base|g"; }

log "stage build: npm ci && npm run build"
mkdir -p "$work/build"
(cd "$repo" && context_files | grep -v '^Dockerfile$' | tar -cf - -T -) | tar -xf - -C "$work/build"
(cd "$work/build" && npm ci --no-audit --no-fund --loglevel=error >&2 && npm run build --silent >&2 && find dist -name '*.map' -delete)

log "stage deps: npm ci --omit=dev"
mkdir -p "$work/deps"
cp "$repo/package.json" "$repo/package-lock.json" "$work/deps/"
(cd "$work/deps" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error >&2)

log "stage runtime"
app="$work/runtime/app"
mkdir -p "$app/dist/store"
cp -a "$work/deps/package.json" "$work/deps/package-lock.json" "$work/deps/node_modules" "$app/"
for component in api credentials lib store operator webhook cli; do
  cp -a "$work/build/dist/$component" "$app/dist/"
done
cp -a "$repo/store/migrations" "$app/dist/store/"
if find "$app/dist" -name '*.ts' ! -name '*.d.ts' -print -quit | grep -q .; then
  log "TypeScript sources in the runtime stage:"; find "$app/dist" -name '*.ts' >&2; exit 1
fi

# The local stand-in for node:24: the Node binary, the glibc it links against, /tmp, and a
# passwd entry for the non-root user.
base="$work/base"
mkdir -p "$base/usr/local/bin" "$base/etc" "$base/tmp"
chmod 1777 "$base/tmp"
cp "$node_bin/node" "$base/usr/local/bin/node"
for lib in $(ldd "$node_bin/node" | awk '/=> \// { print $3 } /^\t\/lib/ { print $1 }'); do
  mkdir -p "$base$(dirname "$lib")"
  cp -L "$lib" "$base$lib"
done
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$base/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$base/etc/group"
base_archive="$work/base.tar"
"$tools/imagearchive" --out "$base_archive" --tag "localhost/node:$node_version-keyward-base" --layer "$base" \
  --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --env "NODE_VERSION=$node_version" >/dev/null

args=(--out "$work/keyward.tar" --tag "$image" --base "$base_archive" --layer "$work/runtime")
args+=(--workdir "$(instruction WORKDIR)" --user "$(instruction USER)")
args+=(--entrypoint "$(instruction ENTRYPOINT)" --cmd "$(instruction CMD)")
while read -r env; do [ -n "$env" ] && args+=(--env "$env"); done < <(instruction ENV)
while read -r label; do
  [ -n "$label" ] || continue
  key=${label%%=*}; value=${label#*=}; value=${value#\"}; value=${value%\"}
  args+=(--label "$key=$(printf '%s' "$value" | expand_args)")
done < <(instruction LABEL)
digest=$("$tools/imagearchive" "${args[@]}")
mv "$work/keyward.tar" "$archive"
# Keep the three newest archives: each is ~70 MB, and older sources are rarely wanted again.
ls -1t "$images"/keyward-*.tar | tail -n +4 | xargs -r rm -f
log "wrote $image ($digest, $(du -m "$archive" | cut -f1) MB archive) in $(( $(date +%s) - start ))s"
echo "archive=$archive"
echo "image=$image"
