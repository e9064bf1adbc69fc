#!/bin/sh
# Time to attach a container to a network with berth-netd (netns, veth, address, default
# route, DNS entry, a published port in nftables), target < 10 ms. Runs a private netd in a
# network namespace of its own (nothing on the host is touched) and removes it all at the end.
# Usage: tests/bench/netd-attach.sh [COUNT]   (as root; BERTH_NETD=PATH times another build of
# berth-netd, e.g. an older one, with the same client)
set -eu
COUNT=${1:-50}
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
cargo build -q --release -p berth-netd --bin berth-netd --example attach
BIN=$CARGO_TARGET_DIR/release
TMP=$(mktemp -d /tmp/berth-bench-netd.XXXXXX)
NS=bench-netd-$$
PID=
cleanup() {
    [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null || true
    for f in "$TMP"/run/netns/*; do [ -e "$f" ] && umount -l "$f" 2>/dev/null; done
    ip netns delete "$NS" 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT INT TERM
ip netns add "$NS"
ip netns exec "$NS" ip link set lo up
nsenter --net=/run/netns/"$NS" "${BERTH_NETD:-$BIN/berth-netd}" --root "$TMP/root" --run "$TMP/run" \
    --pool 10.234.0.0/16 --nft-table bench 2>"$TMP/netd.log" &
PID=$!
i=0; while [ ! -S "$TMP/run/netd.sock" ]; do i=$((i+1)); [ $i -gt 200 ] && { cat "$TMP/netd.log"; exit 1; }; sleep 0.05; done
"$BIN"/examples/attach "$TMP/run/netd.sock" bridge 3 >/dev/null   # warm up
echo "default network (bridge):"
"$BIN"/examples/attach "$TMP/run/netd.sock" bridge "$COUNT"
echo "default network, no published port:"
BERTH_BENCH_NO_PORTS=1 "$BIN"/examples/attach "$TMP/run/netd.sock" bridge "$COUNT"
echo "for comparison: Docker's share of docker run here is 258 ms with the default network, 212 ms with none; target < 10 ms"
