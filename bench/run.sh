#!/usr/bin/env bash
# sinkhole's throughput/latency benchmark against its peers, on loopback only.
#
#   bash bench/run.sh                      # full run: about 8 min with the kit's defaults
#   DUR=3 REPS=1 LATENCY=0 bash bench/run.sh   # smoke run, about 2 min
#   LOG_COST=1 bash bench/run.sh           # also measure what the query log costs
#   IDENTITY_LEASES=50000 bash bench/run.sh # also measure the identity stage with a 50k-lease file
#
# It reuses the peer kit in <repo>/../shared/bench (see its README.md and BASELINE.md) instead
# of copying it, so sinkhole is measured with exactly the workloads, pinning, nice level and
# quiet-machine gate that produced the baseline:
#   1. builds dist/ when it is missing (never rebuilds an existing dist/: see README.md);
#   2. starts the kit's peers with peers.sh in a private run dir: NSD upstream 127.0.0.2:5300
#      (required), dnsmasq 127.0.0.1:5301 and unbound 1-thread 127.0.0.1:5302 (skipped, with a
#      message, when not installed or when they fail to start);
#   3. starts sinkhole with `taskset -c 1` (the peers' core) on $SH_ADDR:$SH_PORT, blocking the
#      kit's 200 domains with response null-ip (0.0.0.0 / ::, like the peers);
#      It runs through bin/sinkhole, so on the project's own runtime with the flags of `npm start`.
#   4. runs the kit's suite.sh (workloads blocked, cached, uncached) against sinkhole, dnsmasq
#      and unbound-t1;
#   5. with LOG_COST=1, restarts sinkhole with log.queries: blocked (every blocked query a JSON line in
#      a file, as the bundled config does) and runs the blocked workload again as "sinkhole-querylog";
#   6. with DNSTAP_COST=1, starts fstrm_capture (Debian fstrm-bin) on a unix socket, restarts sinkhole
#      with log.dnstap pointing at it (client and forwarder messages) and runs the workloads again as
#      "sinkhole-dnstap" (issue 20 §2: the cost of dnstap on against off, in one sitting);
#   7. stops exactly the processes it started (trap on EXIT), then prints one table (summarize.py).
#
# Knobs (environment):
#   DUR, REPS, LATENCY, LAT_QPS, CLIENTS, OUTSTANDING, NICE, QUIET, QDIR  passed to suite.sh; unset =
#                       the kit's defaults (DUR=10 REPS=2 LATENCY=1 LAT_QPS=10000 CLIENTS=20 OUTSTANDING=200)
#   LOG_COST=1          also run sinkhole-querylog (default 0)
#   DNSTAP_COST=1       also run sinkhole-dnstap: every query and upstream exchange sent as dnstap to
#                       fstrm_capture on core $PIN_CLIENT (with dnsperf), written to a file (default 0)
#   IDENTITY_LEASES=N   also run "sinkhole-identity" (blocked, cached): a generated Kea memfile of N leases
#                       (the benchmark client 127.0.0.1 among them), watched as identity.leases, and an
#                       exception by MAC for another device, so every blocked query looks its device up
#                       and the report resolves it; compare with the plain sinkhole rows (default 0 = off)
#   RPZ_RECORDS=N       also run "sinkhole-listN" and "sinkhole-rpzN": the same rules (the kit's 200 domains and
#                       synthetic ones, N/2 domains) as a plain list and as an RPZ zone of N records (D and *.D,
#                       CNAME .), both NXDOMAIN; prints the time to the first answer and the RSS (issue 21)
#   PEERS="dnsmasq unbound1"   which peers to start and measure (default both; PEERS=none: sinkhole only;
#                       also dnsdist, node-raw (bare Node echo: blocked only), node-fwd (bare Node relay: uncached only))
#   WORKLOADS="blocked cached uncached"   the suite's workloads (sinkhole-querylog: blocked only)
#   SH_ADDR=127.0.0.1 SH_PORT=5320 SH_HTTP_PORT=9320   sinkhole's listen addresses (loopback only)
#   PORT_REUSE=N                                     upstreams.sourcePortReuse (unset = sinkhole's default, 100; 1 = a fresh
#                                                    source port per query, RFC 5452's strict form)
#   OUTDIR=bench/results/<UTC time>   where results.tsv, logs/, sinkhole logs and summary.md go
#   WORKERS=1          sinkhole's `workers` (query threads); PIN_SERVER=1 the cores it may use (taskset -c)
#   QUERY_LOG=none     sinkhole's log.queries (none | blocked | all), to measure what the query log costs
#   NODES="label=/path/to/node ..."  run the sinkhole suite once per runtime (e.g. to compare Node
#                       lines); default: the project's own runtime, node_modules/.bin/node
#   KIT=<repo>/../shared/bench   the peer kit
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROOT=$(git -C "$ROOT" rev-parse --show-toplevel 2>/dev/null || echo "$ROOT")
KIT=${KIT:-$ROOT/../shared/bench}
[ -x "$KIT/suite.sh" ] && [ -x "$KIT/peers.sh" ] || { echo "peer kit not found at $KIT (expected ../shared/bench next to the repo)" >&2; exit 1; }
KIT=$(cd "$KIT" && pwd)

