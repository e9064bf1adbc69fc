#!/bin/bash
# `berth build` beside `docker build` (classic builder, DOCKER_BUILDKIT=0) and `podman build`
# in one run: a multi-stage Dockerfile on the busybox fixture (and on the Debian fixture when
# BERTH_E2E_FULL=1 and /var/cache/berth-fixtures/debian exists), built cold (--no-cache),
# rebuilt unchanged, and rebuilt after one copied file changed. Iterations are interleaved
# (each contender once per iteration); prints medians and ratios vs docker.
#
# Everything runs inside a network namespace of its own (berth-netd's bridge, dockerd's
# docker0 and its iptables rules live there), with private roots in a temp dir removed on
# exit. A contender that cannot run is reported and left out.
#
# Usage (root, from the repository root): tests/bench/build.sh [ITERATIONS]
# BERTH_BIN=DIR uses binaries already built there instead of `cargo build --release`.
set -u
N=${1:-3}
cd "$(dirname "$0")/../.."
REPO=$PWD
if [ -z "${BERTH_BIN:-}" ]; then
    export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
    cargo build -q --release -p berth-cli -p berth-imaged -p berth-netd -p berth-runtime -p berth-shim || exit 1
    BERTH_BIN=$CARGO_TARGET_DIR/release
fi
FIX=$(tests/fixtures/build.sh) || exit 1
TMP=$(mktemp -d /tmp/berth-bench-build.XXXXXX)
NS=bench-build-$$
export BERTH_CGROUP_PARENT=bench-build-$$
DOCKERD_PID=
cleanup() {
    [ -n "$DOCKERD_PID" ] && kill "$DOCKERD_PID" 2>/dev/null && wait "$DOCKERD_PID" 2>/dev/null
    for p in $(pgrep -f "$TMP/" 2>/dev/null); do kill "$p" 2>/dev/null; done
    sleep 0.3
    grep " $TMP/" /proc/self/mountinfo | awk '{print $5}' | sort -r | while read -r m; do umount -l "$m" 2>/dev/null; done
    ip netns delete "$NS" 2>/dev/null
    # The cgroup parent the RUN containers sat under (the runtime removes only their own).
    for d in /sys/fs/cgroup/*/"$BERTH_CGROUP_PARENT" /sys/fs/cgroup/*/*/"$BERTH_CGROUP_PARENT"; do
        [ -d "$d" ] && rmdir "$d" 2>/dev/null
    done
    rm -rf "$TMP"
}
trap cleanup EXIT INT TERM
ip netns add "$NS" && ip netns exec "$NS" ip link set lo up || exit 1
inns() { nsenter --net=/run/netns/"$NS" "$@"; }

export BERTH_ROOT=$TMP/berth/root BERTH_RUN=$TMP/berth/run
berth() { inns "$BERTH_BIN/berth" "$@"; }
DOCKER_HOST=unix://$TMP/docker.sock
dockercli() { DOCKER_BUILDKIT=0 DOCKER_HOST=$DOCKER_HOST docker "$@"; }
# crun refuses the hybrid cgroup layout of some hosts; runc runs on all of them.
podmancli() { inns podman --root "$TMP/podman/root" --runroot "$TMP/podman/run" --cgroup-manager cgroupfs --storage-driver overlay --runtime runc "$@"; }

# The contenders that can run here.
CONTENDERS="berth"
berth load -i "$FIX/busybox.tar" >/dev/null || { echo "build.sh: berth cannot load the fixture" >&2; exit 1; }
if command -v dockerd >/dev/null && command -v docker >/dev/null; then
    inns dockerd --data-root "$TMP/docker/data" --exec-root "$TMP/docker/exec" \
        --pidfile "$TMP/docker/pid" -H "$DOCKER_HOST" \
        >"$TMP/dockerd.log" 2>&1 &
    DOCKERD_PID=$!
    for _ in $(seq 100); do dockercli info >/dev/null 2>&1 && break; sleep 0.2; done
    if dockercli info >/dev/null 2>&1 && dockercli load -i "$FIX/busybox.tar" >/dev/null 2>&1; then
        CONTENDERS="$CONTENDERS docker"
    else
        echo "build.sh: dockerd did not start here; docker left out ($(tail -1 "$TMP/dockerd.log"))" >&2
    fi
else
    echo "build.sh: docker not installed; left out" >&2
fi
if command -v podman >/dev/null; then
    if podmancli load -i "$FIX/busybox.tar" >/dev/null 2>&1; then
        CONTENDERS="$CONTENDERS podman"
    else
        echo "build.sh: podman cannot load the fixture; left out" >&2
    fi
else
    echo "build.sh: podman not installed; left out" >&2
fi

DEBIAN=
if [ "${BERTH_E2E_FULL:-}" = 1 ] && [ -f /var/cache/berth-fixtures/debian/debian.tar ]; then
    DEBIAN=/var/cache/berth-fixtures/debian/debian.tar
    berth load -i "$DEBIAN" >/dev/null
    case " $CONTENDERS " in *" docker "*) dockercli load -i "$DEBIAN" >/dev/null 2>&1 ;; esac
    case " $CONTENDERS " in *" podman "*) podmancli load -i "$DEBIAN" >/dev/null 2>&1 ;; esac
