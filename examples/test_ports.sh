#!/usr/bin/env bash
# Runs the ports of asyncio programs (chat.lua, jobs.lua, proxy.lua) and, given a
# python3.13 (their originals use Queue.shutdown), the Python originals in
# examples/python/ the same way, and checks both print the same: the chat
# server driven by python/chat_clients.py (any python3), the job runner
# on a file of jobs, then interrupted (SIGINT) with children running,
# which must be gone when it has exited, and the proxy between a client
# and an upstream of its own. Without python3.13 the Lua ports
# are checked against what the originals print.
# Usage: examples/test_ports.sh path/to/tapio [python3.13]
set -u
host=${1:?usage: $0 path/to/tapio [python3.13]}
python=${2:-}
here=$(cd "$(dirname "$0")" && pwd)
. "$here/test_common.sh"
driver=$(command -v python3) # chat_clients.py and the proxy's peers

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

# jobs TAG RUNNER...: the jobs of $work/jobs (3 workers, 2 running, 2 s
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
  timeout 20 "$@" "$work/jobs" 3 2 2 >"$work/$tag.jobs" 2>&1 ||
    fail "$tag: the job runner failed"
  sort "$work/$tag.jobs" >"$work/$tag.jobs.sorted"
}
printf '%s\n' "[1] echo one: exit 0: 'one'" "[2] sh -c 'exit 3': exit 3: ''" \
  "[3] exec sleep 5: timed out after 2 s" \
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
  local tag=$1 rpid n before=$failures
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
  [ "$failures" -eq "$before" ] && echo "ok: $tag: interrupted, no child left"
}
[ -n "$python" ] && interrupted py.jobs "$python" -u "$here/python/jobs.py"
interrupted lua.jobs "$host" "$here/jobs.lua"

# The proxy to both.tapio.test, a name with the addresses ::1 and
# 127.0.0.1 (tapio: from the tests' DNS server; Python: getaddrinfo
# patched by a sitecustomize), on a port where ::1 never answers (a full
# queue) and 127.0.0.1 is an upstream that echoes, then at the end says
# how many bytes came before it: Happy Eyeballs gets past ::1, and the
# client's end, passed on, is what makes the upstream end. The proxy
# prints the bytes it passed each way.
cat >"$work/upstream.py" <<'PY'
import asyncio, socket, sys
async def echo(r, w):
    n = 0
    while data := await r.read(65536):
        n += len(data)
        w.write(data)
        await w.drain()
    w.write(f"upstream: the end came after {n} bytes\n".encode())
    w.close()
async def main():
    stuck = socket.socket(socket.AF_INET6)
    stuck.bind(("::1", int(sys.argv[1])))
    stuck.listen(0)
    filler = socket.create_connection(("::1", int(sys.argv[1])))
    server = await asyncio.start_server(echo, "127.0.0.1", int(sys.argv[1]))
    await server.serve_forever()
asyncio.run(main())
PY
cat >"$work/client.py" <<'PY'
import asyncio, os, sys
async def main():
    sent = os.urandom(1 << 20)
    r, w = await asyncio.open_connection("127.0.0.1", int(sys.argv[1]))
    w.write(sent)
    w.write_eof()
    got = await asyncio.wait_for(r.read(), 20)
    print("echoed:", got[:len(sent)] == sent)
    print(got[len(sent):].decode(), end="")
asyncio.run(main())
PY
mkdir -p "$work/site"
cat >"$work/site/sitecustomize.py" <<'PY'
import socket
real = socket.getaddrinfo
def getaddrinfo(host, *args, **kw):
    if host == "both.tapio.test":
        return real("::1", *args, **kw) + real("127.0.0.1", *args, **kw)
    return real(host, *args, **kw)
socket.getaddrinfo = getaddrinfo
PY
proxy() { # TAG PROXY...
  local tag=$1 up port ppid upid
  shift
  up=$(free_port) port=$(free_port)
  "$driver" "$work/upstream.py" "$up" >"$work/$tag.upstream" 2>&1 &
  upid=$!
  "$@" "$port" both.tapio.test "$up" >"$work/$tag.proxy" 2>&1 &
  ppid=$!
  pids+=("$upid" "$ppid")
  wait_listening "$up" && wait_listening "$port" ||
    { fail "$tag: no listening"; return; }
  timeout 30 "$driver" "$work/client.py" "$port" >"$work/$tag.client" 2>&1 ||
    fail "$tag: the client failed"
  for _ in $(seq 1 100); do
    grep -q "bytes up" "$work/$tag.proxy" && break
    sleep 0.05
  done
  kill "$upid" "$ppid"
  cat "$work/$tag.client" "$work/$tag.proxy" >"$work/$tag.out"
}
printf '%s\n' "echoed: True" "upstream: the end came after 1048576 bytes" \
  "via 127.0.0.1: 1048576 bytes up, 1048619 down" >"$work/ref.proxy"
if [ -n "$python" ]; then
  PYTHONPATH=$work/site proxy py.proxy "$python" -u "$here/python/proxy.py"
  cp "$work/py.proxy.out" "$work/ref.proxy"
fi
mkfifo "$work/dns.in"
"$driver" "$here/../spec/support/dns_server.py" --port-file "$work/dns.port" \
  <"$work/dns.in" >/dev/null 2>&1 &
pids+=("$!")
exec 7>"$work/dns.in" # the server serves until this closes
for _ in $(seq 1 200); do
  [ -s "$work/dns.port" ] && break
  sleep 0.05
done
TAPIO_DNS_SERVERS=127.0.0.1:$(cat "$work/dns.port") \
  proxy lua.proxy "$host" "$here/proxy.lua"
same "proxy" "$work/ref.proxy" "$work/lua.proxy.out"
exec 7>&-

[ "$failures" -eq 0 ] || { echo "$failures failure(s)" >&2; exit 1; }
echo "all ports ok"
