#!/usr/bin/env bash
# Runs the Lua examples with the tapio host: the TCP and the UDP echo
# servers and clients against each other and against the reference's
# Python versions (when a python3 is given), and checks each prints what
# the Python version prints; the same with TLS, and the STARTTLS example;
# the subprocess example (its python3 child is the one given) and the pipe
# example through cat.
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

# The TCP pair and the UDP pair.
tcp_pair() { run_pair "$1" wait_listening "Close the client socket" "${@:2}"; }
udp_pair() { run_pair "$1" wait_udp_bound "^Send " "${@:2}"; }

expect_same() { # what expected-file actual-file
  if ! diff -u <(mask "$2") <(mask "$3") >"$work/diff"; then
    fail "$1 differs from the reference's output"
    cat "$work/diff" >&2
  else
    echo "ok: $1"
  fi
}

lua_server=("$host" "$here/tcp_echo_server.lua")
lua_client=("$host" "$here/tcp_echo_client.lua")
lua_userver=("$host" "$here/udp_echo_server.lua")
lua_uclient=("$host" "$here/udp_echo_client.lua")

tcp_pair lua "${lua_server[@]}" -- "${lua_client[@]}"
udp_pair ulua "${lua_userver[@]}" -- "${lua_uclient[@]}"

if [ -n "$python" ]; then
  py_server=("$python" -u "$here/python/tcp_echo_server.py")
  py_client=("$python" -u "$here/python/tcp_echo_client.py")
  py_userver=("$python" -u "$here/python/udp_echo_server.py")
  py_uclient=("$python" -u "$here/python/udp_echo_client.py")
  tcp_pair py "${py_server[@]}" -- "${py_client[@]}"
  tcp_pair luapy "${lua_server[@]}" -- "${py_client[@]}"
  tcp_pair pylu "${py_server[@]}" -- "${lua_client[@]}"
  udp_pair upy "${py_userver[@]}" -- "${py_uclient[@]}"
  udp_pair uluapy "${lua_userver[@]}" -- "${py_uclient[@]}"
  udp_pair upylu "${py_userver[@]}" -- "${lua_uclient[@]}"
  # Each Lua side prints what the Python pair printed.
  for p in "/py/lua" "UDP: /upy/ulua"; do
    IFS=/ read -r label ref lua <<<"$p"
    expect_same "${label}Lua server vs Lua client: server" "$work/$ref.server" "$work/$lua.server"
    expect_same "${label}Lua server vs Lua client: client" "$work/$ref.client" "$work/$lua.client"
    expect_same "${label}Lua server vs Python client: server" "$work/$ref.server" "$work/${lua}py.server"
    expect_same "${label}Python server vs Lua client: client" "$work/$ref.client" "$work/${ref}lu.client"
  done
  "$python" -u "$here/python/existing_socket.py" >"$work/py.existing" 2>&1
else
  # Without Python, the reference's output as the documentation shows it.
  printf '%s\n' "Connection from ('127.0.0.1', 1)" \
    "Data received: 'Hello World!'" "Send: 'Hello World!'" \
    "Close the client socket" >"$work/ref.server"
  printf '%s\n' "Data sent: 'Hello World!'" "Data received: 'Hello World!'" \
    "The server closed the connection" >"$work/ref.client"
  printf '%s\n' "Received: abc" >"$work/py.existing"
  expect_same "Lua server vs Lua client: server" "$work/ref.server" "$work/lua.server"
  expect_same "Lua server vs Lua client: client" "$work/ref.client" "$work/lua.client"
  printf '%s\n' "Starting UDP server" \
    "Received 'Hello World!' from ('127.0.0.1', 1)" \
    "Send 'Hello World!' to ('127.0.0.1', 1)" >"$work/ref.userver"
  printf '%s\n' "Send: Hello World!" "Received: Hello World!" \
    "Close the socket" "Connection closed" >"$work/ref.uclient"
  expect_same "UDP: Lua server vs Lua client: server" "$work/ref.userver" "$work/ulua.server"
  expect_same "UDP: Lua server vs Lua client: client" "$work/ref.uclient" "$work/ulua.client"
fi

if ! timeout 20 "$host" "$here/existing_socket.lua" >"$work/lua.existing" 2>&1; then
  fail "existing_socket.lua failed"
fi
expect_same "existing_socket" "$work/py.existing" "$work/lua.existing"

# TLS: certificates made now with the openssl command (a throwaway CA and
# a server certificate for localhost), the echo pair with TLS, against
# each other and against Python's ssl, and STARTTLS.
if ! certs=$(sh "$here/../spec/tls/make_certs.sh" "$work/certs"); then
  fail "could not make the TLS certificates"
else
  tls_server=("$host" "$here/tls_echo_server.lua" "$certs")
  tls_client=("$host" "$here/tls_echo_client.lua" "$certs/ca.pem")
  tcp_pair tls "${tls_server[@]}" -- "${tls_client[@]}"
  printf '%s\n' "TLS: TLSv1.3, certificate of localhost" \
    "Data sent: 'Hello World!'" "Data received: 'Hello World!'" \
    "The server closed the connection" >"$work/ref.tls.client"
  expect_same "TLS echo: client" "$work/ref.tls.client" "$work/tls.client"
  if [ -n "$python" ]; then
    expect_same "TLS echo: server" "$work/py.server" "$work/tls.server"
    tcp_pair tlspy "${tls_server[@]}" -- "$python" -u \
      "$here/python/tls_echo_client.py" "$certs/ca.pem"
    tcp_pair pytls "$python" -u "$here/python/tls_echo_server.py" "$certs" \
      -- "${tls_client[@]}"
    expect_same "TLS: Lua server vs Python client: client" \
      "$work/ref.tls.client" "$work/tlspy.client"
    expect_same "TLS: Lua server vs Python client: server" \
      "$work/py.server" "$work/tlspy.server"
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
