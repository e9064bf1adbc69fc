#!/bin/bash
# `berth run` beside `docker run` and `podman run`, in one run, on the same busybox image:
#   run --rm busybox true                  (default network)
#   run --rm --network none busybox true
#   run -d busybox sleep 1d, then rm -f    (default network; each timed apart)
# Iterations are interleaved (iteration n runs every engine and case once before n+1), so
# machine noise hits all alike. Prints median and p90 per engine and case, and the ratio
# of each median to docker's and podman's. Then the memory that BENCH_IDLE (default 100)
# idle `run -d busybox sleep 1d` containers cost on top of their own processes: the shims
# (RSS and PSS summed) and the growth of the daemons each engine keeps running.
#
#   tests/bench/cli-run.sh [ITERATIONS]    (default 20; needs root)
#   BENCH_IDLE=0                           skip the memory part
#   BENCH_ENGINES="berth docker"           a subset of berth docker podman
#   BERTH_BIN=DIR                          use the binaries in DIR instead of a release build
#
# Nothing of the host's real state is touched. Everything runs inside a network namespace
# made for the run: berth with private BERTH_ROOT/BERTH_RUN, cgroup parent, netd bridge,
# pool and nft table; a private dockerd (own data-root, exec-root, containerd namespace,
# cgroup parent, socket and a bridge of its own, never docker0); podman with its own root,
# runroot, CNI config and lease directory. All of it is removed on exit, also on failure.
# An anchor that cannot run is reported and left out.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
die() { echo "cli-run.sh: $*" >&2; exit 1; }
say() { echo "cli-run.sh: $*" >&2; }

# --- outer half: a private network namespace, then this script again inside it ---------
if [ -z "${BENCH_INNER:-}" ]; then
    [ "$(id -u)" = 0 ] || die "needs root"
    command -v nsenter >/dev/null || die "nsenter: missing"
    [ -n "${EPOCHREALTIME:-}" ] || die "needs bash 5 or later (EPOCHREALTIME)"
    iterations=${1:-20}
    [[ "$iterations" =~ ^[1-9][0-9]*$ ]] || die "ITERATIONS must be a positive number, got '$iterations'"
    if [ -z "${BERTH_BIN:-}" ]; then
        # Always through cargo, so the numbers are never those of a stale build.
        (cd "$repo" && cargo build --quiet --release -p berth-cli -p berth-imaged -p berth-netd \
            -p berth-shim -p berth-runtime >&2) || die "release build failed"
        BERTH_BIN=${CARGO_TARGET_DIR:-$repo/target}/release
    fi
    export BERTH_BIN
    ns=berth-bench-run-$$
    ip netns add "$ns"
    trap 'ip netns delete "$ns" 2>/dev/null || true' EXIT
    ip netns exec "$ns" ip link set lo up
    rc=0
    BENCH_INNER=$ns nsenter --net=/run/netns/"$ns" "$BASH" "$0" "$iterations" || rc=$?
    exit $rc
fi

# --- inner half: everything below runs in the private namespace -------------------------
iterations=$1
idle=${BENCH_IDLE:-100}
[[ "$idle" =~ ^[0-9]+$ ]] || die "BENCH_IDLE must be a number, got '$idle'"
engines=(${BENCH_ENGINES:-berth docker podman})
fixtures=$("$repo/tests/fixtures/build.sh")
work=$(mktemp -d /tmp/berth-bench-run.XXXXXX)
chmod 0755 "$work"
tag=bbr$$ # short: it names a bridge (15 bytes at most)

# berth: private roots, cgroup parent, and a netd with a private bridge, pool and table.
export BERTH_ROOT=$work/berth/root BERTH_RUN=$work/berth/run
export BERTH_CGROUP_PARENT=$tag-berth
export BERTH_NETD_ARGS="--pool 10.234.0.0/16 --default-bridge ${tag}b --nft-table $tag"
berth=$BERTH_BIN/berth
# docker: the client talks to our dockerd only.
export DOCKER_HOST=unix://$work/docker/sock
# podman: own storage, state, CNI config and lease directory, cgroup parent; runc (crun
# refuses the hybrid cgroup layout here).
podman_global=(--root "$work/podman/root" --runroot "$work/podman/run" --tmpdir "$work/podman/tmp"
    --network-config-dir "$work/podman/cni" --cgroup-manager cgroupfs --events-backend none --runtime runc)
