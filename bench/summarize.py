#!/usr/bin/env python3
"""bench/run.sh's summary: one row per server x workload from the kit's results.tsv.

usage: summarize.py RESULTS.tsv

Columns: mean QPS over the saturating reps (with the number of reps), mean of dnsperf's average
latency in those reps, p99 of the fixed-rate run (LATENCY=1), server RSS after the last run, lost %
and response codes, and on sinkhole's rows the QPS ratios sinkhole/dnsmasq and sinkhole/unbound-t1
(same workload, same sitting) and the query log cost (QPS lost when every blocked query is logged,
from the sinkhole-querylog runs when LOG_COST=1 was given).

CPU per answer (the server's CPU seconds in the saturating reps ÷ the queries it answered) does not depend on
whether dnsperf could load the server fully, so issue 22's targets against the bare Node servers are also
given that way: on sinkhole's rows, the echo's CPU per answer ÷ sinkhole's (blocked and cached; the echo runs
the blocked workload) and the relay's ÷ sinkhole's (uncached).
"""
import collections
import csv
import re
import sys

CLIENT_BOUND_PCT = 95   # dnsperf at >= this % of its core: the figure is the client's ceiling

def num(x):
    try:
        return float(x)
    except (TypeError, ValueError):
        return None

def mean(xs):
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None

def fmt(x, nd=0, dash='-'):
    return dash if x is None else f"{x:,.{nd}f}"

def main(path):
    rows = list(csv.DictReader(open(path), delimiter='\t'))
    sat = collections.OrderedDict()
    fix = {}
    for r in rows:
        k = (r['label'], r['workload'])
        (sat.setdefault(k, []) if r['mode'] == 'sat' else fix.setdefault(k, [])).append(r)
    keys = list(dict.fromkeys(list(sat) + list(fix)))
    order_l = {'sinkhole': 0, 'sinkhole-querylog': 1, 'dnsmasq': 2, 'unbound-t1': 3}
    order_w = {'blocked': 0, 'cached': 1, 'uncached': 2}
    keys.sort(key=lambda k: (order_l.get(k[0], 9), k[0], order_w.get(k[1], 9), k[1]))

    cell = {}
    for k in keys:
        s, fx = sat.get(k, []), fix.get(k, [])
        last = (s or fx)[-1]
        rc = collections.Counter()
        for r in s + fx:   # "NOERROR 123 SERVFAIL 4" -> counts per rcode
            toks = r['rcodes'].split()
            for name, n in zip(toks[0::2], toks[1::2]):
                rc[name] += int(n) if n.isdigit() else 0
        fr = fx[-1] if fx else None
        cell[k] = dict(
            qps=mean(num(r['qps']) for r in s), n=len(s),
            avg=mean(num(r['avg_ms']) for r in s),
            dcpu=mean(num(r['dnsperf_cpu_pct']) for r in s),
            scpu=mean(num(r['server_cpu_pct']) for r in s),
            # µs of server CPU per answer, from each saturating rep's CPU share and rate
            us=mean(num(r['server_cpu_pct']) * 1e4 / num(r['qps']) for r in s
                    if num(r['server_cpu_pct']) is not None and num(r['qps'])),
            lost=mean(num(r['lost_pct']) for r in s + fx),
            p99=num(fr['p99_ms']) if fr else None,
            p99_at=int(fr['mode'][3:]) if fr and fr['mode'].startswith('fix') else None,
            p99_lost=num(fr['lost_pct']) if fr else None,
            rss=num(last['rss_mb']), hwm=num(last['hwm_mb']), rc=rc)

    def ratio(k, peer):
        a, b = cell.get(k), cell.get((peer, k[1]))
        if not a or not b or not a['qps'] or not b['qps']:
            return '-'
        cb = ' ᶜ' if (b['dcpu'] or 0) >= CLIENT_BOUND_PCT or (a['dcpu'] or 0) >= CLIENT_BOUND_PCT else ''
        return f"{a['qps'] / b['qps']:.2f}{cb}"

    def bare(k):
        """The bare Node server's CPU per answer ÷ sinkhole's: the echo for local answers, the relay for misses."""
        peer = ('node-relay', 'uncached') if k[1] == 'uncached' else ('node-echo', 'blocked')
        a, b = cell.get(k), cell.get(peer)
        if not a or not b or not a['us'] or not b['us']:
            return '-'
        return f"{b['us'] / a['us']:.2f}"

    def overhead(k):
        off, on = cell.get(('sinkhole', k[1])), cell.get(('sinkhole-querylog', k[1]))
        if k[0] != 'sinkhole-querylog' or not on or not off or not on['qps'] or not off['qps']:
            return '-'
        pct = (off['qps'] - on['qps']) / off['qps'] * 100
        cb = ' ᶜ' if (off['dcpu'] or 0) >= CLIENT_BOUND_PCT else ''
        return f"{pct:+.1f}%{cb}"

    hdr = ['server', 'workload', 'QPS mean (reps)', 'avg ms', 'p99 ms @fixed rate', 'RSS MB (peak)',
           'srv CPU %', 'CPU µs/answer', 'lost %', 'rcodes', 'sinkhole/dnsmasq', 'sinkhole/unbound-t1',
           'bare Node/sinkhole, CPU per answer', 'query log cost']
    print('| ' + ' | '.join(hdr) + ' |')
    print('|' + '---|' * len(hdr))
    for k in keys:
        c = cell[k]
        qps = fmt(c['qps']) + (' ᶜ' if (c['dcpu'] or 0) >= CLIENT_BOUND_PCT else '') + f" ({c['n']})"
        p99 = '-' if c['p99'] is None else f"{c['p99']:.3f} @{c['p99_at'] // 1000}k" + \
            (f" (lost {c['p99_lost']:.1f}%)" if c['p99_lost'] else '')
        rc = ' '.join(n if n == 'NOERROR' and len(c['rc']) == 1 else f"{n} {v:,}" for n, v in c['rc'].items()) or '-'
        is_sh = k[0].startswith('sinkhole')
        print('| ' + ' | '.join([
            k[0], k[1], qps, fmt(c['avg'], 3), p99, f"{fmt(c['rss'], 1)} ({fmt(c['hwm'], 1)})",
            fmt(c['scpu']), fmt(c['us'], 1), fmt(c['lost'], 2), rc,
            ratio(k, 'dnsmasq') if is_sh else '', ratio(k, 'unbound-t1') if is_sh else '',
            bare(k) if is_sh else '', overhead(k) if is_sh else '']) + ' |')
    print()
    print("ᶜ = client-bound: dnsperf used >= 95% of its core, so the QPS (and a ratio built on it) is the "
          "client's ceiling (~150k on one core), not the server's.")
    print("query log cost = share of sinkhole's QPS lost when every blocked query is logged "
          "(sinkhole-querylog row; positive = the log costs throughput). Differences under ~15% are noise (../shared/bench/BASELINE.md); "
          "ratios are only meaningful within one sitting.")
    problems = [k for k in keys if (cell[k]['lost'] or 0) > 0.05 or any(n != 'NOERROR' for n in cell[k]['rc'])]
    if problems:
        print()
        print("check: lost queries > 0.05% or rcodes other than NOERROR in: "
              + ', '.join(f"{a} {b}" for a, b in problems) + " (see logs/)")

if __name__ == '__main__':
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
