#!/usr/bin/env bash
# Installs what a fresh Debian machine with only the Rust toolchain lacks, and nothing else:
# apt-get runs only when a package is missing.
#   protobuf-compiler    protoc for etcd-client's build script (our own protos use protox)
#   etcd-server          etcd for the leadership and run-store tests
#   freetds-bin          tsql, a second TDS client that cross-checks sqlsim
#   python3-tds          pytds, a third TDS client that cross-checks sqlsim
#   gcc-mingw-w64-x86-64 compiles aws-lc for the agent's Windows build check
#   util-linux, mount    unshare and mount for the scenarios whose share is a small tmpfs
#                        (tests/src/scenario/volume.rs; both are on every Debian, listed so a
#                        trimmed image says what it lacks)
set -euo pipefail
packages=(protobuf-compiler etcd-server freetds-bin python3-tds gcc-mingw-w64-x86-64 util-linux mount)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
