# The benchmark's shared shell functions: starting and stopping servers,
# the machine's description. Sourced by run.sh, tls_idle.sh and the count
# scripts (stream_count.sh, streams_count.sh, udp_count.sh), which set LOAD
# (the load generator) and LOG (where the servers' output goes).

NEXT_PORT=${BENCH_PORT:-21000}
PRIORITY=()         # a prefix for every server and timed load, e.g. nice

# True if something already listens on the port.
port_busy() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Splits a server entry, "name [VAR=value ...] program args", into SNAME,
# SENV (the environment words) and SCMD (the command line).
parse_server() {
  local words
  read -ra words <<<"$1"
  SNAME=${words[0]} SENV=() SCMD=()
  local i=1
  while [ $i -lt ${#words[@]} ] && [[ ${words[i]} == [A-Za-z_]*=* ]]; do
    SENV+=("${words[i]}")
    i=$((i + 1))
  done
  SCMD=("${words[@]:i}")
}

# server_table ENTRY...: the associative array ENTRY of the list entries
# given, by name (the entries' first words), for the scripts that start
# servers by name (stream_count.sh, streams_count.sh, udp_count.sh).
server_table() {
  declare -gA ENTRY=()
  local entry
  for entry in "$@"; do
    ENTRY[${entry%% *}]=$entry
  done
}

# start_server ENTRY CORE [WRAPPER...]: starts the server of a list entry
# on core CORE, under WRAPPER (e.g. valgrind) if given, at a fresh pair of
# ports; sets SPID, PORT and STATS_ARG. {port}, {stats}, {cert} and {key}
# in the command become the ports and $CERT and $KEY. Fails if it does
# not accept within WAIT_SECS (10 s by default), or with WAIT_MODE=udpwait
# does not echo a UDP probe.
start_server() {
  local core=$2
  parse_server "$1"
  shift 2
  while port_busy "$NEXT_PORT" || port_busy $((NEXT_PORT + 1)); do
    NEXT_PORT=$((NEXT_PORT + 2))
  done
  PORT=$NEXT_PORT
  local stats=$((PORT + 1))
  NEXT_PORT=$((NEXT_PORT + 2))
  STATS_ARG=()
  [[ " ${SCMD[*]} " == *" {stats} "* ]] && STATS_ARG=(--stats-port "$stats")
  local cmd=("${SCMD[@]//\{port\}/$PORT}")
  cmd=("${cmd[@]//\{stats\}/$stats}")
  cmd=("${cmd[@]//\{cert\}/${CERT:-}}")
  cmd=("${cmd[@]//\{key\}/${KEY:-}}")
  echo "== ${SENV[*]} $* ${cmd[*]}" >>"$LOG"
  "${PRIORITY[@]}" taskset -c "$core" env "${SENV[@]}" "$@" "${cmd[@]}" \
    >>"$LOG" 2>&1 &
  SPID=$!
  local secs=${WAIT_SECS:-10}
  "$LOAD" "${WAIT_MODE:-wait}" --port "$PORT" --pid "$SPID" \
    --deadline "$secs" 2>>"$LOG" &&
    { [ ${#STATS_ARG[@]} -eq 0 ] ||
      "$LOAD" wait --port "$stats" --pid "$SPID" --deadline "$secs" \
        2>>"$LOG"; }
}

# callgrind_under BIN (BIN: the build's bench/): sets CALLGRIND to what a
# counted server runs under: callgrind, without address randomisation,
# with time() answering one fixed second (fixtime.c) and Python's hash
# seed fixed, so that hash tables seeded or keyed by addresses, the clock
# or a random seed (Lua's strings, Python's ids and strings) lay out alike
# from run to run.
callgrind_under() {
  CALLGRIND=(env "LD_PRELOAD=$1/libfixtime.so" PYTHONHASHSEED=0 setarch -R
    valgrind --tool=callgrind)
}

# callgrind_server ENTRY CORE BASE [OPTION...]: start_server's server of
# ENTRY on CORE, counted: under callgrind_under (libfixtime.so beside
# LOAD), its counts in BASE.out, valgrind's log in BASE.log, the valgrind
# OPTIONs given; 120 s to start, as valgrind is slow to. Sets SPID and PORT.
callgrind_server() {
  local entry=$1 core=$2 base=$3
  shift 3
  callgrind_under "$(dirname "$LOAD")"
  WAIT_SECS=120 start_server "$entry" "$core" "${CALLGRIND[@]}" \
    --callgrind-out-file="$base.out" --log-file="$base.log" "$@"
}

# callgrind_total BASE: the instructions callgrind counted in BASE.out.
callgrind_total() {
  sed -n 's/^totals: //p' "$1.out" 2>/dev/null
}

# stop_server PID: stops it; fails if it had died on its own or ignores
# SIGTERM (it gets SIGKILL after 10 s then).
stop_server() {
  local pid=$1
  kill -TERM "$pid" 2>/dev/null
  ( sleep 10; kill -KILL "$pid" 2>/dev/null ) &
  local guard=$!
  wait "$pid" 2>/dev/null
  local status=$?
  kill "$guard" 2>/dev/null
  wait "$guard" 2>/dev/null
  [ $status -eq 143 ] ||
    { echo "server $pid exited with status $status" >>"$LOG"; return 1; }
}

# True while the process runs (not a zombie).
alive() {
  local state
  state=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' \
    "/proc/$1/status" 2>/dev/null)
  [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

# Percent of all CPU time in use over the next second: anything else
# running makes the timed figures noisy on a machine this small.
cpu_busy() {
  local a b
  read -ra a </proc/stat; sleep 1; read -ra b </proc/stat
  local total=0 i
  for i in 1 2 3 4 5 6 7 8; do total=$((total + b[i] - a[i])); done
  local idle=$((b[4] - a[4] + b[5] - a[5]))
  echo $(( total > 0 ? 100 * (total - idle) / total : 0 ))
}

# One line on how loaded the machine is now.
machine_load() {
  local busy
  busy=$(cpu_busy)
  echo "CPU in use $1: ${busy}%, load average" \
    "$(cut -d' ' -f1-3 /proc/loadavg)"
  if [ "$busy" -gt 10 ]; then
    echo "warning: the machine is busy; timed figures will be noisy"
  fi
}

machine() {
  echo "date: $(date '+%Y-%m-%d %H:%M:%S %Z')"
  echo "machine: $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' \
    /proc/cpuinfo | head -1), Linux $(uname -r)"
  echo "open files: soft $(ulimit -Sn), hard $(ulimit -Hn)"
}

# The TLS echo servers, into TLS_SERVERS (the first the reference of the
# TLS rows), their certificate and key left as {cert} and {key}: the plain
# OpenSSL echo on libev with memory BIOs and with SSL on the socket
# (openssl_echo.c), tapio's C and Lua echoes with a server context, and
# an asyncio.Protocol echo over ssl on uvloop and on asyncio's own loop,
# where the machine has them. $1: the build, $2: bench/.
tls_servers() {
  local build=$1 here=$2 bin=$1/bench
  TLS_SERVERS=(
    "openssl_mem $bin/openssl_echo {port} {cert} {key} mem {stats}"
    "openssl_socket $bin/openssl_echo {port} {cert} {key} socket {stats}"
    "tapio_tls $bin/tapio_echo {port} {stats} {cert} {key}"
  )
  [ -x "$build/tapio" ] && TLS_SERVERS+=(
    "tapio_tls_lua $build/tapio $here/tapio_tls_echo.lua {port} {cert} {key}")
  /usr/bin/python3 -c 'import uvloop' 2>/dev/null && TLS_SERVERS+=(
    "uvloop_tls /usr/bin/python3 $here/py_tls_echo.py {port} {cert} {key} uvloop")
  [ -x /usr/bin/python3 ] && TLS_SERVERS+=(
    "asyncio_tls /usr/bin/python3 $here/py_tls_echo.py {port} {cert} {key} asyncio")
  return 0
}

# The TLS rows' certificates, made once under the build by the tests'
# script: sets CERTS (their directory), and CERT and KEY to the ECDSA
# P-256 pair, or to the RSA 2048 one if $2 is rsa. $1: the build.
tls_certs() {
  local spec
  spec=$(cd "$(dirname "${BASH_SOURCE[0]}")/../spec" && pwd)
  CERTS=$(sh "$spec/tls/make_certs.sh" "$1/tls-bench-certs") || return 1
  CERT=$CERTS/server.pem KEY=$CERTS/server.key
  [ "${2:-}" = rsa ] && CERT=$CERTS/rsa.pem KEY=$CERTS/rsa.key
  return 0
}
