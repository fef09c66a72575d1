#!/usr/bin/env bash
# Interop suite: real DNS clients (dig, kdig), a real authoritative upstream
# (NSD) and a real Prometheus against a built sinkhole (dist/cli.js).
#
# Run from the repository root after `npm run build` (.ci/run does both).
# Everything stays on loopback: NSD on 127.0.0.3, sinkhole and Prometheus on
# 127.0.0.1, each on a port checked free with ss. No query for a name that is
# not blocked ever reaches a real resolver: the only upstream is the local NSD.
#
# Output: one `ok - ...` / `not ok - ...` line per check, then exactly one
# `interop: N passed, M failed` line. Exit status is non-zero when M > 0.
# Every process this script starts, and its temp dir, are removed on exit.
#
# Fixtures: test/interop/ (zones, nsd.conf.in, exceptions.yaml).
# Dashboards checked: dashboards/*.json (every target expr must evaluate in Prometheus).
# Set INTEROP_KEEP=1 to keep the temp dir (logs, configs) for a post-mortem.

set -uo pipefail

ROOT=$(pwd)
# The project's own runtime (package.json "node", installed by npm ci), as npm start and npm test use it.
[ -x "$ROOT/node_modules/.bin/node" ] && export PATH="$ROOT/node_modules/.bin:$PATH"
FIX="$ROOT/test/interop"
NSD_ADDR=${INTEROP_NSD_ADDR:-127.0.0.3}
LOCAL=127.0.0.1
EXCEPTED_CLIENT=127.0.0.9     # has an active exception in test/interop/exceptions.yaml
EXPIRED_CLIENT=127.0.0.10     # has an expired one
OUTSIDE_CLIENT=127.1.0.1      # outside clients.allowFrom (127.0.0.0/16) in the generated config
STARTED=$SECONDS

PASS=0
FAIL=0
BLOCKED_SENT=0   # every query this script sends that sinkhole must answer as blocked
SUMMARY_DONE=0

ok() { PASS=$((PASS + 1)); echo "ok - $*"; }
notok() { FAIL=$((FAIL + 1)); echo "not ok - $*"; }
# expect DESCRIPTION COMMAND...: the command's exit status is the verdict
expect() {
  local desc=$1
  shift
  if "$@"; then ok "$desc"; else notok "$desc"; fi
}
summary() {
  [ "$SUMMARY_DONE" = 1 ] && return
  SUMMARY_DONE=1
  echo "interop: $PASS passed, $FAIL failed"
}
# A setup step failed: nothing after it can run. Count it, summarise, exit.
bail() {
  notok "$*"
  summary
  exit 1
}

# ---------------------------------------------------------------- processes
# Each long-running process is started with setsid, so it leads its own
# process group: cleanup signals exactly that group (the process and its
# children, e.g. NSD's xfrd and server processes), and nothing else.
declare -a PGIDS=()
declare -A PNAME=()

# A background child of this (non-interactive) shell is never a process group
# leader, so setsid does not fork: $! is the new group's id.
spawn() { # NAME LOGFILE COMMAND...
  local name=$1 log=$2
  shift 2
  setsid "$@" >"$log" 2>&1 </dev/null &
  local pid=$!
  PGIDS+=("$pid")
  PNAME[$pid]=$name
  SPAWNED=$pid
}

# Live (non-zombie) members of process group $1.
group_alive() {
  ps -e -o pgid=,stat= 2>/dev/null | awk -v g="$1" '$1 == g && $2 !~ /^Z/ { found = 1 } END { exit !found }'
}

# Stops one group: TERM, up to 5 s to exit, then KILL. Sets STOP_RC to the leader's exit status.
stop_group() {
  local pgid=$1 i
  STOP_RC=
  if group_alive "$pgid"; then
    kill -TERM -- "-$pgid" 2>/dev/null || kill -TERM "$pgid" 2>/dev/null
    for i in $(seq 1 50); do group_alive "$pgid" || break; sleep 0.1; done
    if group_alive "$pgid"; then
      echo "# ${PNAME[$pgid]:-process} $pgid did not stop on SIGTERM; sending SIGKILL" >&2
      kill -KILL -- "-$pgid" 2>/dev/null || kill -KILL "$pgid" 2>/dev/null
      for i in $(seq 1 20); do group_alive "$pgid" || break; sleep 0.1; done
    fi
  fi
  wait "$pgid" 2>/dev/null
  STOP_RC=$?
}