podman_run=(--cgroup-parent "/$tag-podman" --ulimit nofile=1024:1024 --ulimit nproc=1024:1024)
podman_() { podman "${podman_global[@]}" "$@"; }

dockerd_pid=
# Processes of ours: every one whose command line names our temp dir (berth's daemons and
# shims, dockerd's containerd and shims, podman's conmon), ended by pid.
our_pids() {
    local p
    for p in /proc/[0-9]*; do
        [ "${p#/proc/}" = $$ ] && continue
        tr '\0' ' ' 2>/dev/null <"$p/cmdline" | grep -qF -- "$work" && echo "${p#/proc/}"
    done
    return 0
}
cleanup() {
    set +e
    trap - EXIT INT TERM
    say "cleaning up"
    if [ -x "$berth" ] && [ -d "$BERTH_ROOT/containers" ]; then
        ids=$(timeout -s KILL 30 "$berth" ps -aq --no-trunc 2>/dev/null)
        [ -n "$ids" ] && timeout -s KILL 120 "$berth" rm -f $ids >/dev/null 2>&1
    fi
    if [ -n "$dockerd_pid" ]; then
        ids=$(timeout -s KILL 30 docker ps -aq 2>/dev/null)
        [ -n "$ids" ] && timeout -s KILL 120 docker rm -f $ids >/dev/null 2>&1
        kill "$dockerd_pid" 2>/dev/null
        for _ in $(seq 100); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.1; done
    fi
    if [ -d "$work/podman/root" ]; then
        timeout -s KILL 120 podman "${podman_global[@]}" rm -af >/dev/null 2>&1
    fi
    for pid in $(our_pids); do kill -KILL "$pid" 2>/dev/null; done
    sleep 0.2
    grep -oF " $work/" /proc/self/mountinfo >/dev/null &&
        awk -v w="$work/" 'index($5, w) == 1 {print $5}' /proc/self/mountinfo | sort -r |
        while read -r m; do umount -l "$m" 2>/dev/null; done
    rm -rf "/run/containerd/runc/$tag" "/run/containerd/runc/$tag-p"
    for d in /sys/fs/cgroup/*/"$tag"-* /sys/fs/cgroup/"$tag"-*; do
        [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null
    done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now_us() { local t=$EPOCHREALTIME; echo "${t/[.,]/}"; }

# --- engines up, image loaded, each shown to run a container ----------------------------
ok=()
start_berth() {
    "$berth" load -i "$fixtures/busybox.tar" >/dev/null
}
start_docker() {
    command -v dockerd >/dev/null || { echo "dockerd not installed"; return 1; }
    mkdir -p "$work/docker"
    # A bridge of our own (dockerd only uses it), in this namespace: docker0 is never touched.
    ip link add "${tag}d" type bridge && ip addr add 10.235.0.1/24 dev "${tag}d" && ip link set "${tag}d" up
    dockerd --data-root "$work/docker/root" --exec-root "$work/docker/exec" \
        --pidfile "$work/docker/pid" -H "$DOCKER_HOST" --bridge "${tag}d" \
        --containerd-namespace "$tag" --containerd-plugins-namespace "$tag-p" \
        --cgroup-parent "/$tag-docker" --userland-proxy=false --log-level warn \
        >"$work/docker/log" 2>&1 &
    dockerd_pid=$!
    for _ in $(seq 300); do
        timeout 5 docker info >/dev/null 2>&1 && break
        kill -0 "$dockerd_pid" 2>/dev/null || { tail -n 3 "$work/docker/log"; return 1; }
        sleep 0.1
    done
    timeout 60 docker load -i "$fixtures/busybox.tar" >/dev/null
}
start_podman() {
    command -v podman >/dev/null || { echo "podman not installed"; return 1; }
    mkdir -p "$work/podman/cni" "$work/podman/leases"
    # The host's podman network, its leases kept in our temp dir.
    python3 - "$work/podman/cni/podman.conflist" "$work/podman/leases" <<'PY'
import json, sys
path, leases = sys.argv[1], sys.argv[2]
conf = json.load(open("/etc/cni/net.d/87-podman-bridge.conflist"))
for p in conf["plugins"]:
    if "ipam" in p:
        p["ipam"]["dataDir"] = leases
json.dump(conf, open(path, "w"), indent=2)
PY
    timeout 60 podman "${podman_global[@]}" load -i "$fixtures/busybox.tar" >/dev/null
}
# The command each engine runs a container with.
run_cmd() { # engine -> words before the run flags
    case $1 in
    berth) echo "$berth run" ;;
    docker) echo "docker run" ;;
    podman) echo "podman ${podman_global[*]} run ${podman_run[*]}" ;;
    esac
}
rm_cmd() {
    case $1 in
    berth) echo "$berth rm -f" ;;
    docker) echo "docker rm -f" ;;
    podman) echo "podman ${podman_global[*]} rm -f -t 0" ;; # docker rm -f kills at once
    esac
}
for e in "${engines[@]}"; do
    if ! why=$(start_"$e" 2>&1); then
        say "$e could not start; left out of the results: ${why:-(no message)}"
        continue
    fi
    # A fast no-op would win: each must show the container's output, on both networks.
    shown=1
    for net in "" "--network none"; do
        out=$(timeout -s KILL 60 $(run_cmd "$e") --rm $net busybox echo container-ran 2>&1 </dev/null) || true
        if [ "$out" != container-ran ]; then
            say "$e did not run a container${net:+ with $net}; left out of the results:"
            printf '%s\n' "${out:-(no output)}" | head -n 8 | sed 's/^/    /' >&2
            shown=
            break
        fi
    done
    [ -n "$shown" ] && ok+=("$e")
done
[ ${#ok[@]} -gt 0 ] || die "no engine ran a container"

# --- timing ------------------------------------------------------------------------------
cases=(rm-default rm-none detached rm-f)
# One timed sample of case $2 for engine $1; appends microseconds to $work/t-$1-$2.
sample() {
    local e=$1 c=$2 start end id
    case $c in
    rm-default | rm-none)
        local net=
        [ "$c" = rm-none ] && net="--network none"
        start=$(now_us)
        timeout -s KILL 60 $(run_cmd "$e") --rm $net busybox true </dev/null >/dev/null 2>"$work/err" ||
            { say "$e run --rm $net failed: $(head -c 300 "$work/err")"; return 0; }
        end=$(now_us)
        echo $((end - start)) >>"$work/t-$e-$c"
        ;;
    detached)
        start=$(now_us)
        id=$(timeout -s KILL 60 $(run_cmd "$e") -d busybox sleep 1d </dev/null 2>"$work/err") ||
            { say "$e run -d failed: $(head -c 300 "$work/err")"; return 0; }
        end=$(now_us)
        echo $((end - start)) >>"$work/t-$e-detached"
        start=$(now_us)
        timeout -s KILL 60 $(rm_cmd "$e") "$id" </dev/null >/dev/null 2>"$work/err" ||
            { say "$e rm -f failed: $(head -c 300 "$work/err")"; return 0; }
        end=$(now_us)
        echo $((end - start)) >>"$work/t-$e-rm-f"
        ;;
    esac
}
# Warm-up (page cache, first cgroups, daemons' first requests): not counted.
for e in "${ok[@]}"; do
    for c in rm-default rm-none detached; do sample "$e" "$c"; done
    rm -f "$work"/t-"$e"-*
done
for _ in $(seq "$iterations"); do
    for c in rm-default rm-none detached; do
        for e in "${ok[@]}"; do sample "$e" "$c"; done
    done
done

echo "berth run beside docker and podman: $iterations interleaved iterations, busybox, $(nproc) CPUs, $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$work" "${ok[*]}" <<'PY'
import os, sys
work, engines = sys.argv[1], sys.argv[2].split()
titles = {
    "rm-default": "run --rm busybox true",
    "rm-none": "run --rm --network none busybox true",
    "detached": "run -d busybox sleep 1d",
    "rm-f": "rm -f (of that one)",
}
def pct(v, p):
    k = max(0, min(len(v) - 1, int(round(p / 100 * len(v) + 0.5)) - 1))
    return v[k]
def samples(e, c):
    path = os.path.join(work, f"t-{e}-{c}")
    if not os.path.exists(path):
        return []
    return sorted(int(l) / 1000 for l in open(path) if l.strip())
print(f"{'case':<38} {'engine':<7} {'runs':>5} {'median ms':>10} {'p90 ms':>8} {'vs docker':>10} {'vs podman':>10}")
for c, title in titles.items():
    med = {}
    for e in engines:
        v = samples(e, c)
        if v:
            med[e] = (len(v), pct(v, 50), pct(v, 90))
    for e, (n, m, p90) in med.items():
        vs = lambda a: f"{m / med[a][1]:.2f}x" if a in med else "-"
        print(f"{title:<38} {e:<7} {n:>5} {m:>10.1f} {p90:>8.1f} {vs('docker'):>10} {vs('podman'):>10}")
        title = ""
PY

# --- memory of idle containers ---------------------------------------------------------
[ "$idle" -gt 0 ] || exit 0
kib() { awk -v k="$2" '$1 == k":" {print $2; exit}' "/proc/$1/$3" 2>/dev/null || echo 0; }
rss() { local s=0 p; for p in "$@"; do s=$((s + $(kib "$p" VmRSS status))); done; echo $s; }
pss() { local s=0 p; for p in "$@"; do s=$((s + $(kib "$p" Pss smaps_rollup))); done; echo $s; }
# Our processes whose executable is named $1 (by argv[0]: comm is cut to 15 bytes, and
# both shims are "containerd-shim" there).
pids_named() {
    local p a
    for p in $(our_pids); do
        a=$(tr '\0' '\n' 2>/dev/null <"/proc/$p/cmdline" | head -n 1)
        [ "${a##*/}" = "$1" ] && echo "$p"
    done
    return 0
}
mem_rows=()
deadline=$(( $(date +%s) + ${BENCH_IDLE_TIMEOUT:-600} ))
for e in "${ok[@]}"; do
    case $e in
    berth) shim=containerd-shim-berth-v2 daemons="berth-imaged berth-netd" ;;
    docker) shim=containerd-shim-runc-v2 daemons="dockerd containerd" ;;
    podman) shim=conmon daemons="" ;;
    esac
    dpids=$(for d in $daemons; do pids_named "$d"; done)
    d0_rss=$(rss $dpids) d0_pss=$(pss $dpids)
    ids=()
    for i in $(seq "$idle"); do
        if [ "$(date +%s)" -gt "$deadline" ]; then
            say "$e: time is up after $((i - 1)) containers"
            break
        fi
        id=$(timeout -s KILL 60 $(run_cmd "$e") -d busybox sleep 1d </dev/null 2>"$work/err") ||
            { say "$e run -d failed: $(head -c 300 "$work/err")"; break; }
        ids+=("$id")
    done
    # Let the shims go idle (berth's trims its code pages after 2 s of quiet).
    sleep 5
    spids=$(pids_named "$shim")
    nshim=$(echo $spids | wc -w)
    s_rss=$(rss $spids) s_pss=$(pss $spids)
    d1_rss=$(rss $dpids) d1_pss=$(pss $dpids)
    mem_rows+=("$e ${#ids[@]} $shim $nshim $s_rss $s_pss $((d1_rss - d0_rss)) $((d1_pss - d0_pss)) $d1_rss")
    [ ${#ids[@]} -gt 0 ] && timeout -s KILL 300 $(rm_cmd "$e") "${ids[@]}" >/dev/null 2>&1 ||
        say "$e: rm -f of the idle containers failed"
done
echo
echo "memory of $idle idle 'run -d busybox sleep 1d' containers, beyond the containers' own processes (KiB summed, MiB shown)"
printf '%s\n' "${mem_rows[@]}" >"$work/mem"
python3 - "$work/mem" <<'PY'
import sys
m = lambda k: f"{int(k) / 1024:.1f}"
print(f"{'engine':<7} {'ctrs':>5} {'process per container':<24} {'n':>4} {'RSS MiB':>8} {'PSS MiB':>8} {'daemons +RSS':>13} {'+PSS':>7} {'total RSS':>10} {'MiB/ctr':>8}")
for line in open(sys.argv[1]):
    e, n, shim, ns, srss, spss, drss, dpss, dtot = line.split()
    tot = int(srss) + max(0, int(drss))
    per = tot / max(1, int(n)) / 1024
    print(f"{e:<7} {n:>5} {shim:<24} {ns:>4} {m(srss):>8} {m(spss):>8} {m(drss):>13} {m(dpss):>7} {m(tot):>10} {per:>8.2f}")
PY
