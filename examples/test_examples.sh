#!/usr/bin/env bash
# Runs the Lua examples with the tapio host: the TCP echo servers and
# clients (protocols and streams) and the UDP ones against each other and
# against the reference's Python versions (when a python3 is given), and
# checks each prints what the Python version prints; the same with TLS,
# the STARTTLS example and the client-certificate one; the
# existing-socket and watch-a-descriptor examples; the HTTP headers
# example against a page served on 127.0.0.1 (python3's http.server,
# over HTTP and HTTPS); the file server (a file fetched by python3's
# urllib, compared byte for byte); the subprocess examples
# (their python3 child is the one given), the pipe example through cat,
# the chat server with clients on bash's /dev/tcp, and the TCP relay
# between Python peers; with C_EXAMPLES set
# to the directory of the C ones, examples/c/'s echo pair against itself
# and the Lua pair, and examples/c/subprocess.c.
# Usage: [C_EXAMPLES=dir] examples/test_examples.sh path/to/tapio [python3]
set -u
host=${1:?usage: $0 path/to/tapio [python3]}
python=${2:-}
here=$(cd "$(dirname "$0")" && pwd)
. "$here/test_common.sh"
wait_udp_bound() { wait_socket udp "$1" 07; }

# The ephemeral client port differs from run to run.
mask() { sed -E "s/\('127\.0\.0\.1', [0-9]+\)/('127.0.0.1', PORT)/" "$1"; }

# run_pair NAME WAIT LAST SERVER-CMD... -- CLIENT-CMD...: outputs in
# $work/NAME.*. WAIT is how to tell the server is up (wait_listening for
# TCP, wait_udp_bound for UDP); LAST is a pattern of the line the server
# prints last, right after the client's end.
run_pair() {
  local name=$1 wait=$2 last=$3
  shift 3
  local server=() client=()
  while [ "$1" != "--" ]; do server+=("$1"); shift; done
  shift
  client=("$@")
  local port
  port=$(free_port)
  "${server[@]}" "$port" >"$work/$name.server" 2>&1 &
  local spid=$!
  pids+=("$spid")
  if ! "$wait" "$port"; then
    fail "$name: the server did not listen on $port"
    cat "$work/$name.server" >&2
    return
  fi
  if ! timeout 20 "${client[@]}" "$port" >"$work/$name.client" 2>&1; then
    fail "$name: the client failed"
    cat "$work/$name.client" >&2
  fi
  for _ in $(seq 1 100); do
    grep -q "$last" "$work/$name.server" && break
    sleep 0.05
  done
  kill "$spid" 2>/dev/null
  wait "$spid" 2>/dev/null
}

expect_same() { # what expected-file actual-file
  if ! diff -u <(mask "$2") <(mask "$3") >"$work/diff"; then
    fail "$1 differs from the reference's output"
    cat "$work/diff" >&2
  else
    echo "ok: $1"
  fi
}

# echo_pairs TAG LABEL NAME WAIT LAST: the Lua NAME_server.lua and
# NAME_client.lua against each other and, with python, against
# python/NAME_server.py and _client.py; each output compared with the
# Python one's, or without python with the reference's output as the
# documentation shows it, in $work/TAG.ref.server and .client. WAIT and
# LAST as run_pair takes them.
echo_pairs() {
  local tag=$1 label=$2 name=$3 ref=$work/$1.ref
  local wait=$4 last=$5
  local ls=("$host" "$here/${name}_server.lua")
  local lc=("$host" "$here/${name}_client.lua")
  run_pair "$tag.lua" "$wait" "$last" "${ls[@]}" -- "${lc[@]}"
  if [ -n "$python" ]; then
    local ps=("$python" -u "$here/python/${name}_server.py")
    local pc=("$python" -u "$here/python/${name}_client.py")
    run_pair "$tag.py" "$wait" "$last" "${ps[@]}" -- "${pc[@]}"
    run_pair "$tag.luapy" "$wait" "$last" "${ls[@]}" -- "${pc[@]}"
    run_pair "$tag.pylua" "$wait" "$last" "${ps[@]}" -- "${lc[@]}"
    ref=$work/$tag.py
    expect_same "$label: Lua server vs Python client: server" \
      "$ref.server" "$work/$tag.luapy.server"
    expect_same "$label: Python server vs Lua client: client" \
      "$ref.client" "$work/$tag.pylua.client"
  fi
  expect_same "$label: Lua server vs Lua client: server" "$ref.server" \
    "$work/$tag.lua.server"
  expect_same "$label: Lua server vs Lua client: client" "$ref.client" \
    "$work/$tag.lua.client"
}

