#!/usr/bin/env bash
# Uncached queries forwarded over DNS-over-TLS: sinkhole against unbound's own forwarding over TLS,
# to the same DoT upstream, in one run, on loopback only.
#
#   bash bench/dot.sh                               # DUR=10 REPS=2 LATENCY=1 LAT_QPS=5000, about 3 min
#   DUR=3 REPS=1 LATENCY=0 QUIET=0 bash bench/dot.sh   # smoke run: checks it works, figures are rough
#
# What runs (every address in 127.0.0.0/8, every process stopped on exit):
#   upstream   unbound, 1 thread, DoT only on $UP_ADDR:$UP_PORT (core 0), answering every name under
#              example.test from local data (redirect zone) and refusing the rest: it never recurses.
#              Its certificate (bench.test, IP $UP_ADDR) is made with openssl by this script.
#   sinkhole   127.0.0.1:$SH_PORT (core 1), upstreams: ["tls://$UP_ADDR:$UP_PORT#bench.test"] with the
#              test CA in upstreams.tls.ca; HTTP (metrics) on 127.0.0.1:$SH_HTTP_PORT.
#   unbound    127.0.0.1:$UB_PORT (core 1), 1 thread, forward-zone "." over TLS (forward-tls-upstream,
#              tls-cert-bundle = the test CA) to the same upstream.
# Load: the peer kit's suite.sh (../shared/bench), workload "uncached" only: names never asked before,
# so every query crosses the TLS hop. Saturating runs (dnsperf -c 20 -q 200) give QPS; with LATENCY=1
# a fixed-rate run at LAT_QPS gives p50/p99/p99.9.
#
# Connections: while each server is measured, the established TCP connections from its PID to the
# upstream port are sampled every 0.2 s with ss (peak open, and distinct source ports seen = connections
# opened); for sinkhole, sinkhole_upstream_connects_total is read from /metrics as well (exact). With
# reuse and pipelining working, a few connections carry hundreds of thousands of queries.
#
# Knobs: DUR REPS LATENCY LAT_QPS CLIENTS OUTSTANDING QUIET NICE (passed to suite.sh; LAT_QPS defaults
# to 5000 here, below what either server sustains over TLS on this machine), UP_ADDR=127.0.0.3,
# UP_PORT=8853, SH_PORT=5330, SH_HTTP_PORT=9330, UB_PORT=5331, OUTDIR=bench/results/dot-<UTC time>,
# KIT=<repo>/../shared/bench.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROOT=$(git -C "$ROOT" rev-parse --show-toplevel 2>/dev/null || echo "$ROOT")
KIT=${KIT:-$ROOT/../shared/bench}
[ -x "$KIT/suite.sh" ] || { echo "peer kit not found at $KIT (expected ../shared/bench next to the repo)" >&2; exit 1; }
KIT=$(cd "$KIT" && pwd)

UP_ADDR=${UP_ADDR:-127.0.0.3}; UP_PORT=${UP_PORT:-8853}
SH_PORT=${SH_PORT:-5330}; SH_HTTP_PORT=${SH_HTTP_PORT:-9330}; UB_PORT=${UB_PORT:-5331}
export HOST=127.0.0.1 LAT_QPS=${LAT_QPS:-5000} WORKLOADS=uncached
TLS_NAME=bench.test

# --- loopback only, tools, free ports -----------------------------------------------------------
[[ $UP_ADDR =~ ^127\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}$ ]] || { echo "refusing non-loopback upstream address '$UP_ADDR'" >&2; exit 2; }
for t in dnsperf unbound unbound-checkconf openssl kdig dig taskset ss bc python3 curl; do
  command -v "$t" >/dev/null || { echo "missing tool: $t (apt-get install -y dnsperf unbound openssl knot-dnsutils bind9-dnsutils curl)" >&2; exit 1; }
done
port_busy() { [ -n "$(ss -ltnH "sport = :$1" 2>/dev/null)" ] || [ -n "$(ss -lunH "sport = :$1" 2>/dev/null)" ]; }
for p in "$UP_PORT" "$SH_PORT" "$SH_HTTP_PORT" "$UB_PORT"; do
  if port_busy "$p"; then echo "port $p is already in use; not starting (set UP_PORT/SH_PORT/SH_HTTP_PORT/UB_PORT)" >&2; exit 1; fi
done

cd "$ROOT"
[ -f dist/cli.js ] || { echo "dist/ missing: npm run build"; npm run build; }

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUTDIR=${OUTDIR:-$ROOT/bench/results/dot-$STAMP}
mkdir -p "$OUTDIR"; OUTDIR=$(cd "$OUTDIR" && pwd); export OUTDIR
WORK=$(mktemp -d /tmp/sinkhole-dot-bench.XXXXXX)
declare -A PID=()

