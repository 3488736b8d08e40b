#!/usr/bin/env bash
# The echo benchmark: every server of SERVERS on every row of ROWS, then a
# table with each server's ratio to the first one (plain libev) and a
# verdict per target of TARGETS. See README.md for the method.
#
#   bench/run.sh [BUILD]      (what `make bench` runs; BUILD defaults to build)
#
# Environment (all optional):
#   BENCH_QUICK=1       smoke test: 2 rounds of 0.1 s windows (1 for TLS),
#                       small counts (libev and tapio's servers only), 2000
#                       idle connections
#   BENCH_ROUNDS=17     rounds of a timed row (every server one window each,
#                       each between two of the reference's)
#   BENCH_TLS_ROUNDS=12 rounds of the TLS rows (no more than BENCH_ROUNDS)
#   BENCH_WINDOW=0.4    measured seconds per window
#   BENCH_WARMUP=0.05   warm-up seconds at the start of each window
#   BENCH_ROW_SECONDS=200   no new round once a timed row has run this long
#   BENCH_RUN_SECONDS=1100  no new round once the whole run has taken this
#                       long (the rows after a slow stretch get fewer)
#   BENCH_IDLE_RUNS=3   fresh-server runs of the idle row
#   BENCH_IDLE_CONNS=10000  connections of the idle row
#   BENCH_COUNT_SCALE=1 multiplies the request counts of the counted rows
#   BENCH_COUNT_RUNS=1  runs of each length in the counted rows
#   BENCH_SERVERS="libev tapio"   which servers, by name (default: all
#                       but tapio_lua_2t, which runs only when named)
#   BENCH_EXTRA_SERVERS="name command {port};..."   more servers for this
#                       run, e.g. a patched build to compare against
#   BENCH_ROWS="pingpong_1c ..."  which rows, by name (default: all)
#   BENCH_PORT=21000    first port; every server start takes a fresh pair
#   BENCH_SERVER_CORE=1 BENCH_LOAD_CORE=0   the cores to pin to
#   BENCH_NICE=-10      niceness of servers and load ("" to leave it)
set -uo pipefail
set -f              # entries hold words like lua/?.lua: never glob them

BUILD=$(cd "${1:-build}" && pwd) ||
  { echo "run.sh: no build directory ${1:-build}" >&2; exit 2; }
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
BIN=$BUILD/bench
LOAD=$BIN/load
# shellcheck source=lib.sh
. "$HERE/lib.sh"

# A server is a name, optional VAR=value words and a command line. {port}
# is where it must listen (127.0.0.1); {stats}, if the command has it, is a
# second port where the server answers with the C memory it holds (see
# tapio_echo.c). The first server is the reference for every ratio.
JIT_PATH="LUA_PATH=$ROOT/lua/?.lua;$ROOT/lua/?/init.lua;;"
SERVERS=(
  "libev  $BIN/libev_echo {port}"
  "tapio  $BIN/tapio_echo {port} {stats}"
)
# The Lua and Python servers, where the machine has them: tapio's Lua echo
# protocol under Lua 5.4 (the tapio host) and LuaJIT (the module), luv's
# echo as a protocol table on the same two, uvloop's asyncio.Protocol echo.
[ -x "$BUILD/tapio" ] &&
  SERVERS+=("tapio_lua $BUILD/tapio $HERE/tapio_echo.lua {port}")
