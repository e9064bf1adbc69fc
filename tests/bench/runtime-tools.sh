#!/bin/bash
# Runs the OCI runtime-tools validation suite (validation/*/*.t, TAP programs) against
# berth-runtime and each anchor runtime found (runc, youki), one file at a time, in one
# run, and prints ok / not ok per file and in total, with the files where berth fails
# more than runc. The suite is not vendored: `fetch` opencontainers/runtime-tools, check
# out the parent of c2dadba (the last commit Debian's Go 1.19 builds) and run
# `make runtimetest validation-executables` there, then pass that directory.
#
#   tests/bench/runtime-tools.sh RUNTIME_TOOLS_DIR          (needs root)
#   BERTH_RUNTIME=/path/to/berth-runtime    use this build instead of cargo build --release
#   RT_TIMEOUT=120                          seconds allowed per test file
set -euo pipefail

dir=${1:?usage: runtime-tools.sh RUNTIME_TOOLS_DIR}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
per_file=${RT_TIMEOUT:-120}

die() { echo "runtime-tools.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root"
[ -x "$dir/runtimetest" ] || die "$dir/runtimetest missing: run 'make runtimetest validation-executables' there"

berth=${BERTH_RUNTIME:-${CARGO_TARGET_DIR:-$repo/target}/release/berth-runtime}
if [ -z "${BERTH_RUNTIME:-}" ]; then
    (cd "$repo" && cargo build --quiet --release -p berth-runtime >&2)
fi
names=(berth-runtime)
paths=("$berth")
for anchor in runc youki; do
    if p=$(command -v "$anchor"); then
        names+=("$anchor")
        paths+=("$p")
    fi
done

out=$(mktemp -d /tmp/berth-rtt.XXXXXX)
trap 'rm -rf "$out"' EXIT
cd "$dir"
mapfile -t files < <(ls validation/*/*.t)
for i in "${!names[@]}"; do
    for t in "${files[@]}"; do
        log="$out/${names[$i]}.$(basename "$t").tap"
        RUNTIME=${paths[$i]} timeout -s KILL "$per_file" "$t" >"$log" 2>&1 </dev/null || true
    done
done

count() { grep -c "^$1 " "$2" 2>/dev/null || true; }
printf '%-44s' "file"
for n in "${names[@]}"; do printf '%20s' "$n ok/not"; done
echo
declare -A ok_total nok_total
worse=()
for t in "${files[@]}"; do
    b=$(basename "$t")
    printf '%-44s' "$b"
    for n in "${names[@]}"; do
        ok=$(count ok "$out/$n.$b.tap")
        nok=$(count "not ok" "$out/$n.$b.tap")
        ok_total[$n]=$(( ${ok_total[$n]:-0} + ok ))
        nok_total[$n]=$(( ${nok_total[$n]:-0} + nok ))
        printf '%20s' "$ok/$nok"
    done
    echo
    if [ -f "$out/runc.$b.tap" ]; then
        [ "$(count "not ok" "$out/berth-runtime.$b.tap")" -gt "$(count "not ok" "$out/runc.$b.tap")" ] && worse+=("$b")
    fi
done
printf '%-44s' "TOTAL"
for n in "${names[@]}"; do printf '%20s' "${ok_total[$n]}/${nok_total[$n]}"; done
echo
if [ ${#worse[@]} -gt 0 ]; then
    echo "files where berth-runtime fails more than runc: ${worse[*]}"
else
    echo "no file where berth-runtime fails more than runc"
fi
