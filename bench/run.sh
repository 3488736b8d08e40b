#!/usr/bin/env bash
# The echo benchmark: every server of SERVERS against every row of ROWS,
# the servers alternating, BENCH_RUNS times over; then a table of medians
# with each server's ratio to the first one (plain libev).
#
#   bench/run.sh [BUILD]      (what `make bench` runs; BUILD defaults to build)
#
# Environment (all optional):
#   BENCH_RUNS=5        runs of every (row, server) pair
#   BENCH_DURATION=5    measured seconds per echo row
#   BENCH_WARMUP=1      warm-up seconds before each measured window
#   BENCH_QUICK=1       smoke test: 1 run of 1 s after 0.3 s of warm-up
#   BENCH_SERVERS="libev tapio"   which servers, by name (default: all)
#   BENCH_EXTRA_SERVERS="name command {port};..."   more servers for this
#                       run, e.g. a patched build to compare against
#   BENCH_ROWS="pingpong_1c ..."  which rows, by name (default: all)
#   BENCH_IDLE_CONNS=10000        connections of the idle row
#   BENCH_PORT=21000    first port; every server start takes a fresh pair
#   BENCH_SERVER_CORE=1 BENCH_LOAD_CORE=0   the cores to pin to
set -uo pipefail

BUILD=$(cd "${1:-build}" && pwd) ||
  { echo "run.sh: no build directory ${1:-build}" >&2; exit 2; }
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=$BUILD/bench
LOAD=$BIN/load

# A server is a name and a command line. {port} is where it must listen
# (127.0.0.1); {stats}, if the command has it, is a second port where the
# server answers with the C memory it holds (see tapio_echo.c). The first
# server is the reference the ratios are taken against.
SERVERS=(
  "libev  $BIN/libev_echo {port}"
  "tapio  $BIN/tapio_echo {port} {stats}"
)
# The Lua and Python rows: tapio's Lua echo protocol, luv's (libuv) echo
# written as a protocol table on the same Lua 5.4, and uvloop's
# asyncio.Protocol echo; each where the machine has it.
[ -x "$BUILD/tapio" ] &&
  SERVERS+=("tapio_lua $BUILD/tapio $HERE/tapio_echo.lua {port}")
lua5.4 -e 'require "luv"' 2>/dev/null &&
  SERVERS+=("luv /usr/bin/lua5.4 $HERE/luv_echo.lua {port}")
/usr/bin/python3 -c 'import uvloop' 2>/dev/null &&
  SERVERS+=("uvloop /usr/bin/python3 $HERE/uvloop_echo.py {port}")
if [ -n "${BENCH_EXTRA_SERVERS:-}" ]; then
  IFS=';' read -ra EXTRA <<<"$BENCH_EXTRA_SERVERS"
  SERVERS+=("${EXTRA[@]}")
fi

# A row: name, what its figures count (req: requests/s and CPU us per
# request; MB: MB/s and CPU us per MB; idle: bytes per idle connection),
# where it runs (same: server and load on one core; split: two cores),
# and the load generator's arguments (see load.c).
IDLE_CONNS=${BENCH_IDLE_CONNS:-10000}
ROWS=(
  "pingpong_1c  req  same  echo --conns 1 --size 64 --depth 1"
  "pingpong_50c req  split echo --conns 50 --size 1024 --depth 1"
  "pipeline_50c req  split echo --conns 50 --size 1024 --depth 16"
  "stream_4c    MB   split echo --conns 4 --size 65536 --depth 16 --verify count"
  "idle_10k     idle split idle --conns $IDLE_CONNS --size 64"
)

if [ -n "${BENCH_QUICK:-}" ] && [ "${BENCH_QUICK}" != 0 ]; then
  RUNS=1 DURATION=1 WARMUP=0.3
else
  RUNS=${BENCH_RUNS:-5} DURATION=${BENCH_DURATION:-5} WARMUP=${BENCH_WARMUP:-1}
fi
SCORE=${BENCH_SERVER_CORE:-1}
LCORE=${BENCH_LOAD_CORE:-0}
if [ "$(nproc)" -lt 2 ]; then SCORE=0 LCORE=0; fi
NEXT_PORT=${BENCH_PORT:-21000}

