#!/usr/bin/env bash
# Where sinkhole's time goes, per workload: a V8 CPU profile (--cpu-prof) and a GC trace
# (--trace-gc) of `sinkhole serve` under one dnsperf workload, summarised as the top functions by
# self time and the scavenge count/pause. Loopback only; stops everything it starts.
#
#   bash bench/profile.sh blocked            # or cached, uncached
#   DUR=10 QPS=10000 bash bench/profile.sh cached   # fixed rate instead of saturating (GC at a steady load)
#   QUERY_LOG=blocked bash bench/profile.sh blocked # with the query log written to a file (what it costs)
#   RPZ=1 bash bench/profile.sh blocked     # the same domains as an RPZ zone instead of a list
#
# Uses the kit's NSD upstream (127.0.0.2:5300) and query files (../shared/bench), the same config as
# bench/run.sh, and bin/sinkhole (the project's runtime and flags). Output: bench/results/profile-<wl>-<time>/
# (the .cpuprofile opens in Chrome DevTools), and a summary on stdout.
set -euo pipefail
WL=${1:?usage: profile.sh blocked|cached|uncached}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KIT=${KIT:-$ROOT/../shared/bench}; KIT=$(cd "$KIT" && pwd)
DUR=${DUR:-10}; QPS=${QPS:-}; SH_PORT=${SH_PORT:-5330}
OUT=${OUT:-$ROOT/bench/results/profile-$WL-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d /tmp/sinkhole-prof.XXXXXX)
export RUN=$WORK/peers
SH_PID=""
cleanup() {
  [ -n "$SH_PID" ] && kill -TERM "$SH_PID" 2>/dev/null && wait "$SH_PID" 2>/dev/null || true
  "$KIT/peers.sh" stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
"$KIT/peers.sh" start upstream >/dev/null
"$KIT/gen-blocklist.sh" > "$WORK/blocklist.txt"
cat > "$WORK/sinkhole.yaml" <<EOF
listen: { dns: ["127.0.0.1:$SH_PORT"] }
upstreams: { servers: ["127.0.0.2:5300"], timeout: 2s }
cache: { maxEntries: 100000 }
blocking: { lists: { bench: [$WORK/blocklist.txt] }, enforce: [bench], response: null-ip }
log: { queries: ${QUERY_LOG:-none}, file: $WORK/queries.jsonl }
EOF
if [ "${RPZ:-0}" = 1 ]; then
  # The same domains as an RPZ zone (D and *.D, CNAME . = NXDOMAIN): where an RPZ block's time goes (issue 21).
  { printf '$ORIGIN bench.rpz.\n$TTL 60\n@ SOA ns.bench.rpz. hostmaster.bench.rpz. 1 3600 600 86400 60\n@ NS localhost.\n'
    while read -r d; do printf '%s CNAME .\n*.%s CNAME .\n' "$d" "$d"; done < "$WORK/blocklist.txt"; } > "$WORK/bench.zone"
  sed -i "s|^blocking: .*|blocking: { rpz: [{ name: bench, file: $WORK/bench.zone }], enforce: [bench] }|" "$WORK/sinkhole.yaml"
fi
cd "$OUT"
SINKHOLE_NODE_FLAGS="${SINKHOLE_NODE_FLAGS---max-semi-space-size=8} --cpu-prof --cpu-prof-dir=$OUT --trace-gc" \
  taskset -c 1 "$ROOT/bin/sinkhole" serve --config "$WORK/sinkhole.yaml" > "$OUT/sinkhole.log" 2>&1 &
SH_PID=$!
for _ in $(seq 1 100); do dig +time=1 +tries=1 -p "$SH_PORT" @127.0.0.1 c0.example.test A 2>/dev/null | grep -q NOERROR && break; sleep 0.2; done
case $WL in
  blocked|cached) "$KIT/gen-queries.sh" /tmp/perf-q 0 >/dev/null; QF=/tmp/perf-q/$WL.txt ;;
  uncached) QF=$("$KIT/gen-queries.sh" /tmp/perf-q 1500000 "p$RANDOM$RANDOM-") ;;
  *) echo "unknown workload $WL" >&2; exit 2 ;;
esac
[ "$WL" = cached ] && taskset -c 0 dnsperf -s 127.0.0.1 -p "$SH_PORT" -d "$QF" -n 1 -c 1 -q 20 >/dev/null 2>&1
gc0=$(grep -c Scavenge "$OUT/sinkhole.log" || true)
taskset -c 0 dnsperf -s 127.0.0.1 -p "$SH_PORT" -d "$QF" -l "$DUR" -c 20 -q 200 ${QPS:+-Q $QPS} > "$OUT/dnsperf.txt" 2>&1 || true
[ "$WL" = uncached ] && rm -f "$QF"
kill -TERM "$SH_PID"; wait "$SH_PID" 2>/dev/null || true; SH_PID=""
grep -E 'Queries per second|Average Latency|Queries lost' "$OUT/dnsperf.txt"
# --trace-gc lines: "... Scavenge 10.2 (12.3) -> 9.8 (13.3) MB, 1.23 / 0.00 ms ..."; skip those before the run.
grep -E 'Scavenge|Mark-Compact' "$OUT/sinkhole.log" | tail -n +$((gc0 + 1)) \
  | sed -nE 's/.*(Scavenge|Mark-Compact).* MB, ([0-9.]+) \/.*/\1 \2/p' \
  | awk '$1 == "Scavenge" { n++; s += $2; if ($2 > mx) mx = $2 } $1 == "Mark-Compact" { mc++ }
         END { printf "GC during the run: %d scavenges, %.1f ms in all, longest %.2f ms; %d mark-compacts\n", n, s, mx, mc }'
"$ROOT/node_modules/.bin/node" "$ROOT/bench/profile-top.mjs" "$OUT"/*.cpuprofile | head -${TOP:-30}
echo "profile: $OUT"
