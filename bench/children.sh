#!/usr/bin/env bash
# The pipe and spawn rows: every contender once, in turn, each printing
# one line "ROW CONTENDER F1 F2" (run.sh's rows of their own; run it
# several times for medians).
#
#   bench/children.sh pipe BUILD [BYTES]    MB/s and the reader's CPU us per
#       MB (10^6 bytes) reading a child that writes BYTES (1 GB) as fast as
#       it can: plain C on libev (the reference), tapio C, tapio Lua
#   bench/children.sh spawn BUILD [N] [K]   children started and reaped per
#       second and the parent's CPU us per child: N (1000) runs of
#       /bin/true, K (8) in flight: tapio C, tapio Lua, Python asyncio's
#       subprocess_exec, luv's spawn (each where the machine has it)
set -uo pipefail
what=${1:?usage: children.sh pipe|spawn BUILD [...]}
BUILD=$(cd "${2:-build}" && pwd) || exit 2
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=$BUILD/bench

# "ROW NAME F1 F2" from a program's key=value line.
figures() { # row name key1 key2 line
  local f1 f2
  f1=$(sed -n "s/.*$3=\([0-9.]*\).*/\1/p" <<<"$5")
  f2=$(sed -n "s/.*$4=\([0-9.]*\).*/\1/p" <<<"$5")
  [ -n "$f1" ] && echo "$1 $2 $f1 $f2"
}

case $what in
  pipe)
    bytes=${3:-1000000000}
    src=$BIN/pipe_source
    figures pipe libev MBps cpu_us_per_MB "$("$BIN/pipe_libev" "$src" "$bytes")"
    figures pipe tapio MBps cpu_us_per_MB "$("$BIN/pipe_tapio" "$src" "$bytes")"
    [ -x "$BUILD/tapio" ] && figures pipe tapio_lua MBps cpu_us_per_MB \
      "$("$BUILD/tapio" "$HERE/pipe_tapio.lua" "$src" "$bytes")"
    ;;
  spawn)
    n=${3:-1000} k=${4:-8}
    figures spawn tapio spawns_per_s cpu_us_per_spawn \
      "$("$BIN/spawn_tapio" /bin/true "$n" "$k")"
    [ -x "$BUILD/tapio" ] && figures spawn tapio_lua spawns_per_s \
      cpu_us_per_spawn "$("$BUILD/tapio" "$HERE/spawn_tapio.lua" /bin/true \
                          "$n" "$k")"
    [ -x /usr/bin/python3 ] && figures spawn asyncio spawns_per_s \
      cpu_us_per_spawn "$(/usr/bin/python3 "$HERE/spawn_asyncio.py" \
                          /bin/true "$n" "$k")"
    lua5.4 -e 'require "luv"' 2>/dev/null && figures spawn luv spawns_per_s \
      cpu_us_per_spawn "$(lua5.4 "$HERE/spawn_luv.lua" /bin/true "$n" "$k")"
    ;;
  *)
    echo "children.sh: pipe or spawn" >&2
    exit 2
    ;;
esac
