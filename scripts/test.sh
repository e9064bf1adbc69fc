#!/bin/bash
# Runs Berth's checks (as root, on Debian 12): installs what is needed,
# builds everything, runs every test, then the format and lint gates.
#   BERTH_E2E_FULL=1   also the Debian image tier (debootstrap, cached)
#   BERTH_SKIP_LINT=1  skip the cargo fmt and clippy gates
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/deps.sh
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

cargo build --workspace --all-targets
tests/fixtures/build.sh >/dev/null
# Every test must really run here: a skipped one (missing tool, not root) fails.
BERTH_REQUIRE_ALL=1 cargo test --workspace --no-fail-fast -- --test-threads=2
if [ "${BERTH_SKIP_LINT:-}" != 1 ]; then
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings
fi
echo "test.sh: all checks passed"
