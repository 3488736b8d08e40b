# The benchmark's table from raw.txt (see run.sh and load.c): per row and
# server the figures, each server's ratio to the first server (plain
# libev), and the verdicts on the targets. Written for any POSIX awk.
#
#   awk -v servers="libev tapio" -v rows="pingpong_1c:req idle_10k:idle" \
#       -v targets="rate tapio libev 0.95;" -f table.awk raw.txt
#
# With -v dump=1, a timed row's verdicts are lines "ratios ROW SERVER REF
# BOUND r1 r2 ..." (the per-round ratios they judge), for agreement.py.
#
# Timed rows (req, MB, hs, dg): raw.txt has one line per window, tagged with
# its round and its place in the row (seq). The row's reference is the
# server of its first window (plain libev, or for the TLS rows the plain
# OpenSSL echo). Every other server's window lies between two of the
# reference's, and its ratio for the round is its figure over the
# geometric mean of those two (what the machine did to both cancels,
# and so does a steady drift); two servers compare through the ratio of
# their ratios in the same round. The table gives the median of the
# per-round ratios with a distribution-free 95% interval from order
# statistics.
# Counted rows (instr): runs per server of A and of B requests; per
# request is the slope (median at B - median at A) / (B - A).

# Sorts the space-separated numbers of list into s[1..n]; returns n.
function sorted(list, s,    n, i, j, t) {
  n = split(list, s, " ")
  for (i = 2; i <= n; i++) {          # insertion sort: tens of values
    t = s[i] + 0
    for (j = i - 1; j >= 1 && s[j] + 0 > t; j--)
      s[j + 1] = s[j]
    s[j + 1] = t
  }
  return n
}

function median(list,    s, n) {
  n = sorted(list, s)
  if (n == 0)
    return ""
  return n % 2 ? s[(n + 1) / 2] + 0 : (s[n / 2] + s[n / 2 + 1]) / 2
}

# The order-statistic interval for the median of n values: the K-th
# smallest to the K-th largest, K the largest with P(B <= K - 1) <= 2.5%
# for B ~ Binomial(n, 1/2); COVER is its exact coverage. Below 6 values
# no K reaches 95%: K = 1 (the range), with the coverage it has.
function interval_rank(n,    p, cdf, k) {
  p = 1
  for (k = 0; k < n; k++)
    p /= 2                            # P(B = 0)
  cdf = p
  K = 1; COVER = 1 - 2 * cdf
  for (k = 2; k <= n / 2; k++) {
    p = p * (n - k + 2) / (k - 1)     # P(B = k - 1)
    cdf += p
    if (cdf > 0.025)
      break
    K = k; COVER = 1 - 2 * cdf
  }
}

# Median and interval of a list: sets MED, LO, HI, N.
function summary(list,    s) {
  N = sorted(list, s)
  MED = LO = HI = ""
  if (N == 0)
    return
  MED = N % 2 ? s[(N + 1) / 2] + 0 : (s[N / 2] + s[N / 2 + 1]) / 2
  interval_rank(N)
  LO = s[K]; HI = s[N + 1 - K]
}

function with_interval(list) {
  summary(list)
  if (N == 0)
    return "-"
  return sprintf("%.3f [%.3f, %.3f]", MED, LO, HI)
}

function fmt(x, f) {
  return x == "" ? "-" : sprintf(f, x)
}

# Above, below or across the bound, and what that means for the target
# (higher is better unless lower is set).
function verdict(lo, hi, bound, lower) {
  if (lo >= bound)
    return lower ? "above (missed)" : "above (met)"
  if (hi < bound)
    return lower ? "below (met)" : "below (missed)"
  return "across (undecided)"
}

{
  split("", kv)
  for (i = 1; i <= NF; i++) {
    eq = index($i, "=")
    if (eq)
      kv[substr($i, 1, eq - 1)] = substr($i, eq + 1)
  }
  row = kv["row"]; sv = kv["server"]; unit = kv["unit"]
  if ("skipped" in kv) {
    skipped[row] = kv["skipped"]
    next
  }
  if ("error" in kv) {
    failed[row SUBSEP sv]++
    next
  }
  if (unit in FIG) {
    q = kv["seq"] + 0
    wsrv[row, q] = sv
    if (q == 1)
      rowref[row] = sv
    wrnd[row, q] = kv["round"] + 0
    wfig[row, q] = kv[FIG[unit]]
    wcost[row, q] = kv[COST[unit]]
    absf[row, sv] = absf[row, sv] " " wfig[row, q]
    absc[row, sv] = absc[row, sv] " " wcost[row, q]
    if (q > nseq[row])
      nseq[row] = q
    if (kv["other_cpu_s"] / kv["secs"] > 0.1)
      noisy[row]++            # other processes used over 10% of a core
    windows[row]++
  } else if (unit == "idle") {
    rss[row, sv] = rss[row, sv] " " kv["rss_per_conn"]
    if ("cmem_per_conn" in kv)
      cmem[row, sv] = cmem[row, sv] " " kv["cmem_per_conn"]
    runs[row, sv]++
  } else if (unit == "instr") {
    n = kv["requests"] + 0
    if (!((row, sv) in cmin) || n < cmin[row, sv]) cmin[row, sv] = n
    if (!((row, sv) in cmax) || n > cmax[row, sv]) cmax[row, sv] = n
    cins[row, sv, n] = cins[row, sv, n] " " kv["instructions"]
    csys[row, sv, n] = csys[row, sv, n] " " kv["syscalls"]
  } else if (unit == "own") {
    c = kv["case"]
    if (!((row, c) in own1))
      cases[row] = cases[row] " " c
    own1[row, c] = own1[row, c] " " kv["f1"]
    own2[row, c] = own2[row, c] " " kv["f2"]
    ownruns[row, c]++
  }
}

