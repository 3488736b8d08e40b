# The benchmark's table: medians of the raw results per (row, server), and
# each server's ratio to the first server. Written for any POSIX awk.
#
#   awk -v servers="libev tapio" -v rows="pingpong_1c:req idle_10k:idle" \
#       -f table.awk raw.txt
#
# raw.txt has one measurement per line as key=value pairs (see run.sh and
# load.c). Units: req rows give requests/s and server CPU us per request;
# MB rows give MB/s (10^6 bytes) and server CPU us per MB; idle rows give
# the server's RSS growth per connection and, for servers with a stats
# port, the C memory growth per connection their library reports.

function median(list,    a, n, i, j, t) {
  n = split(list, a, " ")
  if (n == 0)
    return ""
  for (i = 2; i <= n; i++) {          # insertion sort: a handful of runs
    t = a[i] + 0
    for (j = i - 1; j >= 1 && a[j] + 0 > t; j--)
      a[j + 1] = a[j]
    a[j + 1] = t
  }
  return n % 2 ? a[(n + 1) / 2] + 0 : (a[n / 2] + a[n / 2 + 1]) / 2
}

function ratio(x, ref) {
  return (x == "" || ref == "" || ref + 0 == 0) ? "-" : \
    sprintf("%.3f", x / ref)
}

function fmt(x, f) {
  return x == "" ? "-" : sprintf(f, x)
}

{
  split("", kv)
  for (i = 1; i <= NF; i++) {
    eq = index($i, "=")
    if (eq)
      kv[substr($i, 1, eq - 1)] = substr($i, eq + 1)
  }
  key = kv["row"] SUBSEP kv["server"]
  if (kv["secs"] > 0) {
    measured++
    if (kv["other_cpu_s"] / kv["secs"] > 0.1)
      noisy++               # other processes used over 10% of a core
  }
  if ("error" in kv) {
    failed[key]++
    next
  }
  if (kv["unit"] == "req") {
    a = kv["rps"]; b = kv["cpu_us_per_req"]
  } else if (kv["unit"] == "MB") {
    a = kv["mbps"]; b = kv["cpu_us_per_mb"]
  } else {
    a = kv["rss_per_conn"]
    b = ("cmem_per_conn" in kv) ? kv["cmem_per_conn"] : ""
  }
  first[key] = first[key] " " a
  if (b != "")
    second[key] = second[key] " " b
  runs[key]++
}

END {
  ns = split(servers, sv, " ")
  nr = split(rows, rw, " ")
  ref = sv[1]
  w = 6                                 # widest server name
  for (s = 1; s <= ns; s++)
    if (length(sv[s]) > w)
      w = length(sv[s])
  line = "%-13s %-" w "s %18s %8s %20s %8s %5s%s\n"
  printf line, "row", "server", "median", "x " ref, "server cost", \
    "x " ref, "runs", ""
  for (r = 1; r <= nr; r++) {
    split(rw[r], p, ":")
    row = p[1]; unit = p[2]
    if (unit == "req") {
      f1 = "%.0f req/s"; f2 = "%.3f us/req"
    } else if (unit == "MB") {
      f1 = "%.1f MB/s"; f2 = "%.1f us/MB"
    } else {
      f1 = "%.1f B/conn RSS"; f2 = "%.1f B/conn C"
    }
    m1ref = median(first[row SUBSEP ref])
    m2ref = median(second[row SUBSEP ref])
    for (s = 1; s <= ns; s++) {
      key = row SUBSEP sv[s]
      m1 = median(first[key]); m2 = median(second[key])
      note = failed[key] ? sprintf("  (%d failed)", failed[key]) : ""
      printf line, s == 1 ? row : "", \
        sv[s], fmt(m1, f1), ratio(m1, m1ref), fmt(m2, f2), \
        ratio(m2, m2ref), runs[key], note
    }
  }
  print ""
  if (noisy)
    printf "warning: in %d of %d timed measurements other processes used" \
      " over 10%% of a core (other_cpu_s in the raw results).\n", noisy, \
      measured
  print "x " ref ": ratio of medians to " ref "; for req/s and MB/s higher" \
    " is better, for server cost (CPU per request or MB, memory per idle" \
    " connection) lower is better."
}
