#!/bin/bash
# Counts a worker-pool job: user-space instructions under callgrind, the
# slope between a run of A and one of B empty jobs, the loop's thread and
# the pool's threads apart (--separate-threads=yes), for tapio.to_thread
# (the tapio host) and luv's new_work (lua5.4), with INFLIGHT jobs in
# flight on THREADS threads (UV_THREADPOOL_SIZE for luv).
# Usage: bench/to_thread_count.sh [BUILD [INFLIGHT [THREADS]]]
#   TT_A, TT_B: the two runs' jobs (2000, 6000); TT_KEEP=DIR keeps the
#   callgrind files; TT_WHO="tapio luv" (the default) or one of them.
set -e
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:-build}" && pwd)
inflight=${2:-64}
threads=${3:-1}
a=${TT_A:-2000}
b=${TT_B:-6000}
. "$here/lib.sh"
callgrind_under "$build/bench"
dir=${TT_KEEP:-$(mktemp -d)}
mkdir -p "$dir"

# run WHO N: callgrind files $dir/WHO.N.out-NN, one a thread.
run() {
  local who=$1 n=$2 cmd
  case $who in
    tapio) cmd=("${TT_HOST:-$build/tapio}" "$here/to_thread.lua" "$n" "$inflight"
                "$threads") ;;
    luv) cmd=(lua5.4 "$here/to_thread_luv.lua" "$n" "$inflight") ;;
  esac
  rm -f "$dir/$who.$n".out*
  UV_THREADPOOL_SIZE=$threads "${CALLGRIND[@]}" --separate-threads=yes \
    --callgrind-out-file="$dir/$who.$n.out" --log-file="$dir/$who.$n.log" \
    "${cmd[@]}" >/dev/null
}

# sums WHO N: the loop thread's total, then the other threads' together.
sums() {
  local f loop=0 pool=0 t
  for f in "$dir/$1.$2".out-*; do
    t=$(sed -n 's/^totals: //p' "$f")
    case $f in
      *-01) loop=$((loop + t)) ;;
      *) pool=$((pool + t)) ;;
    esac
  done
  echo "$loop $pool"
}

printf '%-6s %8s %8s %8s   (%d in flight, %d thread%s, %d and %d jobs)\n' \
  who loop pool total "$inflight" "$threads" \
  "$([ "$threads" -gt 1 ] && echo s)" "$a" "$b"
for who in ${TT_WHO:-tapio luv}; do
  run "$who" "$a"
  run "$who" "$b"
  read -r la pa < <(sums "$who" "$a")
  read -r lb pb < <(sums "$who" "$b")
  jobs=$((b - a))
  if [ "$who" = tapio ]; then # to_thread.lua rounds down to inflight's
    jobs=$(( (b / inflight - a / inflight) * inflight ))
  fi
  printf '%-6s %8d %8d %8d\n' "$who" $(( (lb - la) / jobs )) \
    $(( (pb - pa) / jobs )) $(( (lb + pb - la - pa) / jobs ))
done
[ -n "$TT_KEEP" ] || rm -rf "$dir"
