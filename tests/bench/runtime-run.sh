#!/bin/bash
# Time `RUNTIME --root TMP run --bundle B ID` of the busybox bundle running
# `true` (create, start, wait, delete in one call) for berth-runtime and each
# anchor runtime found (runc, crun, youki). Iterations are interleaved so that
# machine noise hits every runtime alike; prints median and p90 per runtime,
# the ratio of each median to runc's, and the peak RSS of the runtime process
# tree (from separate untimed runs under GNU time). A runtime that fails is
# reported and left out; the others go on.
#
#   tests/bench/runtime-run.sh [ITERATIONS]      (default 30; needs root)
#   BERTH_RUNTIME=/path/to/berth-runtime         use this build instead of
#                                                cargo build --release
#   BENCH_GAP_MS=250                             idle time before each timed
#                                                run (default 0, back to back)
#   BENCH_USERNS=1                               run the container in a new user
#                                                namespace (root = host uid 100000)
#
# Why a gap: moving a process into a cgroup through cgroup.procs waits for an
# RCU grace period (7-15 ms here) unless another such move happened a moment
# before. Back to back, each run rides on the previous run's grace period;
# a container started on its own, as users start them, pays it in full.
set -euo pipefail

iterations=${1:-30}
gap_ms=${BENCH_GAP_MS:-0}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)

