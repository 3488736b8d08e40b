#!/usr/bin/env bash
# Where one request's instructions go, per function, from the callgrind
# files a counted row of run.sh keeps (results/DATE/callgrind/).
#
#   bench/profile.sh RESULTS ROW SERVER [TOP]
#       The TOP (25) functions by instructions per request in SERVER's
#       runs of ROW: per function, the slope between the first run with
#       the fewest requests and the first with the most, so start-up and
#       warm-up cancel as in the table. INCLUSIVE=1 counts each function
#       with what it calls.
#   bench/profile.sh relink [BUILD]
#       Links the tapio host, tapio_echo and libev_echo again into
#       BUILD/bench/prof/ with the static Lua and libev libraries, whose
#       symbols name their internal functions (Debian's shared ones hide
#       them, and callgrind shows bare addresses); and, where the static
#       LuaJIT library is, BUILD/bench/prof/luajit (luajit_prof.c), a
#       luajit whose functions have names too.
#
# Example (see README.md):
#   bench/profile.sh relink build
#   P=$PWD/build/bench/prof
#   BENCH_ROWS=instr_50c BENCH_COUNT_RUNS=1 BENCH_SERVERS="p_libev p_tapio
#     p_lua" BENCH_EXTRA_SERVERS="p_libev $P/libev_echo {port};p_tapio
#     $P/tapio_echo {port};p_lua $P/tapio $PWD/bench/tapio_echo.lua {port}"
#     bench/run.sh build
#   bench/profile.sh bench/results/latest instr_50c p_lua
# LuaJIT (the search paths go in the environment, since BENCH_EXTRA_SERVERS
# splits at ';'):
#   LUA_PATH="$PWD/lua/?.lua;$PWD/lua/?/init.lua;;" \
#   LUA_CPATH="$PWD/build/luajit/?.so;;" BENCH_ROWS=instr_50c \
#   BENCH_COUNT_RUNS=1 BENCH_SERVERS=p_jit BENCH_EXTRA_SERVERS="p_jit
#     $P/luajit $PWD/bench/tapio_echo.lua {port}" bench/run.sh build
set -euo pipefail

# Relinks one target from its CMake link line (in BUILD/DIR) with the
# static Lua and libev libraries, as BUILD/bench/prof/NAME.
relink_one() {
  local build=$1 dir=$2 target=$3 name=$4
  local link=$build/$dir/CMakeFiles/$target.dir/link.txt
  local libdir
  libdir=$(pkg-config --variable=libdir lua5.4)
  [ -f "$link" ] || { echo "profile.sh: build $target first" >&2; exit 2; }
  local cmd
  cmd=$(sed -e "s#-llua5.4#$libdir/liblua5.4.a -lm -ldl#" \
    -e "s#[^ ]*/libev\.so#$libdir/libev.a -lm#" \
    -e "s# -o [^ ]*# -o $build/bench/prof/$name#" "$link")
  (cd "$build/$dir" && eval "$cmd")
  echo "$build/bench/prof/$name"
}

relink() {
  local build
  build=$(cd "${1:-build}" && pwd)
  mkdir -p "$build/bench/prof"
  relink_one "$build" lua tapio_host tapio
  relink_one "$build" bench bench_tapio_echo tapio_echo
  relink_one "$build" bench bench_libev_echo libev_echo
  local lj
  lj=$(pkg-config --variable=libdir luajit 2>/dev/null)/libluajit-5.1.a
  if [ -f "$lj" ]; then
    cc -O2 -g $(pkg-config --cflags luajit) "$(dirname "$0")/luajit_prof.c" \
      "$lj" -lm -ldl -rdynamic -o "$build/bench/prof/luajit"
    echo "$build/bench/prof/luajit"
  fi
}

# "count name" per function of a callgrind file, the name shortened to
# function (library).
functions() {
  local incl=no
  [ "${INCLUSIVE:-0}" = 1 ] && incl=yes
  callgrind_annotate --auto=no --inclusive=$incl --threshold=100 "$1" \
    2>/dev/null |
    awk '/PROGRAM TOTALS/ { n = $1; gsub(",", "", n); print n, "TOTAL" }
         /file:function/ { list = 1; next }
         list && $1 ~ /^[0-9,]+$/ {
           n = $1; gsub(",", "", n)
           name = $0; sub(/^ *[0-9,]+ +\([ 0-9.]+%\) +/, "", name)
           if (!match(name, / \[[^]]*\]$/))
             next               # a repeat without its object file
           obj = substr(name, RSTART + 2, RLENGTH - 3)
           sub(/.*\//, "", obj)
           name = substr(name, 1, RSTART - 1)
           sub(/.*:/, "", name)
           print n, name " (" obj ")"
         }'
}

profile() {
  local dir=$1 row=$2 server=$3 top=${4:-25}
  local files
  files=$(ls "$dir/callgrind/$row.$server".*.out 2>/dev/null) ||
    { echo "profile.sh: no $dir/callgrind/$row.$server.*.out" >&2; exit 2; }
  # The lengths in the names ROW.SERVER.REQUESTS.RUN.out, fewest first.
  local short long
  short=$(printf '%s\n' $files | sort -t. -k3,3n -k4,4n | head -1)
  long=$(printf '%s\n' $files | sort -t. -k3,3n -k4,4n | tail -1)
  local a b
  a=$(basename "$short" .out); a=${a#"$row.$server."}; a=${a%%.*}
  b=$(basename "$long" .out); b=${b#"$row.$server."}; b=${b%%.*}
  [ "$a" != "$b" ] || { echo "profile.sh: runs of one length only" >&2; exit 2; }
  echo "$server, $row: instructions per request per function" \
    "(INCLUSIVE=${INCLUSIVE:-0}), slope between $a and $b requests"
  { functions "$short" | sed 's/^/a /'; functions "$long" | sed 's/^/b /'; } |
    awk -v n=$((b - a)) -v top="$top" '
      { key = $3; for (i = 4; i <= NF; i++) key = key " " $i
        v[key] += ($1 == "b" ? $2 : -$2) }
      END {
        total = v["TOTAL"] / n
        printf "%10.1f %6.1f%%  all\n", total, 100
        delete v["TOTAL"]
        for (k in v)
          printf "%10.1f %6.1f%%  %s\n", v[k] / n, 100 * v[k] / n / total, k
      }' | sort -k1,1nr | head -$((top + 1))
}

if [ "${1:-}" = relink ]; then
  relink "${2:-build}"
else
  [ $# -ge 3 ] || { sed -n '2,25p' "$0" >&2; exit 2; }
  profile "$@"
fi