SH_ADDR=${SH_ADDR:-127.0.0.1}; SH_PORT=${SH_PORT:-5320}; SH_HTTP_PORT=${SH_HTTP_PORT:-9320}
WORKERS=${WORKERS:-1}; PIN_SERVER=${PIN_SERVER:-1}
UPSTREAM_ADDR=127.0.0.2; UPSTREAM_PORT=5300          # fixed by the kit (conf/nsd.conf.in)
LOG_COST=${LOG_COST:-0}; DNSTAP_COST=${DNSTAP_COST:-0}; IDENTITY_LEASES=${IDENTITY_LEASES:-0}; PEERS=${PEERS:-dnsmasq unbound1}; [ "$PEERS" = none ] && PEERS=""
WORKLOADS=${WORKLOADS:-blocked cached uncached}
export HOST=${HOST:-127.0.0.1}                        # dnsperf/dig target, for suite.sh

# --- loopback only ------------------------------------------------------------------------------
is_loopback() { # IPv4 in 127.0.0.0/8, written as a dotted quad
  [[ $1 =~ ^127\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})$ ]] || return 1
  local o; for o in "${BASH_REMATCH[@]:1}"; do [ "$o" -le 255 ] || return 1; done
}
for a in "$SH_ADDR" "$HOST" "$UPSTREAM_ADDR"; do
  is_loopback "$a" || { echo "refusing non-loopback address '$a': this benchmark only runs on 127.0.0.0/8" >&2; exit 2; }
done
[ "$SH_ADDR" = "$HOST" ] || { echo "HOST ($HOST) must equal SH_ADDR ($SH_ADDR): suite.sh sends to HOST" >&2; exit 2; }
for p in "$SH_PORT" "$SH_HTTP_PORT"; do [[ $p =~ ^[0-9]+$ ]] && [ "$p" -ge 1024 ] && [ "$p" -le 65535 ] || { echo "bad port $p" >&2; exit 2; }; done

# --- tools --------------------------------------------------------------------------------------
for t in dnsperf dig taskset bc python3 ss node; do
  command -v "$t" >/dev/null || { echo "missing tool: $t (CI: apt-get install -y dnsperf nsd dnsmasq-base unbound bind9-dnsutils)" >&2; exit 1; }
done
command -v nsd >/dev/null || { echo "nsd is not installed: it is the upstream every workload needs (apt-get install -y nsd)" >&2; exit 1; }
# dnsdist: the forwarding ceiling; node-raw and node-fwd: the kit's bare Node servers on the project's own
# runtime (a dgram echo with a fixed answer, and a relay with ID rewrite through one socket), the measuring
# sticks of issue 22. Each peer runs the workloads it can answer: the echo answers everything the same.
declare -A PEER_BIN=([dnsmasq]=dnsmasq [unbound1]=unbound [dnsdist]=dnsdist [node-raw]=node [node-fwd]=node)
declare -A PEER_PORT=([dnsmasq]=5301 [unbound1]=5302 [dnsdist]=5304 [node-raw]=5310 [node-fwd]=5312)
declare -A PEER_LABEL=([dnsmasq]=dnsmasq [unbound1]=unbound-t1 [dnsdist]=dnsdist [node-raw]=node-echo [node-fwd]=node-relay)
declare -A PEER_WORKLOADS=([node-raw]=blocked [node-fwd]=uncached)
want_peers=()
for p in $PEERS; do
  [ -n "${PEER_BIN[$p]:-}" ] || { echo "unknown peer '$p' (known: dnsmasq unbound1 dnsdist node-raw node-fwd)" >&2; exit 2; }
  if command -v "${PEER_BIN[$p]}" >/dev/null; then want_peers+=("$p")
  else echo "note: ${PEER_BIN[$p]} is not installed: skipping peer ${PEER_LABEL[$p]}"; fi