fi

# The context: two builder stages that do not depend on each other, a final stage that
# takes only their results.
make_context() { # DIR BASE
    mkdir -p "$1/src" "$1/assets"
    for i in $(seq 1 40); do
        printf 'source file %s\nalpha beta gamma\n' "$i" >"$1/src/f$i.txt"
        head -c 4096 /dev/urandom | base64 >"$1/assets/a$i.dat"
    done
    echo "config" >"$1/config.txt"
    cat >"$1/Dockerfile" <<EOF
FROM $2 AS build
WORKDIR /src
COPY src/ ./
RUN mkdir -p /out && for f in *.txt; do sed 's/a/A/g' "\$f" > /out/"\$f"; done && cat /out/*.txt > /out/all
FROM $2 AS assets
COPY assets/ /assets/
RUN ls -lR /assets > /assets.list
FROM $2
WORKDIR /app
COPY --from=build /out/all ./
COPY --from=assets /assets.list ./
COPY config.txt ./
ENV MODE=production
EXPOSE 8080
CMD ["cat", "/app/all"]
EOF
}

build_with() { # TOOL CTX TAG [FLAGS...]
    local tool=$1 ctx=$2 tag=$3; shift 3
    case $tool in
        berth) berth build -q "$@" -t "$tag" "$ctx" ;;
        docker) dockercli build -q "$@" -t "$tag" "$ctx" ;;
        podman) podmancli build -q --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 "$@" -t "$tag" "$ctx" ;;
    esac
}
check_with() { # TOOL TAG: the image must print the stage's result
    case $1 in
        berth) berth run --rm --network none "$2" ;;
        docker) dockercli run --rm --network none "$2" ;;
        podman) podmancli run --rm --network none --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 "$2" ;;
    esac 2>/dev/null | grep -q "AlphA betA gAmmA"
}
now_ms() { local t=${EPOCHREALTIME/./}; echo $((t / 1000)); }
median() { sort -n | awk '{a[NR]=$1} END {if (NR==0) print "-"; else print a[int((NR+1)/2)]}'; }

run_suite() { # NAME BASE
    local name=$1 base=$2 ok=""
    for tool in $CONTENDERS; do
        make_context "$TMP/ctx-$name-$tool" "$base"
        if build_with "$tool" "$TMP/ctx-$name-$tool" "bench-$name" >"$TMP/out" 2>&1 && check_with "$tool" "bench-$name"; then
            ok="$ok $tool"
        else
            echo "build.sh: $tool could not build the $name Dockerfile; left out:" >&2
            tail -3 "$TMP/out" | sed 's/^/    /' >&2
        fi
    done
    for i in $(seq 1 "$N"); do
        for tool in $ok; do
            local ctx=$TMP/ctx-$name-$tool t0
            t0=$(now_ms); build_with "$tool" "$ctx" "bench-$name" --no-cache >/dev/null 2>&1 || echo "$tool cold failed" >&2
            echo $(($(now_ms) - t0)) >>"$TMP/$name-$tool-cold"
            t0=$(now_ms); build_with "$tool" "$ctx" "bench-$name" >/dev/null 2>&1 || echo "$tool rebuild failed" >&2
            echo $(($(now_ms) - t0)) >>"$TMP/$name-$tool-unchanged"
            echo "change $i" >>"$ctx/src/f1.txt"
            t0=$(now_ms); build_with "$tool" "$ctx" "bench-$name" >/dev/null 2>&1 || echo "$tool one-change failed" >&2
            echo $(($(now_ms) - t0)) >>"$TMP/$name-$tool-onechange"
        done
    done
    echo
    echo "$name: multi-stage Dockerfile (3 stages, 12 steps, 81 context files), $N interleaved iterations, $(nproc) CPUs, $(uname -r)"
    printf '%-8s %14s %14s %16s\n' tool "cold ms" "unchanged ms" "one-change ms"
    declare -A med
    for tool in $ok; do
        for k in cold unchanged onechange; do
            med[$tool-$k]=$(median <"$TMP/$name-$tool-$k")
        done
        printf '%-8s %14s %14s %16s\n' "$tool" "${med[$tool-cold]}" "${med[$tool-unchanged]}" "${med[$tool-onechange]}"
    done
    for anchor in docker podman; do
        case " $ok " in *" $anchor "*) ;; *) continue ;; esac
        case " $ok " in *" berth "*) ;; *) continue ;; esac
        awk -v a="$anchor" -v c="${med[berth-cold]}" -v ca="${med[$anchor-cold]}" \
            -v u="${med[berth-unchanged]}" -v ua="${med[$anchor-unchanged]}" \
            -v o="${med[berth-onechange]}" -v oa="${med[$anchor-onechange]}" \
            'BEGIN { printf "berth vs %-6s cold %.2fx, unchanged %.3fx, one-change %.2fx\n", a, c/ca, u/ua, o/oa }'
    done
}

echo "contenders: $CONTENDERS"
run_suite busybox busybox
if [ -n "$DEBIAN" ]; then
    run_suite debian berth/debian-nginx:latest
fi
