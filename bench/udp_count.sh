#!/usr/bin/env bash
# The UDP echo servers counted: user-space instructions and system calls
# per datagram, CONNS sockets with one 64-byte datagram in flight each
# (`load udpcount`: exactly N datagrams, all echoed).
#
# - Instructions: the server under callgrind serves A and then B
#   datagrams; per datagram is the slope (Ir(B) - Ir(A)) / (B - A), so
#   start-up and the probe cancel (as run.sh's counted rows). It runs
#   under lib.sh's callgrind_under, as every counted server: without
#   address randomisation and with time() fixed, so the counts repeat.
# - System calls: a native run (valgrind's or strace's slowness changes
#   how many datagrams wait at each wake-up, so which calls a loop makes),
#   the server preloaded with libsyscount.so (syscount.c), which counts
#   its socket and epoll calls in a mapped file, read before and after N
#   datagrams; pinned as run.sh pins the udp rows (one socket: the load on the
#   server's core).
#
# Prints per server
#   udpcount_<CONNS>c SERVER instr=I syscalls=S name=per-datagram...
#
#   bench/udp_count.sh BUILD CONNS [SERVER...]
#
# SERVER: libev, tapio, tapio_lua (the default: all three), luv, uvloop;
# p_tapio_lua: tapio_lua run by the host `profile.sh relink` links, whose
# Lua and libev functions have names.
# Environment: BENCH_UDP_COUNT (A,B: 1000,5000 for one socket, 2000,10000
# for more), BENCH_UDP_NATIVE (N: 100000), BENCH_SERVER_CORE (1),
# BENCH_LOAD_CORE (0), BENCH_PORT (24000 + a pair by the script's process
# id), BENCH_UDP_KEEP (DIR: keeps the callgrind files as
# DIR/callgrind/udpcount_<CONNS>c.SERVER.N.1.out, for `profile.sh DIR
# udpcount_<CONNS>c SERVER`). About 30 s for the three default servers on
# the 2-vCPU VM.
set -uo pipefail
BUILD=$(cd "${1:?usage: udp_count.sh BUILD CONNS [SERVER...]}" && pwd)
CONNS=${2:?usage: udp_count.sh BUILD CONNS [SERVER...]}
shift 2
HERE=$(cd "$(dirname "$0")" && pwd)
LOAD=$BUILD/bench/load
[ $# -gt 0 ] || set -- libev tapio tapio_lua
if [ "$CONNS" = 1 ]; then DEF=1000,5000; else DEF=2000,10000; fi
IFS=, read -r A B <<<"${BENCH_UDP_COUNT:-$DEF}"
N=${BENCH_UDP_NATIVE:-100000}
SCORE=${BENCH_SERVER_CORE:-1} LCORE=${BENCH_LOAD_CORE:-0}
[ "$(nproc)" -lt 2 ] && SCORE=0 LCORE=0
[ "$CONNS" = 1 ] && LCORE=$SCORE
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
LOG=$TMP/udp_count.log
# shellcheck source=lib.sh
. "$HERE/lib.sh"
# A pair of ports of its own (start_server sees only busy TCP ports, and
# a second UDP echo on a port would take half the datagrams).
NEXT_PORT=${BENCH_PORT:-$((24000 + $$ % 1000 * 2))}
WAIT_MODE=udpwait # (lib.sh's start_server: ready when it echoes a probe)
# The counted runs' load in real time, as run.sh's: it answers each echo
# at once (with one socket, on the server's core, before the server's
# next read), so the server finds the same datagrams waiting at each
# wake-up in every run, and makes the same loop iterations.
REALTIME=(chrt -f 10)
chrt -f 10 true 2>/dev/null || REALTIME=()

# p_tapio_lua: the tapio host as `profile.sh relink` links it (functions
# named).
server_table \
  "libev $BUILD/bench/libev_udp_echo {port}" \
  "tapio $BUILD/bench/tapio_udp_echo {port}" \
  "tapio_lua $BUILD/tapio $HERE/tapio_udp_echo.lua {port}" \
  "luv /usr/bin/lua5.4 $HERE/luv_udp_echo.lua {port}" \
  "uvloop /usr/bin/python3 $HERE/uvloop_udp_echo.py {port}" \
  "p_tapio_lua $BUILD/bench/prof/tapio $HERE/tapio_udp_echo.lua {port}"

# Exactly $1 datagrams; the rest of the words: what runs the load.
udpcount() {
  local n=$1
  shift
  taskset -c "$LCORE" "$@" "$LOAD" udpcount --port "$PORT" --conns "$CONNS" \
    --size 64 --depth 1 --requests "$n" --deadline 120 >/dev/null
}

# Server $1's instructions for $2 datagrams under callgrind.
instructions() {
  local base=$TMP/$1.$2
  callgrind_server "${ENTRY[$1]}" "$SCORE" "$base" &&
    udpcount "$2" "${REALTIME[@]}" || { stop_server "$SPID"; return 1; }
  stop_server "$SPID" || return 1
  callgrind_total "$base"
  if [ -n "${BENCH_UDP_KEEP:-}" ]; then
    mkdir -p "$BENCH_UDP_KEEP/callgrind"
    cp "$base.out" "$BENCH_UDP_KEEP/callgrind/udpcount_${CONNS}c.$1.$2.1.out"
  fi
}

# Server $1's calls over N datagrams, natively, after a warm-up of 2,000.
calls() {
  local f=$TMP/$1.calls before after
  start_server "${ENTRY[$1]}" "$SCORE" env SYSCOUNT_FILE="$f" \
    LD_PRELOAD="$BUILD/bench/libsyscount.so" &&
    udpcount 2000 || { stop_server "$SPID"; return 1; }
  before=$(od -An -tu8 -w64 "$f")
  udpcount "$N" || { stop_server "$SPID"; return 1; }
  after=$(od -An -tu8 -w64 "$f")
  stop_server "$SPID" || return 1
  # The order of syscount.c's counters.
  awk -v a="$before" -v b="$after" -v n="$N" 'BEGIN {
    split("recvfrom recvmsg recvmmsg sendto send sendmsg sendmmsg " \
          "epoll_wait epoll_pwait", k, " ")
    split(a, x, " "); split(b, y, " ")
    for (i = 1; i in k; i++) {
      d = (y[i] - x[i]) / n
      all += d
      if (d >= 0.0005) s = s sprintf(" %s=%.3f", k[i], d)
    }
    printf "syscalls=%.3f%s\n", all, s
  }'
}

status=0
for name in "$@"; do
  [ -n "${ENTRY[$name]:-}" ] || { echo "udp_count: no $name" >&2; exit 2; }
  if ! ia=$(instructions "$name" "$A") || ! ib=$(instructions "$name" "$B") ||
     ! c=$(calls "$name"); then
    echo "udp_count: $name failed" >&2
    status=1
    continue
  fi
  echo "udpcount_${CONNS}c $name instr=$(((ib - ia) / (B - A))) $c"
done
exit $status
