#!/usr/bin/env bash
# Runs weft's benchmarks on this machine and writes BENCHMARKS.md. Run as root: the benchmarks
# load BPF programs and make network namespaces (all named weftbench-*, removed afterwards, and
# swept at the next start if a run was killed). Arguments go to `weft-bench suite`:
#   --quick       fewer, shorter runs (to try it out)
#   --out FILE    write FILE instead of BENCHMARKS.md
#   --only A,B    run these subcommands only (packet, traffic, ...)
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" = 0 ]; then
  scripts/setup.sh
fi

target="${CARGO_TARGET_DIR:-target}"
# weft-bench traffic runs the weft binary beside it.
cargo build --release -p weft -p weft-bench
exec "$target/release/weft-bench" suite "$@"