TMP=
cleanup() {
  local rc=$? i
  trap - EXIT INT TERM
  for ((i = ${#PGIDS[@]} - 1; i >= 0; i--)); do stop_group "${PGIDS[$i]}"; done
  if [ -n "$TMP" ] && [ -d "$TMP" ]; then
    if [ "${INTEROP_KEEP:-0}" = 1 ]; then echo "# kept $TMP" >&2; else rm -rf "$TMP"; fi
  fi
  [ "$SUMMARY_DONE" = 1 ] || summary
  exit "$rc"
}
trap cleanup EXIT
trap 'echo "# interrupted" >&2; FAIL=$((FAIL + 1)); exit 130' INT
trap 'echo "# terminated" >&2; FAIL=$((FAIL + 1)); exit 143' TERM

# Shows the end of a log on stderr, for a failure's context.
show_log() { # NAME FILE
  [ -f "$2" ] || return 0
  echo "# ---- last lines of $1 ($2)" >&2
  tail -n 20 "$2" | sed 's/^/#   /' >&2
}

# ---------------------------------------------------------------- tools
missing=()
for tool in dig kdig nsd nsd-checkconf prometheus promtool curl ss setsid node awk sed seq timeout dd od openssl; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  bail "required tools not found: ${missing[*]} (apt-get install bind9-dnsutils knot-dnsutils nsd prometheus curl iproute2 util-linux)"
fi
[ -f "$ROOT/dist/cli.js" ] || bail "dist/cli.js not found: run from the repository root after 'npm run build'"
[ -f "$FIX/example.test.zone" ] || bail "fixtures not found under $FIX"
ok "tools present: dig $(dig -v 2>&1 | awk '{print $2}'), kdig $(kdig -V | awk '{print $NF}'), nsd $(nsd -v 2>&1 | awk 'NR==1{print $3}'), prometheus $(prometheus --version 2>&1 | awk 'NR==1{print $3}')"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/sinkhole-interop.XXXXXX") || bail "mktemp failed"

# ---------------------------------------------------------------- ports
# Ports are picked below the kernel's ephemeral range (so an outgoing socket
# cannot take one between the check and the bind), checked unused for both TCP
# and UDP with ss, and never handed out twice in one run.
read -r EPH_LOW _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || EPH_LOW=32768
PORT_LOW=20000
PORT_HIGH=$((EPH_LOW - 1))
[ "$PORT_HIGH" -gt $((PORT_LOW + 1000)) ] || { PORT_LOW=10000; PORT_HIGH=19999; }
declare -A TAKEN=()
free_port() {
  local p i
  for i in $(seq 1 200); do
    p=$((PORT_LOW + (RANDOM * 32768 + RANDOM) % (PORT_HIGH - PORT_LOW + 1)))
    [ -n "${TAKEN[$p]:-}" ] && continue
    if [ -z "$(ss -Htuan "( sport = :$p )" 2>/dev/null)" ]; then
      TAKEN[$p]=1
      PORT=$p
      return 0
    fi
  done
  return 1
}
free_port || bail "no free port found for NSD"
NSD_PORT=$PORT
free_port || bail "no free port found for sinkhole DNS"
DNS_PORT=$PORT
free_port || bail "no free port found for sinkhole HTTP"
HTTP_PORT=$PORT
free_port || bail "no free port found for Prometheus"
PROM_PORT=$PORT
# DNS over TLS and over HTTPS for clients (issue 12).
free_port || bail "no free port found for sinkhole DoT"
DOT_PORT=$PORT
free_port || bail "no free port found for sinkhole DoH"
DOH_PORT=$PORT
echo "# DoT $LOCAL:$DOT_PORT DoH $LOCAL:$DOH_PORT"
echo "# temp dir $TMP; NSD $NSD_ADDR:$NSD_PORT; sinkhole DNS $LOCAL:$DNS_PORT HTTP $LOCAL:$HTTP_PORT; Prometheus $LOCAL:$PROM_PORT"

# ---------------------------------------------------------------- NSD
sed "s/@NSD_IP@/$NSD_ADDR/g" "$FIX/example.test.zone" >"$TMP/example.test.zone"
sed -e "s|@ADDR@|$NSD_ADDR|g" -e "s|@PORT@|$NSD_PORT|g" -e "s|@RUN@|$TMP|g" -e "s|@ZONES@|$FIX|g" \
  "$FIX/nsd.conf.in" >"$TMP/nsd.conf"
nsd-checkconf "$TMP/nsd.conf" >"$TMP/nsd-checkconf.out" 2>&1 || {
  show_log nsd-checkconf "$TMP/nsd-checkconf.out"
  bail "nsd-checkconf rejected $TMP/nsd.conf"
}
spawn nsd "$TMP/nsd.out" nsd -d -c "$TMP/nsd.conf"
NSD_PID=$SPAWNED

# Asks NSD directly (never through a real resolver).
nsd_up() { dig @"$NSD_ADDR" -p "$NSD_PORT" +tries=1 +time=1 +short example.test SOA 2>/dev/null | grep -q hostmaster; }
for _ in $(seq 1 100); do
  nsd_up && break
  group_alive "$NSD_PID" || break
  sleep 0.1
done
if ! nsd_up; then
  show_log nsd "$TMP/nsd.out"
  show_log nsd.log "$TMP/nsd.log"
  bail "NSD did not answer on $NSD_ADDR:$NSD_PORT within 10 s"
fi
ok "NSD upstream answers on $NSD_ADDR:$NSD_PORT"

# ---------------------------------------------------------------- sinkhole
# A CA and a certificate for dns.test and 127.0.0.1, for the DoT/DoH listeners (kdig checks it against the CA).
TLS_NAME=dns.test
{
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$TMP/ca.key" -out "$TMP/ca.pem" -days 2 -subj "/CN=interop CA" &&
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$TMP/tls.key" -out "$TMP/tls.csr" -subj "/CN=$TLS_NAME" &&
  printf 'subjectAltName=DNS:%s,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' "$TLS_NAME" >"$TMP/tls.ext" &&
  openssl x509 -req -in "$TMP/tls.csr" -CA "$TMP/ca.pem" -CAkey "$TMP/ca.key" -CAcreateserial -out "$TMP/tls.crt" -days 2 -extfile "$TMP/tls.ext"
} >"$TMP/openssl.out" 2>&1 || { show_log openssl "$TMP/openssl.out"; bail "openssl could not make the test certificate"; }
cat >"$TMP/sinkhole.yaml" <<EOF
# Generated by .ci/interop.sh
listen:
  dns: ["$LOCAL:$DNS_PORT"]
  http: "$LOCAL:$HTTP_PORT"
  dot: ["$LOCAL:$DOT_PORT"]
  doh: ["$LOCAL:$DOH_PORT"]
  tls: { cert: "$TMP/tls.crt", key: "$TMP/tls.key" }
upstreams:
  servers: ["$NSD_ADDR:$NSD_PORT"]
  strategy: failover
  timeout: 2s
cache:
  maxEntries: 10000
  minTtl: 0s
  maxTtl: 1d
  maxNegativeTtl: 1h
blocking:
  lists:
    tiktok: ["$ROOT/blocklists/tiktok.txt"]
    tiktok-ads: ["$ROOT/blocklists/tiktok-ads.txt"]
    bypass: ["$ROOT/blocklists/bypass.txt"]
    bytedance: ["$ROOT/blocklists/bytedance.txt"]
  enforce: [tiktok, tiktok-ads, bypass]
  response: nxdomain
  ttl: 10s
  inspectCnames: true
clients:
  allowFrom: ["127.0.0.0/16", "::1/128"]
exceptions: "$FIX/exceptions.yaml"
log:
  queries: blocked
  file: "$TMP/log/queries.log"
  audit: "$TMP/log/audit.log"
EOF
mkdir -p "$TMP/log"
(cd "$TMP" && node "$ROOT/dist/cli.js" validate --config "$TMP/sinkhole.yaml") >"$TMP/validate.out" 2>&1 || {
  show_log validate "$TMP/validate.out"
  bail "sinkhole validate rejected the generated config"
}
spawn sinkhole "$TMP/sinkhole.log" node "$ROOT/dist/cli.js" serve --config "$TMP/sinkhole.yaml"
SINKHOLE_PID=$SPAWNED
HTTP="http://$LOCAL:$HTTP_PORT"

ready=0
for _ in $(seq 1 100); do
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$HTTP/readyz" 2>/dev/null)
  [ "$code" = 200 ] && { ready=1; break; }
  group_alive "$SINKHOLE_PID" || break
  sleep 0.1
done
if [ "$ready" != 1 ]; then
  show_log sinkhole "$TMP/sinkhole.log"
  bail "sinkhole /readyz did not return 200 within 10 s (last: ${code:-none})"
fi
ok "sinkhole ready: GET /readyz = 200 (DNS $LOCAL:$DNS_PORT)"

# ---------------------------------------------------------------- DNS helpers
# Each sets OUT to the client's full output. The blocked variants count the
# query, so the Prometheus check knows exactly how many blocked answers to expect.
DIG_BASE=(+tries=1 +time=3)
d() { OUT=$(dig @"$LOCAL" -p "$DNS_PORT" "${DIG_BASE[@]}" "$@" 2>&1); }
d_blocked() { BLOCKED_SENT=$((BLOCKED_SENT + 1)); d "$@"; }
k() { OUT=$(kdig @"$LOCAL" -p "$DNS_PORT" +retry=0 +time=3 "$@" 2>&1); }
k_blocked() { BLOCKED_SENT=$((BLOCKED_SENT + 1)); k "$@"; }

status_of() { grep -m1 -o 'status: [A-Z]*' <<<"$OUT" | awk '{print $2}'; }
# dig: ";; flags: qr rd ra; QUERY: 1, ANSWER: 0, ..."  kdig: ";; Flags: qr rd ra; QUERY: 1; ANSWER: 0; ..."
flags_of() { grep -m1 -i '^;; flags:' <<<"$OUT" | sed -e 's/^;; [Ff]lags: *//' -e 's/;.*//'; }
has_flag() { flags_of | tr ' ' '\n' | grep -qx "$1"; }
answer_count() { grep -m1 -o 'ANSWER: [0-9]*' <<<"$OUT" | awk '{print $2}'; }
# A records of the answer section only (not NS glue in additional). dig and kdig
# both print ";; ANSWER SECTION:" and then "NAME TTL IN A ADDR" lines.
a_records() {
  awk '/^;; ANSWER SECTION:/ { on = 1; next } /^;; [A-Z]+ SECTION:/ || /^$/ { on = 0 }
       on && $3 == "IN" && $4 == "A" { print $5 }' <<<"$OUT" | sort -u
}
has_ede15() { grep -Eq 'EDE: 15 \(Blocked\)' <<<"$OUT"; }
brief() { tr '\n' ' ' <<<"$OUT" | sed 's/  */ /g' | cut -c1-300; }

# check_answer DESC WANT_STATUS [WANT_A]: judges the last OUT
check_answer() {
  local desc=$1 want=$2 want_a=${3:-} got
  got=$(status_of)
  if [ "$got" != "$want" ]; then
    notok "$desc: expected $want, got ${got:-no reply} [$(brief)]"
    return
  fi
  if [ -n "$want_a" ] && ! a_records | grep -qx "$want_a"; then
    notok "$desc: expected $want with A $want_a, got A [$(a_records | tr '\n' ' ')]"
    return
  fi
  ok "$desc: $got${want_a:+ $want_a}"
}

# ---------------------------------------------------------------- dig, UDP and TCP
for mode in udp tcp; do
  T=()
  [ "$mode" = tcp ] && T=(+tcp)

  d "${T[@]}" www.example.test A
  check_answer "dig $mode: allowed www.example.test A" NOERROR 192.0.2.10
  # DESIGN.md §3 Answers: "ra is set on every reply" (forwarded ones included).
  has_flag ra && ok "dig $mode: ra set on a forwarded answer" || notok "dig $mode: www.example.test A (forwarded): expected ra set on every reply, got flags [$(flags_of)]"
  d "${T[@]}" ns.example.test A
  check_answer "dig $mode: allowed ns.example.test A is the NSD address" NOERROR "$NSD_ADDR"
  d "${T[@]}" www.example.test AAAA
  if [ "$(status_of)" = NOERROR ] && grep -q '2001:db8::10' <<<"$OUT"; then ok "dig $mode: allowed www.example.test AAAA: NOERROR 2001:db8::10"
  else notok "dig $mode: allowed www.example.test AAAA: expected NOERROR 2001:db8::10 [$(brief)]"; fi
  d "${T[@]}" tiktok.com.example.test A
  check_answer "dig $mode: lookalike tiktok.com.example.test is not blocked" NOERROR 192.0.2.10

  d_blocked "${T[@]}" www.tiktok.com A
  check_answer "dig $mode: blocked www.tiktok.com A" NXDOMAIN
  if has_ede15 && grep -q 'tiktok' <<<"$(grep 'EDE:' <<<"$OUT")"; then ok "dig $mode: blocked answer carries EDE 15 (Blocked) naming the list: $(grep -m1 -o 'EDE:.*' <<<"$OUT")"
  else notok "dig $mode: expected 'EDE: 15 (Blocked)' naming the list with default EDNS [$(brief)]"; fi
  if grep -Eq 'IN[[:space:]]+SOA' <<<"$(sed -n '/AUTHORITY SECTION/,/^$/p' <<<"$OUT")"; then ok "dig $mode: blocked NXDOMAIN has an SOA in authority"
  else notok "dig $mode: blocked NXDOMAIN: expected an SOA in the authority section [$(brief)]"; fi
  has_flag ra && ok "dig $mode: ra set on the sinkhole answer" || notok "dig $mode: ra not set on the sinkhole answer (flags: $(flags_of))"

  d_blocked "${T[@]}" TikTok.COM. A
  check_answer "dig $mode: blocked case variant TikTok.COM." NXDOMAIN
  d_blocked "${T[@]}" +ednsopt=15 Www.TikTok.Com A
  if [ "$(status_of)" = NXDOMAIN ] && has_ede15; then ok "dig $mode: +ednsopt query for Www.TikTok.Com: NXDOMAIN with EDE 15"
  else notok "dig $mode: +ednsopt query: expected NXDOMAIN with EDE 15 [$(brief)]"; fi
  d_blocked "${T[@]}" +noedns www.tiktok.com A
  if [ "$(status_of)" = NXDOMAIN ] && ! grep -q 'OPT PSEUDOSECTION' <<<"$OUT"; then ok "dig $mode: +noedns blocked query: NXDOMAIN and no OPT record"
  else notok "dig $mode: +noedns blocked query: expected NXDOMAIN without OPT (RFC 6891 §7) [$(brief)]"; fi
  d_blocked "${T[@]}" www.tiktok.com HTTPS
  check_answer "dig $mode: blocked www.tiktok.com HTTPS (type 65)" NXDOMAIN
  d_blocked "${T[@]}" www.tiktok.com AAAA
  check_answer "dig $mode: blocked www.tiktok.com AAAA" NXDOMAIN
  d_blocked "${T[@]}" ads.tiktok.com A
  if [ "$(status_of)" = NXDOMAIN ] && grep -q 'tiktok-ads' <<<"$(grep 'EDE:' <<<"$OUT")"; then ok "dig $mode: ads.tiktok.com blocked by list tiktok-ads (EDE text)"
  else notok "dig $mode: ads.tiktok.com: expected NXDOMAIN with EDE text naming tiktok-ads [$(brief)]"; fi
  d_blocked "${T[@]}" use-application-dns.net A
  check_answer "dig $mode: bypass canary use-application-dns.net" NXDOMAIN

  d_blocked "${T[@]}" cdn-alias.example.test A
  check_answer "dig $mode: allowed name with a CNAME to www.tiktok.com is sinkholed" NXDOMAIN

  d "${T[@]}" missing.sub.example.test A
  got=$(status_of)
  if [ "$got" = NXDOMAIN ] && grep -Eq '^sub\.example\.test\..*SOA' <<<"$OUT" && ! has_ede15; then
    ok "dig $mode: upstream NXDOMAIN for missing.sub.example.test passed through with the subzone's SOA"
  else notok "dig $mode: missing.sub.example.test: expected upstream NXDOMAIN with sub.example.test SOA and no EDE 15 [$(brief)]"; fi
  d "${T[@]}" present.sub.example.test A
  check_answer "dig $mode: present.sub.example.test" NOERROR 192.0.2.20

  # Exceptions: the excepted client gets the upstream's answer; the expired one is blocked.
  d "${T[@]}" -b "$EXCEPTED_CLIENT" www.tiktok.com A
  check_answer "dig $mode: client $EXCEPTED_CLIENT with an active exception gets www.tiktok.com" NOERROR 192.0.2.99
  d_blocked "${T[@]}" -b "$EXPIRED_CLIENT" www.tiktok.com A
  check_answer "dig $mode: client $EXPIRED_CLIENT whose exception expired is blocked" NXDOMAIN
  d "${T[@]}" -b "$OUTSIDE_CLIENT" www.example.test A
  check_answer "dig $mode: client $OUTSIDE_CLIENT outside clients.allowFrom" REFUSED
done

# ---------------------------------------------------------------- UDP sizes and TC
# medium.example.test: 40 A records, ~700 bytes with OPT.
d +ignore +bufsize=512 medium.example.test A
if has_flag tc && [ "$(answer_count)" = 0 ]; then ok "dig +bufsize=512 medium (40 A, ~700 B): TC set, 0 answers"
else notok "dig +bufsize=512 medium: expected TC and 0 answers, got flags [$(flags_of)] ANSWER ${OUT:+$(answer_count)}"; fi
d +ignore +bufsize=1232 medium.example.test A
if ! has_flag tc && [ "$(answer_count)" = 40 ]; then ok "dig +bufsize=1232 medium: no TC, 40 answers over UDP"
else notok "dig +bufsize=1232 medium: expected no TC and 40 answers, got flags [$(flags_of)] ANSWER $(answer_count)"; fi
d +ignore +bufsize=4096 medium.example.test A
if ! has_flag tc && [ "$(answer_count)" = 40 ]; then ok "dig +bufsize=4096 medium: no TC, 40 answers"
else notok "dig +bufsize=4096 medium: expected no TC and 40 answers, got flags [$(flags_of)] ANSWER $(answer_count)"; fi
d +ignore +noedns medium.example.test A
if has_flag tc && [ "$(answer_count)" = 0 ]; then ok "dig +noedns medium: TC set (512-byte limit without EDNS)"
else notok "dig +noedns medium: expected TC and 0 answers, got flags [$(flags_of)] ANSWER $(answer_count)"; fi
d +bufsize=512 medium.example.test A
if grep -q 'Truncated, retrying in TCP mode' <<<"$OUT" && [ "$(a_records | wc -l)" = 40 ]; then ok "dig +bufsize=512 medium: retried over TCP, all 40 records"
else notok "dig +bufsize=512 medium without +ignore: expected a TCP retry ending with 40 records, got $(a_records | wc -l)"; fi

# big.example.test: 150 A records, ~2.5 KB: bigger than any UDP size sinkhole sends (1232).
d big.example.test A
n=$(a_records | wc -l)
if grep -q ';; Truncated, retrying in TCP mode.' <<<"$OUT" && [ "$n" = 150 ]; then ok "dig big (150 A): truncated over UDP, retried in TCP, all 150 records"
else notok "dig big: expected ';; Truncated, retrying in TCP mode.' and 150 records, got $n [$(brief)]"; fi
d +ignore big.example.test A
if has_flag tc && [ "$(answer_count)" = 0 ] && [ "$(status_of)" = NOERROR ]; then ok "dig +ignore big: TC set, NOERROR, 0 answers"
else notok "dig +ignore big: expected TC, NOERROR and 0 answers, got status $(status_of) flags [$(flags_of)] ANSWER $(answer_count)"; fi
d +tcp big.example.test A
n=$(a_records | wc -l)
[ "$n" = 150 ] && ok "dig +tcp big: all 150 records" || notok "dig +tcp big: expected 150 records, got $n"

# ---------------------------------------------------------------- kdig
k www.example.test A
check_answer "kdig udp: allowed www.example.test" NOERROR 192.0.2.10
k +tcp www.example.test A
check_answer "kdig tcp: allowed www.example.test" NOERROR 192.0.2.10
k_blocked www.tiktok.com A
check_answer "kdig udp: blocked www.tiktok.com" NXDOMAIN
k_blocked +tcp TikTok.COM. A
check_answer "kdig tcp: blocked TikTok.COM." NXDOMAIN
k_blocked +edns www.tiktok.com A
if [ "$(status_of)" = NXDOMAIN ] && grep -Eiq 'EDE: 15 \(Blocked\)' <<<"$OUT"; then ok "kdig +edns: blocked with EDE 15 (Blocked)"
else notok "kdig +edns blocked: expected NXDOMAIN with 'EDE: 15 (Blocked)' [$(brief)]"; fi
k_blocked www.tiktok.com HTTPS
check_answer "kdig udp: blocked www.tiktok.com HTTPS" NXDOMAIN
k_blocked cdn-alias.example.test A
check_answer "kdig udp: CNAME to a blocked name is sinkholed" NXDOMAIN
k +bufsize=512 +ignore medium.example.test A
if has_flag tc && [ "$(answer_count)" = 0 ]; then ok "kdig +bufsize=512 +ignore medium: TC set, 0 answers"
else notok "kdig +bufsize=512 +ignore medium: expected TC and 0 answers, got flags [$(flags_of)] ANSWER $(answer_count)"; fi
k +bufsize=1232 +ignore medium.example.test A
if ! has_flag tc && [ "$(answer_count)" = 40 ]; then ok "kdig +bufsize=1232 medium: no TC, 40 answers"
else notok "kdig +bufsize=1232 medium: expected no TC and 40 answers, got flags [$(flags_of)] ANSWER $(answer_count)"; fi
k +bufsize=512 medium.example.test A
n=$(a_records | wc -l)
[ "$n" = 40 ] && ok "kdig +bufsize=512 medium: fell back to TCP, all 40 records" || notok "kdig +bufsize=512 medium: expected 40 records after the TCP fallback, got $n [$(brief)]"
k big.example.test A
n=$(a_records | wc -l)
[ "$n" = 150 ] && ok "kdig big (150 A): fell back to TCP, all 150 records" || notok "kdig big: expected 150 records, got $n [$(brief)]"
k +tcp big.example.test A
n=$(a_records | wc -l)
[ "$n" = 150 ] && ok "kdig +tcp big: all 150 records" || notok "kdig +tcp big: expected 150 records, got $n"

# ---------------------------------------------------------------- kdig over DoT and DoH (issue 12)
# kdig verifies sinkhole's certificate against the test CA (+tls-ca, +tls-hostname): a real client
# of the encrypted listeners, checking answers and policy.
KT=(+retry=0 +time=3 +tls-ca="$TMP/ca.pem" +tls-hostname="$TLS_NAME")
kt() { OUT=$(kdig @"$LOCAL" -p "$DOT_PORT" "${KT[@]}" "$@" 2>&1); }
kt_blocked() { BLOCKED_SENT=$((BLOCKED_SENT + 1)); kt "$@"; }
# kdig's ";; HTTP session ... (status: 200)" line is kept apart: status_of reads the first "status:" in OUT.
kh() {
  local raw
  raw=$(kdig @"$LOCAL" -p "$DOH_PORT" "${KT[@]}" +https "$@" 2>&1)
  HTTP_LINE=$(grep '^;; HTTP session' <<<"$raw")
  OUT=$(grep -v '^;; HTTP session' <<<"$raw")
}
kh_blocked() { BLOCKED_SENT=$((BLOCKED_SENT + 1)); kh "$@"; }
http_ok() { grep -q "HTTP session (HTTP/2-$1).*(status: 200)" <<<"$HTTP_LINE"; }

kt www.example.test A
check_answer "kdig +tls: allowed www.example.test" NOERROR 192.0.2.10
grep -q '^;; TLS session' <<<"$OUT" && ok "kdig +tls: TLS session with a certificate kdig verified" || notok "kdig +tls: no TLS session [$(brief)]"
kt_blocked www.tiktok.com A
check_answer "kdig +tls: blocked www.tiktok.com" NXDOMAIN
kt_blocked cdn-alias.example.test A
check_answer "kdig +tls: CNAME to a blocked name is sinkholed" NXDOMAIN
kt big.example.test A
n=$(a_records | wc -l)
[ "$n" = 150 ] && ok "kdig +tls big: all 150 records in one answer" || notok "kdig +tls big: expected 150 records, got $n"
kdig @"$LOCAL" -p "$DOT_PORT" +retry=0 +time=3 +tls-ca="$TMP/ca.pem" +tls-hostname=wrong.test www.example.test A >"$TMP/kdig-wrong.out" 2>&1
grep -q 'handshake failed' "$TMP/kdig-wrong.out" && ok "kdig +tls-hostname=wrong.test: the certificate does not pass for another name" \
  || notok "kdig +tls-hostname=wrong.test: expected a failed handshake [$(head -c 300 "$TMP/kdig-wrong.out" | tr '\n' ' ')]"

kh www.example.test A
check_answer "kdig +https (POST): allowed www.example.test" NOERROR 192.0.2.10
http_ok POST && ok "kdig +https: HTTP/2 POST, status 200" || notok "kdig +https: expected HTTP/2-POST status 200 [$(brief)]"
kh_blocked www.tiktok.com A
check_answer "kdig +https: blocked www.tiktok.com is sinkholed" NXDOMAIN
has_ede15 && ok "kdig +https: the sinkhole answer carries EDE 15 (Blocked)" || notok "kdig +https blocked: expected EDE 15 [$(brief)]"
kh_blocked +https-get analytics-sg.tiktok.com AAAA
check_answer "kdig +https-get: blocked analytics-sg.tiktok.com AAAA" NXDOMAIN
http_ok GET && ok "kdig +https-get: HTTP/2 GET, status 200" || notok "kdig +https-get: expected HTTP/2-GET status 200 [$(brief)]"
kh +https-get www.example.test AAAA
if [ "$(status_of)" = NOERROR ] && grep -q '2001:db8::10' <<<"$OUT"; then ok "kdig +https-get: allowed www.example.test AAAA"
else notok "kdig +https-get: allowed www.example.test AAAA: expected NOERROR 2001:db8::10 [$(brief)]"; fi
kh -b "$EXCEPTED_CLIENT" www.tiktok.com A
check_answer "kdig +https from the excepted client $EXCEPTED_CLIENT: policy by the TCP peer" NOERROR 192.0.2.99

# DDR (RFC 9462): plain DNS tells the client where the encrypted endpoints are.
k _dns.resolver.arpa SVCB
if grep -q "SVCB.*1 $TLS_NAME\. alpn=dot port=$DOT_PORT" <<<"$OUT" && grep -q "SVCB.*2 $TLS_NAME\. alpn=h2 port=$DOH_PORT" <<<"$OUT"; then
  ok "kdig _dns.resolver.arpa SVCB: DoT on $DOT_PORT and DoH on $DOH_PORT (DDR)"
else notok "kdig _dns.resolver.arpa SVCB: expected alpn=dot port=$DOT_PORT and alpn=h2 port=$DOH_PORT [$(brief)]"; fi

# SIGHUP re-reads the certificate; the encrypted listeners keep serving.
kill -HUP "$SINKHOLE_PID" 2>/dev/null
for _ in $(seq 1 50); do grep -q 'listen.tls reloaded' "$TMP/sinkhole.log" && break; sleep 0.1; done
grep -q 'listen.tls reloaded' "$TMP/sinkhole.log" && ok "SIGHUP: listen.tls reloaded" || notok "SIGHUP: no 'listen.tls reloaded' line in the log"
kt www.example.test A
check_answer "kdig +tls after SIGHUP" NOERROR 192.0.2.10
kh www.example.test A
check_answer "kdig +https after SIGHUP" NOERROR 192.0.2.10

# ---------------------------------------------------------------- malformed input
# send_udp HEX: sends the bytes over UDP and prints the reply (hex) if one comes within 2 s.
send_udp() {
  local hex=$1
  (
    exec 3<>"/dev/udp/$LOCAL/$DNS_PORT" || exit 1
    printf '%b' "$(sed 's/../\\x&/g' <<<"$hex")" >&3
    timeout 2 dd bs=65535 count=1 <&3 2>/dev/null | od -An -v -tx1 | tr -d ' \n'
  )
}
# send_tcp HEX: the same, framed with a 2-byte length (RFC 1035 §4.2.2); prints the reply without its length.
send_tcp() {
  local hex=$1 len
  len=$(printf '%04x' $((${#hex} / 2)))
  (
    exec 3<>"/dev/tcp/$LOCAL/$DNS_PORT" || exit 1
    printf '%b' "$(sed 's/../\\x&/g' <<<"$len$hex")" >&3
    timeout 2 dd bs=65535 count=1 <&3 2>/dev/null | od -An -v -tx1 | tr -d ' \n' | cut -c5-
  )
}
alive_and_answering() {
  group_alive "$SINKHOLE_PID" || return 1
  d www.example.test A
  [ "$(status_of)" = NOERROR ]
}
rcode_of_hex() { [ ${#1} -ge 8 ] && echo $((0x${1:6:2} & 0x0f)); }

# Plain garbage: dropped or answered, but never a crash.
send_udp "deadbeef00ff00ff112233445566778899aabbccddeeff" >/dev/null
send_udp "00" >/dev/null
send_udp "$(head -c 300 /dev/urandom | od -An -v -tx1 | tr -d ' \n')" >/dev/null
expect "garbage UDP packets (short, random): sinkhole still alive and answering" alive_and_answering

# A header that promises a question, then stops halfway through the name: FORMERR.
r=$(send_udp "beef01000001000000000000037777770774696b")
if [ "$(rcode_of_hex "$r")" = 1 ]; then ok "truncated question over UDP: FORMERR"
else notok "truncated question over UDP: expected FORMERR (rcode 1), got ${r:-no reply}"; fi
# qdcount = 2: FORMERR.
r=$(send_udp "beef0100000200000000000003777777076578616d706c6504746573740000010001")
if [ "$(rcode_of_hex "$r")" = 1 ]; then ok "qdcount=2 over UDP: FORMERR"
else notok "qdcount=2 over UDP: expected FORMERR (rcode 1), got ${r:-no reply}"; fi
# opcode 2 (STATUS): NOTIMP.
r=$(send_udp "beef1000000100000000000003777777076578616d706c6504746573740000010001")
if [ "$(rcode_of_hex "$r")" = 4 ]; then ok "opcode STATUS over UDP: NOTIMP"
else notok "opcode STATUS over UDP: expected NOTIMP (rcode 4), got ${r:-no reply}"; fi
# A name label pointing forward (compression loop bait) and a 255-length label.
send_udp "beef01000001000000000000c00c00010001" >/dev/null
send_udp "beef01000001000000000000ff41414141" >/dev/null
# Garbage over TCP, framed and unframed.
send_tcp "deadbeef" >/dev/null
(exec 3<>"/dev/tcp/$LOCAL/$DNS_PORT" && printf 'GET / HTTP/1.0\r\n\r\n' >&3 && timeout 2 dd bs=4096 count=1 <&3 >/dev/null 2>&1) 2>/dev/null
r=$(send_tcp "beef01000001000000000000037777770774696b")
if [ "$(rcode_of_hex "$r")" = 1 ]; then ok "truncated question over TCP: FORMERR"
else notok "truncated question over TCP: expected FORMERR (rcode 1), got ${r:-no reply}"; fi
expect "after malformed UDP and TCP input: sinkhole still alive and answering" alive_and_answering

# ---------------------------------------------------------------- local answers, meta-types, header flags (issue 8)
d www.example.test ANY
if [ "$(status_of)" = NOERROR ] && grep -Eq 'IN[[:space:]]+HINFO[[:space:]]+"RFC8482" ""' <<<"$OUT"; then ok "dig ANY: answered locally with HINFO \"RFC8482\" (RFC 8482)"
else notok "dig ANY: expected NOERROR with HINFO \"RFC8482\" \"\" [$(brief)]"; fi
k +tcp www.example.test ANY
if [ "$(status_of)" = NOERROR ] && grep -Eq 'HINFO[[:space:]]+"RFC8482"' <<<"$OUT"; then ok "kdig +tcp ANY: HINFO \"RFC8482\""
else notok "kdig +tcp ANY: expected HINFO \"RFC8482\" [$(brief)]"; fi
d_blocked www.tiktok.com ANY
check_answer "dig ANY for a blocked name: still the sinkhole answer" NXDOMAIN
for name in version.bind hostname.bind id.server; do
  d -c CH -t TXT "$name"
  check_answer "dig CH TXT $name: answered locally, never the upstream's identity" REFUSED
done
d +edns=1 +noednsnegotiation www.example.test A
check_answer "dig +edns=1 +noednsnegotiation: EDNS version 1 is not supported" BADVERS
d -t TYPE41 www.example.test
check_answer "dig TYPE41 (OPT in the question)" FORMERR
d -t TYPE200 www.example.test
check_answer "dig TYPE200 (a meta-type)" NOTIMP
d +opcode=2 +cd +adflag www.example.test A
if [ "$(status_of)" = NOTIMP ] && [ "$(flags_of)" = qr ]; then ok "dig +opcode=2 (STATUS): NOTIMP with flags [qr] only"
else notok "dig +opcode=2: expected NOTIMP with flags [qr] only (RFC 6895), got $(status_of) [$(flags_of)]"; fi

# ---------------------------------------------------------------- metrics
metric_sum() { # NAME [LABEL-REGEX]: sum of the samples in /metrics
  curl -s --max-time 3 "$HTTP/metrics" | awk -v n="$1" -v f="${2:-}" '
    $1 ~ "^" n "([{]|$)" && (f == "" || $1 ~ f) { s += $NF } END { printf "%d\n", s }'
}
curl -s --max-time 3 "$HTTP/metrics" >"$TMP/metrics.txt"
if promtool check metrics <"$TMP/metrics.txt" >"$TMP/promtool.out" 2>&1 && [ ! -s "$TMP/promtool.out" ]; then
  ok "promtool check metrics: clean ($(grep -c '^sinkhole_' "$TMP/metrics.txt") sinkhole_ samples)"
else
  notok "promtool check metrics (exit $(promtool check metrics <"$TMP/metrics.txt" >/dev/null 2>&1; echo $?)): $(head -c 400 "$TMP/promtool.out" | tr '\n' ';')"
fi
# The same lint on sinkhole's own families alone, to tell them from Node's default process metrics.
awk '/^# (HELP|TYPE) sinkhole_/ || /^sinkhole_/' "$TMP/metrics.txt" >"$TMP/metrics-sinkhole.txt"
if promtool check metrics <"$TMP/metrics-sinkhole.txt" >"$TMP/promtool-sinkhole.out" 2>&1 && [ ! -s "$TMP/promtool-sinkhole.out" ]; then
  ok "promtool check metrics on the sinkhole_* families alone: clean"
else
  notok "promtool check metrics on the sinkhole_* families: $(head -c 400 "$TMP/promtool-sinkhole.out" | tr '\n' ';')"
fi
got=$(metric_sum sinkhole_blocked_total)
[ "$got" = "$BLOCKED_SENT" ] && ok "/metrics sum(sinkhole_blocked_total) = $got, the blocked queries sent so far" \
  || notok "/metrics sum(sinkhole_blocked_total): expected $BLOCKED_SENT (blocked queries sent), got $got"
# Issue 8: BADVERS is labelled BADVERS, and no impossible pair such as servfail/NOERROR is exported.
if grep -Eq '^sinkhole_responses_total\{result="badvers",rcode="BADVERS"\} [1-9]' "$TMP/metrics.txt"; then ok "/metrics: the dig +edns=1 reply is counted as badvers/BADVERS"
else notok "/metrics: expected sinkhole_responses_total{result=\"badvers\",rcode=\"BADVERS\"} >= 1: $(grep -E 'badvers|formerr' "$TMP/metrics.txt" | tr '\n' ';')"; fi
if grep -Eq 'result="(servfail|refused|formerr|notimp|badvers)",rcode="NOERROR"' "$TMP/metrics.txt"; then notok "/metrics exports an impossible pair: $(grep -E 'result="(servfail|refused|formerr|notimp|badvers)",rcode="NOERROR"' "$TMP/metrics.txt" | head -2 | tr '\n' ';')"
else ok "/metrics exports no impossible (result, rcode) pair"; fi
for p in dot doh; do
  got=$(metric_sum sinkhole_queries_total "proto=\"$p\"")
  [ "$got" -gt 0 ] 2>/dev/null && ok "/metrics sinkhole_queries_total{proto=\"$p\"} = $got" || notok "/metrics sinkhole_queries_total{proto=\"$p\"}: expected > 0, got $got"
done
got=$(metric_sum sinkhole_internal_errors_total)
[ "$got" = 0 ] && ok "sinkhole_internal_errors_total = 0" || notok "sinkhole_internal_errors_total: expected 0, got $got"
got=$(metric_sum sinkhole_exception_queries_total 'INTEROP-ACTIVE')
[ "$got" = 3 ] && ok "sinkhole_exception_queries_total{exception=\"INTEROP-ACTIVE\"} = 3 (one UDP, one TCP, one DoH)" \
  || notok "sinkhole_exception_queries_total{exception=\"INTEROP-ACTIVE\"}: expected 3, got $got"

# ---------------------------------------------------------------- Prometheus
mkdir -p "$TMP/prom-data"
cat >"$TMP/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: sinkhole
    scrape_interval: 1s
    scrape_timeout: 900ms
    static_configs:
      - targets: ["$LOCAL:$HTTP_PORT"]
EOF
promtool check config "$TMP/prometheus.yml" >"$TMP/promtool-config.out" 2>&1 || {
  show_log promtool "$TMP/promtool-config.out"
  bail "promtool check config rejected the generated prometheus.yml"
}
spawn prometheus "$TMP/prometheus.log" prometheus \
  --config.file="$TMP/prometheus.yml" \
  --storage.tsdb.path="$TMP/prom-data" \
  --web.listen-address="$LOCAL:$PROM_PORT" \
  --storage.tsdb.retention.time=1h \
  --log.level=warn
PROM_PID=$SPAWNED
PROM="http://$LOCAL:$PROM_PORT"
for _ in $(seq 1 150); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$PROM/-/ready")" = 200 ] && break
  group_alive "$PROM_PID" || break
  sleep 0.1
done
[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$PROM/-/ready")" = 200 ] || {
  show_log prometheus "$TMP/prometheus.log"
  bail "Prometheus not ready on $LOCAL:$PROM_PORT within 15 s"
}
ok "Prometheus ready on $LOCAL:$PROM_PORT, scraping sinkhole every 1s"

# prom_query EXPR: prints "STATUS SERIES VALUE" (VALUE = the first sample's, or "-")
prom_query() {
  curl -s --max-time 5 -G --data-urlencode "query=$1" "$PROM/api/v1/query" | node -e '
    let s = ""; process.stdin.on("data", (c) => (s += c)).on("end", () => {
      try {
        const j = JSON.parse(s);
        const r = (j.data && j.data.result) || [];
        const v = Array.isArray(r) ? (r.length ? r[0].value[1] : "-") : (j.data && j.data.result ? j.data.result[1] : "-");
        console.log(`${j.status} ${Array.isArray(r) ? r.length : 1} ${v}${j.error ? " " + j.error.replace(/\s+/g, " ") : ""}`);
      } catch { console.log("invalid-json 0 -"); }
    });'
}
# wait_for EXPR WANT [SECONDS]: polls until the query's value is WANT; sets LAST to the last answer.
wait_for() {
  local expr=$1 want=$2 limit=${3:-15} i
  for ((i = 0; i < limit * 4; i++)); do
    LAST=$(prom_query "$expr")
    [ "$(awk '{print $3}' <<<"$LAST")" = "$want" ] && return 0
    sleep 0.25
  done
  return 1
}

# The target is up and Prometheus sees every blocked query sent so far.
if wait_for 'up{job="sinkhole"}' 1 15; then ok "Prometheus target up{job=\"sinkhole\"} = 1"
else notok "Prometheus target not up: $LAST"; show_log prometheus "$TMP/prometheus.log"; fi
if wait_for 'sum(sinkhole_blocked_total)' "$BLOCKED_SENT" 15; then ok "Prometheus sum(sinkhole_blocked_total) = $BLOCKED_SENT before the batch"
else notok "Prometheus sum(sinkhole_blocked_total) before the batch: expected $BLOCKED_SENT, got: $LAST"; fi
ALLOWED_EXPR='sum(sinkhole_responses_total{result="forwarded"})+sum(sinkhole_responses_total{result="cached"})'
ALLOWED_BEFORE=$(prom_query "$ALLOWED_EXPR" | awk '{print $3}')

# A batch: N blocked (across the three enforced lists) and M allowed (half new names, half repeats).
N=30
M=40
: >"$TMP/blocked.batch"
: >"$TMP/allowed.batch"
for i in $(seq 1 10); do
  echo "v$i.tiktokv.com A" >>"$TMP/blocked.batch"
  echo "analytics-sg.tiktok.com AAAA" >>"$TMP/blocked.batch"
  echo "mask.icloud.com A" >>"$TMP/blocked.batch"
done
for i in $(seq 1 20); do
  echo "batch$i.example.test A" >>"$TMP/allowed.batch"
  echo "batch$i.example.test A" >>"$TMP/allowed.batch"
done
[ "$(wc -l <"$TMP/blocked.batch")" = $N ] && [ "$(wc -l <"$TMP/allowed.batch")" = $M ] || bail "batch files are not N=$N / M=$M lines"
dig @"$LOCAL" -p "$DNS_PORT" "${DIG_BASE[@]}" +noall +comments -f "$TMP/blocked.batch" >"$TMP/blocked.out" 2>&1
BLOCKED_SENT=$((BLOCKED_SENT + N))
dig @"$LOCAL" -p "$DNS_PORT" "${DIG_BASE[@]}" +noall +comments -f "$TMP/allowed.batch" >"$TMP/allowed.out" 2>&1
nx=$(grep -c 'status: NXDOMAIN' "$TMP/blocked.out")
ne=$(grep -c 'status: NOERROR' "$TMP/allowed.out")
[ "$nx" = $N ] && ok "dig -f batch: $N blocked queries, all NXDOMAIN" || notok "dig -f batch: expected $N NXDOMAIN, got $nx"
[ "$ne" = $M ] && ok "dig -f batch: $M allowed queries, all NOERROR" || notok "dig -f batch: expected $M NOERROR, got $ne"

if wait_for 'sum(sinkhole_blocked_total)' "$BLOCKED_SENT" 15; then ok "Prometheus sum(sinkhole_blocked_total) = $BLOCKED_SENT (N=$N in the batch + $((BLOCKED_SENT - N)) earlier)"
else notok "Prometheus sum(sinkhole_blocked_total): expected $BLOCKED_SENT (N=$N + $((BLOCKED_SENT - N)) earlier), got: $LAST"; fi
want_allowed=$((${ALLOWED_BEFORE%.*} + M))
if wait_for "$ALLOWED_EXPR" "$want_allowed" 10; then ok "Prometheus forwarded+cached = $want_allowed (>= M=$M; exactly $M more than before the batch)"
else
  got=$(awk '{print $3}' <<<"$LAST")
  if [ "${got%.*}" != - ] && [ "${got%.*}" -ge "$M" ] 2>/dev/null; then ok "Prometheus forwarded+cached = $got >= M=$M (expected exactly $want_allowed)"
  else notok "Prometheus forwarded+cached: expected >= $M, got: $LAST"; fi
fi
if wait_for 'sum(sinkhole_blocked_total{list="bypass"})' "$(($(metric_sum sinkhole_blocked_total 'list="bypass"')))" 5; then
  ok "Prometheus per-list blocked counts match /metrics (bypass = $(awk '{print $3}' <<<"$LAST"))"
else notok "Prometheus sinkhole_blocked_total{list=\"bypass\"} differs from /metrics: $LAST"; fi

# Every dashboard expression evaluates.
shopt -s nullglob
dashboards=("$ROOT"/dashboards/*.json)
[ ${#dashboards[@]} -gt 0 ] || notok "no dashboards/*.json to check"
for dash in "${dashboards[@]}"; do
  exprs=$(node -e '
    const d = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    const dash = d.dashboard || d;
    const out = [];
    const walk = (panels) => { for (const p of panels || []) {
      for (const t of p.targets || []) if (t.expr) out.push([p.title, t.refId || "", t.expr.replace(/\s+/g, " ")]);
      walk(p.panels);
    } };
    walk(dash.panels);
    for (const r of dash.rows || []) walk(r.panels);
    for (const [title, ref, expr] of out) console.log(`${title}\t${ref}\t${expr}`);
  ' "$dash" 2>"$TMP/dash.err") || { notok "$(basename "$dash"): not valid JSON: $(head -c 200 "$TMP/dash.err")"; continue; }
  [ -n "$exprs" ] || { notok "$(basename "$dash"): no panel target expressions found"; continue; }
  while IFS=$'\t' read -r title ref expr; do
    # Grafana's interval variables become 1m; the others (e.g. $instance, used in =~ matchers) match anything.
    q=$(sed -E -e 's/\$\{?__(rate_interval|interval|range)\}?/1m/g' -e 's/\$\{?[A-Za-z_][A-Za-z0-9_]*\}?/.*/g' <<<"$expr")
    res=$(prom_query "$q")
    if [ "${res%% *}" = success ]; then ok "dashboard $(basename "$dash") \"$title\" $ref: success ($(awk '{print $2}' <<<"$res") series)"
    else notok "dashboard $(basename "$dash") \"$title\" $ref: $q -> $res"; fi
  done <<<"$exprs"
done

# ---------------------------------------------------------------- deployment files (issue 13)
# The alert rules: promtool checks them, and runs their unit tests (each alert fires on the
# series that should fire it and stays silent on the others).
if promtool check rules "$ROOT/dashboards/alerts.yml" >"$TMP/promtool-rules.out" 2>&1; then
  ok "promtool check rules dashboards/alerts.yml: $(grep -o '[0-9]* rules found' "$TMP/promtool-rules.out")"
else notok "promtool check rules dashboards/alerts.yml: $(tr '\n' ' ' <"$TMP/promtool-rules.out" | cut -c1-400)"; fi
if (cd "$ROOT/dashboards" && promtool test rules alerts.test.yml) >"$TMP/promtool-test.out" 2>&1; then
  ok "promtool test rules dashboards/alerts.test.yml: SUCCESS"
else notok "promtool test rules dashboards/alerts.test.yml: $(tr '\n' ' ' <"$TMP/promtool-test.out" | cut -c1-600)"; fi

# The systemd unit: systemd-analyze verify (it warns, exit 0, about unknown keys, so any output fails),
# with ExecStart pointed at this checkout's launcher since /opt/sinkhole does not exist here; and
# its exposure score from systemd-analyze security.
if command -v systemd-analyze >/dev/null 2>&1; then
  mkdir -p "$TMP/systemd"
  sed "s#/opt/sinkhole/bin/sinkhole#$ROOT/bin/sinkhole#" "$ROOT/deploy/systemd/sinkhole.service" >"$TMP/systemd/sinkhole.service"
  if (cd "$TMP/systemd" && systemd-analyze verify ./sinkhole.service) >"$TMP/systemd-verify.out" 2>&1 && [ ! -s "$TMP/systemd-verify.out" ]; then
    ok "systemd-analyze verify deploy/systemd/sinkhole.service: clean"
  else notok "systemd-analyze verify deploy/systemd/sinkhole.service: $(tr '\n' ' ' <"$TMP/systemd-verify.out" | cut -c1-400)"; fi
  if (cd "$TMP/systemd" && systemd-analyze security --offline=yes --threshold=25 ./sinkhole.service) >"$TMP/systemd-security.out" 2>&1; then
    ok "systemd-analyze security: $(grep -o 'Overall exposure level.*' "$TMP/systemd-security.out" | tr -d '\n')"
  else notok "systemd-analyze security: exposure above 2.5: $(grep -o 'Overall exposure level.*' "$TMP/systemd-security.out")"; fi
else notok "systemd-analyze not found (apt-get install systemd)"; fi

# logrotate: the shipped file parses (logrotate --debug reports errors but exits 0, so its
# output is read), then a real rotation of this sinkhole's logs with the same directives: the
# files move aside, SIGHUP makes sinkhole start new ones, and no line is lost.
if command -v logrotate >/dev/null 2>&1; then
  logrotate --debug --state "$TMP/logrotate-debug.state" "$ROOT/deploy/logrotate/sinkhole" >"$TMP/logrotate-debug.out" 2>&1
  if ! grep -qi 'error' "$TMP/logrotate-debug.out"; then ok "logrotate --debug deploy/logrotate/sinkhole: no error"
  else notok "logrotate --debug deploy/logrotate/sinkhole: $(grep -i error "$TMP/logrotate-debug.out" | head -3 | tr '\n' ' ')"; fi
  sed -e "s#/var/log/sinkhole#$TMP/log#g" -e "s#systemctl kill --kill-whom=main --signal=HUP sinkhole.service#kill -HUP $SINKHOLE_PID#" \
    "$ROOT/deploy/logrotate/sinkhole" >"$TMP/logrotate.conf"
  before=$(wc -l <"$TMP/log/queries.log" 2>/dev/null || echo 0)
  logrotate --force --state "$TMP/logrotate.state" "$TMP/logrotate.conf" >"$TMP/logrotate.out" 2>&1
  d_blocked www.tiktok.com A
  d -b "$EXCEPTED_CLIENT" www.tiktok.com A
  rotated_audit=$(ls "$TMP"/log/audit.log-* 2>/dev/null | head -1)
  for _ in $(seq 1 50); do [ -s "$TMP/log/queries.log" ] && [ -s "$TMP/log/audit.log" ] && break; sleep 0.1; done
  if [ "$before" -gt 0 ] && [ "$(wc -l <"$TMP/log/queries.log.1" 2>/dev/null || echo 0)" = "$before" ] \
     && grep -q '"name":"www.tiktok.com"' "$TMP/log/queries.log" 2>/dev/null; then
    ok "logrotate + SIGHUP: queries.log.1 kept all $before lines, and the next blocked query went to a new queries.log"
  else notok "logrotate + SIGHUP (queries): before=$before rotated=$(wc -l <"$TMP/log/queries.log.1" 2>/dev/null) new=$(wc -l <"$TMP/log/queries.log" 2>/dev/null) [$(tr '\n' ' ' <"$TMP/logrotate.out" | cut -c1-300)]"; fi
  if [ -n "$rotated_audit" ] && grep -q '"event":"use"' "$rotated_audit" && grep -q '"event":"use"' "$TMP/log/audit.log" 2>/dev/null; then
    ok "logrotate + SIGHUP: the audit trail rotated ($(basename "$rotated_audit")) and continues in a new audit.log"
  else notok "logrotate + SIGHUP (audit): rotated=${rotated_audit:-none} new=$(wc -l <"$TMP/log/audit.log" 2>/dev/null)"; fi
else notok "logrotate not found (apt-get install logrotate)"; fi

# ---------------------------------------------------------------- shutdown
# SIGTERM: finish in-flight queries and exit 0 (DESIGN.md §3 CLI).
t0=$SECONDS
stop_group "$SINKHOLE_PID"
if [ "$STOP_RC" = 0 ]; then ok "sinkhole exits 0 on SIGTERM (in $((SECONDS - t0)) s)"
else notok "sinkhole on SIGTERM: expected exit 0, got $STOP_RC"; show_log sinkhole "$TMP/sinkhole.log"; fi
# Operational lines are "TIME level [CODE] message key=value..." (src/log.ts).
ERR_RE='^[0-9TZ:.-]+ error |unexpected error|SH_INTERNAL'
if grep -Eq "$ERR_RE" "$TMP/sinkhole.log"; then
  notok "sinkhole log has errors: $(grep -E "$ERR_RE" "$TMP/sinkhole.log" | head -3 | tr '\n' ' ' | cut -c1-400)"
else ok "sinkhole log has no error lines"; fi

echo "# run took $((SECONDS - STARTED)) s"
summary
[ "$FAIL" = 0 ]
