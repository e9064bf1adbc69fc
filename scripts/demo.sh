#!/bin/bash
# From a fresh Debian 12 (as root): install what is needed, build Berth, build
# the busybox fixture, and run it with berth-runtime. Prints
# "hello from busybox".
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/deps.sh
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

cargo build --workspace
fixtures=$(tests/fixtures/build.sh)
bin=${CARGO_TARGET_DIR:-target}/debug

state=$(mktemp -d /tmp/berth-demo.XXXXXX)
trap 'rm -rf "$state"' EXIT
out=$("$bin/berth-runtime" --root "$state" run --bundle "$fixtures/busybox" "berth-demo-$$")
echo "$out"
# A runtime that silently did nothing must not look like success.
[ "$out" = "hello from busybox" ] || { echo "demo.sh: expected 'hello from busybox' from the container" >&2; exit 1; }
