#!/usr/bin/env bash
# The TLS idle row (run.sh's "tls_idle", a row of its own): each TLS echo
# server in turn (lib.sh's tls_servers) on a fresh port gets
# BENCH_TLS_IDLE_CONNS (1000; 200 with BENCH_QUICK) connections, one
# round trip each, then idle; prints a line per server, "tls SERVER
# RSS_PER_CONN CMEM_PER_CONN": the server's RSS growth per connection, and
# the C memory its stats port reports per connection (OpenSSL's bytes for
# openssl_echo, the per-SSL footprint; tapio's own plus OpenSSL's for
# tapio_tls; -1 without a stats port). The streaming and handshake rows
# are run.sh's timed rows.
#
#   bench/tls_idle.sh BUILD
#
# Certificates are made with the openssl command (spec/tls/make_certs.sh)
# under BUILD. Environment: BENCH_QUICK, BENCH_TLS_IDLE_CONNS,
# BENCH_SERVER_CORE, BENCH_LOAD_CORE, BENCH_PORT.
set -uo pipefail
set -f

BUILD=$(cd "${1:?usage: tls_idle.sh BUILD}" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=$BUILD/bench
LOAD=$BIN/load
LOG=/dev/stderr
# shellcheck source=lib.sh
. "$HERE/lib.sh"

tls_certs "$BUILD" ||
  { echo "tls_idle.sh: cannot make certificates" >&2; exit 1; }

SCORE=${BENCH_SERVER_CORE:-1}
LCORE=${BENCH_LOAD_CORE:-0}
if [ "$(nproc)" -lt 2 ]; then SCORE=0 LCORE=0; fi
IDLE=${BENCH_TLS_IDLE_CONNS:-1000}
if [ -n "${BENCH_QUICK:-}" ] && [ "${BENCH_QUICK}" != 0 ]; then
  IDLE=${BENCH_TLS_IDLE_CONNS:-200}
fi

tls_servers "$BUILD" "$HERE"

value() { # key line: the key's value, or -1 when absent
  local v=${2##* $1=}
  [[ " $2" == *" $1="* ]] && echo "${v%% *}" || echo -1
}

FAILED=0
for entry in "${TLS_SERVERS[@]}"; do
  if ! start_server "$entry" "$SCORE"; then
    echo "tls_idle.sh: $SNAME did not start" >&2
    FAILED=1
    continue
  fi
  line=$(taskset -c "$LCORE" "$LOAD" tls-idle --conns "$IDLE" \
    --port "$PORT" --pid "$SPID" "${STATS_ARG[@]}" 2>&2)
  stop_server "$SPID" || line="$line error=server_died"
  if [ -z "$line" ] || [[ $line == *error=* ]]; then
    echo "tls_idle.sh: $SNAME: ${line:-no output}" >&2
    FAILED=1
    continue
  fi
  echo "tls $SNAME $(value rss_per_conn "$line") $(value cmem_per_conn "$line")"
done
exit $FAILED
