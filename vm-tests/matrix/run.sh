#!/usr/bin/env bash
# The kernel matrix: weft's kernel-facing tests on the kernels edge hosts run, each booted
# under qemu (TCG: no KVM needed) from Debian's own cloud kernel package, plus this machine's
# kernel natively.
#
#   vm-tests/matrix/run.sh [--kernels 6.1,6.12] [--no-host] [--refresh] [--only LABEL,...]
#
# Kernels: 6.1 (bookworm's linux-image-cloud-amd64) and 6.12 (trixie's), fetched with apt into
# the cache (kernels.sh) and reused. Each guest boots an initramfs built here: busybox, weft,
# the test binaries, the tools they call (ip, tc, bridge, nsenter, ping, bpftool) with their shared
# libraries, and the kernel's own modules (veth, vxlan, cls_bpf, sch_ingress; resolved with
# modprobe --show-depends). In each guest, and natively for the host row, suite.sh runs: the
# golden packet tests (BPF_PROG_TEST_RUN), the conntrack collector tests, a smoke test of the
# real-kernel suite (the quickstart-style policy, a ClusterIP, a daemon restart under a live
# stream), and `weft apply` of examples/quickstart to see how weft attaches there.
#
# Prints: kernel | programs loaded | attach mode | tests passed | wall time. Exits non-zero if
# any kernel fails anything. Logs (the whole serial console) are kept in the cache's logs/.
# Environment: CARGO_TARGET_DIR (shared with the rest of the build), WEFT_MATRIX_CACHE
# (default $target/kernel-matrix), WEFT_MATRIX_TIMEOUT (seconds per guest, default 3600),
# WEFT_MATRIX_GUEST_ENV (extra VAR=value words for the tests, e.g. WEFT_LOG=debug: weft's logs
# then carry the verifier's log of a rejected program).
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
matrix=$repo/vm-tests/matrix

kernels=6.1,6.12
host_row=1
refresh=0
only=
usage() { sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case $1 in
    --kernels) kernels=$2; shift 2 ;;
    --kernels=*) kernels=${1#*=}; shift ;;
    --no-host) host_row=0; shift ;;
    --refresh) refresh=1; shift ;;
    --only) only=,$2,; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "run as root (apt, bpffs, namespaces)" >&2; exit 1; }

suite_of() {
  case $1 in
    6.1 | bookworm) echo bookworm ;;
    6.12 | trixie) echo trixie ;;
    *) echo "unknown kernel $1: one of 6.1 (bookworm), 6.12 (trixie)" >&2; return 1 ;;
  esac
}
IFS=, read -r -a klist <<<"$kernels"
for k in "${klist[@]}"; do suite_of "$k" >/dev/null; done

target=$(realpath -m "${CARGO_TARGET_DIR:-target}")
cache=$(realpath -m "${WEFT_MATRIX_CACHE:-$target/kernel-matrix}")
timeout_s=${WEFT_MATRIX_TIMEOUT:-3600}
mkdir -p "$cache/logs"
t_all=$(date +%s)

