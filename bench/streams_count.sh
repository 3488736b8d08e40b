#!/usr/bin/env bash
# The streams rows counted rather than timed: user-space instructions per
# request (callgrind), the slope between a run of A requests and one of B,
# so start-up and warm-up cancel (as run.sh's instr rows).
#
#   bench/streams_count.sh [BUILD] [SERVER...]
#
# SERVER (default: all six) is one of
#   tapio_lua       the Lua protocol echo (tapio_echo.lua)
#   tapio_streams   the Lua streams echo (tapio_streams_echo.lua)
#   uvloop_streams  asyncio's streams on uvloop (streams_echo.py)
#   asyncio_streams the same on asyncio's own loop
#     each with streams_50c's load: 50 connections, 1 KiB ping-pong;
#     A, B = 5,000, 25,000 requests
#   tapio_lines     the streams echo reading lines (... lines)
#   uvloop_lines    the same on uvloop
#     with readline_50c's load: 50 connections, 16 lines of 100 B in
#     flight each; A, B = 20,000, 100,000 lines
#   tapio_streams_jit, tapio_lines_jit   under luajit (not by default)
# STREAMS_HOST runs the tapio servers with another tapio host (say
# BUILD/bench/prof/tapio from `profile.sh relink`, whose Lua functions
# have names); STREAMS_KEEP=DIR keeps the callgrind files as
# DIR/callgrind/ROW.SERVER.REQUESTS.1.out, which `bench/profile.sh DIR
# ROW SERVER` reads (ROW: streams_50c or readline_50c). STREAMS_LUA
# gives luajit another directory of tapio's Lua files (an older version's).
set -euo pipefail
BUILD=$(cd "${1:-build}" && pwd)
shift || true
HERE=$(cd "$(dirname "$0")" && pwd)
LOAD=$BUILD/bench/load
TMP=$(mktemp -d)
OUT=${STREAMS_KEEP:-$TMP}
LOG=$OUT/streams_count.log
mkdir -p "$OUT/callgrind"
# shellcheck source=lib.sh
. "$HERE/lib.sh"
# Ports away from run.sh's (other benchmarks may run on this machine).
NEXT_PORT=${BENCH_PORT:-$((23000 + $$ % 1000 * 2))}

HOST=${STREAMS_HOST:-$BUILD/tapio}
PY=/usr/bin/python3
LUA=${STREAMS_LUA:-$(dirname "$HERE")/lua}
JIT="LUA_PATH=$LUA/?.lua;$LUA/?/init.lua;; LUA_CPATH=$BUILD/luajit/?.so;; /usr/bin/luajit"
server_table \
  "tapio_lua $HOST $HERE/tapio_echo.lua {port}" \
  "tapio_streams $HOST $HERE/tapio_streams_echo.lua {port}" \
  "uvloop_streams $PY $HERE/streams_echo.py {port} uvloop" \
  "asyncio_streams $PY $HERE/streams_echo.py {port} asyncio" \
  "tapio_lines $HOST $HERE/tapio_streams_echo.lua {port} lines" \
  "uvloop_lines $PY $HERE/streams_echo.py {port} uvloop lines" \
  "tapio_streams_jit $JIT $HERE/tapio_streams_echo.lua {port}" \
  "tapio_lines_jit $JIT $HERE/tapio_streams_echo.lua {port} lines"
PINGPONG=(count --conns 50 --size 1024 --depth 1)
LINES=(count --conns 50 --size 100 --depth 16 --lines yes)
REALTIME=(chrt -f 10)
chrt -f 10 true 2>/dev/null || REALTIME=()

SERVERS=("$@")
[ ${#SERVERS[@]} -gt 0 ] ||
  SERVERS=(tapio_lua tapio_streams uvloop_streams asyncio_streams tapio_lines
    uvloop_lines)

# IR: the instructions of one callgrind run of N requests of the load in
# ARGS (not in a subshell: start_server moves NEXT_PORT on).
instr_run() {
  local name=$1 row=$2 n=$3 base
  base=$OUT/callgrind/$row.$name.$n.1
  callgrind_server "${ENTRY[$name]}" 1 "$base"
  # In real time, as run.sh's counted rows: see bench/README.
  local line
  line=$(taskset -c 0 "${REALTIME[@]}" "$LOAD" "${ARGS[@]}" --requests "$n" \
    --port "$PORT" --deadline 600) || true
  [[ $line == mode=count* && $line != *error=* ]] ||
    { echo "streams_count.sh: $name: $line" >&2; exit 1; }
  stop_server "$SPID" || { echo "streams_count.sh: $name died" >&2; exit 1; }
  IR=$(callgrind_total "$base")
}

printf '%-16s %12s %12s %10s\n' server "Ir(A)" "Ir(B)" instr/req
for name in "${SERVERS[@]}"; do
  [ -n "${ENTRY[$name]:-}" ] || { echo "streams_count.sh: no server $name" >&2; exit 2; }
  if [[ $name == *lines* ]]; then
    ARGS=("${LINES[@]}") row=readline_50c a=20000 b=100000
  else
    ARGS=("${PINGPONG[@]}") row=streams_50c a=5000 b=25000
  fi
  instr_run "$name" $row $a
  ia=$IR
  instr_run "$name" $row $b
  ib=$IR
  awk -v ia="$ia" -v ib="$ib" -v n=$((b - a)) -v name="$name" \
    'BEGIN { printf "%-16s %12d %12d %10.0f\n", name, ia, ib, (ib - ia) / n }'
done
[ -n "${STREAMS_KEEP:-}" ] && echo "kept: $OUT/callgrind"
rm -rf "$TMP"
