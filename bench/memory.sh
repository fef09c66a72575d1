#!/usr/bin/env bash
# Memory under cache churn: sinkhole (cache.maxEntries 100k) is sent N distinct names (default 1M)
# at a fixed rate, every one a miss that fills the cache and then evicts from it, while its RSS and V8
# heap are sampled every second. Prints the curve's key points and keeps it as CSV. Loopback only.
#
#   bash bench/memory.sh                  # N=1000000 at QPS=20000: ~50 s of load, then 20 s idle
#   N=300000 QPS=15000 bash bench/memory.sh
#   PORT_REUSE=100000 bash bench/memory.sh # upstreams.sourcePortReuse (default 100): what the source-port turnover costs
#
# The target (issue 10): RSS <= 150 MB steady with a full 100k-entry cache after 1M distinct names,
# and flat, not growing: compare the RSS at the end of the load with the RSS after the idle tail.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KIT=${KIT:-$ROOT/../shared/bench}; KIT=$(cd "$KIT" && pwd)
N=${N:-1000000}; QPS=${QPS:-20000}; IDLE=${IDLE:-20}; SH_PORT=${SH_PORT:-5332}; SH_HTTP_PORT=${SH_HTTP_PORT:-9332}
OUT=${OUT:-$ROOT/bench/results/memory-$(date -u +%Y%m%dT%H%M%SZ).csv}
mkdir -p "$(dirname "$OUT")"
WORK=$(mktemp -d /tmp/sinkhole-mem.XXXXXX)
export RUN=$WORK/peers
SH_PID=""; SAMPLER=""
cleanup() {
  [ -n "$SAMPLER" ] && kill "$SAMPLER" 2>/dev/null || true
  [ -n "$SH_PID" ] && { kill -TERM "$SH_PID" 2>/dev/null; wait "$SH_PID" 2>/dev/null || true; }
  "$KIT/peers.sh" stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
"$KIT/peers.sh" start upstream >/dev/null
cat > "$WORK/sinkhole.yaml" <<EOF
listen: { dns: ["127.0.0.1:$SH_PORT"], http: "127.0.0.1:$SH_HTTP_PORT" }
upstreams: { servers: ["127.0.0.2:5300"], timeout: 2s${PORT_REUSE:+, sourcePortReuse: $PORT_REUSE} }
cache: { maxEntries: 100000 }
blocking: { lists: { bench: [$WORK/blocklist.txt] }, enforce: [bench], response: null-ip }
log: { queries: none }
state: { dir: $WORK/state }
EOF
"$KIT/gen-blocklist.sh" > "$WORK/blocklist.txt"
taskset -c 1 "$ROOT/bin/sinkhole" serve --config "$WORK/sinkhole.yaml" > "$WORK/sinkhole.log" 2>&1 &
SH_PID=$!
for _ in $(seq 1 100); do dig +time=1 +tries=1 -p "$SH_PORT" @127.0.0.1 c0.example.test A 2>/dev/null | grep -q NOERROR && break; sleep 0.2; done
QF=$("$KIT/gen-queries.sh" "$WORK/q" "$N" "m$RANDOM-")
echo "t_s,rss_mb,heap_used_mb,heap_total_mb,external_mb,cache_entries" > "$OUT"
t0=$(date +%s)
( while kill -0 "$SH_PID" 2>/dev/null; do
    rss=$(awk '/VmRSS/{printf "%.1f", $2/1024}' "/proc/$SH_PID/status" 2>/dev/null || echo 0)
    m=$(curl -s --max-time 1 "http://127.0.0.1:$SH_HTTP_PORT/metrics" || true)
    heap=$(awk '/^nodejs_heap_size_used_bytes /{printf "%.1f", $2/1048576}' <<<"$m")
    total=$(awk '/^nodejs_heap_size_total_bytes /{printf "%.1f", $2/1048576}' <<<"$m")
    ext=$(awk '/^nodejs_external_memory_bytes /{printf "%.1f", $2/1048576}' <<<"$m")
    entries=$(awk '/^sinkhole_cache_entries /{print $2}' <<<"$m")
    echo "$(( $(date +%s) - t0 )),$rss,${heap:-},${total:-},${ext:-},${entries:-}" >> "$OUT"
    sleep 1
  done ) &
SAMPLER=$!
taskset -c 0 dnsperf -s 127.0.0.1 -p "$SH_PORT" -d "$QF" -n 1 -c 20 -q 2000 -Q "$QPS" > "$WORK/dnsperf.txt" 2>&1 || true
load_end=$(( $(date +%s) - t0 ))
# Where the RSS is at the end of the load (issue 22): the V8 heap by space, the memory V8 counts as
# external (Buffers' backing stores), the cache's slab, and the kernel's anonymous vs file-backed pages.
{ echo "# at the end of the load (t=${load_end} s)"
  grep -E '^(Rss|Pss_Anon|Pss_File|Anonymous)' "/proc/$SH_PID/smaps_rollup" 2>/dev/null || true
  curl -s --max-time 2 "http://127.0.0.1:$SH_HTTP_PORT/metrics" \
    | grep -E '^(nodejs_heap_space_size_(total|used)_bytes|nodejs_heap_size_(total|used)_bytes|nodejs_external_memory_bytes|sinkhole_cache_bytes|sinkhole_cache_entries|sinkhole_upstream_source_ports)' || true
} > "${OUT%.csv}-breakdown.txt"
sleep "$IDLE"
kill "$SAMPLER" 2>/dev/null || true; SAMPLER=""
grep -E 'Queries (sent|completed|lost)' "$WORK/dnsperf.txt" | sed 's/^ */  /'
python3 - "$OUT" "$load_end" <<'PY'
import csv, sys
rows = [r for r in csv.DictReader(open(sys.argv[1])) if r['rss_mb']]
end = int(sys.argv[2])
num = lambda r, k: float(r[k]) if r[k] else 0.0
peak = max(rows, key=lambda r: num(r, 'rss_mb'))
at_end = min(rows, key=lambda r: abs(int(r['t_s']) - end))
last = rows[-1]
# Steady state: the last third of the load, once the cache is full.
tail = [r for r in rows if end * 2 / 3 <= int(r['t_s']) <= end]
slope = (num(tail[-1], 'rss_mb') - num(tail[0], 'rss_mb')) / max(1, int(tail[-1]['t_s']) - int(tail[0]['t_s'])) if len(tail) > 1 else 0
print(f"RSS MB: peak {num(peak,'rss_mb'):.0f} (t={peak['t_s']} s), end of load {num(at_end,'rss_mb'):.0f}, after idle {num(last,'rss_mb'):.0f}; "
      f"slope over the last third of the load {slope:+.2f} MB/s; heap used / total at end {num(at_end,'heap_used_mb'):.0f} / {num(at_end,'heap_total_mb'):.0f} MB; "
      f"external {num(at_end,'external_mb'):.0f} MB; cache entries {at_end['cache_entries']}")
PY
awk '/^# /{print; next} /^(Rss|Pss_Anon|Pss_File|Anonymous)/{printf "  %s %.0f MB\n", $1, $2/1024; next}
     {v=$NF; $NF=""; if (v+0 > 1048576) printf "  %s %.1f MB\n", $0, v/1048576; else printf "  %s %s\n", $0, v}' "${OUT%.csv}-breakdown.txt"
echo "curve: $OUT"
