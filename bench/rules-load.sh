#!/usr/bin/env bash
# How long sinkhole takes, and how much memory it needs, to load a big blocklist.
#
#   bash bench/rules-load.sh            # 100k and 1M rules, RUNS=3 each
#   SIZES="1000000" RUNS=1 bash bench/rules-load.sh
#
# For each size it writes, into a temp dir, a synthetic blocklist of r<N>.example-block.test names
# (one third plain "name", one third adblock "||name^", one third hosts "0.0.0.0 name", plus a
# comment line every 1000 rules), a config that enforces it, and runs
#   /usr/bin/time -f '%e %M' node dist/cli.js validate --config CONFIG
# which reads the config, parses every list and builds the policy generation (matcher included)
# exactly as `serve` does at start-up and on reload, but binds no socket.
# Reported: wall seconds and peak RSS (MB) per run, and the median; target for 1M rules:
# <= 2 s and <= 150 MB. Nothing listens and no query is sent; the addresses in the config are loopback.
# Knobs: SIZES="100000 1000000" RUNS=3 PIN=1 (taskset core; PIN=none = no pinning)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SIZES=${SIZES:-100000 1000000}; RUNS=${RUNS:-3}; PIN=${PIN:-1}
TARGET_S=2; TARGET_MB=150; TARGET_RULES=1000000
[ -x /usr/bin/time ] || { echo "need GNU time at /usr/bin/time (apt-get install -y time)" >&2; exit 1; }
cd "$ROOT"
if [ ! -f dist/cli.js ]; then echo "dist/ missing: npm run build"; npm run build; fi
PINCMD=(); [ "$PIN" != none ] && PINCMD=(taskset -c "$PIN")

WORK=$(mktemp -d /tmp/sinkhole-rules.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

gen_list() { # count file
  awk -v n="$1" 'BEGIN{
    print "# synthetic benchmark blocklist: " n " rules, mixed syntax"
    for (i = 0; i < n; i++) {
      if (i % 1000 == 0) print "# block " i
      d = sprintf("r%06d.example-block.test", i)
      m = i % 3
      if (m == 0) print d; else if (m == 1) print "||" d "^"; else print "0.0.0.0 " d
    } }' > "$2"
}

printf '%-9s %-5s %8s %8s  %s\n' rules run wall_s rss_mb validate-output
summary=()
for n in $SIZES; do
  list=$WORK/block-$n.txt; cfg=$WORK/sinkhole-$n.yaml
  gen_list "$n" "$list"
  cat > "$cfg" <<EOF
listen: { dns: ["127.0.0.1:5320"], http: "127.0.0.1:9320" }
upstreams: { servers: ["127.0.0.2:5300"], timeout: 2s }
cache: { maxEntries: 100000 }
blocking:
  lists: { bench: [$list] }
  enforce: [bench]
  response: null-ip
log: { queries: none }
EOF
  walls=(); rsss=()
  for r in $(seq 1 "$RUNS"); do
    tf=$WORK/time.txt; of=$WORK/out.txt
    rc=0; /usr/bin/time -o "$tf" -f '%e %M' "${PINCMD[@]}" node dist/cli.js validate --config "$cfg" > "$of" 2>&1 || rc=$?
    read -r wall kb < <(tail -1 "$tf")
    mb=$(awk -v k="$kb" 'BEGIN{printf "%.1f", k/1024}')
    out=$(head -c 300 "$of" | tr '\n' ' ')
    [ "$rc" = 0 ] || out="EXIT $rc: $out"
    grep -q "bench=$n[;) ]" "$of" || out="$out [expected bench=$n rules]"
    printf '%-9s %-5s %8s %8s  %s\n' "$n" "$r" "$wall" "$mb" "$out"
    walls+=("$wall"); rsss+=("$mb")
  done
  med() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
  mw=$(med "${walls[@]}"); mm=$(med "${rsss[@]}")
  verdict=""
  if [ "$n" = "$TARGET_RULES" ]; then
    ok_t=$(awk -v a="$mw" -v b="$TARGET_S" 'BEGIN{print (a<=b)?"ok":"OVER"}')
    ok_m=$(awk -v a="$mm" -v b="$TARGET_MB" 'BEGIN{print (a<=b)?"ok":"OVER"}')
    verdict="  (target <= ${TARGET_S} s: $ok_t; <= ${TARGET_MB} MB: $ok_m)"
  fi
  summary+=("$(printf '%9s rules (%s MB file): median wall %s s, median peak RSS %s MB over %s run(s)%s' \
    "$n" "$(awk -v b="$(stat -c %s "$list")" 'BEGIN{printf "%.1f", b/1048576}')" "$mw" "$mm" "$RUNS" "$verdict")")
  rm -f "$list"
done
echo
printf '%s\n' "${summary[@]}"
# what the figures include before any rule is read: Node start-up plus loading the CLI
/usr/bin/time -o "$WORK/time.txt" -f '%e %M' "${PINCMD[@]}" node dist/cli.js --version > /dev/null
read -r bw bkb < <(tail -1 "$WORK/time.txt")
echo "baseline 'node dist/cli.js --version': $bw s, $(awk -v k="$bkb" 'BEGIN{printf "%.1f", k/1024}') MB (included in the figures above)"
echo "(node $(node --version), $(nproc) cores, pinned: $PIN)"
