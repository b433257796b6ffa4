#!/usr/bin/env bash
# The project's test command (README's second command; .ci/run runs it): installs what is
# missing, then formatting, lints, the build, every test of the workspace, the lab drill with two
# pools, and the agent's Windows build check when the Windows target can be added.
set -euo pipefail
cd "$(dirname "$0")/../.."
deploy/dev/setup.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo build (all binaries: the integration tests run them as processes)"
cargo build --workspace --all-targets --locked

echo "== cargo test"
cargo test --workspace --locked

echo "== lab drill (failback-lab --pools 2): fails on any message lost before FB-1, or beyond failover's reported window"
"${CARGO_TARGET_DIR:-target}/debug/failback-lab" --pools 2

echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== Windows build check of the agent"
if rustup target list --installed 2>/dev/null | grep -qx x86_64-pc-windows-gnu \
   || rustup target add x86_64-pc-windows-gnu >/dev/null 2>&1; then
  cargo check -p failback-agent --target x86_64-pc-windows-gnu --locked
else
  echo "Windows check skipped: the x86_64-pc-windows-gnu target could not be added"
fi
echo "== all checks passed"
