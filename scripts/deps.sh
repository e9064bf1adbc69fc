#!/bin/bash
# Installs what building and testing Berth needs on Debian 12 (run as root):
# the system packages below (the one list, used by demo.sh, test.sh and CI)
# and a Rust toolchain from rustup when no recent enough cargo is present.
# Quick when everything is already there; never asks questions.
set -euo pipefail

packages=(
    # anchors the tests and benchmarks compare against or plug into
    runc crun containerd docker.io podman
    # images: fixtures, registry, layout tools
    skopeo umoci docker-registry busybox-static debootstrap
    # networking, processes, users
    iproute2 iputils-ping wget nftables libnftables-dev iptables uidmap psmisc procps util-linux
    # build and test tooling
    build-essential pkg-config python3 tini curl ca-certificates git jq tmux time hyperfine golang-go
)

die() { echo "deps.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (installs packages with apt-get)"
export DEBIAN_FRONTEND=noninteractive

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "deps.sh: installing ${missing[*]}" >&2
    apt-get update -q </dev/null
    apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null
fi

# Debian 12's rustc (1.63) is older than the workspace's rust-version.
need_rust=1.85
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
have=$(rustc --version 2>/dev/null | awk '{print $2}' || true)
if [ -z "$have" ] || [ "$(printf '%s\n%s\n' "$need_rust" "$have" | sort -V | head -n1)" != "$need_rust" ]; then
    echo "deps.sh: installing Rust stable with rustup (found: ${have:-none})" >&2
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs |
        sh -s -- -y --profile minimal --default-toolchain stable -c clippy,rustfmt </dev/null
    . "$HOME/.cargo/env"
fi
for tool in cargo-clippy rustfmt; do
    command -v "$tool" >/dev/null || rustup component add "${tool#cargo-}" </dev/null
done
