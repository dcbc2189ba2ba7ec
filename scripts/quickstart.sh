#!/usr/bin/env bash
# The quickstart, on a fresh Debian machine as root: installs what weft needs, builds it,
# makes a demo host with three workloads (each a network namespace joined to the host by a
# veth pair), applies examples/quickstart/ and shows which connections policy lets through.
#
# The demo host is itself a network namespace with no link to the real network, so nothing
# here touches this machine's own networking. KEEP=1 leaves it all in place to explore
# (`nsenter --net=/run/netns/weft-demo-host target/release/weft diff examples/quickstart --node demo-node`).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
cargo build --release -p weft
weft=$PWD/target/release/weft

host=weft-demo-host
outside=weft-demo-outside
bpffs=/sys/fs/bpf/weft-demo
workloads=(frontend:10.65.0.10 backend:10.65.0.20 db:10.65.0.30)

cleanup() {
  nsenter --net=/run/netns/$host "$weft" teardown --bpffs $bpffs >/dev/null 2>&1 || true
  for ns in $host $outside weft-demo-frontend weft-demo-backend weft-demo-db; do
    ip netns pids $ns 2>/dev/null | xargs -r kill 2>/dev/null || true
    ip netns del $ns 2>/dev/null || true
  done
}
cleanup
[ "${KEEP:-0}" = 1 ] || trap cleanup EXIT

# The host, with an uplink to an "outside" namespace as its default route (as a real host has
# one: proxy ARP answers for the workloads' gateway only when the host has a route to it).
ip netns add $host
ip netns add $outside
ip -n $host link set lo up
ip -n $host link add up0 type veth peer name up1 netns $outside
ip -n $host addr add 192.0.2.1/24 dev up0 && ip -n $host link set up0 up
ip -n $outside addr add 192.0.2.2/24 dev up1 && ip -n $outside link set up1 up
ip -n $host route add default via 192.0.2.2

for w in "${workloads[@]}"; do
  name=${w%%:*} ip=${w##*:} ns=weft-demo-${w%%:*}
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  ip -n $host link add "cali$name" type veth peer name eth0 netns "$ns"
  ip -n $host link set "cali$name" up
  ip -n "$ns" addr add "$ip/32" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" route add 169.254.1.1 dev eth0 scope link
  ip -n "$ns" route add default via 169.254.1.1 dev eth0
done

# Servers: the backend on 8080, the database on 5432.
ip netns exec weft-demo-backend socat TCP-LISTEN:8080,fork,reuseaddr SYSTEM:'echo backend says hello' &
ip netns exec weft-demo-db socat TCP-LISTEN:5432,fork,reuseaddr SYSTEM:'echo db says hello' &
sleep 0.3

run() { nsenter --net=/run/netns/$host "$weft" "$@" --node demo-node --bpffs $bpffs; }

echo "== weft validate examples/quickstart"
"$weft" validate examples/quickstart
echo
echo "== weft diff examples/quickstart (what apply would do)"
run diff examples/quickstart || true
echo
echo "== weft apply examples/quickstart"
run apply examples/quickstart
echo

probe() { # from-namespace to-ip port
  if out=$(ip netns exec "weft-demo-$1" socat -T1 - "TCP:$2:$3,connect-timeout=1" </dev/null 2>/dev/null) && [ -n "$out" ]; then
    printf '  %-9s -> %-14s ALLOWED (%s)\n' "$1" "$2:$3" "$out"
  else
    printf '  %-9s -> %-14s denied\n' "$1" "$2:$3"
  fi
}
echo "== connections"
probe frontend 10.65.0.20 8080
probe backend 10.65.0.30 5432
probe frontend 10.65.0.30 5432
echo
echo "== weft diff again: nothing to do"
run diff examples/quickstart && echo "(exit 0: the live state matches the files)"
