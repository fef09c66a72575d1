#!/usr/bin/env bash
# One client floods sinkhole at full rate (dnsperf) while another queries every 100 ms (probe.mjs);
# records the second client's latency (p50/p99/max) without and with clients.rateLimit, for a cached
# and an uncached flood. Loopback only, bounded in time. Run it on a quiet machine (bench/README.md).
#
#   bash bench/flood.sh                  # DUR=30 (300 probe queries per run, so p99 means something): ~3.5 min
#   DUR=2 bash bench/flood.sh            # smoke run: about 30 s, figures meaningless (19 probe queries)
#
# Addresses: sinkhole $SH_ADDR:$SH_PORT (pinned to core 1, like bench/run.sh), the kit's NSD upstream
# 127.0.0.2:5300 (core 0), the flooder from 127.0.0.5, the probe from 127.0.0.6.
# Knobs: DUR (s per run), SH_PORT, QPS/BURST (the limiter under test, default the bundled 500/2000),
# ACTION (truncate|refuse), SLIP (clients.rateLimit.slip, default 2), CLIENTS/OUTSTANDING/FLOOD_TIMEOUT
# (dnsperf's -c/-q/-t, default 20/200/5), KIT (the peer kit).
# dnsperf is a closed loop: a query that gets no reply holds one of its OUTSTANDING slots until
# FLOOD_TIMEOUT, so with slip the default flooder slows itself down. A flooder that does not wait
# (a hostile one) is closer to OUTSTANDING=60000 FLOOD_TIMEOUT=1: the sent_qps column shows the rate
# sinkhole received.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# The kit sits next to the main checkout; from a git worktree, look next to the main checkout too.
MAIN=$(cd "$(git -C "$ROOT" rev-parse --git-common-dir 2>/dev/null || echo "$ROOT/.git")/.." && pwd)
KIT=${KIT:-$ROOT/../shared/bench}
[ -x "$KIT/peers.sh" ] || KIT=$MAIN/../shared/bench
[ -x "$KIT/peers.sh" ] || { echo "peer kit not found at $KIT (set KIT=)" >&2; exit 1; }
KIT=$(cd "$KIT" && pwd)
DUR=${DUR:-30}; SH_ADDR=127.0.0.1; SH_PORT=${SH_PORT:-5330}
QPS=${QPS:-500}; BURST=${BURST:-2000}; ACTION=${ACTION:-truncate}
CLIENTS=${CLIENTS:-20}; OUTSTANDING=${OUTSTANDING:-200}; FLOOD_TIMEOUT=${FLOOD_TIMEOUT:-5}; SLIP=${SLIP:-2}
FLOODER=127.0.0.5; PROBE=127.0.0.6; UPSTREAM=127.0.0.2:5300
[[ $DUR =~ ^[0-9]+$ ]] && [ "$DUR" -ge 1 ] && [ "$DUR" -le 120 ] || { echo "DUR must be 1..120 s" >&2; exit 2; }
[[ $SH_PORT =~ ^[0-9]+$ ]] && [ "$SH_PORT" -ge 1024 ] || { echo "bad SH_PORT" >&2; exit 2; }
for t in dnsperf dig nsd taskset; do command -v "$t" >/dev/null || { echo "missing tool: $t" >&2; exit 1; }; done
NODE=$ROOT/node_modules/.bin/node
[ -x "$NODE" ] || { echo "run npm ci first" >&2; exit 1; }
[ -f "$ROOT/dist/cli.js" ] || (cd "$ROOT" && npm run build)
busy() { [ -n "$(ss -lunH "sport = :$1" 2>/dev/null)" ]; }
for p in 5300 "$SH_PORT"; do busy "$p" && { echo "port $p is in use; not starting" >&2; exit 1; }; done

WORK=$(mktemp -d /tmp/sinkhole-flood.XXXXXX)
export RUN=$WORK/peers QDIR=$WORK/q
SH_PID=""; PEERS=0
stop_sinkhole() {
  [ -n "$SH_PID" ] || return 0
  kill -TERM "$SH_PID" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$SH_PID" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$SH_PID" 2>/dev/null || true
  wait "$SH_PID" 2>/dev/null || true
  SH_PID=""
}
cleanup() { local rc=$?; trap - EXIT INT TERM; stop_sinkhole; [ "$PEERS" = 1 ] && "$KIT/peers.sh" stop || true; rm -rf "$WORK"; exit "$rc"; }
trap cleanup EXIT; trap 'exit 130' INT; trap 'exit 143' TERM

