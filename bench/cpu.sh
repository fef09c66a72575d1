#!/usr/bin/env bash
# CPU time per query of a cache miss (or, with WL=cached|blocked, of a hit or a blocked answer): builds of sinkhole (A/B) and the peers, interleaved, under the
# same uncached load. On this shared 2-core machine QPS moves 15-20 % with other people's load, while
# the server's own CPU seconds per answered query hardly do: this is the figure to compare builds by
# (issue 22). Loopback only; stops everything it starts.
#
#   bash bench/cpu.sh                                   # this tree's dist/ against the bare Node relay and unbound-t1
#   BUILDS="base=/tmp/sh-base new=." bash bench/cpu.sh  # A/B: each NAME=DIR is a checkout with dist/ built
#   QPS=10000 bash bench/cpu.sh                         # a fixed rate instead of saturating (-c 20 -q 200)
#   PEERS=none REPS=5 DUR=8 bash bench/cpu.sh
#   PEERS="node-pool:1 node-pool:1024" bash bench/cpu.sh   # bench/pool-relay.mjs: a bare relay with an N-socket pool
#   SOURCE_PORTS=1 PORT_REUSE=10000 bash bench/cpu.sh   # upstreams.sourcePorts (1024) and sourcePortReuse (100): what RFC 5452 costs
#   BUILDS="p1=.:1 p64=.:64 p1024=.:1024" bash bench/cpu.sh   # NAME=DIR:PORTS: pool sizes side by side, in one sitting
#   WL=cached TOGETHER=1 BUILDS="base=/tmp/sh-base new=." PEERS=none bash bench/cpu.sh   # the hit path (or WL=blocked)
#   TOGETHER=1 BUILDS="base=/tmp/sh-base new=." PEERS=none bash bench/cpu.sh
#       # A/B at the same time: both builds on core 1, each under its own fixed-rate dnsperf (the fairest
#       # comparison on a machine others are loading: the noise and the batching fall on both alike)
#
# Per run: Δ(utime+stime) of the server process (every thread: /proc/PID/stat) over the dnsperf run,
# divided by the queries it answered. The least of the runs is the one other load disturbed least. The order of the targets rotates every rep, so drift in the
# machine's load falls on every target alike. Prints one line per run and the median per target; each
# sinkhole's RSS (VmRSS) after its last run. Output also in bench/results/cpu-<time>.tsv.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KIT=${KIT:-$ROOT/../shared/bench}; KIT=$(cd "$KIT" && pwd)
DUR=${DUR:-10}; REPS=${REPS:-3}; QPS=${QPS:-}; PEERS=${PEERS:-node-fwd unbound1}; WL=${WL:-uncached}
case $WL in uncached|cached|blocked) ;; *) echo "WL must be uncached, cached or blocked" >&2; exit 2 ;; esac

BUILDS=${BUILDS:-sinkhole=$ROOT}
OUT=${OUT:-$ROOT/bench/results/cpu-$(date -u +%Y%m%dT%H%M%SZ).tsv}
mkdir -p "$(dirname "$OUT")"
WORK=$(mktemp -d /tmp/sinkhole-cpu.XXXXXX)
export RUN=$WORK/peers
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  "$KIT/peers.sh" stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
[ "$PEERS" = none ] && PEERS=""
KIT_PEERS=""; for p in $PEERS; do case $p in node-pool:*) ;; *) KIT_PEERS="$KIT_PEERS $p" ;; esac; done  # the kit starts its own
"$KIT/peers.sh" start upstream $KIT_PEERS >/dev/null
"$KIT/gen-blocklist.sh" > "$WORK/blocklist.txt"

declare -A PORT PID QF
port=5340
for b in $BUILDS; do
  name=${b%%=*}; spec=${b#*=}; dir=$(cd "${spec%%:*}" && pwd)
  # NAME=DIR:PORTS runs that build with upstreams.sourcePorts: PORTS (several sizes in one sitting).
  # NAME=DIR:PORTS:REUSE also sets upstreams.sourcePortReuse.
  ports=${SOURCE_PORTS:-}; reuse=${PORT_REUSE:-}; [ "$spec" != "${spec%%:*}" ] && ports=${spec#*:}
  [ "$ports" != "${ports%%:*}" ] && { reuse=${ports#*:}; ports=${ports%%:*}; }
  [ -f "$dir/dist/cli.js" ] || { echo "$dir/dist/cli.js missing: build it first" >&2; exit 2; }
  cat > "$WORK/$name.yaml" <<EOF
listen: { dns: ["127.0.0.1:$port"] }
upstreams: { servers: ["127.0.0.2:5300"], timeout: 2s${ports:+, sourcePorts: $ports}${reuse:+, sourcePortReuse: $reuse} }
cache: { maxEntries: 100000 }
blocking: { lists: { bench: [$WORK/blocklist.txt] }, enforce: [bench], response: null-ip }
log: { queries: none }
state: { dir: $WORK/state-$name }
EOF
  # bin/sinkhole's runtime and default V8 flags, but each build's own dist/cli.js, so builds differ only there.
  node=$ROOT/node_modules/node/bin/node; [ -x "$node" ] || node=node
  taskset -c 1 "$node" ${SINKHOLE_NODE_FLAGS---max-semi-space-size=8} "$dir/dist/cli.js" serve --config "$WORK/$name.yaml" > "$WORK/$name.log" 2>&1 &
  PID[$name]=$!; PIDS+=("$!"); PORT[$name]=$port
  port=$((port + 1))
done
pool_port=5313
for p in $PEERS; do
  case $p in
    node-pool:*) # bench/pool-relay.mjs: a bare relay with sinkhole's RFC 5452 pool of N connected sockets
      node=$ROOT/node_modules/node/bin/node; [ -x "$node" ] || node=node
      taskset -c 1 "$node" "$ROOT/bench/pool-relay.mjs" "$pool_port" "${p#node-pool:}" 127.0.0.2:5300 > "$WORK/$p.log" 2>&1 &
      PID[$p]=$!; PIDS+=("$!"); PORT[$p]=$pool_port; pool_port=$((pool_port + 1)) ;;
    node-fwd) PORT[$p]=5312; PID[$p]=$(cat "$RUN/pids/node-fwd") ;;
    unbound1) PORT[$p]=5302; PID[$p]=$(cat "$RUN/pids/unbound1") ;;
    node-raw) PORT[$p]=5310; PID[$p]=$(cat "$RUN/pids/node-raw") ;;  # the bare echo: the ceiling for WL=blocked|cached
    *) echo "unknown peer $p" >&2; exit 2 ;;
  esac