# Window q's figure in a over the geometric mean of the reference's
# windows next to it (one if the other failed), or "".
function bracketed(a, row, q,    n, prod) {
  n = 0; prod = 1
  if (wsrv[row, q - 1] == rowref[row]) { n++; prod *= a[row, q - 1] }
  if (wsrv[row, q + 1] == rowref[row]) { n++; prod *= a[row, q + 1] }
  if (n == 0 || prod <= 0)
    return ""
  return a[row, q] / (n == 2 ? sqrt(prod) : prod)
}

# Every window's ratios to libev, by server and round: rfig and rcost.
function normalise(row,    q, s, r, x) {
  for (q = 1; q <= nseq[row]; q++) {
    s = wsrv[row, q]
    if (s == "" || s == rowref[row])
      continue
    r = wrnd[row, q]
    x = bracketed(wfig, row, q)
    if (x != "") {
      rfig[row, s, r] = x
      rcost[row, s, r] = bracketed(wcost, row, q)
      played[row, s]++
      if (r > rounds[row])
        rounds[row] = r
    }
  }
}

# The per-round ratios of server s to server t in a row (t the row's
# reference: the bracketed ratios themselves).
function ratios(a, row, s, t,    r, list) {
  list = ""
  for (r = 1; r <= rounds[row]; r++) {
    if (!((row, s, r) in a))
      continue
    if (t == rowref[row])
      list = list " " a[row, s, r]
    else if ((row, t, r) in a)
      list = list " " a[row, s, r] / a[row, t, r]
  }
  return list
}

function timed_table(row, unit,    s, f1, f2, n, line, ref) {
  f1 = unit == "MB" ? "%.1f" : "%.0f"
  f2 = unit == "MB" ? "%.1f" : "%.3f"
  ref = rowref[row]
  normalise(row)
  n = rounds[row]
  interval_rank(n)
  if (n > 0)
    printf "%s: %d rounds; x %s: median of the per-round ratios" \
      " [%.1f%% interval: order statistics %d and %d of %d]\n", row, n, \
      ref, COVER * 100, K, n + 1 - K, n
  else
    printf "%s: no round with a figure besides %s's\n", row, ref
  line = "  %-14s %10s %-24s %10s %-24s %s\n"
  printf line, "server", unit "/s", "x " ref, "CPU us/" unit, "x " ref, \
    "windows"
  for (s = 1; s <= NS; s++) {
    n = split(absf[row, SV[s]], tmp, " ")
    if (n == 0 && !failed[row SUBSEP SV[s]])
      continue
    printf line, SV[s], fmt(median(absf[row, SV[s]]), f1), \
      SV[s] == ref ? "1" : with_interval(ratios(rfig, row, SV[s], ref)), \
      fmt(median(absc[row, SV[s]]), f2), \
      SV[s] == ref ? "1" : with_interval(ratios(rcost, row, SV[s], ref)), \
      n (failed[row SUBSEP SV[s]] ? " (" failed[row SUBSEP SV[s]] \
      " failed)" : "")
  }
  for (t = 1; t <= NT; t++) {
    if (TK[t] != "rate" || !present(row, TS[t]) || !present(row, TR[t]) ||
        (TW[t] != "" && index("," TW[t] ",", "," row ",") == 0))
      continue
    if (dump) {                       # for agreement.py
      printf "ratios %s %s %s %s%s\n", row, TS[t], TR[t], TB[t], \
        ratios(rfig, row, TS[t], TR[t])
      continue
    }
    summary(ratios(rfig, row, TS[t], TR[t]))
    if (N == 0)
      continue
    printf "  verdict %s / %s >= %s: %.3f [%.3f, %.3f] %s\n", TS[t], \
      TR[t], TB[t], MED, LO, HI, COVER < 0.95 ? "none (under 6 rounds)" : \
      verdict(LO, HI, TB[t] + 0, 0)
  }
  if (noisy[row])
    printf "  warning: in %d of %d windows other processes used over 10%%" \
      " of a core\n", noisy[row], windows[row]
}

function present(row, s) {
  return s == rowref[row] ? nseq[row] > 0 : played[row, s] > 0
}