# --- what the matrix needs on this machine, installed only when missing
need=()
have() { command -v "$1" >/dev/null 2>&1; }
have qemu-system-x86_64 || need+=(qemu-system-x86)
# A static busybox: the guest has no libc of its own for it.
if ! [ -x /bin/busybox ] || ldd /bin/busybox >/dev/null 2>&1; then need+=(busybox-static); fi
have cpio || need+=(cpio)
have depmod || need+=(kmod)
have xz || need+=(xz-utils)
have jq || need+=(jq)
have strip || need+=(binutils)
have bpftool || need+=(bpftool)
have ip || need+=(iproute2)
have nsenter || need+=(util-linux)
have ping || need+=(iputils-ping)
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing ${need[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}" >/dev/null
fi

# --- weft and the test binaries (the same target directory as the rest of the build)
echo "== building weft and the test binaries"
cargo build -p weft
cargo test --no-run -p weft-golden -p weft-vm-tests --message-format=json >"$cache/tests.json"
weft=$target/debug/weft
exe() {
  jq -r --arg n "$1" 'select(.reason == "compiler-artifact" and .profile.test
    and .executable != null and .target.name == $n) | .executable' "$cache/tests.json" | tail -1
}
# label, test target, test-name filters (none: all of the target's tests)
tests=(
  "golden-packets packets"
  "golden-policy policy_packets"
  "golden-nat nat_packets"
  "golden-events event_packets"
  "golden-ctgc ctgc"
  "golden-host host_packets"
  "golden-tunnel tunnel_packets"
  "golden-xdp-nodeport xdp_nodeport_packets"
  "vm-quickstart-policy foundation policy_allows_what_it_says_and_denies_the_rest"
  "vm-cluster-ip services cluster_ip_tcp_reaches_every_ready_backend"
  "vm-restart restart kill_9_and_a_restart_lose_no_connection_and_detach_nothing"
  "vm-conntrack-gc conntrack_gc"
  "vm-host-endpoints host_endpoints host_endpoint_policy_polices_the_hosts_own_traffic_on_its_interfaces failsafe_ports_stay_open_under_deny_all_until_they_are_emptied pre_dnat_policy_denies_a_node_port_from_one_range_and_allows_it_from_another"
  "vm-fragments fragments"
  "vm-fleet fleet workloads_on_three_hosts_reach_each_other_over_vxlan_and_policy_holds_where_each_lives cross_subnet_encapsulates_only_to_the_other_subnet a_cluster_ip_spread_across_hosts_reaches_every_backend_from_workloads_and_hosts a_node_port_reached_on_one_host under_dsr strict_rpf a_4_mb_transfer with_xdp_acceleration"
)
# HOOK: `weft verifier` (being written on main) loads every program and variant; when the built
# weft has it, each row's "programs loaded" comes from it.
verifier=0
"$weft" verifier --help >/dev/null 2>&1 && verifier=1

# --- the guests' common userland
stage=$cache/initramfs/common
rm -rf "$stage"
mkdir -p "$stage"/{usr/bin,usr/sbin,usr/lib,usr/lib64,proc,sys,dev,tmp,run,root,etc,matrix/debug/deps}
for d in bin sbin lib lib64; do ln -s "usr/$d" "$stage/$d"; done
cp /bin/busybox "$stage/usr/bin/busybox"
ln -s busybox "$stage/usr/bin/sh"
copy_libs() { # the shared libraries (and loader) of an executable, at their paths
  ldd "$1" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' |
    while read -r lib; do
      [ -e "$stage$lib" ] || { mkdir -p "$(dirname "$stage$lib")" && cp -L "$lib" "$stage$lib"; }
    done
}
for tool in ip tc bridge nsenter ping bpftool; do
  p=$(readlink -f "$(command -v "$tool")")
  cp "$p" "$stage$p"
  copy_libs "$p"
done
strip --strip-debug -o "$stage/matrix/debug/weft" "$weft"
copy_libs "$weft"
list=$stage/matrix/tests.list host_list=$cache/host-tests.list
: >"$list"
: >"$host_list"
for t in "${tests[@]}"; do
  read -r label name filters <<<"$t"
  [ -z "$only" ] || [[ $only == *,$label,* ]] || continue
  bin=$(exe "$name")
  [ -n "$bin" ] || { echo "no test binary for $name in $cache/tests.json" >&2; exit 1; }
  strip --strip-debug -o "$stage/matrix/debug/deps/$name" "$bin"
  copy_libs "$bin"
  echo "$label /matrix/debug/deps/$name $filters" >>"$list"
  echo "$label $bin $filters" >>"$host_list"
done
cp -r examples/quickstart "$stage/matrix/quickstart"
cp "$matrix/init.sh" "$stage/init"
cp "$matrix/suite.sh" "$stage/matrix/suite.sh"
{
  echo "export WEFT_BIN=/matrix/debug/weft WEFT_VERIFIER=$verifier"
  for kv in ${WEFT_MATRIX_GUEST_ENV:-}; do echo "export $kv"; done
} >"$stage/matrix/env"
(cd "$stage" && find . | cpio -o -H newc --quiet) >"$cache/initramfs/common.cpio"

