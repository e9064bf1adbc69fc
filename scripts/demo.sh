#!/bin/bash
# From a fresh Debian 12 (as root): install what is needed, build Berth and the
# busybox fixture, serve it from a local registry, and `berth run` it from
# there on the default network with a published port. Prints
# "hello from berth" (from the container), then the page its web server gives
# through the published port. The demo's engine lives in a temp dir with its
# own bridge and nft table, all removed at the end.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/deps.sh
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

cargo build --workspace
tests/fixtures/build.sh >/dev/null
bin=$(cd "${CARGO_TARGET_DIR:-target}/debug" && pwd)

state=$(mktemp -d /tmp/berth-demo.XXXXXX)
export BERTH_ROOT=$state/root BERTH_RUN=$state/run
# A bridge, table and subnet pool of the demo's own: nothing of a real engine is touched.
export BERTH_NETD_ARGS="--default-bridge berthdemo0 --nft-table berthdemo --remove-rules-on-exit"
cleanup() {
    "$bin/berth" rm -f web >/dev/null 2>&1 || true
    pkill -f "berth-(imaged|netd) --root $BERTH_ROOT" 2>/dev/null || true
    sleep 0.5
    ip link del berthdemo0 2>/dev/null || true
    tests/fixtures/registry.sh stop "$state/registry" >/dev/null 2>&1 || true
    umount -R "$state" 2>/dev/null || true
    rm -rf "$state"
}
trap cleanup EXIT

mkdir -p "$state/registry"
port=$(tests/fixtures/registry.sh start "$state/registry" | tail -n1)
image=127.0.0.1:$port/berth/busybox:latest

out=$("$bin/berth" run --rm "$image" echo hello from berth)
echo "$out"
# An engine that silently did nothing must not look like success.
[ "$out" = "hello from berth" ] || { echo "demo.sh: expected 'hello from berth' from the container" >&2; exit 1; }

"$bin/berth" run -d --name web -p 127.0.0.1:8089:80 "$image" \
    sh -c 'mkdir /www && echo "served by a berth container" > /www/index.html && exec httpd -f -p 80 -h /www' >/dev/null
for _ in $(seq 50); do
    page=$(curl -fsS http://127.0.0.1:8089/ 2>/dev/null) && break
    sleep 0.1
done
echo "${page:-}"
[ "${page:-}" = "served by a berth container" ] || { echo "demo.sh: the published port did not answer" >&2; exit 1; }
