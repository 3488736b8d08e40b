#!/usr/bin/env python3
"""How often two runs of the bench would give a timed verdict alike.

    bench/agreement.py RAW [RAW...] [--rounds 9,12,15,16,17,20]

RAW: raw.txt files of whole runs (bench/results/*/raw.txt). For every
"rate" target of run.sh and every timed row it applies to, the per-round
ratios are computed as table.awk computes them (a window's figure over
the geometric mean of the reference's windows on each side; two servers
through the ratio of their ratios in a round) and pooled over the runs,
so that what moves between runs is in the pool too. Then, for each
number of rounds n, runs of n rounds are drawn from the pool (with
replacement, 2,000 times), each given table.awk's verdict (the
order-statistic interval of the median against the bound), and the
chance that two independent runs agree is the sum over verdicts of p^2.
The last line sums that over the targets: the number of verdicts two
runs are expected to share.

A model, not a measurement: the pool stands for the machine's noise, so
it needs runs made on the same machine and code (two or more). It says
which round counts buy agreement per second spent, and which verdicts no
count will settle (a ratio whose spread straddles its bound).
"""
import collections
import math
import random
import re
import sys
from pathlib import Path

FIGURE = {"req": "rps", "MB": "mbps", "hs": "hps", "dg": "rps"}


def targets():
    """run.sh's "rate" targets: (server, reference, bound, rows or None)."""
    text = (Path(__file__).parent / "run.sh").read_text()
    block = re.search(r"^TARGETS=\(\n(.*?)^\)", text, re.S | re.M).group(1)
    out = []
    for line in re.findall(r'"([^"]*)"', block):
        w = line.split()
        if w[0] == "rate":
            out.append((w[1], w[2], float(w[3]),
                        w[4].split(",") if len(w) > 4 else None))
    return out


def per_round(path):
    """{row: (reference, {server: {round: ratio to the reference}})}."""
    windows = collections.defaultdict(dict)
    for line in open(path):
        kv = dict(f.split("=", 1) for f in line.split() if "=" in f)
        if kv.get("unit") in FIGURE and "seq" in kv and "error" not in kv:
            windows[kv["row"]][int(kv["seq"])] = (
                kv["server"], int(kv["round"]), float(kv[FIGURE[kv["unit"]]]))
    rows = {}
    for row, w in windows.items():
        ref = w[1][0]
        ratios = collections.defaultdict(dict)
        for q, (server, rnd, x) in w.items():
            sides = [w[p][2] for p in (q - 1, q + 1)
                     if p in w and w[p][0] == ref]
            if server != ref and sides and all(sides):
                ratios[server][rnd] = x / math.sqrt(math.prod(sides)) \
                    if len(sides) == 2 else x / sides[0]
        rows[row] = (ref, ratios)
    return rows


def rank(n):
    """table.awk's interval_rank: the K-th smallest to the K-th largest."""
    k, cdf, p = 1, 0.5 ** n, 0.5 ** n
    for j in range(2, n // 2 + 1):
        p = p * (n - j + 2) / (j - 1)
        cdf += p
        if cdf > 0.025:
            break
        k = j
    return k


def verdict(values, bound):
    s = sorted(values)
    k = rank(len(s))
    if s[k - 1] >= bound:
        return "above"
    return "below" if s[-k] < bound else "across"


def pooled(runs, row, server, ref):
    values = []
    for rows in runs:
        if row not in rows:
            continue
        rowref, ratios = rows[row]
        for rnd, x in ratios.get(server, {}).items():
            if ref == rowref:
                values.append(x)
            elif rnd in ratios.get(ref, {}):
                values.append(x / ratios[ref][rnd])
    return values


def main(argv):
    counts = [9, 12, 15, 16, 17, 20]
    if "--rounds" in argv:
        i = argv.index("--rounds")
        counts = [int(n) for n in argv[i + 1].split(",")]
        argv = argv[:i] + argv[i + 2:]
    if not argv:
        sys.exit(__doc__)
    runs = [per_round(p) for p in argv]
    rng = random.Random(1)
    total = collections.Counter()
    print("%-13s %-40s %6s %6s  agree at %s rounds" %
          ("row", "target", "median", "pool", ",".join(map(str, counts))))
    for row in dict.fromkeys(r for rows in runs for r in rows):
        for server, ref, bound, only in targets():
            if only and row not in only:
                continue
            values = pooled(runs, row, server, ref)
            if len(values) < 6:
                continue
            chances = []
            for n in counts:
                seen = collections.Counter(
                    verdict(rng.choices(values, k=n), bound)
                    for _ in range(2000))
                chances.append(sum((c / 2000) ** 2 for c in seen.values()))
                total[n] += chances[-1]
            print("%-13s %-40s %6.3f %6d  %s" % (
                row, "%s / %s >= %g" % (server, ref, bound),
                sorted(values)[len(values) // 2], len(values),
                " ".join("%.2f" % c for c in chances)))
    print("expected to agree, of the targets above: " + ", ".join(
        "%.1f at %d rounds" % (total[n], n) for n in counts))


if __name__ == "__main__":
    main(sys.argv[1:])
