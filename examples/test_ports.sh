#!/usr/bin/env bash
# Runs the ports of asyncio programs (chat.lua, jobs.lua) and, given a
# python3.13 (their originals use Queue.shutdown), the Python originals in
# examples/python/ the same way, and checks both print the same: the chat
# server driven by python/chat_clients.py (any python3), the job runner
# on a file of jobs, then interrupted (SIGINT) with children running,
# which must be gone when it has exited. Without python3.13 the Lua ports
# are checked against what the originals print.
# Usage: examples/test_ports.sh path/to/tapio [python3.13]
set -u
host=${1:?usage: $0 path/to/tapio [python3.13]}
python=${2:-}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; rm -rf "$work"' EXIT
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
driver=$(command -v python3)

free_port() {
  "$driver" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits (bounded) until 127.0.0.1:$1 listens, reading /proc/net/tcp.
wait_listening() {
  local hex
  hex=$(printf '%04X' "$1")
  for _ in $(seq 1 200); do
    grep -q "0100007F:$hex 00000000:0000 0A" /proc/net/tcp && return 0
    sleep 0.05
  done
  return 1
}

same() { # what expected actual
  if diff -u "$2" "$3" >"$work/diff"; then
    echo "ok: $1"
  else
    fail "$1"
    cat "$work/diff" >&2
  fi
}

# chat TAG SERVER...: the scenario of chat_clients.py against the server
# (idle timeout 1 s); then SIGINT.
chat() {
  local tag=$1 port spid
  shift
  port=$(free_port)
  env --default-signal=INT "$@" "$port" 1 >"$work/$tag.server" 2>&1 &
  spid=$!
  pids+=("$spid")
  wait_listening "$port" || { fail "$tag: the server did not listen"; return; }
  timeout 60 "$driver" "$here/python/chat_clients.py" "$port" \
    >"$work/$tag.clients" 2>&1 || fail "$tag: the clients failed"
  kill -INT "$spid"
  timeout 10 tail --pid="$spid" -f /dev/null || fail "$tag: no exit at SIGINT"
}

printf '%s\n' "ann got 'welcome, ann\n'" "bob got 'welcome, bob\n'" \
  "ann got '* bob joined\n'" "bob got 'ann: hello\n'" \
  "second ann got 'that name is taken\n'" "second ann got ''" \
  "ann got '* bob left\n'" "bob was dropped after less than 30 MB: True" \
  "ann got ''" "eve got 'welcome, eve\n'" "eve got 'idle for 1 s: bye\n'" \
  "eve got ''" "eve was dropped after 1 s or more: True" >"$work/ref.chat"
printf '%s\n' "bob is too slow: dropped" "bob left" "ann left" "eve left" \
  >"$work/ref.chat.server"
if [ -n "$python" ]; then
  chat py.chat "$python" -u "$here/python/chat.py"
  cp "$work/py.chat.clients" "$work/ref.chat"
  grep -E 'dropped$| left$' "$work/py.chat.server" >"$work/ref.chat.server"
fi
chat lua.chat "$host" "$here/chat.lua"
same "chat: the clients" "$work/ref.chat" "$work/lua.chat.clients"
grep -E 'dropped$| left$' "$work/lua.chat.server" >"$work/lua.chat.log"
same "chat: the server" "$work/ref.chat.server" "$work/lua.chat.log"

# jobs TAG RUNNER...: the jobs of $work/jobs (3 workers, 2 running, 0.5 s
# each), results sorted (they finish in an order the machine decides).
cat >"$work/jobs" <<'JOBS'
echo one
sh -c 'exit 3'
exec sleep 5
echo $((6 * 7))
JOBS
jobs() {
  local tag=$1
  shift
  timeout 20 "$@" "$work/jobs" 3 2 0.5 >"$work/$tag.jobs" 2>&1 ||
    fail "$tag: the job runner failed"
  sort "$work/$tag.jobs" >"$work/$tag.jobs.sorted"
}
printf '%s\n' "[1] echo one: exit 0: 'one'" "[2] sh -c 'exit 3': exit 3: ''" \
  "[3] exec sleep 5: timed out after 0.5 s" \
  "[4] echo \$((6 * 7)): exit 0: '42'" >"$work/ref.jobs.sorted"
if [ -n "$python" ]; then
  jobs py "$python" -u "$here/python/jobs.py"
  cp "$work/py.jobs.sorted" "$work/ref.jobs.sorted"
fi
jobs lua "$host" "$here/jobs.lua"
same "jobs" "$work/ref.jobs.sorted" "$work/lua.jobs.sorted"

# interrupted TAG RUNNER...: two jobs that write their pid and sleep, one
# that waits its turn; SIGINT once both run; then neither child is left.
interrupted() {
  local tag=$1 rpid n
  shift
  rm -f "$work/pids"
  printf '%s\n' "echo \$\$ >>$work/pids; exec sleep 30" \
    "echo \$\$ >>$work/pids; exec sleep 30" "echo never" >"$work/sleepers"
  env --default-signal=INT "$@" "$work/sleepers" 3 2 30 \
    >"$work/$tag.int" 2>&1 &
  rpid=$!
  pids+=("$rpid")
  started() { [ -f "$work/pids" ] && [ "$(wc -l <"$work/pids")" = 2 ]; }
  for _ in $(seq 1 200); do
    started && break
    sleep 0.05
  done
  started ||
    { fail "$tag: the children did not start"; return; }
  kill -INT "$rpid"
  timeout 10 tail --pid="$rpid" -f /dev/null || fail "$tag: no exit at SIGINT"
  wait "$rpid"
  n=$?
  [ "$n" -eq 130 ] || fail "$tag: the runner ended with $n at SIGINT"
  while read -r n; do
    kill -0 "$n" 2>/dev/null && fail "$tag: child $n left running"
  done <"$work/pids"
  grep -q never "$work/$tag.int" && fail "$tag: a job ran after SIGINT"
  echo "ok: $tag: interrupted, no child left"
}
[ -n "$python" ] && interrupted py.jobs "$python" -u "$here/python/jobs.py"
interrupted lua.jobs "$host" "$here/jobs.lua"

[ "$failures" -eq 0 ] || { echo "$failures failure(s)" >&2; exit 1; }
echo "all ports ok"
