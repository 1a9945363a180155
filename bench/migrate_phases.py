#!/usr/bin/python3
# Where a move's pause goes, from a `bench/migrate.sh --debug` results
# directory: the daemons' SOCKMIG_DEBUG phase lines (both nodes, CLOCK_MONOTONIC
# stamps), cut per move by the bench's "bench: begin TAG" / "bench: end TAG"
# markers, and the judge's (pp_trace) longest gap, on the same clock.
#
#   bench/migrate_phases.py DIR [N...]
#
# Per N, one row per phase line (numbers in it replaced by #), ordered by
# when it happens: its median time after S began to stop the process, and
# the median time since the phase before (what that step cost). "peer:"
# rows are the last answer before the longest gap and the first after it.
import glob
import os
import re
import statistics
import sys

STAMP = re.compile(r'^sockmigd\[\d+\]: +(\d+\.\d+) (move (?:src|dst): .*)$')
T0 = 'move src: stopping the process'


def norm(msg):
    return re.sub(r'\d+(\.\d+)?', '#', msg)


def events(log, tag):
    """The phase lines of one node's log between the markers of TAG."""
    out, inside = [], False
    try:
        f = open(log, errors='replace')
    except OSError:
        return out
    with f:
        for line in f:
            line = line.rstrip('\n')
            if line == 'bench: begin ' + tag:
                inside = True
            elif line == 'bench: end ' + tag:
                break
            elif inside:
                m = STAMP.match(line)
                if m:
                    out.append((float(m.group(1)), norm(m.group(2))))
    return out


def gap(ppout):
    best = None
    try:
        with open(ppout) as f:
            for line in f:
                p = line.split()
                if p and p[0] == 'gap':
                    a, b = float(p[1]) % 100000, float(p[2]) % 100000
                    if not best or b - a > best[1] - best[0]:
                        best = (a, b)
    except OSError:
        pass
    return best


def main():
    d = sys.argv[1]
    rows = []
    with open(os.path.join(d, 'moves.tsv')) as f:
        next(f)
        for line in f:
            c = line.rstrip('\n').split('\t')
            if c[1] != '-' and c[4] == 'ok':
                rows.append(c)
    want = sys.argv[2:]
    for n in sorted({r[0] for r in rows}, key=int):
        if want and n not in want:
            continue
        offs, steps, order, seen = {}, {}, {}, 0
        for r in rows:
            if r[0] != n:
                continue
            tag = 'n%s-m%s' % (n, r[1])
            ev = events(os.path.join(d, 'n%s-%s.log' % (n, r[2])), tag)
            ev += events(os.path.join(d, 'n%s-%s.log' % (n, r[3])), tag)
            g = gap(os.path.join(d, tag + '-pp.out'))
            if g:
                ev += [(g[0], 'peer: last answer before the pause'), (g[1], 'peer: first answer after it')]
            t0 = [t for t, m in ev if m == T0]
            if not t0:
                continue
            seen += 1
            ev.sort()
            prev = None
            for t, m in ev:
                offs.setdefault(m, []).append((t - t0[0]) * 1e3)
                if prev is not None:
                    steps.setdefault(m, []).append((t - prev) * 1e3)
                prev = t
                order.setdefault(m, len(order))
        print('\nN=%s: %d moves; ms after "%s" (median over moves), and since the line before' % (n, seen, T0))
        print('| phase | at ms | step ms |')
        print('| --- | ---: | ---: |')
        for m in sorted(offs, key=lambda k: statistics.median(offs[k])):
            st = steps.get(m)
            print('| %s | %.1f | %s |' % (m, statistics.median(offs[m]),
                                          '%.1f' % statistics.median(st) if st else '-'))


main()
