#!/usr/bin/env bash
# `make run`: the reference's TCP echo server and client talking to each
# other on 127.0.0.1 (port $PORT, default 8888). Exits with the client's
# status.
set -u
build=${1:-build}
port=${PORT:-8888}
"$build/echo_server" "$port" &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null' EXIT
# Wait (bounded) until the server accepts connections.
for _ in $(seq 1 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  kill -0 $server 2>/dev/null || { echo "echo_server did not start" >&2; exit 1; }
  sleep 0.05
done
"$build/echo_client" "$port"
