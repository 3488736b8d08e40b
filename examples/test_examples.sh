#!/usr/bin/env bash
# Runs the Lua examples with the tapio host: the TCP echo servers and
# clients (protocols and streams) and the UDP ones against each other and
# against the reference's Python versions (when a python3 is given), and
# checks each prints what the Python version prints; the existing-socket
# examples; the HTTP headers example against a page served on 127.0.0.1
# (python3's http.server); the subprocess examples (their python3 child is
# the one given) and the pipe example through cat.
# Usage: examples/test_examples.sh path/to/tapio [python3]
set -u
host=${1:?usage: $0 path/to/tapio [python3]}
python=${2:-}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; rm -rf "$work"' EXIT
failures=0

fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}

free_port() {
  if [ -n "$python" ]; then
    "$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
  else
    echo $((20000 + RANDOM % 20000))
  fi
}

# Waits (bounded) until a socket of /proc/net/$1 (tcp or udp) is bound on
# 127.0.0.1:$2 in state $3 (TCP 0A: listening; UDP 07: bound), by reading
# that file: a probe would show in the server's output.
wait_socket() {
  local hex
  hex=$(printf '%04X' "$2")
  for _ in $(seq 1 200); do
    grep -q "0100007F:$hex 00000000:0000 $3" "/proc/net/$1" && return 0
    sleep 0.05
  done
  return 1
}
wait_listening() { wait_socket tcp "$1" 0A; }
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

# The existing socket, with a protocol and with streams.
for name in existing_socket streams_socketpair; do
  expected=$work/ref.received
  if [ -n "$python" ]; then
    "$python" -u "$here/python/$name.py" >"$work/py.$name" 2>&1
    expected=$work/py.$name
  fi
  timeout 20 "$host" "$here/$name.lua" >"$work/lua.$name" 2>&1 ||
    fail "$name.lua failed"
  expect_same "$name" "$expected" "$work/lua.$name"
done

# The HTTP headers example (and the page's Python) against a page that
# python3's http.server serves on 127.0.0.1; the Date line may differ.
if [ -n "$python" ]; then
  mkdir -p "$work/www"
  echo "<html><body>tapio</body></html>" >"$work/www/page.html"
  hport=$(free_port)
  "$python" -m http.server "$hport" --bind 127.0.0.1 \
    --directory "$work/www" >"$work/http.log" 2>&1 &
  hpid=$!
  pids+=("$hpid")
  if wait_listening "$hport"; then
    url="http://127.0.0.1:$hport/page.html"
    timeout 20 "$host" "$here/http_headers.lua" "$url" >"$work/lua.http" 2>&1 ||
      fail "http_headers.lua failed"
    timeout 20 "$python" "$here/python/http_headers.py" "$url" \
      >"$work/py.http" 2>&1 || fail "http_headers.py failed"
    grep -q "^HTTP header> HTTP/1.0 200 OK$" "$work/lua.http" ||
      fail "http_headers.lua: no status line"
    grep -q "^HTTP header> Content-Length: 32$" "$work/lua.http" ||
      fail "http_headers.lua: no Content-Length"
    sed -i 's/^HTTP header> Date: .*/HTTP header> Date: DATE/' \
      "$work/lua.http" "$work/py.http"
    expect_same "http_headers (http)" "$work/py.http" "$work/lua.http"
  else
    fail "http.server did not listen on $hport"
  fi
  kill "$hpid" 2>/dev/null
else
  echo "skip: http_headers (no python3 to serve the page)"
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

[ "$failures" -eq 0 ] || { echo "$failures failure(s)" >&2; exit 1; }
echo "all examples ok"
