#!/usr/bin/env bash
# Runs the ports of asyncio programs (chat.lua, jobs.lua, proxy.lua,
# smtp_starttls.lua, udp_counter.lua, supervisor.lua) and, given a
# python3.13 (their originals use Queue.shutdown), the Python originals in
# examples/python/ the same way, and checks both print the same: the chat
# server driven by python/chat_clients.py (any python3), the job runner
# on a file of jobs, then interrupted (SIGINT) with children running,
# which must be gone when it has exited, the proxy between a client
# and an upstream of its own, the mail server with three clients and the
# counter service with one (each also as a Lua server with Python
# clients), and the supervisor through a restart and a stop. Without
# python3.13 the Lua ports are checked against what the originals print.
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

# Waits (bounded) until FILE has COUNT (1) lines matching PATTERN.
wait_output() { # FILE PATTERN [COUNT]
  for _ in $(seq 1 200); do
    [ "$(grep -c -e "$2" "$1" 2>/dev/null)" -ge "${3:-1}" ] && return 0
    sleep 0.05
  done
  fail "no '$2' in $1 (${3:-1} expected)"
  return 1
}

# Runs SERVER... and CLIENT... (each a command the mode and its
# arguments are added to), given as one list split by --.
split_commands() {
  server=() client=()
  while [ "$1" != -- ]; do server+=("$1"); shift; done
  shift
  client=("$@")
}

# client_server NAME SCRIPT: the function NAME (TAG SERVER... -- CLIENT...)
# with python/SCRIPT.py (what it prints is then $work/ref.NAME), with
# SCRIPT.lua as the server and the Python clients, and with SCRIPT.lua;
# each compared with $work/ref.NAME.
client_server() {
  local name=$1 lua=("$host" "$here/$2.lua") py=("$python" -u
    "$here/python/$2.py")
  if [ -n "$python" ]; then
    "$name" "py.$name" "${py[@]}" -- "${py[@]}"
    cp "$work/py.$name.out" "$work/ref.$name"
    "$name" "lua-py.$name" "${lua[@]}" -- "${py[@]}"
    same "$name: Lua server, Python clients" "$work/ref.$name" \
      "$work/lua-py.$name.out"
  fi
  "$name" "lua.$name" "${lua[@]}" -- "${lua[@]}"
  same "$name" "$work/ref.$name" "$work/lua.$name.out"
}

# smtp TAG SERVER... -- CLIENT...: the mail server, and a client with the
# allowed certificate, one with a certificate it does not let in, and one
# without (the server ends the TLS session).
smtp() {
  local tag=$1 port spid who
  shift
  split_commands "$@"
  port=$(free_port)
  "${server[@]}" server "$certs" "$port" >"$work/$tag.server" 2>&1 &
  spid=$!
  pids+=("$spid")
  wait_listening "$port" || { fail "$tag: the server did not listen"; return; }
  for who in client other none; do
    timeout 20 "${client[@]}" client "$certs" "$port" "$who" ||
      fail "$tag: the client ($who) failed"
  done >"$work/$tag.clients" 2>&1
  wait_output "$work/$tag.server" "TLS handshake failed"
  kill "$spid"
  cat "$work/$tag.clients" "$work/$tag.server" >"$work/$tag.out"
}
# The certificates: the tests' own (TAPIO_TLS_CERTS, the tls.certs
# fixture's), or made now.
if ! certs=$(sh "$here/../spec/tls/make_certs.sh" \
    "${TAPIO_TLS_CERTS:-$work/certs}"); then
  fail "could not make the TLS certificates"
else
  # Each session in the clear, then over TLS up to the AUTH.
  opening() { # client|server
    if [ "$1" = client ]; then
      printf '%s\n' "< 220 mail.test ESMTP" "> EHLO client.test" "> STARTTLS" \
        "< 250-mail.test" "< 250-PIPELINING" "< 250 STARTTLS" \
        "< 220 ready to start TLS" "* TLS: TLSv1.3" "> EHLO client.test"
      [ "${2:-}" = auth ] && printf '%s\n' "< 250-mail.test" \
        "< 250-PIPELINING" "< 250 AUTH EXTERNAL" "> AUTH EXTERNAL"
    else
      printf '%s\n' "> 220 mail.test ESMTP" "< EHLO client.test" \
        "> 250-mail.test" "> 250-PIPELINING" "> 250 STARTTLS" "< STARTTLS" \
        "> 220 ready to start TLS"
      [ "${2:-}" = auth ] && printf '%s\n' "< EHLO client.test" \
        "> 250-mail.test" "> 250-PIPELINING" "> 250 AUTH EXTERNAL" \
        "< AUTH EXTERNAL"
    fi
    return 0
  }
  {
    opening client auth
    printf '%s\n' "< 235 tapio client authenticated" \
      "> MAIL FROM:<ann@client.test>" "> RCPT TO:<bob@mail.test>" "> DATA" \
      "< 250 ok" "< 250 ok" "< 354 end with ." "> Subject: hello" "> " \
      "> Hello, Bob." "> ." "< 250 queued" "> QUIT" "< 221 bye"
    opening client auth
    printf '%s\n' "< 535 other.example is not allowed" "> QUIT" "< 221 bye"
    opening client
    echo "* the server ended the TLS session"
    opening server auth
    printf '%s\n' "> 235 tapio client authenticated" \
      "< MAIL FROM:<ann@client.test>" "> 250 ok" "< RCPT TO:<bob@mail.test>" \
      "> 250 ok" "< DATA" "> 354 end with ." \
      "* tapio client: mail from <ann@client.test> to <bob@mail.test>, 29 bytes" \
      "> 250 queued" "< QUIT" "> 221 bye"
    opening server auth
    printf '%s\n' "> 535 other.example is not allowed" "< QUIT" "> 221 bye"
    opening server
    echo "* TLS handshake failed"
  } >"$work/ref.smtp"
  client_server smtp smtp_starttls
