#!/bin/sh
# The matrix's suite, sourced by a guest's /init (init.sh) and run by run.sh on the host
# itself for the host kernel's row: every test binary in $MATRIX/tests.list, then how weft
# attaches on this kernel, then (when the built weft has it) `weft verifier`. It prints
# "WEFT-MATRIX ..." lines that run.sh reads back. POSIX sh: busybox runs it in the guests.
#   MATRIX  a directory with tests.list and quickstart/ (the example configuration)
#   BPFFS   a bpffs directory of its own for the attach check; NS a prefix for its namespaces
#   WEFT_BIN the weft binary; WORK a scratch directory (default /tmp)

mark() { echo "WEFT-MATRIX $*"; }
work=${WORK:-/tmp}
# busybox sh runs its own applets before anything in PATH (its ip, nsenter and tc lack what this
# needs): name the real tools by their paths.
real() {
  for d in /usr/sbin /usr/bin /sbin /bin; do
    if [ -x "$d/$1" ] && [ ! -L "$d/$1" ]; then echo "$d/$1" && return; fi
  done
  echo "$1"
}
IP=$(real ip) NSENTER=$(real nsenter) TC=$(real tc) BPFTOOL=$(real bpftool)
threads=${TEST_THREADS:-1}

# Each line: <label> <binary> [test-name filters...]
while read -r label bin filters; do
  [ -n "$label" ] || continue
  case $label in
  *ctgc* | *conntrack-gc*)
    # The collector's tests age entries by moving their timestamps back on CLOCK_MONOTONIC,
    # up to 100 s (golden/tests/ctgc.rs): a guest just booted has not been up that long yet.
    while [ "$(cut -d. -f1 /proc/uptime)" -lt 110 ]; do sleep 1; done
    ;;
  esac
  mark "begin $label"
  start=$(date +%s)
  # shellcheck disable=SC2086 # the filters are words
  # Streamed as it runs (a guest's console is the only way to watch it), kept for the counts.
  {
    WEFT_REQUIRE_KERNEL=1 RUST_BACKTRACE=1 "$bin" --test-threads="$threads" $filters
    echo $? >"$work/rc"
  } 2>&1 | tee "$work/out"
  rc=$(cat "$work/rc")
  result=$(grep '^test result:' "$work/out" | tail -1)
  passed=$(echo "$result" | sed -n 's/.* \([0-9]*\) passed.*/\1/p')
  failed=$(echo "$result" | sed -n 's/.* \([0-9]*\) failed.*/\1/p')
  # A binary that died before its summary counts as one failure.
  [ -n "$result" ] || { passed=0 failed=1; }
  [ "$rc" = 0 ] || [ "${failed:-0}" != 0 ] || failed=1
  grep -E '^test .* \.\.\. FAILED$' "$work/out" | while read -r _ name _; do
    mark "failed $label $name"
  done
  # Why, on the console too: CI keeps only what the host prints, not the guest's log.
  if [ "${failed:-0}" != 0 ]; then
    grep -A12 'panicked at' "$work/out" | head -60 | while IFS= read -r line; do
      mark "why $label $line"
    done
  fi
  mark "result $label rc=$rc passed=${passed:-0} failed=${failed:-0} secs=$(($(date +%s) - start))"
done <"$MATRIX/tests.list"

# How weft attaches here, decided by weft itself: the quickstart's host (three workloads on
# veths in a namespace of their own) and `weft apply`, whose plan names the mode of each
# attachment ("attach ... to califrontend ingress (tc)"). Then what the kernel shows.
mark "begin attach-check"
$IP netns add "$NS-host" && $IP -n "$NS-host" link set lo up
for w in frontend:10.65.0.10 backend:10.65.0.20 db:10.65.0.30; do
  name=${w%%:*} addr=${w##*:}
  $IP netns add "$NS-$name" && $IP -n "$NS-$name" link set lo up
  $IP -n "$NS-host" link add "cali$name" type veth peer name eth0 netns "$NS-$name"
  $IP -n "$NS-host" link set "cali$name" up
  $IP -n "$NS-$name" addr add "$addr/32" dev eth0 && $IP -n "$NS-$name" link set eth0 up
done
if $NSENTER --net="/run/netns/$NS-host" "$WEFT_BIN" apply "$MATRIX/quickstart" --node demo-node \
  --bpffs "$BPFFS" >$work/apply 2>&1; then
  cat $work/apply
  mode=$(sed -n 's/^.*attach .* to cali[a-z]* [a-z]* (\(tcx*\)).*$/\1/p' $work/apply | sort -u | tr '\n' ' ' | sed 's/ $//')
  mark "attach ${mode:-none}"
  mark "pinned-programs $(ls "$BPFFS"/progs 2>/dev/null | wc -l)"
  $NSENTER --net="/run/netns/$NS-host" $BPFTOOL net show dev califrontend
  $NSENTER --net="/run/netns/$NS-host" $TC filter show dev califrontend ingress
  $NSENTER --net="/run/netns/$NS-host" "$WEFT_BIN" teardown --bpffs "$BPFFS" >/dev/null 2>&1
else
  cat $work/apply
  mark "attach failed"
fi
for ns in host frontend backend db; do $IP netns del "$NS-$ns" 2>/dev/null; done

# `weft verifier` loads every program and variant and says what the verifier cost.
# HOOK: run.sh sets WEFT_VERIFIER=1 when the built weft has the subcommand.
if [ "${WEFT_VERIFIER:-0}" = 1 ]; then
  mark "begin verifier"
  "$WEFT_BIN" verifier -o json >$work/verifier.json 2>$work/verifier.err
  rc=$?
  cat $work/verifier.err
  mark "verifier rc=$rc"
  mark "verifier-json $(tr -d '\n' <$work/verifier.json)"
fi