PEERS=1
"$KIT/peers.sh" start upstream >/dev/null
"$KIT/gen-queries.sh" "$QDIR" 0 >/dev/null      # cached.txt: c0..c999.example.test

start_sinkhole() { # label [rateLimit yaml]
  cat > "$WORK/$1.yaml" <<YAML
listen: { dns: ["$SH_ADDR:$SH_PORT"] }
upstreams: { servers: ["$UPSTREAM"], timeout: 2s }
clients:
  allowFrom: ["127.0.0.0/8"]
${2:+  rateLimit: $2}
log: { queries: none }
YAML
  taskset -c 1 "$ROOT/bin/sinkhole" serve --config "$WORK/$1.yaml" > "$WORK/$1.log" 2>&1 &
  SH_PID=$!
  for _ in $(seq 1 100); do
    dig +time=1 +tries=1 -p "$SH_PORT" @"$SH_ADDR" c0.example.test A 2>/dev/null | grep -q 'status: NOERROR' && return 0
    kill -0 "$SH_PID" 2>/dev/null || break
    sleep 0.2
  done
  echo "sinkhole did not start:" >&2; cat "$WORK/$1.log" >&2; exit 1
}

# The probe's names, warm in the cache, from an address that is not the flooder's.
warm() { dnsperf -s "$SH_ADDR" -p "$SH_PORT" -a "$PROBE" -d "$QDIR/cached.txt" -n 1 -Q 2000 >/dev/null 2>&1 || true; }

flood_file() { # workload -> query file
  case $1 in
    cached) echo "$QDIR/cached.txt" ;;
    uncached) "$KIT/gen-queries.sh" "$QDIR" $((DUR * 50000)) "f$RANDOM" ;;
  esac
}

RESULTS=$WORK/results.tsv
printf 'limiter\tflood\tflooder_qps\tsent_qps\tflooder_rcodes\tprobe_sent\tprobe_answered\tprobe_lost\tp50_ms\tp99_ms\tmax_ms\n' > "$RESULTS"
run() { # limiter-label flood(none|cached|uncached)
  local fq="-" fs="-" fr="-" probe
  if [ "$2" = none ]; then
    probe=$("$NODE" "$ROOT/bench/probe.mjs" "$SH_ADDR" "$SH_PORT" "$PROBE" "$DUR")
  else
    local f; f=$(flood_file "$2")
    taskset -c 0 dnsperf -s "$SH_ADDR" -p "$SH_PORT" -a "$FLOODER" -d "$f" -l "$DUR" -c "$CLIENTS" -q "$OUTSTANDING" -t "$FLOOD_TIMEOUT" > "$WORK/flood.out" 2>&1 &
    local dp=$!
    probe=$("$NODE" "$ROOT/bench/probe.mjs" "$SH_ADDR" "$SH_PORT" "$PROBE" "$DUR")
    wait "$dp" || true
    fq=$(awk '/Queries per second:/{print $4}' "$WORK/flood.out")
    fs=$(awk -v d="$DUR" '/Queries sent:/{printf "%.0f", $3 / d}' "$WORK/flood.out")
    fr=$(awk '/Response codes:/{sub(/.*Response codes: */,""); gsub(/ /,""); print}' "$WORK/flood.out")
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "${fq:--}" "${fs:--}" "${fr:--}" "$probe" | tee -a "$RESULTS"
}

echo "flood bench: DUR=${DUR}s per run; limiter qps=$QPS burst=$BURST action=$ACTION slip=$SLIP; flooder -c $CLIENTS -q $OUTSTANDING -t $FLOOD_TIMEOUT"
for limiter in off on; do
  if [ "$limiter" = on ]; then start_sinkhole on "{ qps: $QPS, burst: $BURST, action: $ACTION, slip: $SLIP }"; else start_sinkhole off; fi
  warm
  for flood in none cached uncached; do run "$limiter" "$flood"; done
  stop_sinkhole
done
echo
column -t -s $'\t' "$RESULTS"
mkdir -p "$ROOT/bench/results"
cp "$RESULTS" "$ROOT/bench/results/flood-$(date -u +%Y%m%dT%H%M%SZ).tsv"
