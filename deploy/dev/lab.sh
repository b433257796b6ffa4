#!/usr/bin/env bash
# The project's main job (README's first command): installs what is missing, builds, and runs the
# lab on loopback. Arguments go to failback-lab (try --help).
set -euo pipefail
cd "$(dirname "$0")/../.."
deploy/dev/setup.sh
cargo build --workspace --bins --locked
# The binaries land where cargo puts them: $CARGO_TARGET_DIR when set (CI, worktrees).
exec "${CARGO_TARGET_DIR:-target}/debug/failback-lab" "$@"
