#!/usr/bin/env bash
# Installs what weft needs to build, run and test on Debian (run as root). Installs only what is
# missing, so it is cheap to run again. Also mounts the BPF filesystem if it is not mounted.
set -euo pipefail

packages=(
  clang-16          # compiles bpf-src/ (build.rs looks for clang-16, then clang; or set WEFT_CLANG)
  libelf-dev        # libbpf (vendored by libbpf-sys) links libelf ...
  zlib1g-dev        # ... and zlib
  pkg-config make gcc
  iproute2          # ip, for the demo and the real-kernel tests
  util-linux        # nsenter: runs weft inside a network namespace without hiding /sys/fs/bpf
  bpftool           # inspecting what weft attached (tests use it too)
  iputils-ping      # ICMP probes in tests
  socat             # the quickstart's clients and servers
  iperf3            # the traffic benchmark's throughput (scripts/bench.sh) ...
  iptables nftables # ... and the configurations the traffic and services
                    # benchmarks compare weft with (kube-proxy-style rulesets)
  nix-bin           # nix-instantiate, to check that flake.nix parses
)

missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is missing: install Rust (https://rustup.rs), then run this again" >&2
  exit 1
fi

if ! mount | grep -q ' /sys/fs/bpf type bpf '; then
  mount -t bpf bpf /sys/fs/bpf
fi