# The same in 2 threads, a loop and Lua state each, with reuse_port.
[ -x "$BIN/lua_threads" ] && SERVERS+=("tapio_lua_2t $BIN/lua_threads 2 $HERE/tapio_echo.lua {port} reuse_port")
[ -f "$BUILD/luajit/tapio/core.so" ] && [ -x /usr/bin/luajit ] &&
  SERVERS+=("tapio_lua_jit $JIT_PATH LUA_CPATH=$BUILD/luajit/?.so;;
    /usr/bin/luajit $HERE/tapio_echo.lua {port}")
lua5.4 -e 'require "luv"' 2>/dev/null &&
  SERVERS+=("luv /usr/bin/lua5.4 $HERE/luv_echo.lua {port}")
luajit -e 'require "luv"' 2>/dev/null &&
  SERVERS+=("luv_jit /usr/bin/luajit $HERE/luv_echo.lua {port}")
/usr/bin/python3 -c 'import uvloop' 2>/dev/null &&
  SERVERS+=("uvloop /usr/bin/python3 $HERE/uvloop_echo.py {port}")
if [ -n "${BENCH_EXTRA_SERVERS:-}" ]; then
  IFS=';' read -ra EXTRA <<<"$BENCH_EXTRA_SERVERS"
  SERVERS+=("${EXTRA[@]}")
fi
SERVERS=("${SERVERS[@]//$'\n'/ }")
# Servers that only the rows naming them run (servers=... in ROWS): the
# streams echo, a task per connection reading up to 64 KiB, writing it
# back and draining (tapio's Lua streams under Lua 5.4 and LuaJIT,
# asyncio's streams on uvloop and on asyncio's own loop), and the same
# reading lines with readline.
STREAM_SERVERS=()
if [ -x "$BUILD/tapio" ]; then
  STREAM_SERVERS+=("tapio_streams $BUILD/tapio $HERE/tapio_streams_echo.lua {port}"
    "tapio_lines $BUILD/tapio $HERE/tapio_streams_echo.lua {port} lines")
fi
if [ -f "$BUILD/luajit/tapio/core.so" ] && [ -x /usr/bin/luajit ]; then
  STREAM_SERVERS+=("tapio_streams_jit $JIT_PATH LUA_CPATH=$BUILD/luajit/?.so;;
    /usr/bin/luajit $HERE/tapio_streams_echo.lua {port}"
    "tapio_lines_jit $JIT_PATH LUA_CPATH=$BUILD/luajit/?.so;;
    /usr/bin/luajit $HERE/tapio_streams_echo.lua {port} lines")
fi
if /usr/bin/python3 -c 'import uvloop' 2>/dev/null; then
  STREAM_SERVERS+=(
    "uvloop_streams /usr/bin/python3 $HERE/streams_echo.py {port} uvloop"
    "uvloop_lines /usr/bin/python3 $HERE/streams_echo.py {port} uvloop lines")
fi
[ -x /usr/bin/python3 ] && STREAM_SERVERS+=(
  "asyncio_streams /usr/bin/python3 $HERE/streams_echo.py {port} asyncio")
STREAM_SERVERS=("${STREAM_SERVERS[@]//$'\n'/ }")
# The TLS echo servers (lib.sh), run only by the TLS rows, which name them.
tls_servers "$BUILD" "$HERE"
STREAM_SERVERS+=("${TLS_SERVERS[@]}")
# The UDP echo servers, run only by the UDP rows: plain libev (one
# recvfrom and one sendto per datagram, reading until the socket is
# empty), tapio's C datagram protocol, the same as a Lua protocol table
# (the tapio host), luv's UDP handle, uvloop's asyncio.DatagramProtocol.
STREAM_SERVERS+=("libev_udp $BIN/libev_udp_echo {port}"
  "tapio_udp $BIN/tapio_udp_echo {port}")
[ -x "$BUILD/tapio" ] &&
  STREAM_SERVERS+=("tapio_udp_lua $BUILD/tapio $HERE/tapio_udp_echo.lua {port}")
lua5.4 -e 'require "luv"' 2>/dev/null &&
  STREAM_SERVERS+=("luv_udp /usr/bin/lua5.4 $HERE/luv_udp_echo.lua {port}")
/usr/bin/python3 -c 'import uvloop' 2>/dev/null &&
  STREAM_SERVERS+=("uvloop_udp /usr/bin/python3 $HERE/uvloop_udp_echo.py {port}")

if [ -n "${BENCH_QUICK:-}" ] && [ "${BENCH_QUICK}" != 0 ]; then
  ROUNDS=2 WINDOW=0.1 WARMUP=0.05 IDLE_RUNS=1 OWN_RUNS=1 TLS_ROUNDS=1
  COUNT_SCALE=0.1 COUNT_RUNS=1 IDLE_CONNS=${BENCH_IDLE_CONNS:-2000}
  # Starting a server under valgrind takes seconds: the smoke run counts
  # tapio's servers and the reference only.
  COUNT_ONLY=" libev tapio tapio_lua tapio_lua_jit "
else
  # 17 and 12 rounds: counts at which the interval's coverage is near
  # 95% (5th to 13th of 17: 95.1%; 3rd to 10th of 12: 96.1%), so it is
  # narrower than at one round more or less (16: 4th to 13th, 97.9%);
  # bench/agreement.py weighs the counts (see README.md).
  ROUNDS=${BENCH_ROUNDS:-17} WINDOW=${BENCH_WINDOW:-0.4}
  WARMUP=${BENCH_WARMUP:-0.05} IDLE_RUNS=${BENCH_IDLE_RUNS:-3}
  COUNT_SCALE=${BENCH_COUNT_SCALE:-1} COUNT_RUNS=${BENCH_COUNT_RUNS:-1}
  TLS_ROUNDS=${BENCH_TLS_ROUNDS:-12}
  OWN_RUNS=3 IDLE_CONNS=${BENCH_IDLE_CONNS:-10000}
fi

# A row: name, kind, where it runs (same: server and load on one core;
# split: two cores), options (timed rows: servers=NAME,NAME,... runs
# those, the first the reference, instead of SERVERS; rounds=N instead of
# ROUNDS; cert=rsa gives the TLS servers the RSA certificate; rows of
# their own: runs=N instead of 3), and the arguments of what runs it.
# Kinds:
#   req, MB, hs, dg   timed: requests/s and CPU us per request, MB/s and
#             CPU us per MB, handshakes/s and CPU us per handshake, or
#             datagrams/s and CPU us per datagram, in rounds of short
#             windows (load.c echo, tls-stream, tls-handshake, udp)
#   idle      bytes per idle connection, fresh servers (load.c idle)
#   instr     user-space instructions and system calls per request under
#             valgrind, from two runs of --requests A,B (load.c count)
#   own:F1:F2 a program of its own, run when built; it prints lines of
#             "name case F1 F2" (its figures' names after the colons)
STREAMS=libev,tapio_lua,tapio_streams,tapio_streams_jit,uvloop_streams,asyncio_streams
LINES=libev,tapio_lines,tapio_lines_jit,uvloop_lines
TLS=openssl_mem,openssl_socket,tapio_tls,tapio_tls_lua,uvloop_tls,asyncio_tls
UDP=libev_udp,tapio_udp,tapio_udp_lua,luv_udp,uvloop_udp
[ "$ROUNDS" -lt "$TLS_ROUNDS" ] && TLS_ROUNDS=$ROUNDS
ROWS=(
  "pingpong_1c  req   same  echo --conns 1 --size 64 --depth 1"
  "pingpong_50c req   split echo --conns 50 --size 1024 --depth 1"
  "pipeline_50c req   split echo --conns 50 --size 1024 --depth 16"
  "stream_4c    MB    split echo --conns 4 --size 65536 --depth 16 --verify count"
  "idle_10k     idle  split idle --conns $IDLE_CONNS --size 64"
  "instr_1c     instr same  count --conns 1 --size 64 --depth 1 --requests 2000,12000"
  "instr_50c    instr split count --conns 50 --size 1024 --depth 1 --requests 5000,25000"
  "streams_50c  req   split servers=$STREAMS echo --conns 50 --size 1024 --depth 1"
  "streams_4c   MB    split servers=$STREAMS echo --conns 4 --size 65536 --depth 16 --verify count"
  "readline_50c req   split servers=$LINES echo --conns 50 --size 100 --depth 16 --lines yes"
  "timers       own:scheduled/s:fired/s same $BIN/timers"
  "pipe         own:MB/s:cpu_us/MB same $HERE/children.sh pipe $BUILD"
  "spawn        own:spawns/s:cpu_us/spawn same $HERE/children.sh spawn $BUILD"
  "udp_1c       dg    same  servers=$UDP udp --conns 1 --size 64 --depth 1"
  "udp_50c      dg    split servers=$UDP udp --conns 50 --size 64 --depth 1"
  "resolver     own:lookups/s:ms_for_1000 same $HERE/resolve_bench.sh $BUILD"
  "tls_stream_1c MB  split servers=$TLS rounds=$TLS_ROUNDS tls-stream --conns 1 --size 65536 --depth 16"
  "tls_stream_4c MB  split servers=$TLS rounds=$TLS_ROUNDS tls-stream --conns 4 --size 65536 --depth 16"
  "tls_hs_ecdsa  hs  split servers=$TLS rounds=$TLS_ROUNDS tls-handshake --conns 8"
  "tls_hs_rsa    hs  split servers=$TLS rounds=$TLS_ROUNDS cert=rsa tls-handshake --conns 8"
  "tls_idle     own:B/conn_RSS:B/conn_C split runs=1 $HERE/tls_idle.sh $BUILD"
)

# What the verdicts judge: "rate SERVER REF BOUND [ROW,ROW...]" (the
# median ratio of SERVER's throughput to REF's, with its interval, against
# BOUND: higher is better) in timed rows (those named, if any); "instr
# SERVER REF BOUND" (instructions per request, lower is better) in counted
# rows. Skipped where a server is missing.
TARGETS=(
  "rate  tapio         libev    0.95"
  "rate  tapio_lua     libev    0.75"
  "rate  tapio_lua     luv      1.0"
  "rate  tapio_lua     uvloop   1.0"
  "rate  tapio_lua_jit luv_jit  1.0"
  "rate  tapio_lua_jit uvloop   1.0"
  "instr tapio         libev    1.15"
  "instr tapio_lua     luv      1.0"
  "instr tapio_lua     uvloop   1.0"
  "instr tapio_lua_jit luv_jit  1.0"
  "instr tapio_lua_jit uvloop   1.0"
  "rate  tapio_streams     uvloop_streams  1.0"
  "rate  tapio_streams     asyncio_streams 3.0"
  "rate  tapio_streams     tapio_lua       0.7"
  "rate  tapio_streams_jit uvloop_streams  1.0"
  "rate  tapio_lines       uvloop_lines    1.0"
  "rate  tapio_lines_jit   uvloop_lines    1.0"
  "rate  tapio_tls         openssl_mem     0.9"
  "rate  tapio_tls         openssl_socket  0.9"
  "rate  tapio_tls_lua     asyncio_tls     2.0  tls_stream_1c,tls_stream_4c"
  "rate  tapio_tls_lua     uvloop_tls      1.0  tls_stream_1c,tls_stream_4c"
  "rate  tapio_udp         libev_udp       0.95 udp_1c"
  "rate  tapio_udp         libev_udp       1.2  udp_50c"
  "rate  tapio_udp_lua     luv_udp         1.0"
  "rate  tapio_udp_lua     uvloop_udp      1.0"
)

ROW_SECONDS=${BENCH_ROW_SECONDS:-200}
# make bench must end within 20 minutes: on a slow day (the machine's
# speed moves by 10% and more) the last rows give up rounds; tls_idle,
# the last row, takes about 20 s more.
RUN_SECONDS=${BENCH_RUN_SECONDS:-1100}
SCORE=${BENCH_SERVER_CORE:-1}
LCORE=${BENCH_LOAD_CORE:-0}
if [ "$(nproc)" -lt 2 ]; then SCORE=0 LCORE=0; fi
# Servers and load ahead of the machine's other work while measured.
PRIORITY=()
NICE=${BENCH_NICE--10}
[ -n "$NICE" ] && nice -n "$NICE" true 2>/dev/null &&
  PRIORITY=(nice -n "$NICE")
# Real-time scheduling for the counted rows' load, where allowed (root).
REALTIME=(chrt -f 10)
chrt -f 10 true 2>/dev/null || REALTIME=()
# Python's string hashes are salted per process unless fixed: fixed, its
# instruction counts repeat.
export PYTHONHASHSEED=0

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
# Servers that run only when BENCH_SERVERS names them.
OPT_IN=" tapio_lua_2t "
mapfile -t SERVERS < <(select_named "${BENCH_SERVERS:-}" "${SERVERS[@]}")
if [ -z "${BENCH_SERVERS:-}" ]; then
  for i in "${!SERVERS[@]}"; do
    [[ $OPT_IN == *" ${SERVERS[i]%% *} "* ]] && unset 'SERVERS[i]'
  done
  SERVERS=("${SERVERS[@]}")
fi
mapfile -t STREAM_SERVERS < <(select_named "${BENCH_SERVERS:-}" \
  "${STREAM_SERVERS[@]}")
mapfile -t ROWS < <(select_named "${BENCH_ROWS:-}" "${ROWS[@]}")
if [ ${#SERVERS[@]} -eq 0 ] || [ ${#ROWS[@]} -eq 0 ]; then
  echo "run.sh: no server or no row selected" >&2; exit 2
fi
NAMES=()
for entry in "${SERVERS[@]}" "${STREAM_SERVERS[@]}"; do
  parse_server "$entry"
  NAMES+=("$SNAME")
  [ -x "${SCMD[0]}" ] || { echo "run.sh: ${SCMD[0]} not built" >&2; exit 2; }
done
ALL_SERVERS=("${SERVERS[@]}" "${STREAM_SERVERS[@]}")
[ -x "$LOAD" ] || { echo "run.sh: $LOAD not built" >&2; exit 2; }

STAMP=$(date +%Y%m%d-%H%M%S)
OUT=$HERE/results/$STAMP
mkdir -p "$OUT"
RAW=$OUT/raw.txt
LOG=$OUT/servers.log

# ---- Timed rows: rounds of short windows ----------------------------------

# The order of the other servers in round r: rotated by r/2, reversed in
# odd rounds, so that every server takes every place and any two come in
# both orders equally often.
round_order() {
  local r=$1 k=$((${#SERVERS[@]} - 1)) j order=()
  [ "$k" -gt 0 ] || return 0
  for ((j = 0; j < k; j++)); do
    order+=($(( (j + r / 2) % k + 1 )))
  done
  if [ $((r % 2)) -eq 1 ]; then
    for ((j = k - 1; j >= 0; j--)); do printf '%s ' "${order[j]}"; done
  else
    printf '%s ' "${order[@]}"
  fi
}

# One window of server $1 in round $2 of the row timed_row set up: its
# figure for the progress line on stdout, its whole line to raw.txt with
# its place in the row (seq; round 0 is the warm-up, not kept).
window() {
  local i=$1 r=$2 line
  if [ -z "${PIDS[i]}" ]; then
    return 0
  elif ! alive "${PIDS[i]}"; then
    line="error=server_died"
    PIDS[i]=""
  else
    line=$("${PRIORITY[@]}" taskset -c "$WCORE" "$LOAD" "${ARGS[@]}" \
      --port "${PORTS[i]}" --pid "${PIDS[i]}" --warmup "$WARMUP" \
      --duration "$WINDOW" 2>>"$LOG")
    [ -n "$line" ] || line="error=load_generator_failed"
  fi
  if [ "$r" -gt 0 ]; then
    SEQ=$((SEQ + 1))
    echo "round=$r seq=$SEQ server=${NAMES[i]} row=$ROW unit=$UNIT $line" \
      >>"$RAW"
  fi
  local f=${line##* ${FIGURE}=}
  [[ $line == *error=* ]] && f=FAILED
  printf ' %s %s' "${NAMES[i]}" "${f%% *}"
  [[ $line != *error=* ]]
}

# Sets SERVERS and NAMES to the servers a row names (servers=a,b,...),
# those this run has, in that order.
row_servers() {
  local wanted entry name
  IFS=, read -ra wanted <<<"${1#servers=}"
  SERVERS=() NAMES=()
  for name in "${wanted[@]}"; do
    for entry in "${ALL_SERVERS[@]}"; do
      if [ "${entry%% *}" = "$name" ]; then
        SERVERS+=("$entry") NAMES+=("$name")
      fi
    done
  done
}

# A timed row: every server started once and kept for the whole row, a
# warm-up round, then rounds in which every other server's window comes
# right after one of libev's and right before the next (libev, A, libev,
# B, libev, ... in round_order), so each has libev on both sides.
timed_row() {
  local row
  read -ra row <<<"$1"
  ROW=${row[0]} UNIT=${row[1]} WCORE=$LCORE SEQ=0
  local saved_servers=("${SERVERS[@]}") saved_names=("${NAMES[@]}")
  local rounds=$ROUNDS j=3
  CERT="" KEY=""
  while [[ ${row[j]} == *=* ]]; do
    case ${row[j]} in
      servers=*) row_servers "${row[j]}" ;;
      rounds=*) rounds=${row[j]#rounds=} ;;
      cert=*) tls_certs "$BUILD" "${row[j]#cert=}" || return 1 ;;
    esac
    j=$((j + 1))
  done
  ARGS=("${row[@]:j}")
  [[ ${ARGS[0]} == tls-* ]] && [ -z "$CERT" ] &&
    { tls_certs "$BUILD" || return 1; }
  if [ ${#SERVERS[@]} -eq 0 ]; then
    echo "$ROW: skipped, none of its servers in this run"
    SERVERS=("${saved_servers[@]}") NAMES=("${saved_names[@]}")
    return 0
  fi
  [ "${row[2]}" = same ] && WCORE=$SCORE
  FIGURE=rps
  [ "$UNIT" = MB ] && FIGURE=mbps
  [ "$UNIT" = hs ] && FIGURE=hps
  # A UDP server is ready when it echoes a probe, not when it accepts.
  local WAIT_MODE=wait
  [ "${ARGS[0]}" = udp ] && WAIT_MODE=udpwait
  PIDS=() PORTS=()
  local i r ok=0 t0=$SECONDS
  for i in "${!SERVERS[@]}"; do
    if start_server "${SERVERS[i]}" "$SCORE"; then
      PIDS[i]=$SPID PORTS[i]=$PORT
    else
      echo "round=1 server=${NAMES[i]} row=$ROW unit=$UNIT" \
        "error=server_did_not_start" >>"$RAW"
      PIDS[i]="" ok=1
    fi
  done
  echo "$ROW: warm-up"
  for i in "${!SERVERS[@]}"; do window "$i" 0 >/dev/null; done
  printf '%s:' "$ROW"
  window 0 1 || ok=1
  echo
  for ((r = 1; r <= rounds; r++)); do
    printf '%s round %d:' "$ROW" "$r"
    for i in $(round_order "$r"); do
      window "$i" "$r" || ok=1
      window 0 "$r" || ok=1
    done
    echo
    [ $((SECONDS - t0)) -ge "$ROW_SECONDS" ] && break
    if [ $((SECONDS - START)) -ge "$RUN_SECONDS" ] && [ "$r" -lt "$rounds" ]
    then
      echo "$ROW: the run has taken ${RUN_SECONDS}s: no more rounds"
      break
    fi
  done
  for i in "${!SERVERS[@]}"; do
    if [ -n "${PIDS[i]}" ] && ! stop_server "${PIDS[i]}"; then
      echo "round=$r server=${NAMES[i]} row=$ROW unit=$UNIT" \
        "error=server_died" >>"$RAW"
      ok=1
    fi
  done
  SERVERS=("${saved_servers[@]}") NAMES=("${saved_names[@]}")
  return $ok
}

# ---- Idle rows: memory per connection, fresh servers ----------------------

idle_row() {
  local row
  read -ra row <<<"$1"
  local args=("${row[@]:3}") lcore=$LCORE run i line ok=0
  [ "${row[2]}" = same ] && lcore=$SCORE
  for ((run = 1; run <= IDLE_RUNS; run++)); do
    for i in "${!SERVERS[@]}"; do
      local tag="round=$run server=${NAMES[i]} row=${row[0]} unit=idle"
      if ! start_server "${SERVERS[i]}" "$SCORE"; then
        line="error=server_did_not_start"
      else
        line=$(taskset -c "$lcore" "$LOAD" "${args[@]}" --port "$PORT" \
          --pid "$SPID" "${STATS_ARG[@]}" 2>>"$LOG")
        [ -n "$line" ] || line="error=load_generator_failed"
      fi
      stop_server "$SPID" || line="$line error=server_died"
      echo "$tag $line" | tee -a "$RAW"
      [[ $line != *error=* ]] || ok=1
    done
  done
  return $ok
}

# ---- Counted rows: instructions and system calls under valgrind -----------

# System calls in a valgrind --trace-syscalls log, less those a native run
# makes through the vDSO without entering the kernel (valgrind gives its
# client no vDSO, so there they are real calls).
count_syscalls() {
  grep -oE '^SYSCALL\[[0-9,]+\]\([0-9]+\) sys_[a-z0-9_]+' "$1" |
    grep -cvE 'sys_(clock_gettime|gettimeofday|time|getcpu)$'
}

# One counted run: server $1 (an index) under callgrind serving $2
# requests of the row counted_row set up, the $3-th time; its line goes to
# raw.txt.
count_run() {
  local i=$1 n=$2 line
  local base=$OUT/callgrind/$ROW.${NAMES[i]}.$n.$3
  local tag="server=${NAMES[i]} row=$ROW unit=instr"
  mkdir -p "$OUT/callgrind"
  if ! callgrind_server "${SERVERS[i]}" "$SCORE" "$base" \
      --trace-syscalls=yes; then
    line="error=server_did_not_start"
  else
    # The load in real time, so neighbours cannot delay it: the server
    # (slow under valgrind) then finds every connection ready at each
    # wake-up, and the number of wake-ups, which costs instructions,
    # repeats. It sleeps in epoll_wait for nearly all of the run.
    line=$(taskset -c "$WCORE" "${REALTIME[@]}" "$LOAD" "${ARGS[@]}" \
      --requests "$n" --port "$PORT" --deadline 600 2>>"$LOG")
    [ -n "$line" ] || line="error=load_generator_failed"
  fi
  stop_server "$SPID" || line="$line error=server_died"
  local ir
  ir=$(callgrind_total "$base")
  [ -n "$ir" ] || line="$line error=no_callgrind_totals"
  echo "$tag instructions=${ir:-0} syscalls=$(count_syscalls "$base.log")" \
    "$line" >>"$RAW"
  printf ' %s' "${ir:-FAILED}"
  [[ $line != *error=* ]]
}

# A counted row: every server COUNT_RUNS times at each length, serving A
# and then B requests (--requests A,B, times COUNT_SCALE); the table takes
# the slope between the medians.
counted_row() {
  local row
  read -ra row <<<"$1"
  ROW=${row[0]} WCORE=$LCORE ARGS=()
  [ "${row[2]}" = same ] && WCORE=$SCORE
  local j lengths=()
  for ((j = 3; j < ${#row[@]}; j++)); do
    if [ "${row[j]}" = --requests ]; then
      IFS=, read -ra lengths <<<"${row[j + 1]}"
      j=$((j + 1))
    else
      ARGS+=("${row[j]}")
    fi
  done
  local i n run ok=0
  for i in "${!SERVERS[@]}"; do
    [ -z "${COUNT_ONLY:-}" ] || [[ $COUNT_ONLY == *" ${NAMES[i]} "* ]] ||
      continue
    printf '%s %s: instructions' "$ROW" "${NAMES[i]}"
    for ((run = 1; run <= COUNT_RUNS; run++)); do
      for n in "${lengths[@]}"; do
        count_run "$i" "$(awk -v n="$n" -v s="$COUNT_SCALE" \
          'BEGIN { printf "%d", n * s }')" "$run" || ok=1
      done
    done
    echo
  done
  return $ok
}

# ---- Rows of their own: a program that prints its figures -----------------

own_row() {
  local row
  read -ra row <<<"$1"
  local name=${row[0]} runs=$OWN_RUNS run ok=0 j=3
  if [[ ${row[j]} == runs=* ]]; then runs=${row[j]#runs=}; j=$((j + 1)); fi
  local prog=${row[j]}
  if [ ! -x "$prog" ]; then
    echo "row=$name unit=own skipped=not_built" >>"$RAW"
    echo "$name: skipped, $prog not built"
    return 0
  fi
  for ((run = 1; run <= runs; run++)); do
    local lines
    lines=$(taskset -c "$SCORE" "${row[@]:j}" 2>>"$LOG") || ok=1
    [ -n "$lines" ] || { ok=1; echo "row=$name unit=own error=no_output" >>"$RAW"; }
    while read -r what which f1 f2; do
      [ -n "$what" ] || continue
      echo "round=$run row=$name unit=own case=${what}_$which f1=$f1 f2=$f2" |
        tee -a "$RAW"
    done <<<"$lines"
  done
  return $ok
}

# ---- The run -----------------------------------------------------------------

table() {
  local rows
  rows=$(for r in "${ROWS[@]}"; do set -- $r; printf '%s:%s ' "$1" "$2"; done)
  awk -v servers="${NAMES[*]}" -v rows="$rows" \
    -v targets="$(printf '%s;' "${TARGETS[@]}")" -f "$HERE/table.awk" "$RAW"
}

START=$SECONDS
{
  machine
  echo "timed rows: up to $ROUNDS rounds of ${WINDOW}s windows after" \
    "${WARMUP}s warm-up each (at most ${ROW_SECONDS}s a row); server on" \
    "core $SCORE, load on core $LCORE (same-core rows: $SCORE)"
  echo "servers: ${NAMES[*]}"
  machine_load "before the run"
} | tee "$OUT/machine.txt"
echo "raw results: $RAW"
FAILED=0
for row in "${ROWS[@]}"; do
  read -r name kind _ <<<"$row"
  t0=$SECONDS
  case $kind in
    req|MB|hs|dg) timed_row "$row" ;;
    idle) idle_row "$row" ;;
    instr) counted_row "$row" ;;
    own*) own_row "$row" ;;
  esac || FAILED=1
  echo "$name: $((SECONDS - t0)) s" | tee -a "$OUT/machine.txt"
done
{
  machine_load "after the run"
  echo "the run took $((SECONDS - START)) s"
} | tee -a "$OUT/machine.txt"
echo
table | tee "$OUT/table.txt"
ln -sfn "$STAMP" "$HERE/results/latest"
if [ $FAILED -ne 0 ]; then
  echo "run.sh: some measurements failed: see $RAW and $LOG" >&2
  exit 1
fi