fi

# udp TAG SERVER... -- CLIENT...: a client that starts before the server
# (refused until it is up).
udp() {
  local tag=$1 port cpid spid
  shift
  split_commands "$@"
  port=$(free_port)
  timeout 20 "${client[@]}" client "$port" visits 4 >"$work/$tag.client" 2>&1 &
  cpid=$!
  pids+=("$cpid")
  wait_output "$work/$tag.client" "not up yet" || return
  "${server[@]}" server "$port" >"$work/$tag.server" 2>&1 &
  spid=$!
  pids+=("$spid")
  wait "$cpid" || fail "$tag: the client failed"
  kill "$spid"
  cat "$work/$tag.client" "$work/$tag.server" >"$work/$tag.out"
}
printf '%s\n' "the server is not up yet: trying again" "INC visits: visits=1" \
  "INC visits: visits=2" "INC visits: visits=3" "INC visits: visits=4" \
  "dropped request 2 (INC visits)" "dropped request 4 (INC visits)" \
  >"$work/ref.udp"
client_server udp udp_counter

# supervisor TAG SUPERVISOR...: three children (one stops at SIGTERM, one
# ignores it, one exits with 3 at once; GRACE 0.5 s), their states asked
# on the status port, SIGHUP (a restart), then SIGTERM, after which the
# port refuses. Each child's lines in their order (children interleave).
# The sleep of a is not on the pipe: were a killed, it would hold it.
supervisor() {
  local tag=$1 port spid out
  shift
  port=$(free_port) out=$work/$tag.log
  "$@" "$port" 0.5 \
    "a=trap 'echo stopping; kill \$!; exit 0' TERM; echo ready
      sleep 30 >/dev/null & wait" \
    "b=trap '' TERM; echo ready, deaf to SIGTERM; exec sleep 30" \
    "c=echo working; exit 3" >"$out" 2>&1 &
  spid=$!
  pids+=("$spid")
  ready() { # the children of round $1 are up
    wait_output "$out" '^\[a\] ready' "$1" &&
      wait_output "$out" '^\[b\] ready' "$1" &&
      wait_output "$out" '^\[c\] exited' "$1"
  }
  ready 1 || return
  (exec 3<>"/dev/tcp/127.0.0.1/$port" && cat <&3) >"$work/$tag.status" 2>&1
  kill -HUP "$spid"
  ready 2 || return
  kill -TERM "$spid"
  wait_output "$out" "SIGTERM: stopping" || return
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null ||
    echo "the status port refuses" >>"$work/$tag.status"
  timeout 10 tail --pid="$spid" -f /dev/null || fail "$tag: no exit at SIGTERM"
  wait "$spid" || fail "$tag: the supervisor ended with $?"
  LC_ALL=C sort -s -k1,1 "$out" | cat - "$work/$tag.status" >"$work/$tag.out"
}
cat >"$work/ref.supervisor" <<'SUPERVISOR'
[a] started
[a] ready
[a] stopping
[a] exited with 0
[a] started
[a] ready
[a] stopping
[a] exited with 0
[b] started
[b] ready, deaf to SIGTERM
[b] still running after 0.5 s: killing
[b] killed by SIGKILL
[b] started
[b] ready, deaf to SIGTERM
[b] still running after 0.5 s: killing
[b] killed by SIGKILL
[c] started
[c] working
[c] exited with 3
[c] started
[c] working
[c] exited with 3
supervisor: SIGHUP: restarting the children
supervisor: SIGTERM: stopping
supervisor: stopped
a: running
b: running
c: exited with 3
the status port refuses
SUPERVISOR
if [ -n "$python" ]; then
  supervisor py.supervisor "$python" -u "$here/python/supervisor.py"
  cp "$work/py.supervisor.out" "$work/ref.supervisor"
fi
supervisor lua.supervisor "$host" "$here/supervisor.lua"
same "supervisor" "$work/ref.supervisor" "$work/lua.supervisor.out"

[ "$failures" -eq 0 ] || { echo "$failures failure(s)" >&2; exit 1; }
echo "all ports ok"
