#!/usr/bin/env bash
# The UDP echo rows: every UDP echo server (plain libev, tapio C, tapio
# Lua, luv, uvloop; each where the machine has it) echoing 64-byte
# datagrams for load's udp mode, CONNS client sockets with one datagram in
# flight each. Each server is started once, then measured in windows, the
# servers taking turns, RUNS times; prints one line per server:
#   udp_<CONNS>c SERVER DATAGRAMS_PER_S SERVER_CPU_NS_PER_DATAGRAM
# (medians), the format of run.sh's rows of their own.
#
#   bench/udp_bench.sh BUILD CONNS
#
# Environment: BENCH_QUICK=1 (2 runs of 0.3 s), BENCH_UDP_RUNS (3),
# BENCH_WINDOW (0.5 s), BENCH_WARMUP (0.1 s), BENCH_SERVER_CORE (1),
# BENCH_LOAD_CORE (0; with 1 connection the load runs on the server's
# core, as run.sh's pingpong_1c), BENCH_PORT (23000).
set -uo pipefail
BUILD=$(cd "${1:?usage: udp_bench.sh BUILD CONNS}" && pwd)
CONNS=${2:?usage: udp_bench.sh BUILD CONNS}
HERE=$(cd "$(dirname "$0")" && pwd)
LOAD=$BUILD/bench/load
if [ -n "${BENCH_QUICK:-}" ] && [ "$BENCH_QUICK" != 0 ]; then
  RUNS=2 WINDOW=0.3 WARMUP=0.1
else
  RUNS=${BENCH_UDP_RUNS:-3} WINDOW=${BENCH_WINDOW:-0.5}
  WARMUP=${BENCH_WARMUP:-0.1}
fi
SCORE=${BENCH_SERVER_CORE:-1} LCORE=${BENCH_LOAD_CORE:-0}
[ "$(nproc)" -lt 2 ] && SCORE=0 LCORE=0
[ "$CONNS" = 1 ] && LCORE=$SCORE
PORT=${BENCH_PORT:-23000}

SERVERS=(
  "libev $BUILD/bench/libev_udp_echo {port}"
  "tapio $BUILD/bench/tapio_udp_echo {port}"
)
[ -x "$BUILD/tapio" ] &&
  SERVERS+=("tapio_lua $BUILD/tapio $HERE/tapio_udp_echo.lua {port}")
lua5.4 -e 'require "luv"' 2>/dev/null &&
  SERVERS+=("luv /usr/bin/lua5.4 $HERE/luv_udp_echo.lua {port}")
/usr/bin/python3 -c 'import uvloop' 2>/dev/null &&
  SERVERS+=("uvloop /usr/bin/python3 $HERE/uvloop_udp_echo.py {port}")

declare -A PID PORTS RATES COSTS
stop_all() {
  local name
  for name in "${!PID[@]}"; do
    kill "${PID[$name]}" 2>/dev/null
    wait "${PID[$name]}" 2>/dev/null
  done
}
trap stop_all EXIT

# Starts every server on a port of its own; a server that does not echo
# is left out (said on stderr).
for entry in "${SERVERS[@]}"; do
  set -- $entry
  name=$1
  shift
  PORT=$((PORT + 1))
  taskset -c "$SCORE" "${@//\{port\}/$PORT}" >/dev/null 2>&1 &
  pid=$!
  if "$LOAD" udpwait --port "$PORT" --pid "$pid" --deadline 10; then
    PID[$name]=$pid PORTS[$name]=$PORT
  else
    echo "udp_bench: $name did not start" >&2
    kill "$pid" 2>/dev/null
  fi
done

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
  print NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

for ((run = 1; run <= RUNS; run++)); do
  for entry in "${SERVERS[@]}"; do
    name=${entry%% *}
    [ -n "${PID[$name]:-}" ] || continue
    line=$(taskset -c "$LCORE" "$LOAD" udp --port "${PORTS[$name]}" \
      --conns "$CONNS" --size 64 --depth 1 --warmup "$WARMUP" \
      --duration "$WINDOW" --pid "${PID[$name]}")
    if [[ $line != *rps=* ]]; then
      echo "udp_bench: $name: ${line:-no output}" >&2
      continue
    fi
    rate=${line#*rps=} cost=${line#*cpu_us_per_req=}
    RATES[$name]+=" ${rate%% *}" COSTS[$name]+=" ${cost%% *}"
  done
done

status=0
for entry in "${SERVERS[@]}"; do
  name=${entry%% *}
  if [ -z "${RATES[$name]:-}" ]; then
    status=1
    continue
  fi
  cost=$(median ${COSTS[$name]})
  echo "udp_${CONNS}c $name $(median ${RATES[$name]})" \
    "$(awk -v us="$cost" 'BEGIN { printf "%.0f", us * 1000 }')"
done
exit $status