done

# Ports must be free: a server already there would be measured in our place.
port_busy() { [ -n "$(ss -lunH "sport = :$1" 2>/dev/null)" ] || [ -n "$(ss -ltnH "sport = :$1" 2>/dev/null)" ]; }
for p in "$UPSTREAM_PORT" "$SH_PORT" "$SH_HTTP_PORT" $(for w in ${want_peers[@]+"${want_peers[@]}"}; do echo "${PEER_PORT[$w]}"; done); do
  if port_busy "$p"; then echo "port $p is already in use (another benchmark running? see: ss -lunp 'sport = :$p'); not starting" >&2; exit 1; fi
done

# --- build --------------------------------------------------------------------------------------
cd "$ROOT"
if [ ! -f dist/cli.js ]; then
  echo "dist/ missing: npm run build"; npm run build
elif [ -n "$(find src -name '*.ts' -newer dist/cli.js -print -quit 2>/dev/null)" ]; then
  echo "note: some src/ files are newer than dist/cli.js; measuring the existing dist/ (run 'npm run build' to include them)"
fi

# --- work dirs, cleanup -------------------------------------------------------------------------
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUTDIR=${OUTDIR:-$ROOT/bench/results/$STAMP}
mkdir -p "$OUTDIR"; OUTDIR=$(cd "$OUTDIR" && pwd); export OUTDIR
WORK=$(mktemp -d /tmp/sinkhole-bench.XXXXXX)
export RUN=$WORK/peers                                # peers.sh's run dir: private, so stop only touches ours
SH_PID=""; PEERS_STARTED=0; CAP_PID=""

