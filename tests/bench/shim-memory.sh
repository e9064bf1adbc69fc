#!/usr/bin/env bash
# Resident memory of idle shims: N containers running `sleep` under containerd-shim-berth-v2
# and N under containerd-shim-runc-v2, side by side in one private containerd.
#
#   tests/bench/shim-memory.sh          # N=100
#   N=10 tests/bench/shim-memory.sh     # quick run
#
# Needs root, containerd, ctr, runc. Builds the shim in release mode unless SHIM_BIN points
# at one. The runtime under both shims is runc (RUNTIME=... to change ours).
set -euo pipefail

N=${N:-100}
REPO=$(cd "$(dirname "$0")/../.." && pwd)
RUNTIME=${RUNTIME:-$(command -v runc)}
if [[ -z ${SHIM_BIN:-} ]]; then
    cargo build --quiet --release -p berth-shim --manifest-path "$REPO/Cargo.toml"
    SHIM_BIN="$REPO/target/release/containerd-shim-berth-v2"
fi
[[ -x $SHIM_BIN ]] || { echo "no shim binary at $SHIM_BIN" >&2; exit 1; }

TAG="bsm-$$"
WORK=$(mktemp -d "/tmp/$TAG.XXXX")
NS=$TAG
SOCK=$WORK/c.sock
CTRD_PID=
ctr_() { timeout -s KILL 60 ctr -a "$SOCK" -n "$NS" "$@"; }
# Both shims are started as `<shim> -namespace NS -id ID ...`; NS is unique to this run.
shim_pid() { pgrep -f "^[^ ]*containerd-shim-$1-v2 -namespace $NS -id $2( |\$)"; }
shim_pids() { pgrep -f "containerd-shim-(berth|runc)-v2 -namespace $NS "; }

cleanup() {
    set +e
    for pid in $(shim_pids); do kill -KILL "$pid" 2>/dev/null; done
    # Killed shims leave their sockets; ours name them in the bundle.
    for a in "$WORK"/state/io.containerd.runtime.v2.task/"$NS"/*/address; do
        [[ -f $a ]] && rm -f "$(sed 's|^unix://||' "$a" 2>/dev/null)"
    done
    [[ -n $CTRD_PID ]] && kill -KILL "$CTRD_PID" 2>/dev/null && wait "$CTRD_PID" 2>/dev/null
    for root in "/run/containerd/berth/$NS" "/run/containerd/runc/$NS"; do
        [[ -d $root ]] || continue
        for id in $(runc --root "$root" list -q 2>/dev/null); do
            runc --root "$root" delete --force "$id" >/dev/null 2>&1
        done
        rm -rf "$root"
    done
    # containerd puts containers in the cgroup /<namespace>/<id> of every hierarchy.
    for d in /sys/fs/cgroup/*/"$NS" /sys/fs/cgroup/"$NS"; do
        [[ -d $d ]] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null
    done
    grep -o " $WORK[^ ]*" /proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m"; done
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

# A busybox image in docker-archive format.
mkdir -p "$WORK/img/rootfs/"{bin,etc,proc,sys,dev,tmp} "$WORK/img/out"
cp /bin/busybox "$WORK/img/rootfs/bin/"
for a in $(/bin/busybox --list); do [[ $a == busybox ]] || ln -sf busybox "$WORK/img/rootfs/bin/$a"; done
echo 'root:x:0:0:root:/root:/bin/sh' >"$WORK/img/rootfs/etc/passwd"
echo 'root:x:0:' >"$WORK/img/rootfs/etc/group"
tar -C "$WORK/img/rootfs" -cf "$WORK/img/layer.tar" .
L=$(sha256sum "$WORK/img/layer.tar" | cut -d' ' -f1)
mkdir -p "$WORK/img/out/$L" && mv "$WORK/img/layer.tar" "$WORK/img/out/$L/layer.tar"
printf '{"architecture":"amd64","os":"linux","config":{"Cmd":["sh"],"Env":["PATH=/bin"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' "$L" >"$WORK/img/config.json"
C=$(sha256sum "$WORK/img/config.json" | cut -d' ' -f1)
mv "$WORK/img/config.json" "$WORK/img/out/$C.json"
printf '[{"Config":"%s.json","RepoTags":["docker.io/berth/busybox:bench"],"Layers":["%s/layer.tar"]}]' "$C" "$L" >"$WORK/img/out/manifest.json"
tar -C "$WORK/img/out" -cf "$WORK/busybox.tar" .

cat >"$WORK/config.toml" <<TOML
version = 2
root = "$WORK/root"
state = "$WORK/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"
TOML
PATH="$(dirname "$SHIM_BIN"):$PATH" BERTH_SHIM_RUNTIME=$RUNTIME \
    containerd --config "$WORK/config.toml" >"$WORK/containerd.log" 2>&1 &
CTRD_PID=$!
for _ in $(seq 100); do ctr_ version >/dev/null 2>&1 && break; sleep 0.1; done
ctr_ images import "$WORK/busybox.tar" >/dev/null

echo "starting $N idle containers under each shim..." >&2
for i in $(seq "$N"); do
    ctr_ run -d --runtime io.containerd.berth.v2 docker.io/berth/busybox:bench "berth-$i" sleep 1000000 >/dev/null
    ctr_ run -d --runtime io.containerd.runc.v2 docker.io/berth/busybox:bench "runc-$i" sleep 1000000 >/dev/null
done
# Let every shim go idle (ours trims its code pages after 2 s of quiet).
sleep 5

rss_of() { awk '/^VmRSS:/{print $2}' "/proc/$1/status"; }
pss_of() { awk '/^Pss:/{print $2}' "/proc/$1/smaps_rollup"; }
measure() { # prefix -> prints "sum_rss sum_pss count" and per-shim lines on stderr
    local prefix=$1 sum=0 psum=0 n=0 pid rss pss
    for i in $(seq "$N"); do
        pid=$(shim_pid "$prefix" "$prefix-$i")
        rss=$(rss_of "$pid"); pss=$(pss_of "$pid")
        printf '  %-10s shim pid %-7s RSS %6s KiB  PSS %6s KiB\n' "$prefix-$i" "$pid" "$rss" "$pss" >&2
        sum=$((sum + rss)); psum=$((psum + pss)); n=$((n + 1))
    done
    echo "$sum $psum $n"
}
echo "containerd-shim-berth-v2:" >&2
read -r B_SUM B_PSS B_N < <(measure berth)
echo "containerd-shim-runc-v2:" >&2
read -r R_SUM R_PSS R_N < <(measure runc)

awk -v bs="$B_SUM" -v bp="$B_PSS" -v bn="$B_N" -v rs="$R_SUM" -v rp="$R_PSS" -v rn="$R_N" 'BEGIN {
    b = bs / bn / 1024; r = rs / rn / 1024
    printf "\nidle shims: %d each\n", bn
    printf "%-26s %10s %10s %16s\n", "", "RSS/shim", "PSS/shim", "RSS x 100 shims"
    printf "%-26s %7.2f MiB %7.2f MiB %12.1f MiB\n", "containerd-shim-berth-v2", b, bp / bn / 1024, b * 100
    printf "%-26s %7.2f MiB %7.2f MiB %12.1f MiB\n", "containerd-shim-runc-v2", r, rp / rn / 1024, r * 100
    printf "ratio runc-v2 / berth: %.1fx (RSS)\n", r / b
}'
