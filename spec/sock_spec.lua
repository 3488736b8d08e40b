-- loop:sock_recv, sock_recvfrom, sock_recv_into, sock_recvfrom_into,
-- sock_sendall, sock_sendto, sock_connect, sock_accept and sock_sendfile (asyncio's "working with socket objects
-- directly") on descriptors, with tapio.socket, bind, listen and
-- getsockname; Python's socket module is the peer where it defines the
-- behaviour.
local helper = require "spec.helper"
local tapio = helper.tapio
local run = helper.run

local PY = "/usr/bin/python3"

-- A connected pair of non-blocking stream sockets over TCP on 127.0.0.1:
-- the listener, the client and the accepted one.
local function tcp_pair(loop)
  local l = assert(tapio.socket(tapio.AF_INET, tapio.SOCK_STREAM))
  assert(tapio.bind(l, { "127.0.0.1", 0 }))
  assert(tapio.listen(l))
  local c = assert(tapio.socket(tapio.AF_INET, tapio.SOCK_STREAM))
  local accepting = loop:create_task(function()
    return loop:sock_accept(l)
  end)
  loop:sock_connect(c, tapio.getsockname(l))
  local s = accepting:await()
  return l, c, s
end

local function udp(loop)
  local fd = assert(tapio.socket(tapio.AF_INET, tapio.SOCK_DGRAM))
  assert(tapio.bind(fd, { "127.0.0.1", 0 }))
  return fd, tapio.getsockname(fd), loop
end

-- A connected pair of non-blocking Unix stream sockets (their buffers
-- hold a few hundred KiB: a file of 2 MiB waits for the reader).
-- "kept" sent from b, and a seen readable by a poll of its own: a watch
-- a cancelled call left behind would take the bytes first.
local function sent_and_readable(loop, a, b)
  tapio.send(b, "kept")
  local readable = loop:create_future()
  loop:add_reader(a, function()
    loop:remove_reader(a)
    readable:set_result(true)
  end)
  readable:await()
end

local function unix_pair(loop)
  local path = os.tmpname()
  os.remove(path)
  local l = helper.unix_listener(path)
  local c = assert(tapio.socket(tapio.AF_UNIX, tapio.SOCK_STREAM))
  local accepting = loop:create_task(function()
    return loop:sock_accept(l)
  end)
  loop:sock_connect(c, path)
  local s = accepting:await()
  tapio.close_fd(l)
  os.remove(path)
  return c, s
end

local data_file = helper.data_file

-- What fd receives until the end of the stream.
local function recv_all(loop, fd)
  local got = {}
  while true do
    local chunk = loop:sock_recv(fd, 1048576)
    if chunk == "" then
      return table.concat(got)
    end
    got[#got + 1] = chunk
  end
end

describe("sock_* operations", function()
  it("receive what is there at once, then wait for more, then the end",
     function()
    run(function(loop)
      local a, b = tapio.socketpair()
      tapio.send(b, "ready")
      assert.are.equal("ready", loop:sock_recv(a, 100))
      local later = loop:create_task(function()
        return loop:sock_recv(a, 100)
      end)
      tapio.sleep(0)
      assert.is_false(later:done())
      tapio.send(b, "later")
      assert.are.equal("later", later:await())
      tapio.close_fd(b)
      assert.are.equal("", loop:sock_recv(a, 100))
      tapio.close_fd(a)
    end)
  end)

  it("give \"\" at once for sock_recv(fd, 0), taking nothing, as "
     .. "asyncio's (Python's recv(0))", function()
    run(function(loop)
      local a, b = tapio.socketpair()
      local t0 = loop:time()
      local zero = loop:create_task(function()
        return loop:sock_recv(a, 0)
      end)
      local timer = loop:call_later(1, function() tapio.send(b, "late") end)
      assert.are.equal("", zero:await()) -- not waiting for "late"
      assert.is_true(loop:time() - t0 < 1)
      timer:cancel()
      tapio.send(b, "kept")
      assert.are.equal("", loop:sock_recv(a, 0))
      assert.are.equal("kept", loop:sock_recv(a, 100))
      tapio.close_fd(a)
      tapio.close_fd(b)
    end)
  end)

  it("follow the async rule: a future outside a task", function()
    local data = helper.in_callback(function(loop, finish)
      local a, b = tapio.socketpair()
      local fut = loop:sock_recv(a, 10)
      assert.are.equal("tapio.Future", tostring(fut):match("^tapio%.Future"))
      fut:add_done_callback(function(f)
        tapio.close_fd(a)
        tapio.close_fd(b)
        finish(f:result())
      end)
      tapio.send(b, "cb")
    end)
    assert.are.equal("cb", data)
  end)

  it("send all of a large buffer while the peer reads, in order",
     function()
    run(function(loop)
      local l, c, s = tcp_pair(loop)
      local parts = {}
      for i = 1, 4096 do
        parts[i] = ("%07d|"):format(i)
      end
      local data = table.concat(parts):rep(64) -- 2 MiB
      local sending = loop:create_task(function()
        return loop:sock_sendall(c, data)
      end)
      local got = {}
      local n = 0
      while n < #data do
        local chunk = loop:sock_recv(s, 65536)
        assert.is_true(#chunk > 0)
        got[#got + 1] = chunk
        n = n + #chunk
      end
      sending:await()
      assert.is_true(table.concat(got) == data)
      tapio.close_fd(c)
      tapio.close_fd(s)
      tapio.close_fd(l)
    end)
  end)

  it("fail a sendall to a peer gone with EPIPE or ECONNRESET and the count, "
     .. "no SIGPIPE", function()
    run(function(loop)
      local a, b = tapio.socketpair()
      tapio.close_fd(b)
      local ok, err = pcall(loop.sock_sendall, loop, a, "x")
      assert.is_false(ok)
      assert.are.equal("EPIPE", err.name)
      assert.are.equal(0, err.count)
      tapio.close_fd(a)
    end)
  end)

  it("send and receive datagrams with their addresses", function()
    run(function(loop)
      local a, a_addr = udp(loop)
      local b, b_addr = udp(loop)
      local receiving = loop:create_task(function()
        return loop:sock_recvfrom(b, 100)
      end)
      tapio.sleep(0)
      assert.are.equal(4, loop:sock_sendto(a, "ping", b_addr))
      local data, from = receiving:await()
      assert.are.equal("ping", data)
      assert.are.equal(a_addr, from)
      assert.are.equal(4, loop:sock_sendto(b, "pong", from))
      data, from = loop:sock_recvfrom(a, 100)
      assert.are.equal("pong", data)
      assert.are.equal(b_addr, from)
      tapio.close_fd(a)
      tapio.close_fd(b)
    end)
  end)

  it("give each of two tasks waiting on one UDP socket a datagram, in "
     .. "order (asyncio's second waiter silences the first)", function()
    run(function(loop)
      local a = udp(loop)
      local b, b_addr = udp(loop)
      local t1 = loop:create_task(function() return loop:sock_recv(b, 10) end)
      local t2 = loop:create_task(function() return loop:sock_recv(b, 10) end)
      tapio.sleep(0)
      loop:sock_sendto(a, "one", b_addr)
      loop:sock_sendto(a, "two", b_addr)
      assert.are.equal("one", t1:await())
      assert.are.equal("two", t2:await())
      tapio.close_fd(a)
      tapio.close_fd(b)
    end)
  end)

  it("lose no byte when a waiting receive is cancelled (bpo-30064), and "
     .. "leave no anchor", function()
    run(function(loop)
      local a, b = tapio.socketpair()
      local refs = loop:_debug().refs
      local waiting = loop:create_task(function()
        return loop:sock_recv(a, 100)
      end)
      tapio.sleep(0)
      waiting:cancel()
      tapio.sleep(0)
      assert.is_true(waiting:cancelled())
      assert.are.equal(refs, loop:_debug().refs)
      sent_and_readable(loop, a, b)
      assert.are.equal("kept", loop:sock_recv(a, 100))
      tapio.close_fd(a)
      tapio.close_fd(b)
    end)
  end)

  it("fail a connect to a closed port with ECONNREFUSED", function()
    run(function(loop)
      local l = assert(tapio.socket(tapio.AF_INET, tapio.SOCK_STREAM))
      assert(tapio.bind(l, { "127.0.0.1", 0 }))
      local addr = tapio.getsockname(l)
      tapio.close_fd(l) -- nobody listens there now
      local c = assert(tapio.socket(tapio.AF_INET, tapio.SOCK_STREAM))
      local ok, err = pcall(loop.sock_connect, loop, c, addr)
      assert.is_false(ok)
      assert.are.equal(tapio.ECONNREFUSED, err.code)
      tapio.close_fd(c)
    end)
  end)

  it("wait for a connect the listener does not answer (its backlog is "
     .. "full), until a timeout cancels it", function()
    run(function(loop)
      local l = assert(tapio.socket(tapio.AF_INET, tapio.SOCK_STREAM))
      assert(tapio.bind(l, { "127.0.0.1", 0 }))
      assert(tapio.listen(l, 0)) -- Linux queues backlog + 1: one
      local addr = tapio.getsockname(l)
      local queued = assert(tapio.socket(tapio.AF_INET, tapio.SOCK_STREAM))
      loop:sock_connect(queued, addr)
      local c = assert(tapio.socket(tapio.AF_INET, tapio.SOCK_STREAM))
      local ok, err = pcall(tapio.timeout, 0.2, loop.sock_connect, loop, c,
                            addr)
      assert.is_false(ok) -- it said connected while the SYN went unanswered
      assert.are.equal(tapio.ETIMEDOUT, err.code)
      for _, fd in ipairs { c, queued, l } do
        tapio.close_fd(fd)
      end
    end)
  end)

  it("accept Python's connection and echo to it", function()
    run(function(loop)
      local l = assert(tapio.socket(tapio.AF_INET, tapio.SOCK_STREAM))
      assert(tapio.bind(l, { "127.0.0.1", 0 }))
      assert(tapio.listen(l, 5))
      local port = tapio.getsockname(l).port
      local code = ([[
import socket
s = socket.create_connection(("127.0.0.1", %d))
s.sendall(b"from python")
s.shutdown(socket.SHUT_WR)
print(s.getsockname()[1], s.makefile("rb").read().decode())
]]):format(port)
      local proc = tapio.create_subprocess_exec(PY, { "-c", code },
        { stdout = tapio.PIPE })
      local fd, peer = loop:sock_accept(l)
      assert.are.equal("127.0.0.1", peer.host)
      local got = {}
      while true do
        local chunk = loop:sock_recv(fd, 100)
        if chunk == "" then break end
        got[#got + 1] = chunk
      end
      loop:sock_sendall(fd, "echo: " .. table.concat(got))
      tapio.close_fd(fd)
      local out = proc:communicate()
      assert.are.equal(0, proc.returncode)
      assert.are.equal(peer.port .. " echo: from python\n", out)
      tapio.close_fd(l)
    end)
  end)

  it("connect to Python's listener and hear it", function()
    run(function(loop)
      local code = [[
import socket, sys
l = socket.socket()
l.bind(("127.0.0.1", 0))
l.listen()
print(l.getsockname()[1], flush=True)
c, _ = l.accept()
c.sendall(c.recv(100).upper())
c.close()
]]
      local proc = tapio.create_subprocess_exec(PY, { "-c", code },
        { stdout = tapio.PIPE })
      local port = tonumber(proc.stdout:readline())
      local c = assert(tapio.socket(tapio.AF_INET, tapio.SOCK_STREAM))
      loop:sock_connect(c, { "127.0.0.1", port })
      loop:sock_sendall(c, "shout")
      assert.are.equal("SHOUT", loop:sock_recv(c, 100))
      assert.are.equal("", loop:sock_recv(c, 100))
      tapio.close_fd(c)
      proc:wait()
      assert.are.equal(0, proc.returncode)
    end)
  end)

  it("keep their descriptor: while one waits on it, a transport or server "
     .. "given it as 'sock' is refused (EBUSY), and it stays open",
     function()
    run(function(loop)
      local a, b = tapio.socketpair()
      local l = assert(tapio.socket(tapio.AF_INET, tapio.SOCK_STREAM))
      assert(tapio.bind(l, { "127.0.0.1", 0 }))
      assert(tapio.listen(l))
      local receiving = loop:create_task(function()
        return loop:sock_recv(a, 10)
      end)
      local accepting = loop:create_task(function()
        return loop:sock_accept(l)
      end)
      tapio.sleep(0) -- both wait now
      local factory = function() return {} end
      local function refused(name, fn, ...)
        local err = helper.fails(fn, loop, ...)
        assert.are.equal("EBUSY", err.name)
        assert.are.equal(name .. ": 'sock' is in use by a pending sock_* "
                         .. "call of the loop", err.message)
      end
      refused("connect_accepted_socket", loop.connect_accepted_socket,
              factory, a)
      refused("create_connection", loop.create_connection, factory, nil,
              nil, { sock = a })
      refused("create_server", loop.create_server, factory, nil, nil,
              { sock = l })
      tapio.send(b, "mine") -- the waiting calls get what comes
      assert.are.equal("mine", receiving:await())
      local c = assert(tapio.socket(tapio.AF_INET, tapio.SOCK_STREAM))
      loop:sock_connect(c, tapio.getsockname(l))
      local s = accepting:await()
      -- ended: the descriptor may become a transport's now
      loop:connect_accepted_socket(factory, a):close()
      for _, fd in ipairs({ b, l, c, s }) do
        assert.is_true(tapio.close_fd(fd))
      end
    end)
  end)

  it("refuse a descriptor a transport owns, and a blocking one for "
     .. "connect and accept", function()
    run(function(loop)
      local l, c, s = tcp_pair(loop)
      local t = loop:connect_accepted_socket(function()
        return {}
      end, s)
      assert.has_error(function()
        loop:sock_recv(s, 10)
      end, "tapio: loop:sock_recv: bad argument #1 'fd' (used by a "
        .. "transport or server of the loop)")
      t:close()
      local a, b = tapio.socketpair() -- blocking ones
      assert.has_error(function()
        loop:sock_accept(a)
      end, "tapio: loop:sock_accept: bad argument #1 'fd' (a blocking "
        .. "socket: asyncio requires a non-blocking one (tapio.socket "
        .. "makes one))")
      assert.has_error(function()
        loop:sock_recv(a, -1)
      end)
      tapio.send(b, "fine") -- recv takes a blocking one
      assert.are.equal("fine", loop:sock_recv(a, 10))
      tapio.close_fd(a)
      tapio.close_fd(b)
      tapio.close_fd(c)
      tapio.close_fd(l)
    end)
  end)

  it("end what is pending with ECANCELED when the loop closes, leaving "
     .. "no anchor", function()
    local loop = tapio.new_loop()
    local a, b = tapio.socketpair()
    local refs = loop:_debug().refs
    local f1 = loop:sock_recv(a, 10)
    local f2 = loop:sock_recv(a, 10)
    loop:run_once(false)
    assert.is_true(loop:_debug().refs > refs)
    loop:close()
    assert.are.equal("ECANCELED", f1:exception().name)
    assert.are.equal("ECANCELED", f2:exception().name)
    tapio.close_fd(a)
    tapio.close_fd(b)
  end)

  it("let a completion's callback close the socket: the next one waiting "
     .. "fails with EBADF", function()
    run(function(loop)
      local a, b = tapio.socketpair()
      local first
      loop:call_soon(function() -- outside a task: a future
        first = loop:sock_recv(a, 1)
        first:add_done_callback(function() tapio.close_fd(a) end)
      end)
      tapio.sleep(0)
      local second = loop:create_task(function()
        return loop:sock_recv(a, 1)
      end)
      tapio.sleep(0)
      tapio.send(b, "x")
      local ok, err = pcall(second.await, second)
      assert.are.equal("x", first:result())
      assert.is_false(ok)
      assert.are.equal("EBADF", err.name)
      tapio.close_fd(b)
    end)
  end)

  it("make sockets: socket, bind, listen, getsockname", function()
    local fd = assert(tapio.socket(tapio.AF_INET6, tapio.SOCK_DGRAM))
    local ok, err = tapio.bind(fd, { "::1", 0 })
    if ok then
      local addr = tapio.getsockname(fd)
      assert.are.equal("::1", addr.host)
      assert.is_true(addr.port > 0)
    else
      assert.are.equal("EADDRNOTAVAIL", err.name) -- no IPv6 here
    end
    tapio.close_fd(fd)
    local u = assert(tapio.socket(tapio.AF_UNIX, tapio.SOCK_STREAM))
    assert.are.equal("", tapio.getsockname(u))
    tapio.close_fd(u)
    assert.has_error(function()
      tapio.socket(99, tapio.SOCK_STREAM)
    end, "tapio: socket: bad argument #1 'family' (tapio.AF_INET, AF_INET6 "
      .. "or AF_UNIX expected)")
    local _, e = tapio.listen(9999)
    assert.are.equal("EBADF", e.name)
  end)

  it("have the small helpers word their failures as tapio's, naming the "
     .. "function and the descriptor", function()
    local function fails(name, code, message, ...)
      local ok, err = tapio[name](...)
      assert.is_nil(ok)
      assert.are.equal(code, err.name)
      assert.are.equal("tapio: " .. name .. ": " .. message, err.message)
    end
    local not_open = "bad argument #1 'fd' (not an open descriptor)"
    local a, b = tapio.socketpair()
    tapio.close_fd(b) -- a closed one
    for _, fd in ipairs({ b, 0x7ffff000 }) do -- and one never open
      fails("recv", "EBADF", not_open, fd, 10)
      fails("send", "EBADF", not_open, fd, "x")
      fails("close_fd", "EBADF", not_open, fd)
      fails("bind", "EBADF", not_open, fd, { "127.0.0.1", 0 })
      fails("listen", "EBADF", not_open, fd)
      fails("getsockname", "EBADF", not_open, fd)
    end
    local r, w = tapio.pipe() -- no socket
    local not_socket = "bad argument #1 'fd' (not a socket)"
    fails("recv", "ENOTSOCK", not_socket, r, 10)
    fails("send", "ENOTSOCK", not_socket, w, "x")
    fails("getsockname", "ENOTSOCK", not_socket, r)
    fails("send", "EPIPE", "broken pipe", a, "x") -- its peer closed
    local c, d = tapio.socketpair()
    fails("recv", "EAGAIN", "resource temporarily unavailable", c, 10)
    for _, fd in ipairs({ a, r, w, c, d }) do
      tapio.close_fd(fd)
    end
  end)
end)

-- Runs fn(loop) in a task that a timer cancels in the loop turn where
-- the call fn makes completes, after its completion: the call finds
-- what it waits for at its first try (data there, a connection queued,
-- room to send), which the core makes from the loop in the next turn,
-- and the timer of call_later(0) set then runs in the turn after, behind
-- it. Returns the task, done.
local function cancel_at_completion(loop, fn)
  local t = loop:create_task(fn, loop)
  loop:call_soon(function() -- after t's first step: t has made its call
    loop:call_later(0, function()
      t:cancel()
    end)
  end)
  pcall(t.await, t)
  return t
end

describe("sock_* calls cancelled in the turn they complete", function()
  it("give what they brought (bytes received, a socket accepted, bytes "
     .. "sent): the task has it before the cancellation", function()
    run(function(loop)
      local a, b = tapio.socketpair()
      tapio.send(b, "kept")
      local t = cancel_at_completion(loop, function()
        return loop:sock_recv(a, 100)
      end)
      assert.are.equal("kept", t:result())

      local buf = tapio.buffer(8)
      tapio.send(b, "into")
      t = cancel_at_completion(loop, function()
        return loop:sock_recv_into(a, buf)
      end)
      assert.are.equal(4, t:result())
      assert.are.equal("into", buf:sub(1, 4))

      t = cancel_at_completion(loop, function()
        return loop:sock_sendall(a, "all of it")
      end)
      assert.is_false(t:cancelled()) -- its caller knows it all went
      assert.are.equal("all of it", loop:sock_recv(b, 100))
      tapio.close_fd(a)
      tapio.close_fd(b)

      local u1, u1_addr = udp(loop)
      local u2, u2_addr = udp(loop)
      t = cancel_at_completion(loop, function()
        return loop:sock_sendto(u1, "dgram", u2_addr)
      end)
      assert.are.equal(5, t:result())
      t = cancel_at_completion(loop, function()
        return loop:sock_recvfrom(u2, 100)
      end)
      assert.are.same({ "dgram", u1_addr }, { t:result() })
      loop:sock_sendto(u1, "again", u2_addr)
      t = cancel_at_completion(loop, function()
        return loop:sock_recvfrom_into(u2, buf)
      end)
      assert.are.same({ 5, u1_addr }, { t:result() })
      assert.are.equal("again", buf:sub(1, 5))
      tapio.close_fd(u1)
      tapio.close_fd(u2)

      local path = os.tmpname()
      os.remove(path)
      local l = helper.unix_listener(path)
      local c = assert(tapio.socket(tapio.AF_UNIX, tapio.SOCK_STREAM))
      t = cancel_at_completion(loop, function()
        return loop:sock_connect(c, path)
      end)
      assert.is_false(t:cancelled())
      t = cancel_at_completion(loop, function()
        return loop:sock_accept(l)
      end)
      local s = t:result() -- not lost: the peer hears it
      assert.is_number(s)
      tapio.send(s, "accepted")
      assert.are.equal("accepted", loop:sock_recv(c, 100))
      tapio.close_fd(s)
      tapio.close_fd(c)
      tapio.close_fd(l)
      os.remove(path)
    end)
  end)

  it("take nothing for a task that cancelled itself before the call",
     function()
    run(function(loop)
      local a, b = tapio.socketpair()
      local t = loop:create_task(function()
        tapio.current_task():cancel()
        return loop:sock_recv(a, 100)
      end)
      local ok, err = pcall(t.await, t)
      assert.is_false(ok)
      assert.is_true(tapio.is_cancelled(err))
      sent_and_readable(loop, a, b)
      assert.are.equal("kept", loop:sock_recv(a, 100))
      tapio.close_fd(a)
      tapio.close_fd(b)
    end)
  end)

  it("raise the cancellation at the task's next wait", function()
    run(function(loop)
      local a, b = tapio.socketpair()
      tapio.send(b, "kept")
      local got
      local t = cancel_at_completion(loop, function()
        got = loop:sock_recv(a, 100)
        tapio.sleep(10)
      end)
      assert.are.equal("kept", got)
      assert.is_true(t:cancelled())
      tapio.close_fd(a)
      tapio.close_fd(b)
    end)
  end)
end)

describe("loop:sock_recv_into and sock_recvfrom_into", function()
  it("receive into a tapio.buffer from its start: the count, the rest "
     .. "untouched; what does not fit waits; 0 at the end", function()
    run(function(loop)
      local a, b = tapio.socketpair()
      local buf = tapio.buffer(8)
      buf:set(1, "........")
      tapio.send(b, "abc")
      assert.are.equal(3, loop:sock_recv_into(a, buf))
      assert.are.equal("abc.....", buf:sub())
      tapio.send(b, "0123456789")
      assert.are.equal(8, loop:sock_recv_into(a, buf))
      assert.are.equal("01234567", buf:sub())
      assert.are.equal(2, loop:sock_recv_into(a, buf))
      assert.are.equal("89", buf:sub(1, 2))
      local later = loop:create_task(function()
        return loop:sock_recv_into(a, buf)
      end)
      tapio.sleep(0)
      assert.is_false(later:done())
      tapio.send(b, "late")
      assert.are.equal(4, later:await())
      assert.are.equal("late", buf:sub(1, 4))
      tapio.close_fd(b)
      assert.are.equal(0, loop:sock_recv_into(a, buf))
      tapio.close_fd(a)
    end)
  end)

  it("receive one datagram and its sender, at most nbytes of it (0: the "
     .. "buffer's size)", function()
    run(function(loop)
      local a, a_addr = udp(loop)
      local b, b_addr = udp(loop)
      local buf = tapio.buffer(6)
      local receiving = loop:create_task(function()
        return loop:sock_recvfrom_into(b, buf)
      end)
      tapio.sleep(0)
      loop:sock_sendto(a, "ping", b_addr)
      local n, from = receiving:await()
      assert.are.equal(4, n)
      assert.are.equal(a_addr, from)
      assert.are.equal("ping", buf:sub(1, n))
      loop:sock_sendto(a, "longer datagram", b_addr)
      n, from = loop:sock_recvfrom_into(b, buf, 3)
      assert.are.equal(3, n) -- the rest of the datagram is dropped
      assert.are.equal("long", buf:sub(1, 4)) -- "lon" and ping's "g"
      loop:sock_sendto(a, "next", b_addr)
      assert.are.equal(4, loop:sock_recvfrom_into(b, buf, 0))
      assert.are.equal("next", buf:sub(1, 4))
      tapio.close_fd(a)
      tapio.close_fd(b)
    end)
  end)

  it("lose no byte when a waiting receive is cancelled, leave no anchor, "
     .. "and hold the buffer while they wait", function()
    run(function(loop)
      local a, b = tapio.socketpair()
      local refs = loop:_debug().refs
      local waiting = loop:create_task(function()
        return loop:sock_recv_into(a, tapio.buffer(16))
      end)
      tapio.sleep(0)
      collectgarbage()
      collectgarbage()
      waiting:cancel()
      tapio.sleep(0)
      assert.is_true(waiting:cancelled())
      assert.are.equal(refs, loop:_debug().refs)
      sent_and_readable(loop, a, b)
      local buf = tapio.buffer(16)
      assert.are.equal(4, loop:sock_recv_into(a, buf))
      assert.are.equal("kept", buf:sub(1, 4))
      -- a future nobody holds the buffer of: the bytes still land in it
      local fut
      loop:call_soon(function() -- outside a task: a future
        fut = loop:sock_recv_into(a, tapio.buffer(4))
      end)
      tapio.sleep(0)
      collectgarbage()
      collectgarbage()
      tapio.send(b, "gc")
      assert.are.equal(2, fut:await())
      tapio.close_fd(a)
      tapio.close_fd(b)
    end)
  end)

  it("refuse bad arguments, naming them", function()
    run(function(loop)
      local a, b = tapio.socketpair()
      local buf = tapio.buffer(4)
      assert.has_error(function()
        loop:sock_recv_into(a, "text")
      end, "tapio: loop:sock_recv_into: bad argument #2 'buf' (tapio.buffer "
        .. "expected, got string)")
      assert.has_error(function()
        loop:sock_recvfrom_into(a, nil)
      end, "tapio: loop:sock_recvfrom_into: bad argument #2 'buf' "
        .. "(tapio.buffer expected, got nil)")
      assert.has_error(function()
        loop:sock_recvfrom_into(a, buf, 5)
      end, "tapio: loop:sock_recvfrom_into: bad argument #3 'nbytes' "
        .. "(greater than the buffer's size)")
      assert.has_error(function()
        loop:sock_recvfrom_into(a, buf, -1)
      end, "tapio: loop:sock_recvfrom_into: bad argument #3 'nbytes' (-1 is "
        .. "out of range 0..9223372036854775807)")
      assert.has_error(function()
        loop:sock_recv_into("x", buf)
      end, "tapio: loop:sock_recv_into: bad argument #1 'fd' (integer "
        .. "expected, got string)")
      tapio.close_fd(a)
      tapio.close_fd(b)
    end)
  end)
end)

describe("loop:sock_sendfile", function()
  it("sends several MiB over TCP to Python, which checks every byte; the "
     .. "file is then at its end", function()
    run(function(loop)
      local size = 6 * 1024 * 1024 + 5
      local f, _, path = data_file(size)
      local code = ([[
import socket
l = socket.socket()
l.bind(("127.0.0.1", 0))
l.listen()
print(l.getsockname()[1], flush=True)
c, _ = l.accept()
got = bytearray()
while True:
    b = c.recv(1 << 16)
    if not b:
        break
    got += b
want = open(%q, "rb").read()[100:]
bad = next((i for i in range(min(len(got), len(want))) if got[i] != want[i]),
           None) if got != want else None
print(len(got), "same" if got == want else "differs at %%s" %% bad)
]]):format(path)
      local proc = tapio.create_subprocess_exec(PY, { "-c", code },
        { stdout = tapio.PIPE })
      local port = tonumber(proc.stdout:readline())
      local c = assert(tapio.socket(tapio.AF_INET, tapio.SOCK_STREAM))
      loop:sock_connect(c, { "127.0.0.1", port })
      assert.are.equal(size - 100, loop:sock_sendfile(c, f, 100))
      assert.are.equal(size, f:seek())
      tapio.close_fd(c)
      local out = proc.stdout:read()
      proc:wait()
      assert.are.equal(0, proc.returncode)
      assert.are.equal(("%d same\n"):format(size - 100), out)
      f:close()
      os.remove(path)
    end)
  end)

  it("sends offset and count over a Unix socket, a count past the end "
     .. "what there is", function()
    run(function(loop)
      local c, s = unix_pair(loop)
      local f, content, path = data_file(1024 * 1024 + 3)
      local reading = loop:create_task(recv_all, loop, s)
      assert.are.equal(1000, loop:sock_sendfile(c, f, 7, 1000))
      assert.are.equal(1007, f:seek())
      assert.are.equal(#content - 2000,
        loop:sock_sendfile(c, f, 2000, #content))
      assert.are.equal(#content, f:seek())
      assert.are.equal(0, loop:sock_sendfile(c, f, #content + 1))
      assert.are.equal(#content, f:seek()) -- nothing sent: not moved
      tapio.close_fd(c)
      local got = reading:await()
      assert.is_true(got == content:sub(8, 1007) .. content:sub(2001))
      tapio.close_fd(s)
      f:close()
      os.remove(path)
    end)
  end)

  it("reads and sends a file the kernel cannot send from, unless fallback "
     .. "is false (ENOTSUP, nothing sent)", function()
    run(function(loop)
      local c, s = unix_pair(loop)
      local f = assert(io.open("/proc/self/status", "rb"))
      local ok, err = pcall(loop.sock_sendfile, loop, c, f, 0, nil, false)
      assert.is_false(ok)
      assert.are.equal("ENOTSUP", err.name)
      assert.are.equal(0, err.count)
      assert.are.equal(5, loop:sock_sendfile(c, f, 0, 5))
      assert.are.equal(5, f:seek())
      assert.are.equal(3, loop:sock_sendfile(c, f, 1, 3, true))
      tapio.close_fd(c)
      assert.are.equal("Name:ame", recv_all(loop, s))
      tapio.close_fd(s)
      f:close()
    end)
  end)

  it("stops when cancelled midway: the file left at offset + the bytes "
     .. "sent, exactly those at the peer", function()
    run(function(loop)
      local c, s = unix_pair(loop)
      local f, content, path = data_file(2 * 1024 * 1024)
      f:read(10) -- a position of the Lua file's own, buffered: followed
      local sending = loop:create_task(function()
        return loop:sock_sendfile(c, f, 5)
      end)
      local first = loop:sock_recv(s, 4096) -- it sends, and then waits
      tapio.sleep(0)
      assert.is_false(sending:done())
      sending:cancel()
      assert.is_false(pcall(sending.await, sending))
      assert.is_true(sending:cancelled())
      local at = f:seek()
      assert.is_true(at > 5 + #first and at < #content)
      tapio.close_fd(c)
      local got = first .. recv_all(loop, s)
      assert.are.equal(at - 5, #got)
      assert.is_true(got == content:sub(6, at))
      tapio.close_fd(s)
      f:close()
      os.remove(path)
    end)
  end)

  it("fails when the peer goes, with the count sent (the file there)",
     function()
    run(function(loop)
      local c, s = unix_pair(loop)
      local f, _, path = data_file(2 * 1024 * 1024)
      local sending = loop:create_task(function()
        return loop:sock_sendfile(c, f)
      end)
      loop:sock_recv(s, 4096)
      tapio.close_fd(s)
      local ok, err = pcall(sending.await, sending)
      assert.is_false(ok)
      assert.is_true(err.name == "EPIPE" or err.name == "ECONNRESET")
      assert.is_true(err.count >= 4096)
      assert.are.equal(err.count, f:seek())
      tapio.close_fd(c)
      f:close()
      os.remove(path)
    end)
  end)

  it("refuses bad arguments, naming them", function()
    run(function(loop)
      local c, s = unix_pair(loop)
      local f = assert(io.open("/proc/self/status", "rb"))
      local u = udp(loop)
      local a, b = tapio.socketpair() -- blocking ones
      local function refuses(msg, ...)
        local args = { n = select("#", ...), ... }
        assert.has_error(function()
          loop:sock_sendfile((table.unpack or unpack)(args, 1, args.n))
        end, "tapio: loop:sock_sendfile: " .. msg)
      end
      refuses("bad argument #1 'fd' (integer expected, got string)",
        "x", f)
      refuses("bad argument #2 'file' (file or integer expected, got "
        .. "table)", c, {})
      refuses("bad argument #2 'file' (not an open descriptor)", c, 9999)
      refuses("bad argument #3 'offset' (-1 is out of range "
        .. "0..9223372036854775807)", c, f, -1)
      refuses("bad argument #4 'count' (0 is out of range "
        .. "1..9223372036854775807)", c, f, 0, 0)
      refuses("bad argument #5 'fallback' (boolean or nil expected, got "
        .. "string)", c, f, 0, nil, "yes")
      refuses("bad argument #1 'fd' (not a stream socket (asyncio's "
        .. "sock_sendfile: only SOCK_STREAM type sockets are supported))",
        u, f)
      refuses("bad argument #1 'fd' (a blocking socket: asyncio requires a "
        .. "non-blocking one (tapio.socket makes one))", a, f)
      f:close()
      refuses("bad argument #2 'file' (closed file)", c, f)
      for _, fd in ipairs { c, s, u, a, b } do
        tapio.close_fd(fd)
      end
    end)
  end)
end)
