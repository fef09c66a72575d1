#!/usr/bin/env bash
# Chooses the young-generation size: for each --max-semi-space-size (MiB) in SIZES, starts sinkhole
# pinned on core 1 with that flag, runs dnsperf at a fixed rate (QPS, default 10k) for DUR seconds
# per workload with per-query latencies, and prints p50/p99/p99.9, the scavenges during the run,
# their total and longest pause, and the RSS after. Loopback only; stops everything it starts.
#
#   bash bench/gc.sh                                   # SIZES="0 8 16 32 64", WORKLOADS="blocked cached uncached"
#   SIZES="0 32" WORKLOADS=cached DUR=10 bash bench/gc.sh   # 0 = V8's default (no flag)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KIT=${KIT:-$ROOT/../shared/bench}; KIT=$(cd "$KIT" && pwd)
SIZES=${SIZES:-0 8 16 32 64}; WORKLOADS=${WORKLOADS:-blocked cached uncached}
DUR=${DUR:-10}; QPS=${QPS:-10000}; SH_PORT=${SH_PORT:-5331}
WORK=$(mktemp -d /tmp/sinkhole-gc.XXXXXX)
export RUN=$WORK/peers
SH_PID=""
stop() { [ -n "$SH_PID" ] && { kill -TERM "$SH_PID" 2>/dev/null; wait "$SH_PID" 2>/dev/null || true; SH_PID=""; }; return 0; }
trap 'stop; "$KIT/peers.sh" stop >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT
"$KIT/peers.sh" start upstream >/dev/null
"$KIT/gen-blocklist.sh" > "$WORK/blocklist.txt"
"$KIT/gen-queries.sh" /tmp/perf-q 0 >/dev/null
cat > "$WORK/sinkhole.yaml" <<EOF
listen: { dns: ["127.0.0.1:$SH_PORT"] }
upstreams: { servers: ["127.0.0.2:5300"], timeout: 2s }
cache: { maxEntries: 100000 }
blocking: { lists: { bench: [$WORK/blocklist.txt] }, enforce: [bench], response: null-ip }
log: { queries: none }
EOF
printf '| semi-space MiB | workload | p50 ms | p99 ms | p99.9 ms | lost | scavenges | GC ms | longest ms | RSS MB |\n|---|---|---|---|---|---|---|---|---|---|\n'
for size in $SIZES; do
  flags="--trace-gc"; [ "$size" != 0 ] && flags="--max-semi-space-size=$size $flags"
  for wl in $WORKLOADS; do
    SINKHOLE_NODE_FLAGS="$flags" taskset -c 1 "$ROOT/bin/sinkhole" serve --config "$WORK/sinkhole.yaml" > "$WORK/sh.log" 2>&1 &
    SH_PID=$!
    for _ in $(seq 1 100); do dig +time=1 +tries=1 -p "$SH_PORT" @127.0.0.1 c0.example.test A 2>/dev/null | grep -q NOERROR && break; sleep 0.2; done
    case $wl in
      uncached) qf=$("$KIT/gen-queries.sh" /tmp/perf-q $((QPS * (DUR + 4))) "g$RANDOM$RANDOM-") ;;
      *) qf=/tmp/perf-q/$wl.txt ;;
    esac
    # Warm-up at the same rate (JIT, caches, heap growth), then the measured run.
    taskset -c 0 dnsperf -s 127.0.0.1 -p "$SH_PORT" -d "$qf" -l 3 -c 20 -q 2000 -Q "$QPS" >/dev/null 2>&1 || true
    skip=$(grep -c Scavenge "$WORK/sh.log" || true)
    taskset -c 0 dnsperf -s 127.0.0.1 -p "$SH_PORT" -d "$qf" -l "$DUR" -c 20 -q 2000 -Q "$QPS" -v > "$WORK/v.log" 2>&1 || true
    rss=$(awk '/VmRSS/{printf "%.0f", $2/1024}' "/proc/$SH_PID/status")
    stop
    [ "$wl" = uncached ] && rm -f "$qf"
    lost=$(awk '/Queries lost:/{print $3}' "$WORK/v.log")
    read -r p50 p99 p999 < <(awk '/^> /{print $NF*1000}' "$WORK/v.log" | sort -g | awk '{a[NR]=$1} END{printf "%.3f %.3f %.3f\n", a[int(NR*0.5)+1], a[int(NR*0.99)+1], a[int(NR*0.999)+1]}')
    read -r n total longest < <(grep Scavenge "$WORK/sh.log" | tail -n +$((skip + 1)) | sed -nE 's/.* MB, ([0-9.]+) \/.*/\1/p' \
      | awk '{n++; s+=$1; if ($1>m) m=$1} END{printf "%d %.1f %.2f\n", n, s, m}')
    echo "| ${size/#0/default} | $wl | $p50 | $p99 | $p999 | $lost | $n | $total | $longest | $rss |"
  done
done