# The reference's outputs, for a machine without python.
printf '%s\n' "Connection from ('127.0.0.1', 1)" \
  "Data received: 'Hello World!'" "Send: 'Hello World!'" \
  "Close the client socket" >"$work/tcp.ref.server"
printf '%s\n' "Data sent: 'Hello World!'" "Data received: 'Hello World!'" \
  "The server closed the connection" >"$work/tcp.ref.client"
printf '%s\n' "Serving on ('127.0.0.1', 1)" \
  "Received 'Hello World!' from ('127.0.0.1', 1)" \
  "Send: 'Hello World!'" "Close the connection" >"$work/streams.ref.server"
printf '%s\n' "Send: 'Hello World!'" "Received: 'Hello World!'" \
  "Close the connection" >"$work/streams.ref.client"
printf '%s\n' "Starting UDP server" \
  "Received 'Hello World!' from ('127.0.0.1', 1)" \
  "Send 'Hello World!' to ('127.0.0.1', 1)" >"$work/udp.ref.server"
printf '%s\n' "Send: Hello World!" "Received: Hello World!" \
  "Close the socket" "Connection closed" >"$work/udp.ref.client"
printf '%s\n' "Received: abc" >"$work/ref.received"

# The protocols' echo servers and clients (TCP and UDP), and the streams
# page's.
echo_pairs tcp "tcp echo" tcp_echo wait_listening "Close the client socket"
echo_pairs streams "streams echo" streams_echo wait_listening \
  "Close the connection"
echo_pairs udp "udp echo" udp_echo wait_udp_bound "^Send "

# The existing socket, with a protocol and with streams; a watched
# descriptor (add_reader). Each prints what its Python version prints.
for name in existing_socket streams_socketpair watch_fd; do
  expected=$work/ref.received
  if [ -n "$python" ]; then
    "$python" -u "$here/python/$name.py" >"$work/py.$name" 2>&1
    expected=$work/py.$name
  fi
  timeout 20 "$host" "$here/$name.lua" >"$work/lua.$name" 2>&1 ||
    fail "$name.lua failed"
  expect_same "$name" "$expected" "$work/lua.$name"
done

# What the TCP echo server printed: the Python one's, or the reference's.
tcp_ref=$work/tcp.ref
[ -n "$python" ] && tcp_ref=$work/tcp.py
tcp_pair() { run_pair "$1" wait_listening "Close the client socket" "${@:2}"; }

# The C ABI's examples: the echo pair prints what the reference's does.
if [ -n "${C_EXAMPLES:-}" ]; then
  cs=("$C_EXAMPLES/echo_server") cc=("$C_EXAMPLES/echo_client")
  tcp_pair tcp.c "${cs[@]}" -- "${cc[@]}"
  tcp_pair tcp.clua "${cs[@]}" -- "$host" "$here/tcp_echo_client.lua"
  tcp_pair tcp.luac "$host" "$here/tcp_echo_server.lua" -- "${cc[@]}"
  expect_same "C echo server" "$tcp_ref.server" "$work/tcp.c.server"
  expect_same "C echo client" "$tcp_ref.client" "$work/tcp.c.client"
  expect_same "C server, Lua client" "$tcp_ref.client" "$work/tcp.clua.client"
  expect_same "Lua server, C client" "$tcp_ref.server" "$work/tcp.luac.server"
  printf '%s\n' "cat: exit status 0" "cat: stdout 'hello'" \
    "cat: stderr 'done'" "sleep: killed after 0.2 s" \
    "sleep: exit status -9" "sleep: stdout ''" "sleep: stderr ''" \
    >"$work/ref.subprocess"
  timeout 20 "$C_EXAMPLES/subprocess" >"$work/c.subprocess" 2>&1 ||
    fail "subprocess (C) failed"
  expect_same "subprocess (C)" "$work/ref.subprocess" "$work/c.subprocess"