# Keeps the entries of a list whose first word is in the filter (all if
# the filter is empty), in the list's order.
select_named() {
  local filter=$1; shift
  local entry
  for entry in "$@"; do
    if [ -z "$filter" ] || [[ " $filter " == *" ${entry%% *} "* ]]; then
      printf '%s\n' "$entry"
    fi
  done
}
mapfile -t SERVERS < <(select_named "${BENCH_SERVERS:-}" "${SERVERS[@]}")
mapfile -t ROWS < <(select_named "${BENCH_ROWS:-}" "${ROWS[@]}")
if [ ${#SERVERS[@]} -eq 0 ] || [ ${#ROWS[@]} -eq 0 ]; then
  echo "run.sh: no server or no row selected" >&2; exit 2
fi

for entry in "$LOAD" "${SERVERS[@]}"; do
  set -- $entry
  exe=${2:-$1}             # a server's program is its second word
  [ -x "$exe" ] || { echo "run.sh: $exe not built" >&2; exit 2; }
done

STAMP=$(date +%Y%m%d-%H%M%S)
OUT=$HERE/results/$STAMP
mkdir -p "$OUT"
RAW=$OUT/raw.txt
LOG=$OUT/servers.log

# Percent of all CPU time in use over the next second: anything else
# running makes the figures noisy on a machine this small.
cpu_busy() {
  local a b
  a=($(head -1 /proc/stat)); sleep 1; b=($(head -1 /proc/stat))
  local total=0 i
  for i in 1 2 3 4 5 6 7 8; do total=$((total + b[i] - a[i])); done
  local idle=$((b[4] - a[4] + b[5] - a[5]))
  echo $(( total > 0 ? 100 * (total - idle) / total : 0 ))
}

machine() {
  echo "date: $(date '+%Y-%m-%d %H:%M:%S %Z')"
  echo "machine: $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' \
    /proc/cpuinfo | head -1), Linux $(uname -r)"
  echo "runs: $RUNS x ${DURATION}s after ${WARMUP}s warm-up;" \
    "server on core $SCORE, load on core $LCORE (same-core rows: $SCORE)"
  echo "open files: soft $(ulimit -Sn), hard $(ulimit -Hn)"
  local hard
  hard=$(ulimit -Hn)
  if [ "$hard" != unlimited ] && [ "$hard" -lt $((IDLE_CONNS + 64)) ]; then
    echo "warning: $hard open files at most: the idle row needs $IDLE_CONNS" \
      "connections (BENCH_IDLE_CONNS, or raise ulimit -Hn)"
  fi
  local busy
  busy=$(cpu_busy)
  echo "CPU in use before the run: ${busy}%"
  if [ "$busy" -gt 10 ]; then
    echo "warning: the machine is busy; throughput figures will be noisy"
  fi
}

# True if something already listens on the port.
port_busy() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Starts server "$1" (its list entry) on core $2 at a fresh pair of ports;
# sets SPID, PORT and STATS_ARG. Fails if it does not accept in time.
start_server() {
  local cmd=${1#* } core=$2
  cmd=${cmd#"${cmd%%[! ]*}"}
  while port_busy "$NEXT_PORT" || port_busy $((NEXT_PORT + 1)); do
    NEXT_PORT=$((NEXT_PORT + 2))
  done
  PORT=$NEXT_PORT
  local stats=$((PORT + 1))
  NEXT_PORT=$((NEXT_PORT + 2))
  STATS_ARG=()
  [[ $cmd == *"{stats}"* ]] && STATS_ARG=(--stats-port "$stats")
  cmd=${cmd//\{port\}/$PORT}
  cmd=${cmd//\{stats\}/$stats}
  echo "== $cmd" >>"$LOG"
  # Word splitting of $cmd is the point: it is a command line.
  taskset -c "$core" $cmd >>"$LOG" 2>&1 &
  SPID=$!
  "$LOAD" wait --port "$PORT" --pid "$SPID" 2>>"$LOG" &&
    { [ ${#STATS_ARG[@]} -eq 0 ] ||
      "$LOAD" wait --port "$stats" --pid "$SPID" 2>>"$LOG"; }
}

# Stops the server; fails if it had died on its own or ignores SIGTERM
# (it gets SIGKILL after 5 s then).
stop_server() {
  kill -TERM "$SPID" 2>/dev/null
  ( sleep 5; kill -KILL "$SPID" 2>/dev/null ) &
  local guard=$!
  wait "$SPID" 2>/dev/null
  local status=$?
  kill "$guard" 2>/dev/null
  wait "$guard" 2>/dev/null
  [ $status -eq 143 ] ||
    { echo "server exited with status $status" >>"$LOG"; return 1; }
}

# One measurement: row entry $1, server entry $2, run number $3.
measure() {
  local row=($1) server=($2) run=$3
  local name=${row[0]} unit=${row[1]} where=${row[2]}
  local args=("${row[@]:3}")
  local score=$SCORE lcore=$LCORE
  [ "$where" = same ] && lcore=$SCORE
  local tag="run=$run server=${server[0]} row=$name unit=$unit"
  if ! start_server "$2" "$score"; then
    echo "$tag error=server_did_not_start" | tee -a "$RAW"
    stop_server; return 1
  fi
  local extra=(--warmup "$WARMUP" --duration "$DURATION")
  [ "${args[0]}" = idle ] && extra=("${STATS_ARG[@]}")
  local line
  line=$(taskset -c "$lcore" "$LOAD" "${args[@]}" --port "$PORT" \
    --pid "$SPID" "${extra[@]}" 2>>"$LOG")
  [ -n "$line" ] || line="error=load_generator_failed"
  stop_server || line="$line error=server_died"
  echo "$tag $line" | tee -a "$RAW"
  [[ $line != *error=* ]]
}

# Medians per (row, server) and ratios to the first server, from raw.txt.
table() {
  local servers rows
  servers=$(for s in "${SERVERS[@]}"; do printf '%s ' "${s%% *}"; done)
  rows=$(for r in "${ROWS[@]}"; do set -- $r; printf '%s:%s ' "$1" "$2"; done)
  awk -v servers="$servers" -v rows="$rows" -f "$HERE/table.awk" "$RAW"
}

machine | tee "$OUT/machine.txt"
echo "raw results: $RAW"
FAILED=0
for run in $(seq 1 "$RUNS"); do
  for row in "${ROWS[@]}"; do
    for server in "${SERVERS[@]}"; do
      measure "$row" "$server" "$run" || FAILED=1
    done
  done
done
echo
table | tee "$OUT/table.txt"
ln -sfn "$STAMP" "$HERE/results/latest"
if [ $FAILED -ne 0 ]; then
  echo "run.sh: some measurements failed: see $RAW and $LOG" >&2
  exit 1
fi