# --- one row: parse a log of suite.sh's marks
declare -A row_kernel row_progs row_attach row_tests row_secs row_ok
failures=()
parse() { # key log seconds
  local key=$1 log=$2 secs=$3 passed=0 failed=0 ok=1 progs attach
  # The console may put escape sequences before the first line of the guest's own.
  row_kernel[$key]=$(sed -n 's/.*WEFT-MATRIX kernel //p' "$log" | head -1)
  while read -r _ _ label rc p f _; do
    passed=$((passed + ${p#passed=})) failed=$((failed + ${f#failed=}))
    [ "$rc" = rc=0 ] || ok=0
  done < <(grep '^WEFT-MATRIX result ' "$log")
  while read -r _ _ label name; do
    failures+=("$key: $label $name")
  done < <(grep '^WEFT-MATRIX failed ' "$log")
  [ "$failed" = 0 ] || ok=0
  attach=$(sed -n 's/^WEFT-MATRIX attach //p' "$log" | head -1)
  [ -n "$attach" ] && [ "$attach" != failed ] && [ "$attach" != none ] || ok=0
  progs=$(sed -n 's/^WEFT-MATRIX pinned-programs //p' "$log" | head -1)
  progs="${progs:-?} pinned by apply"
  if grep -q '^WEFT-MATRIX verifier rc=' "$log"; then
    local json
    json=$(sed -n 's/^WEFT-MATRIX verifier-json //p' "$log")
    # Loaded of all variants, and the costliest one's share of the verifier's limit.
    progs=$(jq -r '"\(.loaded)/\(.programs | length), max \([.programs[].insns_processed // 0]
      | max | . * 1000 / $l | floor / 10)%"' --argjson l "$(jq .limit <<<"$json")" <<<"$json" \
      2>/dev/null || echo "? (no verifier JSON)")
    while read -r line; do
      failures+=("$key: weft verifier: $line")
    done < <(jq -r '.programs[] | select((.loaded | not) or .insns_processed > $b)
      | "\(.object) \(.program) isa \(.isa) [\(.settings)]: \(if .loaded
        then "\(.insns_processed) instructions, over the budget"
        else .error | split("\n") | map(select(length > 0 and (test("^[0-9]+: |^; |^verification time|^stack depth|^processed") | not))) | join("; ") end)"' \
      --argjson b "$(jq .budget <<<"$json")" <<<"$json" 2>/dev/null)
    grep -q '^WEFT-MATRIX verifier rc=0' "$log" || { ok=0; failures+=("$key: weft verifier failed"); }
  fi
  grep -q '^WEFT-MATRIX done' "$log" || { ok=0; failures+=("$key: the suite did not finish (see $log)"); }
  grep -q '^WEFT-MATRIX module-failed' "$log" && { ok=0; failures+=("$key: a module did not load"); }
  row_progs[$key]=$progs
  row_attach[$key]=${attach:-?}
  row_tests[$key]="$passed/$((passed + failed))"
  row_secs[$key]=$secs
  row_ok[$key]=$ok
}

rows=()
for k in "${klist[@]}"; do
  suite=$(suite_of "$k")
  [ "$refresh" = 0 ] || rm -rf "$cache/kernels/$suite"
  kdir=$("$matrix/kernels.sh" "$cache" "$suite")
  ver=$(ls "$kdir/root/lib/modules")
  [ -f "$kdir/root/lib/modules/$ver/modules.dep" ] || depmod -b "$kdir/root" "$ver"
  # The modules the tests need, dependencies first, decompressed (busybox insmod reads plain
  # .ko only). Whatever is built in is left out by modprobe itself.
  kstage=$cache/initramfs/$suite
  rm -rf "$kstage" && mkdir -p "$kstage/matrix/modules"
  : >"$kstage/matrix/modules.order"
  for m in veth vxlan bridge cls_bpf sch_ingress act_bpf; do
    modprobe -d "$kdir/root" -S "$ver" --show-depends "$m"
  done | awk '$1 == "insmod" && !seen[$2]++ {print $2}' | while read -r ko; do
    base=$(basename "$ko")
    base=${base%.xz} base=${base%.zst}
    case $ko in
      *.xz) xz -dc "$ko" >"$kstage/matrix/modules/$base" ;;
      *.zst) zstd -dc "$ko" >"$kstage/matrix/modules/$base" ;;
      *) cp "$ko" "$kstage/matrix/modules/$base" ;;
    esac
    echo "/matrix/modules/$base" >>"$kstage/matrix/modules.order"
  done
  (cd "$kstage" && find . | cpio -o -H newc --quiet) >"$kstage.cpio"
  cat "$cache/initramfs/common.cpio" "$kstage.cpio" >"$cache/initramfs/$suite.initrd"

  log=$cache/logs/$suite.log
  echo "== $k: $(cat "$kdir/package") under qemu (TCG), log in $log"
  t0=$(date +%s)
  set +e
  # --foreground: qemu stays in this script's process group, so stopping the script stops it.
  timeout --foreground -k 10 "$timeout_s" qemu-system-x86_64 -accel tcg -cpu max -smp 2 -m 2048 \
    -nographic -no-reboot -nic none \
    -kernel "$kdir/vmlinuz" -initrd "$cache/initramfs/$suite.initrd" \
    -append "console=ttyS0 loglevel=4 panic=-1 rdinit=/init mitigations=off" </dev/null 2>&1 |
    stdbuf -oL tr -d '\r' | tee "$log" | grep --line-buffered -E '^WEFT-MATRIX (begin|result|failed|why|attach|verifier rc|kernel)'
  qrc=${PIPESTATUS[0]}
  set -e
  [ "$qrc" != 124 ] || failures+=("$k: timed out after ${timeout_s}s")
  parse "$k" "$log" $(($(date +%s) - t0))
  rows+=("$k")
