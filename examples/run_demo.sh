#!/usr/bin/env bash
# `make run`: the reference's TCP echo server and client, written in Lua and
# run by the tapio host program, talking to each other on 127.0.0.1 (port
# $PORT, default 8888). Falls back to the C versions when the host was not
# built (no Lua 5.4). Exits with the client's status.
set -u
build=${1:-build}
port=${PORT:-8888}
here=$(cd "$(dirname "$0")" && pwd)
if [ -x "$build/tapio" ]; then
  server=("$build/tapio" "$here/tcp_echo_server.lua" "$port")
  client=("$build/tapio" "$here/tcp_echo_client.lua" "$port")
else
  echo "($build/tapio not built: running the C echo server and client)" >&2
  server=("$build/echo_server" "$port")
  client=("$build/echo_client" "$port")
fi
"${server[@]}" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null' EXIT
# Wait (bounded) until the server listens: /proc/net/tcp shows it without
# a probe connection that the server would print.
hex=$(printf '%04X' "$port")
for _ in $(seq 1 100); do
  grep -q "0100007F:$hex 00000000:0000 0A" /proc/net/tcp 2>/dev/null && break
  kill -0 $pid 2>/dev/null || { echo "the echo server did not start" >&2; exit 1; }
  sleep 0.05
done
"${client[@]}"
# The server prints its last line before it closes the connection, and
# its standard output is line-buffered: nothing is left to wait for.