fi

# TLS: certificates made now with the openssl command (a throwaway CA and
# a server certificate for localhost), the echo pair with TLS, against
# each other and against Python's ssl, and STARTTLS.
if ! certs=$(sh "$here/../spec/tls/make_certs.sh" "$work/certs"); then
  fail "could not make the TLS certificates"
  certs=
else
  tls_server=("$host" "$here/tls_echo_server.lua" "$certs")
  tls_client=("$host" "$here/tls_echo_client.lua" "$certs/ca.pem")
  tcp_pair tls "${tls_server[@]}" -- "${tls_client[@]}"
  printf '%s\n' "TLS: TLSv1.3, certificate of localhost" \
    "Data sent: 'Hello World!'" "Data received: 'Hello World!'" \
    "The server closed the connection" >"$work/ref.tls.client"
  expect_same "TLS echo: client" "$work/ref.tls.client" "$work/tls.client"
  expect_same "TLS echo: server" "$tcp_ref.server" "$work/tls.server"
  if [ -n "$python" ]; then
    tcp_pair tlspy "${tls_server[@]}" -- "$python" -u \
      "$here/python/tls_echo_client.py" "$certs/ca.pem"
    tcp_pair pytls "$python" -u "$here/python/tls_echo_server.py" "$certs" \
      -- "${tls_client[@]}"
    expect_same "TLS: Lua server vs Python client: client" \
      "$work/ref.tls.client" "$work/tlspy.client"
    expect_same "TLS: Lua server vs Python client: server" \
      "$tcp_ref.server" "$work/tlspy.server"
    expect_same "TLS: Python server vs Lua client: client" \
      "$work/ref.tls.client" "$work/pytls.client"
  fi
  # STARTTLS: the server ends after its one client.
  port=$(free_port)
  "$host" "$here/starttls.lua" server "$certs" "$port" \
    >"$work/starttls.server" 2>&1 &
  spid=$!
  pids+=("$spid")
  if ! wait_listening "$port"; then
    fail "starttls: the server did not listen on $port"
  elif ! timeout 20 "$host" "$here/starttls.lua" client "$certs/ca.pem" \
      "$port" >"$work/starttls.client" 2>&1; then
    fail "starttls: the client failed"
    cat "$work/starttls.client" >&2
  fi
  timeout 20 tail --pid="$spid" -f /dev/null
  printf '%s\n' "< 220 tapio STARTTLS example" "> HELLO" \
    "< 250 HELLO (in the clear)" "> STARTTLS" "< 220 Ready to start TLS" \
    "TLS started: TLSv1.3" "> HELLO" "< 250 HELLO (over TLSv1.3)" "> QUIT" \
    "< 221 Bye" >"$work/ref.starttls.client"
  printf '%s\n' "> 220 tapio STARTTLS example" "< HELLO" \
    "> 250 HELLO (in the clear)" "< STARTTLS" "> 220 Ready to start TLS" \
    "< HELLO" "> 250 HELLO (over TLSv1.3)" "< QUIT" "> 221 Bye" \
    >"$work/ref.starttls.server"
  expect_same "starttls: client" "$work/ref.starttls.client" \
    "$work/starttls.client"
  expect_same "starttls: server" "$work/ref.starttls.server" \
    "$work/starttls.server"
  # Client certificates: one process, the server and its five clients.
  timeout 20 "$host" "$here/tls_client_cert.lua" "$certs" \
    >"$work/client_cert" 2>&1 || fail "tls_client_cert: it failed"
  printf '%s\n' "client   hello, tapio client" "other    denied" \
    "none     ETLS_NO_CERT: TLS failed: tlsv13 alert certificate required" \
    "expired  ETLS_EXPIRED: TLS failed: sslv3 alert certificate expired" \
    "self     ETLS_UNKNOWN_CA: TLS failed: tlsv1 alert unknown ca" \
    >"$work/ref.client_cert"
  expect_same "tls_client_cert" "$work/ref.client_cert" "$work/client_cert"
