#!/usr/bin/env python3
"""How often two runs of the bench would give a timed verdict alike.

    bench/agreement.py RAW [RAW...] [--rounds 9,12,15,16,17,20]

RAW: raw.txt files of whole runs (bench/results/*/raw.txt). For every
"rate" target of run.sh and every timed row it applies to, table.awk
(-v dump=1) gives the per-round ratios the verdict judges; they are
pooled over the runs, so that what moves between runs is in the pool
too. Then, for each
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
import random
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
TIMED = ("req", "MB", "hs", "dg")


def targets():
    """run.sh's TARGETS, as table.awk takes them."""
    text = (HERE / "run.sh").read_text()
    block = re.search(r"^TARGETS=\(\n(.*?)^\)", text, re.S | re.M).group(1)
    return "".join(t + ";" for t in re.findall(r'"([^"]*)"', block))


def ratios(path, pool):
    """Adds the per-round ratios of path's timed verdicts to pool, keyed
    by (row, target), in table.awk's order."""
    rows, servers = {}, {}
    for line in open(path):
        kv = dict(f.split("=", 1) for f in line.split() if "=" in f)
        if kv.get("unit") in TIMED:
            rows[kv["row"]] = kv["unit"]
            servers[kv["server"]] = True
    out = subprocess.run(
        ["awk", "-v", "dump=1", "-v", "servers=" + " ".join(servers),
         "-v", "rows=" + " ".join("%s:%s" % r for r in rows.items()),
         "-v", "targets=" + targets(), "-f", str(HERE / "table.awk"), path],
        capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        w = line.split()
        if w and w[0] == "ratios":
            key = (w[1], "%s / %s >= %s" % (w[2], w[3], w[4]), float(w[4]))
            pool.setdefault(key, []).extend(float(x) for x in w[5:])


def rank(n):
    """table.awk's interval_rank (for drawn runs, which table.awk never
    sees): the K-th smallest to the K-th largest."""
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


def main(argv):
    counts = [9, 12, 15, 16, 17, 20]
    if "--rounds" in argv:
        i = argv.index("--rounds")
        counts = [int(n) for n in argv[i + 1].split(",")]
        argv = argv[:i] + argv[i + 2:]
    if not argv:
        sys.exit(__doc__)
    pool = {}
    for path in argv:
        ratios(path, pool)
    rng = random.Random(1)
    total = collections.Counter()
    print("%-13s %-40s %6s %6s  agree at %s rounds" %
          ("row", "target", "median", "pool", ",".join(map(str, counts))))
    for (row, target, bound), values in pool.items():
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
            row, target, sorted(values)[len(values) // 2], len(values),
            " ".join("%.2f" % c for c in chances)))
    print("expected to agree, of the targets above: " + ", ".join(
        "%.1f at %d rounds" % (total[n], n) for n in counts))


if __name__ == "__main__":
    main(sys.argv[1:])