done
TARGETS=()
for b in $BUILDS; do TARGETS+=("${b%%=*}"); done
for p in $PEERS; do TARGETS+=("$p"); done
for t in "${TARGETS[@]}"; do
  for _ in $(seq 1 100); do dig +time=1 +tries=1 -p "${PORT[$t]}" @127.0.0.1 c0.example.test A 2>/dev/null | grep -q NOERROR && break; sleep 0.2; done
done

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)
printf 'target\trep\tcompleted\tqps\tcpu_s\tcpu_us_per_q\tavg_ms\n' > "$OUT"
n=${#TARGETS[@]}
measure() { # target qfile → one TSV line; run in the background for TOGETHER=1
  local t=$1 qf=$2 c0 c1
  c0=$(ticks "${PID[$t]}")
  taskset -c 0 dnsperf -s 127.0.0.1 -p "${PORT[$t]}" -d "$qf" -l "$DUR" -c 20 -q 200 ${QPS:+-Q $QPS} > "$WORK/dp-$t.txt" 2>&1 || true
  c1=$(ticks "${PID[$t]}")
  awk -v t="$t" -v r="$rep" -v c=$((c1 - c0)) -v hz="$HZ" '/Queries completed/ { q = $3 } /Queries per second/ { qps = $4 }
    /Average Latency/ { avg = $4 * 1000 } END { printf "%s\t%d\t%d\t%.0f\t%.2f\t%.1f\t%.3f\n", t, r, q, qps, c / hz, q ? c / hz * 1e6 / q : 0, avg }' "$WORK/dp-$t.txt"
}
drop_q() { if [ "$WL" = uncached ]; then rm -f "$1"; fi; }  # fresh names are made per run; the kit's looped files are kept
for rep in $(seq 1 "$REPS"); do
  for k in $(seq 0 $((n - 1))); do
    t=${TARGETS[$(((k + rep - 1) % n))]}
    if [ "$WL" = uncached ]; then QF[$t]=$("$KIT/gen-queries.sh" "$WORK/q" $((DUR * 60000)) "c$rep$k$RANDOM-")
    else "$KIT/gen-queries.sh" "$WORK/q" 0 > /dev/null; QF[$t]=$WORK/q/$WL.txt; fi  # the kit's looped files: the warm-up fills the cache
    # A 1 s warm-up at the same load, so the JIT and the source-port pool are in their steady state.
    [ "${TOGETHER:-0}" = 1 ] || { taskset -c 0 dnsperf -s 127.0.0.1 -p "${PORT[$t]}" -d "${QF[$t]}" -l 1 -c 20 -q 200 ${QPS:+-Q $QPS} > /dev/null 2>&1 || true; sleep 0.5
                                  measure "$t" "${QF[$t]}" | tee -a "$OUT"; drop_q "${QF[$t]}"; }
  done
  if [ "${TOGETHER:-0}" = 1 ]; then
    # Every target under the same fixed load at the same time: whatever else runs on the machine
    # disturbs them alike, and each batches its datagrams alike.
    # (wait on these PIDs only: a bare wait would wait for the servers too)
    ws=(); for t in "${TARGETS[@]}"; do taskset -c 0 dnsperf -s 127.0.0.1 -p "${PORT[$t]}" -d "${QF[$t]}" -l 1 -c 20 -q 200 ${QPS:+-Q $QPS} > /dev/null 2>&1 & ws+=("$!"); done
    wait "${ws[@]}" || true
    sleep 0.5
    ws=(); for t in "${TARGETS[@]}"; do measure "$t" "${QF[$t]}" > "$WORK/m-$t.tsv" & ws+=("$!"); done
    wait "${ws[@]}" || true
    for t in "${TARGETS[@]}"; do tee -a "$OUT" < "$WORK/m-$t.tsv"; drop_q "${QF[$t]}"; done
  fi
done
med() { sort -n | awk '{ v[NR] = $1 } END { printf "%.1f", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
for t in "${TARGETS[@]}"; do
  printf '  %-12s %6s µs, least %s  (QPS median %s)\n' "$t" "$(awk -F'\t' -v t="$t" '$1 == t { print $6 }' "$OUT" | med)" \
    "$(awk -F'\t' -v t="$t" '$1 == t { print $6 }' "$OUT" | sort -n | head -1)" "$(awk -F'\t' -v t="$t" '$1 == t { print $4 }' "$OUT" | med)"
done
for b in $BUILDS; do
  name=${b%%=*}
  echo "  $name RSS after the runs: $(awk '/VmRSS/{printf "%.0f MB", $2/1024}' "/proc/${PID[$name]}/status")"
done
echo "results: $OUT"