# Per request: the slope between the medians of the runs with the fewest
# and the most requests.
function slope(a, row, s,    lo, hi) {
  lo = cmin[row, s]; hi = cmax[row, s]
  if (lo == "" || hi == lo)
    return ""
  return (median(a[row, s, hi]) - median(a[row, s, lo])) / (hi - lo)
}

function counted_table(row,    s, ins, sys, ref_ins, ref_sys, line, t, a,
                       b) {
  printf "%s: per request in user space (callgrind) and system calls" \
    " (valgrind's trace, vDSO calls left out): the slope between the\n" \
    "  medians of the runs at two lengths\n", row
  line = "  %-14s %10s %8s %13s %8s\n"
  printf line, "server", "instr/req", "x " REF, "syscalls/req", "x " REF
  ref_ins = slope(cins, row, REF); ref_sys = slope(csys, row, REF)
  for (s = 1; s <= NS; s++) {
    if (slope(cins, row, SV[s]) == "") {
      if (failed[row SUBSEP SV[s]])
        printf "  %-14s failed\n", SV[s]
      continue
    }
    ins = slope(cins, row, SV[s]); sys = slope(csys, row, SV[s])
    INS[SV[s]] = ins
    printf line, SV[s], fmt(ins, "%.0f"), \
      (ref_ins > 0 ? sprintf("%.3f", ins / ref_ins) : "-"), \
      fmt(sys, "%.3f"), (ref_sys > 0 ? sprintf("%.3f", sys / ref_sys) : "-")
  }
  for (t = 1; t <= NT; t++) {
    a = TS[t]; b = TR[t]
    if (TK[t] != "instr" || !(a in INS) || !(b in INS) || INS[b] <= 0)
      continue
    printf "  verdict %s / %s <= %s: %.3f %s\n", a, b, TB[t], \
      INS[a] / INS[b], verdict(INS[a] / INS[b], INS[a] / INS[b], TB[t], 1)
  }
  split("", INS)
}

function idle_table(row,    s, line, m, mref) {
  printf "%s: medians of fresh-server runs\n", row
  line = "  %-14s %16s %8s %16s %5s\n"
  printf line, "server", "B/conn RSS", "x " REF, "B/conn C", "runs"
  mref = median(rss[row, REF])
  for (s = 1; s <= NS; s++) {
    if (!runs[row, SV[s]])
      continue
    m = median(rss[row, SV[s]])
    printf line, SV[s], fmt(m, "%.1f"), \
      (mref > 0 ? sprintf("%.3f", m / mref) : "-"), \
      fmt(median(cmem[row, SV[s]]), "%.1f"), runs[row, SV[s]]
  }
}

function own_table(row, labels,    lb, n, c, i, line) {
  n = split(labels, lb, ":")
  if (row in skipped) {
    printf "%s: skipped (%s)\n", row, skipped[row]
    return
  }
  printf "%s: medians of the runs\n", row
  line = "  %-20s %16s %16s %5s\n"
  printf line, "case", lb[2], lb[3], "runs"
  n = split(cases[row], c, " ")
  for (i = 1; i <= n; i++)
    printf line, c[i], fmt(median(own1[row, c[i]]), "%.0f"), \
      fmt(median(own2[row, c[i]]), "%.0f"), ownruns[row, c[i]]
}

BEGIN {
  NS = split(servers, SV, " ")
  REF = SV[1]
  # The timed units: the figure (higher is better) and the cost.
  FIG["req"] = "rps"; COST["req"] = "cpu_us_per_req"
  FIG["MB"] = "mbps"; COST["MB"] = "cpu_us_per_mb"
  FIG["hs"] = "hps"; COST["hs"] = "cpu_us_per_hs"
  FIG["dg"] = "rps"; COST["dg"] = "cpu_us_per_req"   # load.c udp: datagrams
}

END {
  NT = split(targets, tl, ";")
  for (t = 1; t <= NT; t++) {
    split(tl[t], w, " ")
    TK[t] = w[1]; TS[t] = w[2]; TR[t] = w[3]; TB[t] = w[4]; TW[t] = w[5]
  }
  nr = split(rows, rw, " ")
  for (i = 1; i <= nr; i++) {
    c = index(rw[i], ":")
    row = substr(rw[i], 1, c - 1); kind = substr(rw[i], c + 1)
    if (kind in FIG)
      timed_table(row, kind)
    else if (kind == "idle")
      idle_table(row)
    else if (kind == "instr")
      counted_table(row)
    else
      own_table(row, kind)
    print ""
  }
  print "Timed rows: req/s, MB/s, hs/s (TLS handshakes) and dg/s" \
    " (UDP datagrams) higher is better, CPU per request, MB, handshake" \
    " or datagram lower is better; x REF:" \
    " the median of the per-round ratios to the row's reference's" \
    " bracketing windows (" REF ", or the first named), [its 95%" \
    " interval]. Verdicts:" \
    " above, below or across the bound; met when the whole interval is" \
    " on the good side."
}
