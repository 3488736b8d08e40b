#!/usr/bin/env bash
# The TLS rows one server at a time: run.sh runs the idle row this way
# (its "tls_idle" row, a row of its own); the streaming and handshake rows
# it runs as timed rows, in paired rounds (see README.md), and this script
# runs them once per server for a quick look. It prints a line per
# server, "tls SERVER F1 F2".
#
#   bench/tls_rows.sh BUILD ROW
#
# ROW (all TLS 1.3, the server's choice of cipher: AES-256-GCM here):
#   stream_1c  1 connection streaming 64 KiB blocks, 1 MiB in flight:
#              echoed MB/s and server CPU us per MB
#   stream_4c  the same on 4 connections
#   hs_ecdsa   8 connections at a time doing full handshakes and closing,
#              ECDSA P-256 certificate: handshakes/s and server CPU us each
#   hs_rsa     the same with an RSA 2048 certificate
#   idle       BENCH_TLS_IDLE_CONNS (1000) connections, one round trip each,
#              then idle: server RSS growth per connection, and the C memory
#              its stats port reports per connection (OpenSSL's bytes for
#              openssl_echo, the per-SSL footprint; tapio's own plus
#              OpenSSL's for tapio)
# The servers: lib.sh's tls_servers. Certificates are made with the
# openssl command (spec/tls/make_certs.sh) under BUILD.
# Environment: BENCH_QUICK, BENCH_TLS_WINDOW (2 s), BENCH_TLS_WARMUP (0.5),
# BENCH_SERVER_CORE, BENCH_LOAD_CORE, BENCH_PORT.
set -uo pipefail
set -f

BUILD=$(cd "${1:?usage: tls_rows.sh BUILD ROW}" && pwd)
ROW=${2:?usage: tls_rows.sh BUILD ROW}
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=$BUILD/bench
LOAD=$BIN/load
LOG=/dev/stderr
# shellcheck source=lib.sh
. "$HERE/lib.sh"

tls_certs "$BUILD" "$([ "$ROW" = hs_rsa ] && echo rsa)" ||
  { echo "tls_rows.sh: cannot make certificates" >&2; exit 1; }

SCORE=${BENCH_SERVER_CORE:-1}
LCORE=${BENCH_LOAD_CORE:-0}
if [ "$(nproc)" -lt 2 ]; then SCORE=0 LCORE=0; fi
WINDOW=${BENCH_TLS_WINDOW:-2} WARMUP=${BENCH_TLS_WARMUP:-0.5}
IDLE=${BENCH_TLS_IDLE_CONNS:-1000}
if [ -n "${BENCH_QUICK:-}" ] && [ "${BENCH_QUICK}" != 0 ]; then
  WINDOW=0.3 WARMUP=0.1 IDLE=${BENCH_TLS_IDLE_CONNS:-200}
fi

tls_servers "$BUILD" "$HERE"

STREAM=(tls-stream --size 65536 --depth 16)
case $ROW in
  stream_1c) ARGS=("${STREAM[@]}" --conns 1) F1=mbps F2=cpu_us_per_mb ;;
  stream_4c) ARGS=("${STREAM[@]}" --conns 4) F1=mbps F2=cpu_us_per_mb ;;
  hs_ecdsa|hs_rsa) ARGS=(tls-handshake --conns 8) F1=hps F2=cpu_us_per_hs ;;
  idle) ARGS=(tls-idle --conns "$IDLE") F1=rss_per_conn F2=cmem_per_conn ;;
  *) echo "tls_rows.sh: no row $ROW" >&2; exit 2 ;;
esac
TIMED=()
[ "$ROW" = idle ] || TIMED=(--warmup "$WARMUP" --duration "$WINDOW")

value() { # key line: the key's value, or -1 when absent
  local v=${2##* $1=}
  [[ " $2" == *" $1="* ]] && echo "${v%% *}" || echo -1
}

FAILED=0
for entry in "${TLS_SERVERS[@]}"; do
  if ! start_server "$entry" "$SCORE"; then
    echo "tls_rows.sh: $SNAME did not start" >&2
    FAILED=1
    continue
  fi
  line=$(taskset -c "$LCORE" "$LOAD" "${ARGS[@]}" --port "$PORT" \
    --pid "$SPID" "${STATS_ARG[@]}" "${TIMED[@]}" 2>&2)
  stop_server "$SPID" || line="$line error=server_died"
  if [ -z "$line" ] || [[ $line == *error=* ]]; then
    echo "tls_rows.sh: $SNAME: ${line:-no output}" >&2
    FAILED=1
    continue
  fi
  echo "tls $SNAME $(value "$F1" "$line") $(value "$F2" "$line")"
done
exit $FAILED