fi

# The HTTP headers example (and the page's Python) against a page that
# python3's http.server serves on 127.0.0.1: over plain HTTP, and over TLS
# with a certificate of spec/tls/make_certs.sh, whose CA both clients
# trust through SSL_CERT_FILE as they would the system's. The Date line
# may differ. exec: the background job's pid is then python's own, so
# the kill below (and the exit trap's) stops the server, not a subshell
# that would leave it running.
http_server() { # port certs-or-empty
  exec "$python" - "$work/www" "$@" <<'PY'
import functools, http.server, ssl, sys
root, port, certs = sys.argv[1], int(sys.argv[2]), sys.argv[3]
handler = functools.partial(http.server.SimpleHTTPRequestHandler,
                            directory=root)
httpd = http.server.HTTPServer(("127.0.0.1", port), handler)
if certs:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certs + "/server.pem", certs + "/server.key")
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
httpd.serve_forever()
PY
}
http_headers() { # scheme certs-or-empty
  local scheme=$1 hport hpid url
  hport=$(free_port)
  http_server "$hport" "$2" >"$work/$scheme.log" 2>&1 &
  hpid=$!
  pids+=("$hpid")
  if ! wait_listening "$hport"; then
    fail "the $scheme server did not listen on $hport"
    return
  fi
  url="$scheme://localhost:$hport/page.html"
  export SSL_CERT_FILE=${2:+$2/ca.pem}
  timeout 20 "$host" "$here/http_headers.lua" "$url" \
    >"$work/lua.$scheme" 2>&1 || fail "http_headers.lua $scheme failed"
  timeout 20 "$python" "$here/python/http_headers.py" "$url" \
    >"$work/py.$scheme" 2>&1 || fail "http_headers.py $scheme failed"
  unset SSL_CERT_FILE
  grep -q "^HTTP header> HTTP/1.0 200 OK$" "$work/lua.$scheme" ||
    fail "http_headers.lua $scheme: no status line"
  grep -q "^HTTP header> Content-Length: 32$" "$work/lua.$scheme" ||
    fail "http_headers.lua $scheme: no Content-Length"
  sed -i 's/^HTTP header> Date: .*/HTTP header> Date: DATE/' \
    "$work/lua.$scheme" "$work/py.$scheme"
  expect_same "http_headers ($scheme)" "$work/py.$scheme" \
    "$work/lua.$scheme"
  kill "$hpid" 2>/dev/null
}
if [ -n "$python" ]; then
  mkdir -p "$work/www"
  echo "<html><body>tapio</body></html>" >"$work/www/page.html"
  http_headers http ""
  [ -n "$certs" ] && http_headers https "$certs"
else
  echo "skip: http_headers (no python3 to serve the page)"
fi

