# What the examples' tests share (sourced by test_examples.sh and
# test_ports.sh, which set host, python and here first): a work directory
# and the background processes, both gone at the exit; failures counted;
# a free port; waiting for a socket to listen.
work=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; rm -rf "$work"' EXIT
failures=0

fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}

# A port the kernel picks (any python3 will do: the ports' tests are
# given only a python3.13); a random one without python.
free_port() {
  local py=${python:-$(command -v python3)}
  if [ -n "$py" ]; then
    "$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
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
