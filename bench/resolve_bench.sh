#!/usr/bin/env bash
# The resolver row: 1,000 lookups of distinct names (n<i>.bench.tapio.test)
# with 100 in flight, answered by the tests' DNS server
# (spec/support/dns_server.py) on 127.0.0.1:53, by tapio (c-ares on the
# loop, bench/resolve.c) and by Python asyncio's loop.getaddrinfo (glibc in
# its thread pool, resolve_asyncio.py). Both read the system's resolver
# configuration: each runs in a mount namespace of its own where
# /etc/resolv.conf names 127.0.0.1, so they ask the same server the same
# way. Needs root (the namespace, port 53): without it, it says so in its
# line ("needs_root"). RUNS runs each, alternating; prints one line per
# side (medians), run.sh's format for rows of their own:
#   resolve_1000x100 SIDE LOOKUPS_PER_S MILLISECONDS_FOR_ALL
#
#   bench/resolve_bench.sh BUILD
#
# Environment: BENCH_QUICK=1 (1 run), BENCH_RESOLVE_RUNS (3).
set -uo pipefail
BUILD=$(cd "${1:?usage: resolve_bench.sh BUILD}" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
COUNT=1000 INFLIGHT=100
RUNS=${BENCH_RESOLVE_RUNS:-3}
[ -n "${BENCH_QUICK:-}" ] && [ "$BENCH_QUICK" != 0 ] && RUNS=1
tmp=$(mktemp -d)
dns=
cleanup() {
  [ -n "$dns" ] && kill "$dns" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
if ! unshare -m true 2>/dev/null; then
  echo "resolve_bench: needs root (a mount namespace for resolv.conf)" >&2
  echo "resolve_${COUNT}x$INFLIGHT needs_root 0 0"
  exit 0
fi
printf 'nameserver 127.0.0.1\noptions timeout:2 attempts:2\n' \
  >"$tmp/resolv.conf"
# Its stdin is a FIFO this script holds open: the server ends with it.
mkfifo "$tmp/in"
python3 "$ROOT/spec/support/dns_server.py" --port 53 \
  --port-file "$tmp/port" <"$tmp/in" >/dev/null 2>&1 &
dns=$!
exec 3>"$tmp/in"
for _ in $(seq 1 100); do
  [ -f "$tmp/port" ] && break
  kill -0 "$dns" 2>/dev/null || break
  sleep 0.05   # a poll for the server's start, with a deadline
done
if [ ! -f "$tmp/port" ]; then
  echo "resolve_bench: the DNS server did not start on port 53" >&2
  exit 1
fi

# One run of a side in the namespace; its secs and lps.
run() {
  local line
  line=$(unshare -m sh -c 'mount --bind "$1" /etc/resolv.conf && shift &&
    exec "$@"' sh "$tmp/resolv.conf" "$@")
  [[ $line == *lps=* ]] || { echo "resolve_bench: $*: $line" >&2; return; }
  local secs=${line#*secs=} lps=${line#*lps=}
  echo "${secs%% *} ${lps%% *}"
}

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
  print NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

tapio_lps=() tapio_secs=() py_lps=() py_secs=()
for ((i = 1; i <= RUNS; i++)); do
  read -r secs lps <<<"$(run "$BUILD/bench/resolve" $COUNT $INFLIGHT)"
  tapio_lps+=("$lps") tapio_secs+=("$secs")
  read -r secs lps <<<"$(run /usr/bin/python3 "$HERE/resolve_asyncio.py" \
    $COUNT $INFLIGHT)"
  py_lps+=("$lps") py_secs+=("$secs")
done
exec 3>&-
[ -n "${tapio_lps[0]}" ] && [ -n "${py_lps[0]}" ] || exit 1
ms() { awk -v s="$1" 'BEGIN { printf "%.0f", s * 1000 }'; }
echo "resolve_${COUNT}x$INFLIGHT tapio $(median "${tapio_lps[@]}")" \
  "$(ms "$(median "${tapio_secs[@]}")")"
echo "resolve_${COUNT}x$INFLIGHT asyncio $(median "${py_lps[@]}")" \
  "$(ms "$(median "${py_secs[@]}")")"
