#!/usr/bin/env bash
# The streaming row counted rather than timed: what a server does per MB
# echoed (10^6 bytes) under stream_4c's load (4 connections, 64 KiB
# blocks, 16 in flight), in figures the neighbours' load moves little.
#
#   bench/stream_count.sh [BUILD] [SERVER...]
#
# Per server (default: libev tapio tapio_lua tapio_lua_jit uvloop), one
# line:
#   instr/MB     user-space instructions (callgrind), the slope between a
#                run of A and one of B requests, so start-up and warm-up
#                cancel (as run.sh's instr rows)
#   sys/MB       system calls, and the reads, sends, epoll waits and
#                memory calls (mmap, munmap, brk, madvise, mremap) among
#                them; then minor page faults: counted by `perf stat -p`
#                on the server running at full speed over B requests
#                after A of warm-up (strace or valgrind would slow the
#                server, so that each read finds more bytes waiting and
#                the counts per MB fall)
#                and context switches ("sleeps": the server found nothing
#                to do and slept in epoll_wait, then was woken)
#   B/read       bytes per read (what the socket held at each wake-up)
# STREAM_A and STREAM_B set the lengths (400 and 1600 requests of 64 KiB);
# STREAM_INSTR=0 leaves callgrind out (instr/MB shows 0); STREAM_HOST runs
# tapio_lua with another tapio host (an older build, to compare);
# STREAM_KEEP=1 keeps the callgrind and perf files and prints where.
set -euo pipefail
BUILD=$(cd "${1:-build}" && pwd)
shift || true
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
BIN=$BUILD/bench
LOAD=$BIN/load
LOG=$(mktemp -d)/stream_count.log
# shellcheck source=lib.sh
. "$HERE/lib.sh"
A=${STREAM_A:-400}
B=${STREAM_B:-1600}
SIZE=65536
ARGS=(count --conns 4 --size "$SIZE" --depth 16 --deadline 600)

JIT_ENV="LUA_PATH=$ROOT/lua/?.lua;$ROOT/lua/?/init.lua;; LUA_CPATH=$BUILD/luajit/?.so;;"
server_table \
  "libev $BIN/libev_echo {port}" \
  "tapio $BIN/tapio_echo {port}" \
  "tapio_lua ${STREAM_HOST:-$BUILD/tapio} $HERE/tapio_echo.lua {port}" \
  "tapio_lua_jit $JIT_ENV /usr/bin/luajit $HERE/tapio_echo.lua {port}" \
  "uvloop /usr/bin/python3 $HERE/uvloop_echo.py {port}"
SERVERS=("$@")
[ ${#SERVERS[@]} -gt 0 ] || SERVERS=(libev tapio tapio_lua tapio_lua_jit uvloop)

mb() { awk -v n="$1" -v s=$SIZE 'BEGIN { printf "%.6f", n * s / 1e6 }'; }

# Instructions of one callgrind run of N requests.
instr_run() {
  local name=$1 n=$2 base
  base=$(dirname "$LOG")/$name.$n
  callgrind_server "${ENTRY[$name]}" 0-1 "$base"
  "$LOAD" "${ARGS[@]}" --requests "$n" --port "$PORT" >/dev/null
  stop_server "$SPID"
  callgrind_total "$base"
}

# The perf counts of B requests after A of warm-up, as "event count" lines.
EVENTS=raw_syscalls:sys_enter,syscalls:sys_enter_read,syscalls:sys_enter_recvfrom
EVENTS=$EVENTS,syscalls:sys_enter_sendto,syscalls:sys_enter_write
EVENTS=$EVENTS,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_epoll_pwait
EVENTS=$EVENTS,syscalls:sys_enter_mmap,syscalls:sys_enter_munmap
EVENTS=$EVENTS,syscalls:sys_enter_brk,syscalls:sys_enter_madvise
EVENTS=$EVENTS,syscalls:sys_enter_mremap,minor-faults,context-switches
perf_run() {
  local name=$1 out perf
  out=$(dirname "$LOG")/$name.perf
  start_server "${ENTRY[$name]}" 0-1
  "$LOAD" "${ARGS[@]}" --requests "$A" --port "$PORT" >/dev/null
  perf stat -x, -e "$EVENTS" -o "$out" -p "$SPID" &
  perf=$!
  sleep 0.5 # perf attaches
  "$LOAD" "${ARGS[@]}" --requests "$B" --port "$PORT" >/dev/null
  kill -INT "$perf"
  wait "$perf" || true
  stop_server "$SPID"
  awk -F, '$1 ~ /^[0-9]+$/ {
    if ($3 == "raw_syscalls:sys_enter") $3 = "all"; else sub(/^.*:sys_enter_/, "", $3)
    print $3, $1 }' "$out"
}

printf '%-14s %10s %7s %6s %6s %6s %6s %6s %6s %8s\n' server instr/MB sys/MB \
  reads sends waits sleeps memory faults B/read
for name in "${SERVERS[@]}"; do
  ia=0 ib=0
  if [ "${STREAM_INSTR:-1}" != 0 ]; then
    ia=$(instr_run "$name" "$A")
    ib=$(instr_run "$name" "$B")
  fi
  counts=$(perf_run "$name")
  get() { awk -v k="$1" '$1 == k { n += $2 } END { print n + 0 }' <<<"$counts"; }
  awk -v ia="$ia" -v ib="$ib" -v ma="$(mb "$A")" -v mb="$(mb "$B")" \
    -v all="$(get all)" -v rd="$(( $(get read) + $(get recvfrom) ))" \
    -v sd="$(( $(get sendto) + $(get write) ))" \
    -v wt="$(( $(get epoll_wait) + $(get epoll_pwait) ))" \
    -v mem="$(( $(get mmap) + $(get munmap) + $(get brk) + $(get madvise) + $(get mremap) ))" \
    -v pf="$(get minor-faults)" -v cs="$(get context-switches)" -v name="$name" -v size=$SIZE -v n="$B" \
    'BEGIN { printf "%-14s %10.0f %7.1f %6.1f %6.1f %6.1f %6.1f %6.2f %6.1f %8.0f\n",
             name, (ib - ia) / (mb - ma), all / mb, rd / mb, sd / mb,
             wt / mb, cs / mb, mem / mb, pf / mb, rd ? n * size / rd : 0 }'
done
if [ -n "${STREAM_KEEP:-}" ]; then
  echo "kept: $(dirname "$LOG")"
else
  rm -rf "$(dirname "$LOG")"
fi