stop_sinkhole() {
  [ -n "$SH_PID" ] || return 0
  if kill -0 "$SH_PID" 2>/dev/null; then
    kill -TERM "$SH_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$SH_PID" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$SH_PID" 2>/dev/null; then echo "sinkhole pid $SH_PID did not stop on SIGTERM in 5 s: SIGKILL"; kill -KILL "$SH_PID" 2>/dev/null || true; fi
    wait "$SH_PID" 2>/dev/null || true
    echo "stopped sinkhole pid $SH_PID"
  fi
  SH_PID=""
}
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_sinkhole
  [ -n "$CAP_PID" ] && { kill -INT "$CAP_PID" 2>/dev/null; wait "$CAP_PID" 2>/dev/null; } || true
  [ "$PEERS_STARTED" = 1 ] && "$KIT/peers.sh" stop || true
  cp "$WORK"/sinkhole*.log "$WORK"/sinkhole*.yaml "$OUTDIR/" 2>/dev/null || true
  for f in "$RUN"/*.out "$RUN"/*.log; do [ -s "$f" ] && cp "$f" "$OUTDIR/peer-$(basename "$f")"; done 2>/dev/null || true
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- peers --------------------------------------------------------------------------------------
# The bare Node peers run on the project's own runtime (issue 22 compares sinkhole with them on it).
[ -x "$ROOT/node_modules/.bin/node" ] && export PATH="$ROOT/node_modules/.bin:$PATH"
PEERS_STARTED=1
"$KIT/peers.sh" start upstream
UPSTREAM_PID=$(cat "$RUN/pids/upstream")
dig +short +time=1 +tries=2 -p "$UPSTREAM_PORT" @"$UPSTREAM_ADDR" probe.example.test A | grep -q '^192\.0\.2\.10$' \
  || { echo "the NSD upstream does not answer on $UPSTREAM_ADDR:$UPSTREAM_PORT" >&2; exit 1; }
export UPSTREAM_PID
ran_peers=()
for p in ${want_peers[@]+"${want_peers[@]}"}; do
  if "$KIT/peers.sh" start "$p"; then ran_peers+=("$p")
  else echo "note: peer ${PEER_LABEL[$p]} failed to start: skipping it"; fi
done

# --- sinkhole -----------------------------------------------------------------------------------
"$KIT/gen-blocklist.sh" > "$WORK/blocklist.txt"
cat > "$WORK/sinkhole.yaml" <<EOF
# generated by bench/run.sh: the kit's 200 blocked domains, answered 0.0.0.0 / :: like the peers
listen: { dns: ["$SH_ADDR:$SH_PORT"], http: "$SH_ADDR:$SH_HTTP_PORT" }
upstreams: { servers: ["$UPSTREAM_ADDR:$UPSTREAM_PORT"], timeout: 2s${PORT_REUSE:+, sourcePortReuse: $PORT_REUSE} }
cache: { maxEntries: 100000 }
blocking:
  lists: { bench: [$WORK/blocklist.txt] }
  enforce: [bench]
  response: null-ip
log: { queries: ${QUERY_LOG:-none}, file: "$WORK/queries.jsonl" }
workers: $WORKERS
EOF

SH_CONFIG=$WORK/sinkhole.yaml
start_sinkhole() { # log-name [env...]
  local name=$1; shift
  env ${NODE_BIN:+SINKHOLE_NODE=$NODE_BIN} "$@" taskset -c "$PIN_SERVER" "$ROOT/bin/sinkhole" serve --config "$SH_CONFIG" > "$WORK/$name.log" 2>&1 &
  SH_PID=$!
  echo "started $name pid $SH_PID (taskset -c $PIN_SERVER, workers $WORKERS${*:+, $*})"
  local i
  local tries=${START_TRIES:-100}
  for i in $(seq 1 "$tries"); do
    kill -0 "$SH_PID" 2>/dev/null || { echo "sinkhole exited during start-up:" >&2; cat "$WORK/$name.log" >&2; SH_PID=""; exit 1; }
    dig +time=1 +tries=1 -p "$SH_PORT" @"$SH_ADDR" c0.example.test A 2>/dev/null | grep -q 'status: NOERROR' && break
    sleep 0.2
  done
  [ "$i" -lt "$tries" ] || { echo "sinkhole did not answer on $SH_ADDR:$SH_PORT within $((tries / 5)) s:" >&2; cat "$WORK/$name.log" >&2; exit 1; }
  sanity_check
}

# The peers answer blocked names 0.0.0.0 / :: (NOERROR) and resolve allowed ones: so must sinkhole,
# or the comparison is not like for like. A mismatch is reported, not fatal.
sanity_check() {
  local name type want got
  while read -r name type want; do
    got=$(dig +noall +comments +answer +time=2 +tries=1 -p "$SH_PORT" @"$SH_ADDR" "$name" "$type" \
          | awk -v t="$type" '/status:/{s=$6; sub(/,$/,"",s)} !/^;/ && $4==t {a=$NF} END{print s "/" a}' || true)
    [ "$got" = "$want" ] || echo "WARNING: sinkhole answered '$name $type' with $got, expected $want" | tee -a "$OUTDIR/warnings.txt"
  done <<'EOF'
www.tiktok.com A NOERROR/0.0.0.0
v16-x.tiktokcdn.com AAAA NOERROR/::
tiktok-synth-003.com A NOERROR/0.0.0.0
c0.example.test A NOERROR/192.0.2.10
c1.example.test AAAA NOERROR/2001:db8::10
EOF
}

# One suite; a failure (e.g. the server died) is recorded and the run goes on to the next server.
# Success = suite.sh appended every expected row: its exit status is not usable, because it ends
# with `[ "$wl" = uncached ] && rm …` and so exits 1 whenever the last workload is not uncached.
rows() { [ -s "$OUTDIR/results.tsv" ] && awk -F'\t' -v l="$1" '$1==l' "$OUTDIR/results.tsv" | wc -l || echo 0; }
suite() { # port label pid [workloads]
  local rc=0 wl="${4:-$WORKLOADS}" before after want
  echo "# $(date -u +%FT%TZ) load: $(cut -d' ' -f1-3 /proc/loadavg)"
  before=$(rows "$2")
  WORKLOADS="$wl" "$KIT/suite.sh" "$1" "$2" "$3" || rc=$?
  after=$(rows "$2")
  want=$(( $(wc -w <<<"$wl") * (${REPS:-2} + (${LATENCY:-1} == 1 ? 1 : 0)) ))
  [ $((after - before)) -ge "$want" ] \
    || echo "WARNING: suite.sh for $2 recorded $((after - before)) of $want runs (exit $rc); see its output above" | tee -a "$OUTDIR/warnings.txt"
  if ! kill -0 "$3" 2>/dev/null; then
    echo "WARNING: $2 (pid $3) is no longer running after its suite" | tee -a "$OUTDIR/warnings.txt"
    [ "$3" = "$SH_PID" ] && { tail -20 "$WORK/$2.log" | sed 's/^/    /' | tee -a "$OUTDIR/warnings.txt"; SH_PID=""; }
  fi
  return 0
}

# The runtime: bin/sinkhole's (the project's own Node, with the flags of `npm start`), or each of NODES.
NODE_BIN=""
if [ -n "${NODES:-}" ]; then
  for spec in $NODES; do
    NODE_BIN=${spec#*=}
    start_sinkhole "sinkhole-${spec%%=*}"
    suite "$SH_PORT" "sinkhole-${spec%%=*}" "$SH_PID"
    stop_sinkhole
  done
  NODE_BIN=""
else
  start_sinkhole sinkhole
  suite "$SH_PORT" sinkhole "$SH_PID"
fi

if [ "$LOG_COST" = 1 ]; then
  stop_sinkhole
  # The same config with every blocked query logged to a file (the bundled config's setting): the
  # blocked workload then writes one JSON line per query, the worst case for the log.
  SH_CONFIG=$WORK/sinkhole-querylog.yaml
  sed 's/^log: { queries: [a-z]*,/log: { queries: blocked,/' "$WORK/sinkhole.yaml" > "$SH_CONFIG"
  start_sinkhole sinkhole-querylog
  if [[ " $WORKLOADS " == *" blocked "* ]]; then suite "$SH_PORT" sinkhole-querylog "$SH_PID" blocked
  else echo "note: LOG_COST=1 needs the blocked workload; skipped"; fi
  echo "query log: $(wc -l < "$WORK/queries.jsonl" 2>/dev/null || echo 0) lines, $(du -h "$WORK/queries.jsonl" 2>/dev/null | cut -f1)"
  SH_CONFIG=$WORK/sinkhole.yaml
fi

if [ "$DNSTAP_COST" = 1 ]; then
  stop_sinkhole
  command -v fstrm_capture >/dev/null || { echo "DNSTAP_COST=1 needs fstrm_capture: apt-get install fstrm-bin" >&2; exit 1; }
  # The collector shares the client's core: on 2 cores, sinkhole keeps its own core as in the plain run.
  taskset -c "${PIN_CLIENT:-0}" fstrm_capture -t protobuf:dnstap.Dnstap -u "$WORK/dnstap.sock" -w "$WORK/dnstap.fstrm" > "$WORK/fstrm_capture.log" 2>&1 &
  CAP_PID=$!
  for _ in $(seq 1 50); do [ -S "$WORK/dnstap.sock" ] && break; sleep 0.1; done
  SH_CONFIG=$WORK/sinkhole-dnstap.yaml
  sed "s|^log: { queries: \([a-z]*\),|log: { dnstap: { socket: \"$WORK/dnstap.sock\" }, queries: \1,|" "$WORK/sinkhole.yaml" > "$SH_CONFIG"
  start_sinkhole sinkhole-dnstap
  suite "$SH_PORT" sinkhole-dnstap "$SH_PID"
  dropped=$(curl -s "http://$SH_ADDR:$SH_HTTP_PORT/metrics" | awk '$1=="sinkhole_dnstap_dropped_total"{print $2}')
  sent=$(curl -s "http://$SH_ADDR:$SH_HTTP_PORT/metrics" | awk '$1=="sinkhole_dnstap_sent_total"{print $2}')
  stop_sinkhole
  kill -INT "$CAP_PID" 2>/dev/null; wait "$CAP_PID" 2>/dev/null || true; CAP_PID=""
  echo "dnstap: sent $sent, dropped $dropped, file $(du -h "$WORK/dnstap.fstrm" 2>/dev/null | cut -f1)" | tee -a "$OUTDIR/dnstap.txt"
  SH_CONFIG=$WORK/sinkhole.yaml
fi

if [ "$IDENTITY_LEASES" -gt 0 ] 2>/dev/null; then
  stop_sinkhole
  # A Kea memfile of IDENTITY_LEASES leases: the benchmark client first, then 10.x.y.z addresses.
  python3 - "$IDENTITY_LEASES" > "$WORK/leases.csv" <<'PY'
import sys, time
n, now = int(sys.argv[1]), int(time.time())
print("address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state,user_context,pool_id")
print(f"127.0.0.1,02:00:00:00:ff:01,,86400,{now + 86400},1,0,0,bench-client,0,,0")
for i in range(n - 1):
    print(f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255},02:01:{(i >> 24) & 255:02x}:{(i >> 16) & 255:02x}:{(i >> 8) & 255:02x}:{i & 255:02x},,86400,{now + 86400},1,0,0,host-{i},0,,0")
PY
  SH_CONFIG=$WORK/sinkhole-identity.yaml
  { cat "$WORK/sinkhole.yaml"; cat <<EOF; } > "$SH_CONFIG"
identity: { leases: [{ format: kea-csv, file: $WORK/leases.csv }] }
state: { dir: $WORK/state }
exceptions:
  - { id: BENCH-MAC, clients: ["mac:02:00:00:00:ff:02"], allow: [bench], reason: bench, approvedBy: bench, expires: 2999-01-01 }
EOF
  start_sinkhole sinkhole-identity
  idw=$(for w in $WORKLOADS; do case $w in blocked|cached) echo "$w";; esac; done | xargs)
  if [ -n "$idw" ]; then suite "$SH_PORT" sinkhole-identity "$SH_PID" "$idw"
  else echo "note: IDENTITY_LEASES needs workload blocked or cached; skipped"; fi
  SH_CONFIG=$WORK/sinkhole.yaml
fi
if [ "${RPZ_RECORDS:-0}" -gt 0 ] 2>/dev/null; then
  stop_sinkhole
  # Issue 21: the same rules as a plain list and as an RPZ zone of RPZ_RECORDS records ("D CNAME ." and
  # "*.D CNAME ." per domain: the kit's 200 and synthetic ones), both answered NXDOMAIN; load time,
  # memory, and the workloads for each, in one sitting.
  python3 - "$RPZ_RECORDS" "$WORK" <<'PY'
import sys, subprocess
n, work = int(sys.argv[1]), sys.argv[2]
domains = open(f"{work}/blocklist.txt").read().split()
domains += [f"r{i}.bench-rpz.test" for i in range(max(0, n // 2 - len(domains)))]
with open(f"{work}/big-list.txt", "w") as f:
    f.write("\n".join(domains) + "\n")
with open(f"{work}/big.zone", "w") as f:
    f.write("$ORIGIN bench.rpz.\n$TTL 60\n@ SOA ns.bench.rpz. hostmaster.bench.rpz. 1 3600 600 86400 60\n@ NS localhost.\n")
    for d in domains:
        f.write(f"{d} CNAME .\n*.{d} CNAME .\n")
PY
  for variant in list rpz; do
    SH_CONFIG=$WORK/sinkhole-$variant$RPZ_RECORDS.yaml
    if [ "$variant" = list ]; then rules="lists: { bench: [$WORK/big-list.txt] }"; else rules="rpz: [{ name: bench, file: $WORK/big.zone }]"; fi
    sed -e "s|^  lists: { bench: \[.*\] }|  $rules|" -e 's|^  response: null-ip|  response: nxdomain|' "$WORK/sinkhole.yaml" > "$SH_CONFIG"
    t0=$(date +%s.%N)
    START_TRIES=1500 start_sinkhole "sinkhole-$variant$RPZ_RECORDS"
    t1=$(date +%s.%N)
    rss=$(awk '/^VmRSS/{print int($2/1024)}' "/proc/$SH_PID/status")
    echo "$variant with $RPZ_RECORDS records: answering after $(echo "$t1 - $t0" | bc) s, RSS ${rss} MB" | tee -a "$OUTDIR/rpz.txt"
    suite "$SH_PORT" "sinkhole-$variant$RPZ_RECORDS" "$SH_PID"
    echo "$variant after the workloads: RSS $(awk '/^VmRSS/{print int($2/1024)}' "/proc/$SH_PID/status") MB" | tee -a "$OUTDIR/rpz.txt"
    stop_sinkhole
  done
  SH_CONFIG=$WORK/sinkhole.yaml
fi
stop_sinkhole

for p in ${ran_peers[@]+"${ran_peers[@]}"}; do
  suite "${PEER_PORT[$p]}" "${PEER_LABEL[$p]}" "$(cat "$RUN/pids/$p")" "${PEER_WORKLOADS[$p]:-$WORKLOADS}"
done

# --- report -------------------------------------------------------------------------------------
[ -s "$OUTDIR/results.tsv" ] || { echo "no results recorded" >&2; exit 1; }
python3 "$KIT/summarize.py" "$OUTDIR/results.tsv" > "$OUTDIR/detail.md"    # the kit's per-run table
echo
python3 "$ROOT/bench/summarize.py" "$OUTDIR/results.tsv" | tee "$OUTDIR/summary.md"
[ -s "$OUTDIR/warnings.txt" ] && { echo; echo "warnings:"; cat "$OUTDIR/warnings.txt"; }
echo
echo "results: $OUTDIR (summary.md, detail.md = every run, results.tsv, logs/)"