# The file server sends a 3 MB file (loop:sendfile) that python3's urllib
# fetches whole; http_headers.lua reads its headers; a missing file is 404.
file_server() {
  local fport fpid
  fport=$(free_port)
  mkdir -p "$work/files"
  head -c 3000017 /dev/urandom >"$work/files/big.bin"
  "$host" "$here/file_server.lua" "$work/files" "$fport" \
    >"$work/files.log" 2>&1 &
  fpid=$!
  pids+=("$fpid")
  if ! wait_listening "$fport"; then
    fail "file_server.lua did not listen on $fport"
    return
  fi
  timeout 20 "$python" -c '
import sys, urllib.request, urllib.error
sys.stdout.buffer.write(urllib.request.urlopen(sys.argv[1] + "/big.bin").read())
try:
    urllib.request.urlopen(sys.argv[1] + "/missing")
except urllib.error.HTTPError as e:
    print(e.code, file=sys.stderr)' "http://127.0.0.1:$fport" \
    >"$work/files.got" 2>"$work/files.err" || fail "fetching from file_server.lua failed"
  cmp -s "$work/files/big.bin" "$work/files.got" ||
    fail "file_server.lua: the file fetched differs from the file served"
  grep -qx "404" "$work/files.err" || fail "file_server.lua: no 404 for a missing file"
  timeout 20 "$host" "$here/http_headers.lua" "http://127.0.0.1:$fport/big.bin" \
    >"$work/files.headers" 2>&1 || fail "http_headers.lua against file_server.lua failed"
  grep -q "^HTTP header> Content-Length: 3000017$" "$work/files.headers" ||
    fail "file_server.lua: no Content-Length for HEAD"
  grep -q "^/big.bin 3000017 bytes$" "$work/files.log" ||
    fail "file_server.lua did not say it sent the file"
  kill "$fpid" 2>/dev/null
}
if [ -n "$python" ]; then
  file_server
else
  echo "skip: file_server (no python3 to fetch the file)"
fi

# The subprocess example prints the date a python3 child printed, in the
# reference's format; the Python version beside it when there is one.
date_re='^Current date: [0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}$'
check_date() { # what output-file
  if grep -Eq "$date_re" "$2" && [ "$(wc -l <"$2")" -eq 1 ]; then
    echo "ok: $1"
  else
    fail "$1 printed something else"
    cat "$2" >&2
  fi
}
timeout 20 "$host" "$here/subprocess_date.lua" "${python:-python3}" \
  >"$work/lua.date" 2>&1 || fail "subprocess_date.lua failed"
check_date "subprocess_date.lua" "$work/lua.date"
if [ -n "$python" ]; then
  timeout 20 "$python" "$here/python/subprocess_date.py" >"$work/py.date" 2>&1
  check_date "subprocess_date.py (the reference)" "$work/py.date"
fi
timeout 20 "$host" "$here/subprocess_date_streams.lua" "${python:-python3}" \
  >"$work/lua.sdate" 2>&1 || fail "subprocess_date_streams.lua failed"
check_date "subprocess_date_streams.lua" "$work/lua.sdate"
if [ -n "$python" ]; then
  timeout 20 "$python" "$here/python/subprocess_date_streams.py" \
    >"$work/py.sdate" 2>&1
  check_date "subprocess_date_streams.py" "$work/py.sdate"
fi

# The pipe example: lines through cat and back.
printf '%s\n' "Sent: 'Hello World!\\n'" "Sent: 'through cat\\n'" \
  "Sent: 'and back\\n'" "Received: 'Hello World!\\n'" \
  "Received: 'through cat\\n'" "Received: 'and back\\n'" \
  "Received the end of the output" "cat exited with 0" >"$work/ref.cat"
timeout 20 "$host" "$here/pipe_cat.lua" >"$work/lua.cat" 2>&1 ||
  fail "pipe_cat.lua failed"
expect_same "pipe_cat" "$work/ref.cat" "$work/lua.cat"