die() { echo "runtime-run.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root"
[[ "$iterations" =~ ^[1-9][0-9]*$ ]] || die "ITERATIONS must be a positive number, got '$iterations'"
[[ "$gap_ms" =~ ^[0-9]+$ ]] || die "BENCH_GAP_MS must be a number of milliseconds, got '$gap_ms'"
gap_ms=$((10#$gap_ms))
gap_s=$(printf '%d.%03d' $((gap_ms / 1000)) $((gap_ms % 1000)))
[ -x /usr/bin/time ] || die "/usr/bin/time: missing (apt-get install time)"

# --- runtimes under test ------------------------------------------------------
berth=${BERTH_RUNTIME:-${CARGO_TARGET_DIR:-$repo/target}/release/berth-runtime}
if [ -z "${BERTH_RUNTIME:-}" ]; then
    # Always through cargo, so the numbers are never those of a stale build.
    (cd "$repo" && cargo build --quiet --release -p berth-runtime >&2) ||
        echo "runtime-run.sh: berth-runtime release build failed; going on without it" >&2
fi
names=()
paths=()
[ -x "$berth" ] && names+=(berth-runtime) && paths+=("$berth")
for anchor in runc crun youki; do
    if p=$(command -v "$anchor"); then
        names+=("$anchor")
        paths+=("$p")
    fi
done
[ ${#names[@]} -gt 0 ] || die "no runtime found"

# --- bundle and state ---------------------------------------------------------
fixtures=$("$repo/tests/fixtures/build.sh")
work=$(mktemp -d /tmp/berth-bench.XXXXXX)
prefix=bench$$
cleanup() {
    for i in "${!names[@]}"; do
        for id in $("${paths[$i]}" --root "$work/state-${names[$i]}" list -q 2>/dev/null); do
            "${paths[$i]}" --root "$work/state-${names[$i]}" delete -f "$id" >/dev/null 2>&1 || true
        done
    done
    rm -rf "$work"
}
trap cleanup EXIT
set_args() {
    python3 - "$1/config.json" "${@:2}" <<'PY'
import json, sys
path = sys.argv[1]
spec = json.load(open(path))
spec["process"]["args"] = sys.argv[2:]
json.dump(spec, open(path, "w"), indent="\t")
PY
}
# A user namespace mapping container root to host uid 100000, the rootfs
# owned by it (as podman's and Docker's userns-remap set-ups do).
add_userns() {
    chown -R 100000:100000 "$1/rootfs"
    python3 - "$1/config.json" <<'PY'
import json, sys
path = sys.argv[1]
spec = json.load(open(path))
spec["linux"]["namespaces"].append({"type": "user"})
m = [{"containerID": 0, "hostID": 100000, "size": 65536}]
spec["linux"]["uidMappings"] = m
spec["linux"]["gidMappings"] = m
json.dump(spec, open(path, "w"), indent="\t")
PY
}
cp -a "$fixtures/busybox" "$work/bundle"
set_args "$work/bundle" true
# A runtime that exits 0 without running the container would win every
# race, so each must first show the container's output.
cp -a "$fixtures/busybox" "$work/check"
set_args "$work/check" sh -c "echo container-ran"
if [ "${BENCH_USERNS:-0}" = 1 ]; then
    # The mapped root must be able to reach the rootfs (mktemp made it 0700).
    chmod 0755 "$work"
    add_userns "$work/bundle"
    add_userns "$work/check"
fi

# The clock is bash's own ($EPOCHREALTIME): forking `date` and GNU time
# around each run added 3 ms or more to every sample (more under load), the
# same for every runtime, which pulled all ratios towards 1.
now_us() { local t=$EPOCHREALTIME; echo "${t/[.,]/}"; }

# One run of runtime $1 (index) under name suffix $2, through the optional
# wrapper in $3 (GNU time for the RSS runs); stdout/stderr kept for errors.
failed=()
invoke() {
    local i=$1 id=$prefix-${names[$1]}-$2
    shift 2
    if ! "$@" "${paths[$i]}" --root "$work/state-${names[$i]}" \
        run --bundle "$work/bundle" "$id" </dev/null >"$work/out" 2>"$work/err"; then
        echo "runtime-run.sh: ${names[$i]} failed; left out of the results:" >&2
        sed 's/^/    /' "$work/err" "$work/out" | grep -v '^    Command exited with' | head -n 8 >&2
        "${paths[$i]}" --root "$work/state-${names[$i]}" delete -f "$id" >/dev/null 2>&1 || true
        rm -f "$work/samples-${names[$i]}" "$work/rss-${names[$i]}"
        failed[i]=1
        return 1
    fi
}

# A timed run: appends the wall time in microseconds to the sample file.
time_once() {
    local start end
    [ "$gap_ms" = 0 ] || sleep "$gap_s"
    start=$(now_us)
    invoke "$1" "$2" || return 0
    end=$(now_us)
    echo $((end - start)) >>"$work/samples-${names[$1]}"
}

# An untimed run under GNU time: appends the peak RSS (KiB) of the runtime
# process tree (the largest process it waited for) to the rss file.
rss_once() {
    invoke "$1" "rss$2" /usr/bin/time -f %M -o "$work/rss" || return 0
    tail -n 1 "$work/rss" >>"$work/rss-${names[$1]}"
}

[ -n "${EPOCHREALTIME:-}" ] || die "needs bash 5 or later (EPOCHREALTIME)"
for i in "${!names[@]}"; do
    name=${names[$i]}
    if ! out=$("${paths[$i]}" --root "$work/state-$name" run --bundle "$work/check" "$prefix-$name-check" </dev/null 2>&1) ||
        [ "$out" != container-ran ]; then
        echo "runtime-run.sh: $name did not run the container; left out of the results:" >&2
        printf '%s\n' "${out:-(no output)}" | head -n 8 | sed 's/^/    /' >&2
        "${paths[$i]}" --root "$work/state-$name" delete -f "$prefix-$name-check" >/dev/null 2>&1 || true
        failed[i]=1
    fi
done
# Warm-up: page cache, first cgroup creation; not counted.
for i in "${!names[@]}"; do
    [ -n "${failed[i]:-}" ] && continue
    time_once "$i" warm
    rm -f "$work/samples-${names[$i]}"
done
for n in $(seq "$iterations"); do
    for i in "${!names[@]}"; do
        [ -z "${failed[i]:-}" ] && time_once "$i" "$n"
    done
done
rss_runs=5
for n in $(seq "$rss_runs"); do
    for i in "${!names[@]}"; do
        [ -z "${failed[i]:-}" ] && rss_once "$i" "$n"
    done
done

# --- report -------------------------------------------------------------------
echo "busybox 'true' via RUNTIME run$([ "${BENCH_USERNS:-0}" = 1 ] && echo " in a user namespace"): $iterations interleaved timed iterations (+$rss_runs for RSS), ${gap_ms} ms idle before each, $(nproc) CPUs, $(uname -r)"
python3 - "$work" "${names[@]}" <<'PY'
import os, sys
work, names = sys.argv[1], sys.argv[2:]

def pct(sorted_vals, p):
    # nearest-rank percentile
    k = max(0, min(len(sorted_vals) - 1, int(round(p / 100 * len(sorted_vals) + 0.5)) - 1))
    return sorted_vals[k]

def numbers(kind, name):
    path = os.path.join(work, f"{kind}-{name}")
    if not os.path.exists(path):
        return []
    return [int(line) for line in open(path) if line.strip()]

rows = {}
for name in names:
    times = sorted(us / 1000 for us in numbers("samples", name))
    rss = numbers("rss", name)
    if not times or not rss:
        continue
    rows[name] = (len(times), pct(times, 50), pct(times, 90), max(rss) / 1024)

anchor = rows.get("runc")
print(f"{'runtime':<15} {'runs':>5} {'median ms':>10} {'p90 ms':>9} {'vs runc':>8} {'peak RSS MiB':>13}")
for name, (n, med, p90, rss) in rows.items():
    ratio = f"{med / anchor[1]:.2f}x" if anchor else "-"
    print(f"{name:<15} {n:>5} {med:>10.1f} {p90:>9.1f} {ratio:>8} {rss:>13.1f}")
if not rows:
    sys.exit("no runtime completed a run")
PY
