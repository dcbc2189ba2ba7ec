#!/usr/bin/env bash
# Runs weft's whole test suite: unit tests of the pure stages, golden plan and validation
# files, packet tests through BPF_PROG_TEST_RUN, and real-kernel tests in network namespaces;
# then formatting, lints and a parse of flake.nix. Run as root: kernel tests skip (and say so)
# without root or bpffs, unless WEFT_REQUIRE_KERNEL=1 makes that a failure.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" = 0 ]; then
  scripts/setup.sh
fi

# The real-kernel tests run the weft binary itself. One of them upgrades weft under live
# traffic to a rebuilt BPF object: the same source compiled for BPF ISA v3 (32-bit subregisters
# and jumps, so different instructions throughout), kept beside weft as weft-rebuilt.
target="${CARGO_TARGET_DIR:-target}"
WEFT_BPF_CFLAGS="${WEFT_BPF_CFLAGS:-} -mcpu=v3" cargo build -p weft
cp "$target/debug/weft" "$target/debug/weft-rebuilt"
cargo build -p weft
cargo test --workspace
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
nix-instantiate --parse flake.nix >/dev/null
echo "all tests passed"
