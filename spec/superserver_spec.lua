-- examples/superserver.lua as a program, in front of real children (cat,
-- tr, wc -c, head, a Python writer of 8 MiB, children that ignore
-- SIGTERM) and real clients (tapio's streams, Python sockets): bytes both
-- ways, half-closes both ways, backpressure against a slow reader, a
-- child that exits early, --max, the idle timeout, SIGTERM and SIGINT
-- with children running, a client that resets, one that reads nothing.
-- Each waits on what the server prints on stderr, never on time.
local helper = require "spec.helper"
local tapio = helper.tapio

local run = helper.run
local PYTHON = "/usr/bin/python3"
local MIB = 1024 * 1024

local ALL = {}
for i = 0, 255 do
  ALL[#ALL + 1] = string.char(i)
end
ALL = table.concat(ALL)

-- Inside a task: the server running program (a list: PROGRAM ARGS...)
-- with options (a list); { p = its Process, port = its port, log = the
-- lines it printed on stderr so far }.
local function start(options, program)
  local argv = { "examples/superserver.lua" }
  table.move(options, 1, #options, 2, argv)
  argv[#argv + 1] = "0"
  argv[#argv + 1] = "--"
  table.move(program, 1, #program, #argv + 1, argv)
  local p = tapio.create_subprocess_exec(helper.HOST, argv,
    { stdout = tapio.PIPE, stderr = tapio.PIPE })
  local line = p.stdout:readline()
  local port = tonumber(line:match("^listening on 127%.0%.0%.1:(%d+)\n$"))
  assert(port, "the server printed " .. line)
  return { p = p, port = port, log = {} }
end

-- Inside a task: reads the server's stderr up to a line that matches
-- pattern; returns its captures.
local function expect(srv, pattern)
  while true do
    local line = srv.p.stderr:readline()
    if line == "" then
      error("the server's stderr ended before " .. pattern .. ":\n"
            .. table.concat(srv.log, "\n"))
    end
    line = line:gsub("\n$", "")
    srv.log[#srv.log + 1] = line
    local found = { line:match(pattern) }
    if found[1] then
      return table.unpack(found)
    end
  end
end

-- Inside a task: SIGTERM to the server (unless sig is false: it was
-- sent); the lines it printed on stderr to its end, which must be exit 0.
local function stop(srv, sig)
  if sig ~= false then
    srv.p:send_signal("SIGTERM")
  end
  for line in srv.p.stderr:read():gmatch("[^\n]+") do
    srv.log[#srv.log + 1] = line
  end
  assert.are.equal(0, srv.p:wait(), table.concat(srv.log, "\n"))
  return srv.log
end

-- Inside a task: sends data, then the end, and returns all the reply.
local function exchange(port, data)
  local reader, writer = tapio.open_connection("127.0.0.1", port)
  writer:write(data)
  writer:write_eof()
  local reply = reader:read()
  writer:close()
  return reply
end

-- Inside a task: a client that has seen its child echo a byte (so that
-- child runs); its reader and writer.
local function echoed(port)
  local reader, writer = tapio.open_connection("127.0.0.1", port)
  writer:write("x")
  assert.are.equal("x", reader:readexactly(1))
  return reader, writer
end

local function count(log, pattern)
  local n = 0
  for _, line in ipairs(log) do
    if line:match(pattern) then
      n = n + 1
    end
  end
  return n
end

-- Inside a task: the lines a Python client (source, with PORT set)
-- printed; it must exit with 0.
local function python(source, port)
  return helper.output_lines(tapio.create_subprocess_exec(PYTHON,
    { "-c", "PORT = " .. port .. "\n" .. source }, { stdout = tapio.PIPE }))
end

-- The Python source of a client that connects, ends its side with
-- shut, reads n bytes, then resets the connection (SO_LINGER 0) once a
-- line comes on its stdin.
local function resetter(n, shut)
  return ([[
import socket, struct, sys
s = socket.create_connection(("127.0.0.1", PORT))
if %s:
    s.shutdown(socket.SHUT_WR)
got = len(s.recv(%d, socket.MSG_WAITALL))
print("READ", got, flush=True)
sys.stdin.readline()
s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
s.close()
print("RESET")
]]):format(shut and "True" or "False", n)
end

-- Inside a task: a resetter(n, shut) of srv, reset once the server has
-- started its child; returns the child's pid.
local function reset(srv, n, shut)
  local p = tapio.create_subprocess_exec(PYTHON,
    { "-c", "PORT = " .. srv.port .. "\n" .. resetter(n, shut) },
    { stdin = tapio.PIPE, stdout = tapio.PIPE })
  assert.are.equal("READ " .. n .. "\n", p.stdout:readline())
  local pid = expect(srv, "^superserver: (%d+): started")
  p.stdin:write("\n")
  assert.are.same({ "RESET" }, helper.output_lines(p))
  return pid
end

describe("examples/superserver.lua", function()
  it("relays every byte value and 1 MiB both ways through cat, over TCP "
     .. "and --unix, and logs each exit with its pid", function()
    run(function()
      local path = os.tmpname()
      os.remove(path)
      local srv = start({ "--unix", path }, { "cat" })
      local big = ALL:rep(4 * 1024)
      local exited = "^superserver: (%d+): exited with 0; "
      assert.is_true(exchange(srv.port, ALL) == ALL, "the bytes differ")
      local pids = { expect(srv, exited .. "256 bytes up, 256 down") }
      assert.is_true(exchange(srv.port, big) == big, "the MiB differs")
      pids[2] = expect(srv, exited .. MIB .. " bytes up, " .. MIB .. " down")
      local reader, writer = tapio.open_unix_connection(path)
      writer:write("over unix\n")
      writer:write_eof()
      assert.are.equal("over unix\n", reader:read())
      writer:close()
      pids[3] = expect(srv, exited .. "10 bytes up, 10 down")
      local log = stop(srv)
      os.remove(path)
      for _, pid in ipairs(pids) do
        assert.are.equal(1, count(log, "^superserver: " .. pid
                                       .. ": started for "))
      end
      assert.are.equal("superserver: stopped", log[#log])
    end)
  end)

  it("runs a program with arguments: sh -c 'tr a-z A-Z'", function()
    run(function()
      local srv = start({}, { "sh", "-c", "tr a-z A-Z" })
      assert.are.equal("HELLO, INETD\n", exchange(srv.port, "hello, inetd\n"))
      stop(srv)
    end)
  end)

  it("closes the child's stdin at the client's end and passes the end of "
     .. "its stdout on: wc -c answers a half-closed client", function()
    run(function()
      local srv = start({}, { "wc", "-c" })
      assert.are.equal("100000\n", exchange(srv.port, ("x"):rep(100000)))
      stop(srv)
    end)
  end)

  it("passes the end of the child's stdout on while its stdin stays open",
     function()
    run(function()
      local srv = start({}, { "sh", "-c", "head -c 3; exec >&-; cat >&2" })
      local reader, writer = tapio.open_connection("127.0.0.1", srv.port)
      writer:write("abc")
      assert.are.equal("abc", reader:read()) -- the end, the child running
      writer:write("then stderr\n")
      writer:write_eof()
      local pid = expect(srv, "^%[(%d+)%] then stderr$")
      expect(srv, "^superserver: " .. pid .. ": exited with 0; 15 bytes up, "
                  .. "3 down")
      writer:close()
      stop(srv)
    end)
  end)

  it("prefixes each line of the child's stderr with its pid", function()
    run(function()
      local srv = start({}, { "sh", "-c",
                              "echo oops >&2; seq 20000 >&2; echo out" })
      -- (the server's stderr is read meanwhile: its writes there block)
      local reply = tapio.create_task(exchange, srv.port, "")
      local pid = expect(srv, "^superserver: (%d+): started")
      assert.are.equal(pid, expect(srv, "^%[(%d+)%] oops$"))
      -- all of it, also what was left in the pipe at the exit
      assert.are.equal(pid, expect(srv, "^%[(%d+)%] 20000$"))
      expect(srv, "^superserver: " .. pid .. ": exited with 0")
      assert.are.equal("out\n", reply:await())
      stop(srv)
    end)
  end)

  it("holds a slow client's 8 MiB to a bounded buffer, the writer waiting",
     function()
    run(function()
      local srv = start({}, { PYTHON, "-c",
        "import sys; sys.stdout.buffer.write(bytes(range(256)) * 32768)" })
      -- reads 16 KiB at a time with a pause: the child writes faster
      assert.are.same({ "READ 8388608 same" }, python([[
import socket, time
s = socket.create_connection(("127.0.0.1", PORT))
s.shutdown(socket.SHUT_WR)
parts = []
while True:
    b = s.recv(16384)
    if not b:
        break
    parts.append(b)
    time.sleep(0.0005)
data = b"".join(parts)
same = data == bytes(range(256)) * 32768
print("READ", len(data), "same" if same else "differs")
]], srv.port))
      local held = tonumber(expect(srv,
        "exited with 0; 0 bytes up, 8388608 down, at most (%d+) held$"))
      assert(held <= 256 * 1024, "held " .. held)
      stop(srv)
    end)
  end)

  it("ends a connection whose child exits while the client still sends",
     function()
    run(function()
      local srv = start({}, { "head", "-c", "5" })
      -- The server stops reading the client with the child gone, and
      -- closes: a reset, which the kernel reports after the bytes and the
      -- end that came before it.
      assert.are.same({ "GOT b'abcde'", "SEND failed" }, python([[
import socket, threading
s = socket.create_connection(("127.0.0.1", PORT))
failed = threading.Event()
def send():
    try:
        while True:
            s.sendall(b"abcdefgh" * 8192)
    except OSError:
        failed.set()
threading.Thread(target=send, daemon=True).start()
data = b""
try:
    while True:
        b = s.recv(65536)
        if not b:
            break
        data += b
except OSError:
    pass
print("GOT", data)
print("SEND", "failed" if failed.wait(5) else "went on")
]], srv.port))
      expect(srv, "^superserver: %d+: exited with 0; %d+ bytes up, 5 down")
      -- and serves the next one
      assert.are.equal("hello", exchange(srv.port, "hello, world"))
      stop(srv)
    end)
  end)

  it("refuses a connection over --max and serves again once a child has "
     .. "ended", function()
    run(function()
      local srv = start({ "--max", "1" }, { "cat" })
      local reader, writer = echoed(srv.port)
      local refused, refused_writer = tapio.open_connection("127.0.0.1",
                                                            srv.port)
      assert.are.equal("", refused:read())
      refused_writer:close()
      expect(srv, "^superserver: refused %('127%.0%.0%.1', %d+%): 1 "
                  .. "children running$")
      writer:write_eof()
      assert.are.equal("", reader:read())
      writer:close()
      expect(srv, "exited with 0; 1 bytes up, 1 down")
      assert.are.equal("served", exchange(srv.port, "served"))
      stop(srv)
    end)
  end)

  it("stops an idle child with SIGTERM, and with SIGKILL after the grace "
     .. "one that ignores it; the client sees the end", function()
    run(function()
      local srv = start({ "--timeout", "0.2", "--grace", "0.2" },
        { "sh", "-c", 'trap "" TERM; exec cat' })
      local t0 = tapio.get_running_loop():time()
      local reader, writer = echoed(srv.port)
      assert.are.equal("", reader:read())
      local elapsed = tapio.get_running_loop():time() - t0
      writer:close()
      expect(srv, "^superserver: %d+: idle for 0%.2 s: stopping$")
      expect(srv, "^superserver: %d+: killed by SIGKILL; 1 bytes up")
      assert(elapsed >= 0.4 and elapsed < 1.5, elapsed)
      stop(srv)
    end)
  end)

  it("stops on SIGTERM: no more connections, every child terminated and "
     .. "reaped, exit 0", function()
    run(function()
      local srv = start({}, { "cat" })
      local clients = {}
      for i = 1, 3 do
        clients[i] = { echoed(srv.port) }
      end
      local log = stop(srv)
      for _, c in ipairs(clients) do
        assert.are.equal("", c[1]:read())
        c[2]:close()
      end
      assert.are.equal(3, count(log, "^superserver: %d+: killed by SIGTERM"))
      assert.are.equal("superserver: stopped", log[#log])
    end)
  end)

  it("drops a client that reads nothing after the grace, at the idle "
     .. "timeout and at a stop", function()
    run(function()
      -- yes fills the connection: the server waits in drain
      local srv = start({ "--timeout", "0.2", "--grace", "0.2" }, { "yes" })
      local reader, writer = tapio.open_connection("127.0.0.1", srv.port)
      assert.are.equal("y\n", reader:readexactly(2))
      local pid = expect(srv, "^superserver: (%d+): idle for 0%.2 s")
      expect(srv, "^superserver: " .. pid .. ": killed by SIGTERM; 0 bytes up")
      writer:close()
      stop(srv)
      srv = start({ "--grace", "0.2" }, { "yes" })
      reader, writer = tapio.open_connection("127.0.0.1", srv.port)
      assert.are.equal("y\n", reader:readexactly(2))
      local log = stop(srv)
      writer:close()
      assert.are.equal(1, count(log, "^superserver: %d+: killed by SIGTERM"))
      assert.are.equal("superserver: stopped", log[#log])
    end)
  end)

  it("stops on SIGINT, killing after the grace a child that ignores "
     .. "SIGTERM", function()
    run(function()
      local srv = start({ "--grace", "0.2" },
        { "sh", "-c", 'trap "" TERM; exec cat' })
      local reader, writer = echoed(srv.port)
      srv.p:send_signal("SIGINT")
      expect(srv, "^superserver: stopping$")
      -- the child still runs (the grace), the listener is gone
      local ok, err = pcall(tapio.open_connection, "127.0.0.1", srv.port)
      assert.is_false(ok)
      assert.are.equal("ECONNREFUSED", err.name)
      local log = stop(srv, false)
      assert.are.equal("", reader:read())
      writer:close()
      assert.are.equal(1, count(log, "^superserver: %d+: killed by SIGKILL"))
    end)
  end)

  it("terminates the child of a client that resets, and serves on",
     function()
    run(function()
      -- writing to a client that has ended its side: the reset comes
      -- where the server writes
      local srv = start({}, { "yes" })
      local pid = reset(srv, 2, true)
      expect(srv, "^superserver: " .. pid .. ": client: ")
      expect(srv, "^superserver: " .. pid .. ": killed by SIGTERM; 0 bytes up")
      local reader, writer = tapio.open_connection("127.0.0.1", srv.port)
      assert.are.equal("y\ny\n", reader:readexactly(4))
      writer:close()
      stop(srv)
      srv = start({}, { "sleep", "10" }) -- neither reading nor writing
      pid = reset(srv, 0)
      expect(srv, "^superserver: " .. pid .. ": client: .*ECONNRESET")
      expect(srv, "^superserver: " .. pid .. ": killed by SIGTERM; 0 bytes up")
      stop(srv)
    end)
  end)
end)