# The chat server: two clients on bash's /dev/tcp, a nick and a line
# passed on, a client that never reads dropped once the server holds
# 1 MiB for it (30 MB sent past it get no further than the socket
# buffers and that MiB), and Ctrl-C telling the clients, exit status 130.
chat() {
  local port spid a b c n status before=$failures
  port=$(free_port)
  env --default-signal=INT "$host" "$here/chat_server.lua" "$port" \
    >"$work/chat.server" 2>&1 &
  spid=$!
  pids+=("$spid")
  wait_listening "$port" || { fail "chat: the server did not listen"; return; }
  exec 3<>"/dev/tcp/127.0.0.1/$port" 4<>"/dev/tcp/127.0.0.1/$port" \
    5<>"/dev/tcp/127.0.0.1/$port"
  read -r -t 5 -u 3 a; read -r -t 5 -u 4 a; read -r -t 5 -u 5 a
  printf '/nick ann\nhello\n' >&3
  read -r -t 5 -u 4 a; read -r -t 5 -u 4 b
  [[ "$a" == *" is now ann" && "$b" == "ann: hello" ]] ||
    fail "chat: the other client got '$a' and '$b'"
  yes "$(printf 'x%.0s' {1..99})" | head -c 30000000 >&5 # 3, 4 read none
  n=$(timeout 10 cat <&4 2>/dev/null | wc -c)
  [ "$n" -lt 20000000 ] || fail "chat: the client that never read got $n bytes"
  exec 6<>"/dev/tcp/127.0.0.1/$port"
  read -r -t 5 -u 6 a
  printf '/nick done\n' >&5 # behind the rest of the flood
  timeout 10 grep -q -m1 " is now done$" <&6 || fail "chat: no end of flood"
  kill -INT "$spid"
  read -r -t 5 -u 6 c
  [ "$c" = "server shutting down" ] || fail "chat: Ctrl-C told '$c'"
  wait "$spid"
  status=$?
  [ "$status" -eq 130 ] || fail "chat: the server ended with $status"
  exec 3>&- 4>&- 5>&- 6>&-
  [ "$failures" -eq "$before" ] && echo "ok: chat_server"
}
chat

# The relay between Python peers: an upstream echo server and a client
# that both read slowly while 4 MiB go up and back byte for byte, each
# end passed on (the client reads all, then the end), and a silent
# client closed at the idle timeout.
relay() {
  local up port rpid upid
  up=$(free_port) port=$(free_port)
  "$python" - "$up" >"$work/relay.upstream" 2>&1 <<'PY' &
import asyncio, sys
async def echo(r, w):
    while data := await r.read(16384):
        w.write(data)
        await w.drain()
        await asyncio.sleep(0.001)
    w.write_eof()
async def main():
    server = await asyncio.start_server(echo, "127.0.0.1", int(sys.argv[1]))
    await server.serve_forever()
asyncio.run(main())
PY
  upid=$!
  pids+=("$upid")
  "$host" "$here/tcp_relay.lua" "$port" "$up" 1 >"$work/relay.out" 2>&1 &
  rpid=$!
  pids+=("$rpid")
  wait_listening "$up" && wait_listening "$port" ||
    { fail "relay: no listening"; return; }
  timeout 30 "$python" - "$port" >"$work/relay.client" 2>&1 <<'PY' ||
import asyncio, os, sys, time
async def main():
    sent = os.urandom(4 << 20)
    r, w = await asyncio.open_connection("127.0.0.1", int(sys.argv[1]))
    w.write(sent)
    w.write_eof()
    got = []
    while data := await r.read(16384):
        got.append(data)
        await asyncio.sleep(0.002)
    assert b"".join(got) == sent, "the bytes differ"
    r, w = await asyncio.open_connection("127.0.0.1", int(sys.argv[1]))
    start = time.monotonic()
    assert await r.read() == b"" and time.monotonic() - start < 5
asyncio.run(main())
PY
    { fail "relay: the client failed"; cat "$work/relay.client" >&2; }
  printf '%s\n' "relayed 4194304 bytes up, 4194304 down" \
    "idle for 1 s: closing" "relayed 0 bytes up, 0 down" >"$work/relay.ref"
  tail -n +2 "$work/relay.out" >"$work/relay.got"
  expect_same "tcp_relay" "$work/relay.ref" "$work/relay.got"
  kill "$rpid" "$upid"
}
[ -n "$python" ] && relay

[ "$failures" -eq 0 ] || { echo "$failures failure(s)" >&2; exit 1; }
echo "all examples ok"