done

if [ "$host_row" = 1 ]; then
  # The host's kernel natively (its image is not on disk to boot under qemu): the same
  # binaries and suite; scripts/test.sh runs the whole suite on it.
  log=$cache/logs/host.log
  echo "== host: $(uname -r) natively, log in $log"
  mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
  work=$(mktemp -d)
  mkdir -p "$work/m" && cp "$host_list" "$work/m/tests.list" && cp -r examples/quickstart "$work/m/"
  t0=$(date +%s)
  set +e
  {
    echo "WEFT-MATRIX kernel $(uname -r)"
    # shellcheck disable=SC2030,SC2031
    (export WEFT_BIN=$weft WEFT_VERIFIER=$verifier MATRIX=$work/m WORK=$work \
      BPFFS=/sys/fs/bpf/weft-matrix-$$ NS=wmx$$ TEST_THREADS=2 && . "$matrix/suite.sh")
    echo "WEFT-MATRIX done"
  } 2>&1 | tee "$log" | grep --line-buffered -E '^WEFT-MATRIX (begin|result|failed|why|attach|verifier rc|kernel)'
  set -e
  rm -rf "$work"
  parse host "$log" $(($(date +%s) - t0))
  rows+=(host)
fi

# --- the table
echo
printf '%-34s | %-20s | %-11s | %-12s | %s\n' kernel "programs loaded" "attach mode" "tests passed" "wall time"
printf '%s\n' "-----------------------------------+----------------------+-------------+--------------+----------"
status=0
for r in "${rows[@]}"; do
  name=${row_kernel[$r]:-?}
  [ "$r" != host ] || name="$name (host, native)"
  printf '%-34s | %-20s | %-11s | %-12s | %ss\n' "$name" "${row_progs[$r]}" "${row_attach[$r]}" \
    "${row_tests[$r]}" "${row_secs[$r]}"
  [ "${row_ok[$r]}" = 1 ] || status=1
done
echo
echo "matrix wall time: $(($(date +%s) - t_all))s (kernels: ${klist[*]}$([ "$host_row" = 1 ] && echo ", host"))"
if [ ${#failures[@]} -gt 0 ]; then
  echo "failed:"
  printf '  %s\n' "${failures[@]}"
fi
exit $status
