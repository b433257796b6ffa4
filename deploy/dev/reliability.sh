#!/usr/bin/env bash
# Runs the reliability scenario suite (tests/scenarios/*.toml, each with every DESIGN §9 checker,
# and each listed test-only break once more to show its checker catches it), then writes
# docs/RELIABILITY.md from those outcomes. Issue #12. The same suite runs in the README's test
# command; this one also regenerates the document.
set -euo pipefail
cd "$(dirname "$0")/../.."
deploy/dev/setup.sh
target="${CARGO_TARGET_DIR:-target}"
rm -rf "$target/scenarios"
cargo build --workspace --all-targets --locked
cargo test -p failback-tests --test scenarios --locked -- --test-threads 2
"$target/debug/failback-lab" reliability --results "$target/scenarios" --out docs/RELIABILITY.md
