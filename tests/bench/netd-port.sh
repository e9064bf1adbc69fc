#!/bin/sh
# HTTP requests per second through a port published by berth-netd (127.0.0.1:8080 -> a
# container's nginx on port 80), beside the same nginx in the netns netd serves from, in one
# run; prints the ratio (Docker's docker-proxy gives 48% here; target at least 90%). Runs a
# private netd in a network namespace of its own, so nothing on the host is touched; wrk
# runs a bounded few seconds per side. Needs root, wrk and nginx-light.
# Usage: tests/bench/netd-port.sh [SECONDS]
set -eu
SECS=${1:-5}
cd "$(dirname "$0")/../.."
command -v wrk >/dev/null || { echo "netd-port.sh: wrk missing (apt-get install wrk)" >&2; exit 1; }
command -v nginx >/dev/null || { echo "netd-port.sh: nginx missing (apt-get install nginx-light)" >&2; exit 1; }
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
cargo build -q --release -p berth-netd --bin berth-netd --example publish
BIN=$CARGO_TARGET_DIR/release
TMP=$(mktemp -d /tmp/berth-bench-port.XXXXXX)
NS=bench-port-$$
PID=
cleanup() {
    for p in "$TMP"/*.pid; do [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null; done
    [ -S "$TMP/run/netd.sock" ] && "$BIN"/examples/publish "$TMP/run/netd.sock" 1 down 2>/dev/null || true
    [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null || true
    for f in "$TMP"/run/netns/*; do [ -e "$f" ] && umount -l "$f" 2>/dev/null; done
    ip netns delete "$NS" 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT INT TERM
ip netns add "$NS"
ip netns exec "$NS" ip link set lo up
nsenter --net=/run/netns/"$NS" "$BIN"/berth-netd --root "$TMP/root" --run "$TMP/run" \
    --pool 10.234.0.0/16 --nft-table benchport --remove-rules-on-exit 2>"$TMP/netd.log" &
PID=$!
i=0; while [ ! -S "$TMP/run/netd.sock" ]; do i=$((i+1)); [ $i -gt 200 ] && { cat "$TMP/netd.log"; exit 1; }; sleep 0.05; done
CNS=$("$BIN"/examples/publish "$TMP/run/netd.sock" 1 up 8080 80)

# One nginx config, two instances: in the container on 80, in netd's netns on 8081.
mkdir -p "$TMP/www"
echo hello > "$TMP/www/index.html"
for side in container:80 host:8081; do
    name=${side%%:*}; port=${side##*:}
    cat >"$TMP/$name.conf" <<CONF
worker_processes 1;
pid $TMP/$name.pid;
error_log $TMP/$name.err;
events { worker_connections 1024; }
http { access_log off; server { listen $port; root $TMP/www; } }
CONF
done
nsenter --net="$CNS" nginx -c "$TMP/container.conf"
nsenter --net=/run/netns/"$NS" nginx -c "$TMP/host.conf"
sleep 0.3

rps() { nsenter --net=/run/netns/"$NS" wrk -t1 -c32 -d"${SECS}s" "$1" | awk '/Requests\/sec/ {print $2}'; }
host=$(rps http://127.0.0.1:8081/)
published=$(rps http://127.0.0.1:8080/)
echo "nginx, 1 worker, wrk -t1 -c32 ${SECS}s, from the netns netd serves (its 127.0.0.1):"
echo "  same netns (no forwarding): $host req/s"
echo "  published port 8080 -> 80:  $published req/s"
echo "  ratio: $(echo "scale=2; 100 * $published / $host" | bc)%"