stop() { # name
  local p=${PID[$1]:-}
  [ -n "$p" ] || return 0
  if kill -0 "$p" 2>/dev/null; then
    kill -TERM "$p" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
    echo "stopped $1 pid $p"
  fi
  PID[$1]=""
}
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop sampler; stop sinkhole; stop unbound; stop upstream
  cp "$WORK"/*.log "$WORK"/*.yaml "$WORK"/*.conf "$OUTDIR/" 2>/dev/null || true
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- certificate ---------------------------------------------------------------------------------
{
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$WORK/ca.key" -out "$WORK/ca.pem" -days 2 -subj "/CN=bench CA"
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$WORK/up.key" -out "$WORK/up.csr" -subj "/CN=$TLS_NAME"
  printf 'subjectAltName=DNS:%s,IP:%s\nextendedKeyUsage=serverAuth\n' "$TLS_NAME" "$UP_ADDR" > "$WORK/up.ext"
  openssl x509 -req -in "$WORK/up.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" -CAcreateserial -out "$WORK/up.pem" -days 2 -extfile "$WORK/up.ext"
} > "$WORK/openssl.log" 2>&1 || { cat "$WORK/openssl.log" >&2; exit 1; }

# --- processes -----------------------------------------------------------------------------------
common_unbound() { # directory
  cat <<EOF
    do-ip6: no
    num-threads: 1
    username: ""
    chroot: ""
    directory: "$1"
    pidfile: ""
    use-syslog: no
    verbosity: 0
    access-control: 127.0.0.0/8 allow
    module-config: "iterator"
    so-reuseport: no
    msg-cache-size: 64m
    rrset-cache-size: 128m
    num-queries-per-thread: 4096
    outgoing-range: 8192
    prefetch: no
EOF
}
cat > "$WORK/upstream.conf" <<EOF
server:
    interface: $UP_ADDR@$UP_PORT
    tls-port: $UP_PORT
    tls-service-key: "$WORK/up.key"
    tls-service-pem: "$WORK/up.pem"
    logfile: "$WORK/upstream.log"
    incoming-num-tcp: 100
$(common_unbound "$WORK")
    # Answers every name under example.test (the kit's uncached names) and refuses the rest: no recursion.
    local-zone: "." refuse
    local-zone: "example.test." redirect
    local-data: "example.test. 300 IN A 192.0.2.10"
    local-data: "example.test. 300 IN AAAA 2001:db8::10"
remote-control:
    control-enable: no
EOF
cat > "$WORK/unbound.conf" <<EOF
server:
    interface: 127.0.0.1@$UB_PORT
    logfile: "$WORK/unbound.log"
    do-not-query-localhost: no
    tls-cert-bundle: "$WORK/ca.pem"
$(common_unbound "$WORK")
    local-zone: "test." nodefault
remote-control:
    control-enable: no
forward-zone:
    name: "."
    forward-tls-upstream: yes
    forward-addr: $UP_ADDR@$UP_PORT#$TLS_NAME
EOF
cat > "$WORK/sinkhole.yaml" <<EOF
# generated by bench/dot.sh
listen: { dns: ["127.0.0.1:$SH_PORT"], http: "127.0.0.1:$SH_HTTP_PORT" }
upstreams:
  servers: ["tls://$UP_ADDR:$UP_PORT#$TLS_NAME"]
  timeout: 2s
  tls: { ca: ca.pem }
cache: { maxEntries: 100000 }
log: { queries: none }
EOF
for c in upstream unbound; do unbound-checkconf "$WORK/$c.conf" >/dev/null || { unbound-checkconf "$WORK/$c.conf"; exit 1; }; done

launch() { # name core command...
  local name=$1 core=$2; shift 2
  taskset -c "$core" "$@" > "$WORK/$name.out.log" 2>&1 &
  PID[$name]=$!
  echo "started $name pid ${PID[$name]} (core $core)"
}
wait_answer() { # name port [tls]: until c0.example.test resolves to 192.0.2.10
  local i
  for i in $(seq 1 100); do
    kill -0 "${PID[$1]}" 2>/dev/null || { echo "$1 exited during start-up:" >&2; cat "$WORK/$1".*log >&2; exit 1; }
    if [ "${3:-}" = tls ]; then
      kdig +tls-ca="$WORK/ca.pem" +tls-hostname="$TLS_NAME" +retry=0 +time=1 -p "$2" @"$UP_ADDR" c0.example.test A +short 2>/dev/null | grep -qx 192.0.2.10 && return 0
    else
      dig +time=1 +tries=1 -p "$2" @127.0.0.1 c0.example.test A +short 2>/dev/null | grep -qx 192.0.2.10 && return 0
    fi
    sleep 0.2
  done
  echo "$1 did not answer c0.example.test within 20 s" >&2; exit 1
}
launch upstream 0 unbound -d -c "$WORK/upstream.conf"
wait_answer upstream "$UP_PORT" tls
taskset -c 1 "$ROOT/bin/sinkhole" serve --config "$WORK/sinkhole.yaml" > "$WORK/sinkhole.log" 2>&1 &
PID[sinkhole]=$!; echo "started sinkhole pid ${PID[sinkhole]} (core 1)"
wait_answer sinkhole "$SH_PORT"
launch unbound 1 unbound -d -c "$WORK/unbound.conf"
wait_answer unbound "$UB_PORT"

# --- measure -------------------------------------------------------------------------------------
# sample PID LABEL: established connections from PID to the upstream, every 0.2 s, into $WORK/conns-LABEL
sample() {
  while :; do
    ss -Htnp state established "( dport = :$UP_PORT )" 2>/dev/null | grep "pid=$1," | awk '{print $3}'
    echo "--"
    sleep 0.2
  done > "$WORK/conns-$2"
}
conn_stats() { # LABEL -> "peak distinct"
  awk '/^--$/ { if (n > peak) peak = n; n = 0; next } { n++; seen[$0] = 1 } END { d = 0; for (k in seen) d++; print peak + 0, d }' "$WORK/conns-$1"
}
sh_connects() { curl -s --max-time 3 "http://127.0.0.1:$SH_HTTP_PORT/metrics" | awk '$1 ~ /^sinkhole_upstream_connects_total[{]/ { s += $NF } END { printf "%d\n", s }'; }

measure() { # PORT LABEL PID
  local before=0
  [ "$2" = sinkhole-dot ] && before=$(sh_connects)
  sample "$3" "$2" &
  PID[sampler]=$!
  "$KIT/suite.sh" "$1" "$2" "$3" || echo "note: suite.sh for $2 exited $?"
  stop sampler
  read -r peak distinct < <(conn_stats "$2")
  local opened=$distinct
  [ "$2" = sinkhole-dot ] && opened="$distinct (metric: $(( $(sh_connects) - before )))"
  printf '%s\t%s\t%s\n' "$2" "$peak" "$opened" >> "$OUTDIR/connections.tsv"
}
printf 'label\tpeak_open\topened\n' > "$OUTDIR/connections.tsv"
export UPSTREAM_PID=${PID[upstream]}
measure "$SH_PORT" sinkhole-dot "${PID[sinkhole]}"
measure "$UB_PORT" unbound-dot "${PID[unbound]}"

# --- report --------------------------------------------------------------------------------------
python3 - "$OUTDIR/results.tsv" "$OUTDIR/connections.tsv" <<'PY' | tee "$OUTDIR/summary.md"
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter='\t'))
conns = {r['label']: r for r in csv.DictReader(open(sys.argv[2]), delimiter='\t')}
def f(x):
    try: return float(x)
    except (TypeError, ValueError): return None
print('| server | uncached QPS (mean of reps) | p99 ms @fixed rate | p50 ms | lost % | srv CPU % | upstream CPU % | upstream conns: peak open | opened |')
print('|---|---|---|---|---|---|---|---|---|')
qps = {}
for label in dict.fromkeys(r['label'] for r in rows):
    sat = [r for r in rows if r['label'] == label and r['mode'] == 'sat']
    fix = [r for r in rows if r['label'] == label and r['mode'] != 'sat']
    q = [f(r['qps']) for r in sat if f(r['qps']) is not None]
    qps[label] = sum(q) / len(q) if q else None
    p99 = fix[-1]['p99_ms'] if fix else '-'
    p50 = fix[-1]['p50_ms'] if fix else '-'
    lost = max((f(r['lost_pct']) or 0) for r in sat) if sat else None
    cpu = sum(f(r['server_cpu_pct']) or 0 for r in sat) / len(sat) if sat else None
    ucpu = sum(f(r['upstream_cpu_pct']) or 0 for r in sat) / len(sat) if sat else None
    c = conns.get(label, {})
    print(f"| {label} | {qps[label]:,.0f} ({len(q)}) | {p99} | {p50} | {lost if lost is not None else '-'} | {cpu:.0f} | {ucpu:.0f} | {c.get('peak_open','-')} | {c.get('opened','-')} |"
          if qps[label] is not None else f"| {label} | - | {p99} | {p50} | - | - | - | {c.get('peak_open','-')} | {c.get('opened','-')} |")
if qps.get('sinkhole-dot') and qps.get('unbound-dot'):
    print(f"\nsinkhole/unbound uncached QPS over TLS: {qps['sinkhole-dot'] / qps['unbound-dot']:.2f}")
PY
echo
echo "results: $OUTDIR (summary.md, connections.tsv, results.tsv, logs/)"
