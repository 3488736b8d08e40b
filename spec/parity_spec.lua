-- asyncio's task and sync API against tapio's, scenario by scenario:
-- spec/support/parity.py runs each scenario on Python's asyncio and
-- writes down what happened, in order; here the same scenario runs on
-- tapio and the two lists must be the same. Python defines the order.
-- Both run on a virtual clock, so timers of 0.01 s and 0.02 s keep their
-- order on a loaded machine.
local tapio = require "tapio"
local testing = require "tapio.testing"
local helper = require "spec.helper"

local function py(b) return b and "True" or "False" end

-- pcall(f, ...) that lets a cancellation through (a task's `except
-- SomeError`), returning the other error.
local function catch(f, ...)
  local ok, err = pcall(f, ...)
  if ok then return nil end
  if tapio.is_cancelled(err) then error(err, 0) end
  return err
end

-- fn runs as a task; a cancellation where it sleeps is written down as
-- `name cancelled`, then goes on.
local function sleeper(out, name, seconds)
  return function()
    local ok, err = pcall(tapio.sleep, seconds)
    if not ok then
      if tapio.is_cancelled(err) then out[#out + 1] = name .. " cancelled" end
      error(err, 0)
    end
  end
end

-- The keys of every table given, sorted.
local function sorted_keys(...)
  local keys = {}
  for _, t in ipairs({ ... }) do
    for k in pairs(t) do keys[#keys + 1] = k end
  end
  table.sort(keys)
  return keys
end

local function after(delay, name)
  return function()
    tapio.sleep(delay)
    return name
  end
end

local S = {}

function S.callbacks_in_order(out, loop)
  local done = loop:create_future()
  loop:call_later(0.02, function() out[#out + 1] = "later 0.02" end)
  loop:call_later(0.01, function() out[#out + 1] = "later 0.01" end)
  for _, name in ipairs({ "soon a", "soon b", "soon c" }) do
    loop:call_soon(function() out[#out + 1] = name end)
  end
  local fut = loop:create_future()
  fut:add_done_callback(function() out[#out + 1] = "done 1" end)
  fut:add_done_callback(function() out[#out + 1] = "done 2" end)
  fut:set_result(nil)
  out[#out + 1] = "set"
  loop:call_later(0.03, function() done:set_result(nil) end)
  done:await()
end

function S.gather_first_error(out)
  local tb = tapio.create_task(function()
    tapio.sleep(0.03)
    out[#out + 1] = "b finished"
  end)
  local err = catch(tapio.gather, {
    function() tapio.sleep(0.01) error("boom", 0) end, tb })
  out[#out + 1] = "gather raised " .. tostring(err)
  out[#out + 1] = "b cancelled: " .. py(tb:cancelled())
  tb:await()
  out[#out + 1] = "b done"
end

function S.gather_cancelled(out)
  local g = tapio.create_task(tapio.gather, {
    sleeper(out, "a", 1), sleeper(out, "b", 1) })
  tapio.sleep(0.01)
  g:cancel()
  local ok, err = pcall(g.await, g)
  if not ok and tapio.is_cancelled(err) then
    out[#out + 1] = "gather cancelled"
  end
end

function S.wait_for_timeout(out)
  local t = tapio.create_task(function()
    local ok, err = pcall(tapio.sleep, 1)
    if not ok then
      out[#out + 1] = "inner cleans up"
      tapio.sleep(0.01)
      out[#out + 1] = "inner cleaned up"
      error(err, 0)
    end
  end)
  local err = catch(tapio.wait_for, t, 0.01)
  if err and err.code == tapio.ETIMEDOUT then
    out[#out + 1] = "timed out"
  end
  out[#out + 1] = "inner cancelled: " .. py(t:cancelled())
end

function S.shield_keeps_inner(out)
  local it = tapio.create_task(function()
    tapio.sleep(0.02)
    out[#out + 1] = "inner finished"
    return 7
  end)
  local o = tapio.create_task(function()
    local ok, err = pcall(tapio.shield, it)
    if not ok then
      if tapio.is_cancelled(err) then out[#out + 1] = "outer cancelled" end
      error(err, 0)
    end
  end)
  tapio.sleep(0.01)
  o:cancel()
  tapio.sleep(0.03)
  out[#out + 1] = "inner result " .. it:result()
end

function S.cancel_caught(out)
  local t = tapio.create_task(function()
    if not pcall(tapio.sleep, 1) then out[#out + 1] = "caught" end
    return "ok"
  end)
  tapio.sleep(0)
  out[#out + 1] = "cancel: " .. py(t:cancel())
  local res = t:await()
  out[#out + 1] = ("result %s, cancelled %s, cancel again %s")
    :format(res, py(t:cancelled()), py(t:cancel()))
end

function S.lock_first_come(out)
  local lock = tapio.Lock()
  lock:acquire()
  local ts = {}
  for _, name in ipairs({ "w1", "w2", "w3" }) do
    ts[#ts + 1] = tapio.create_task(function()
      out[#out + 1] = name .. " waits"
      lock:with(function()
        out[#out + 1] = name .. " holds"
        tapio.sleep(0)
      end)
      out[#out + 1] = name .. " released"
    end)
  end
  tapio.sleep(0)
  out[#out + 1] = "main releases"
  lock:release()
  tapio.gather(ts)
end

function S.lock_woken_then_cancelled(out)
  local lock = tapio.Lock()
  lock:acquire()
  local function worker(name)
    return tapio.create_task(function()
      local ok, err = pcall(lock.with, lock, function()
        out[#out + 1] = name .. " holds"
      end)
      if not ok and tapio.is_cancelled(err) then
        out[#out + 1] = name .. " cancelled"
      end
    end)
  end
  local t1, t2 = worker("w1"), worker("w2")
  tapio.sleep(0)
  lock:release() -- w1 is woken
  t1:cancel()    -- and cancelled before it runs: w2 gets its turn
  tapio.gather({ t1, t2 })
  out[#out + 1] = "locked: " .. py(lock:locked())
end

function S.semaphore_order(out)
  local sem = tapio.Semaphore(2)
  local function worker(name, delay)
    return function()
      sem:with(function()
        out[#out + 1] = name .. " in"
        tapio.sleep(delay)
      end)
      out[#out + 1] = name .. " out"
    end
  end
  tapio.gather({ worker("a", 0.05), worker("b", 0.01), worker("c", 0.01),
    worker("d", 0.01) })
end

function S.event_wakes_all(out)
  local ev = tapio.Event()
  local ts = {}
  for _, name in ipairs({ "a", "b", "c" }) do
    ts[#ts + 1] = tapio.create_task(function()
      out[#out + 1] = name .. " waits"
      ev:wait()
      out[#out + 1] = name .. " woken"
    end)
  end
  tapio.sleep(0)
  ev:set()
  out[#out + 1] = "set"
  tapio.gather(ts)
end

function S.condition_notify(out)
  local cond = tapio.Condition()
  local ts = {}
  for _, name in ipairs({ "a", "b", "c" }) do
    ts[#ts + 1] = tapio.create_task(function()
      cond:with(function()
        cond:wait()
        out[#out + 1] = name .. " notified"
      end)
    end)
  end
  tapio.sleep(0)
  cond:with(function() cond:notify(1) end)
  tapio.sleep(0.01)
  cond:with(function() cond:notify(2) end)
  tapio.gather(ts)
end

function S.queue_bounded(out)
  local q = tapio.Queue(1)
  tapio.gather({
    function()
      for i = 1, 3 do
        q:put(i)
        out[#out + 1] = "put " .. i
      end
    end,
    function()
      for _ = 1, 3 do
        local item = q:get() -- (out[#out + 1] = q:get() would take the
        out[#out + 1] = "got " .. item -- slot before the wait)
        q:task_done()
      end
    end })
  q:join()
  out[#out + 1] = "joined"
end

function S.task_group_child_fails(out)
  local err = catch(tapio.TaskGroup, function(tg)
    tg:create_task(sleeper(out, "good", 1))
    tg:create_task(function() tapio.sleep(0.01) error("boom", 0) end)
    out[#out + 1] = "body done"
  end)
  out[#out + 1] = ("group raised %d: %s"):format(#err.exceptions,
    tostring(err.exceptions[1]))
end

function S.timeout_expires(out)
  local err = catch(tapio.timeout, 0.01, sleeper(out, "body", 1))
  if err and err.code == tapio.ETIMEDOUT then out[#out + 1] = "timeout" end
  out[#out + 1] = "cancelling " .. tapio.current_task():cancelling()
end

function S.wait_first_completed(out)
  local a = tapio.create_task(after(0.01, "a"))
  local b = tapio.create_task(after(0.05, "b"))
  local done, pending = tapio.wait({ a, b },
    { return_when = tapio.FIRST_COMPLETED })
  local names = {}
  for _, t in ipairs(done) do names[#names + 1] = "'" .. t:result() .. "'" end
  out[#out + 1] = ("done [%s], pending %d"):format(table.concat(names, ", "),
    #pending)
  b:cancel()
  tapio.wait({ b })
  out[#out + 1] = "b cancelled: " .. py(b:cancelled())
end

function S.as_completed_order(out)
  for fut in tapio.as_completed({ after(0.03, "c"), after(0.01, "a"),
                                  after(0.02, "b") }) do
    local name = fut:await()
    out[#out + 1] = name
  end
end

function S.barrier_parties(out)
  local barrier = tapio.Barrier(3)
  local function party(name)
    return function()
      out[#out + 1] = name .. " arrives"
      barrier:wait()
      out[#out + 1] = name .. " passes"
    end
  end
  tapio.gather({ party("a"), party("b"), party("c") })
  out[#out + 1] = "waiting " .. barrier:n_waiting()
end

function S.wait_for_inner_returns(out)
  local r = tapio.wait_for(function()
    if not pcall(tapio.sleep, 1) then
      out[#out + 1] = "inner declines the cancel"
    end
    return "late value"
  end, 0.01)
  out[#out + 1] = "wait_for returned " .. r
end

function S.gather_return_exceptions(out)
  local s = tapio.create_task(tapio.sleep, 1)
  tapio.get_running_loop():call_later(0.01, function() s:cancel() end)
  local res = tapio.gather({ function() return "fine" end,
    function() error("boom", 0) end, s }, { return_exceptions = true })
  out[#out + 1] = "0: " .. res[1]
  out[#out + 1] = "1: " .. tostring(res[2])
  out[#out + 1] = "2 cancelled: " .. py(tapio.is_cancelled(res[3]))
end

function S.queue_getter_woken_then_cancelled(out)
  local q = tapio.Queue()
  local function getter(name)
    return tapio.create_task(function()
      local ok, item = pcall(q.get, q)
      if ok then
        out[#out + 1] = ("%s got %s"):format(name, item)
      elseif tapio.is_cancelled(item) then
        out[#out + 1] = name .. " cancelled"
      end
    end)
  end
  local g1, g2 = getter("g1"), getter("g2")
  tapio.sleep(0)
  q:put_nowait("x") -- g1 is woken
  g1:cancel()       -- and cancelled before it runs: g2 gets the item
  tapio.gather({ g1, g2 })
  out[#out + 1] = "left " .. q:qsize()
end

function S.lock_no_barging(out)
  local lock = tapio.Lock()
  lock:acquire()
  local function worker(name)
    return tapio.create_task(function()
      lock:with(function()
        out[#out + 1] = name .. " holds"
        tapio.sleep(0)
      end)
    end)
  end
  local w = worker("waiter")
  tapio.sleep(0)
  lock:release() -- the waiter is woken; a newcomer now must queue
  local n = worker("newcomer")
  tapio.gather({ w, n })
end

function S.condition_wait_cancelled(out)
  local cond = tapio.Condition()
  local t = tapio.create_task(function()
    cond:with(function()
      local ok, err = pcall(cond.wait, cond)
      if not ok then
        out[#out + 1] = "cancelled, holding the lock: " .. py(cond:locked())
        error(err, 0)
      end
    end)
  end)
  tapio.sleep(0)
  t:cancel()
  local ok, err = pcall(t.await, t)
  if not ok and tapio.is_cancelled(err) then
    out[#out + 1] = "waiter cancelled"
  end
  out[#out + 1] = "locked after: " .. py(cond:locked())
end

function S.event_set_then_cleared(out)
  local ev = tapio.Event()
  local t = tapio.create_task(function()
    local woken = ev:wait()
    out[#out + 1] = "woken: " .. py(woken)
  end)
  tapio.sleep(0)
  ev:set()
  ev:clear() -- before the waiter runs: it was woken all the same
  t:await()
  out[#out + 1] = "is_set: " .. py(ev:is_set())
end

function S.shield_inner_fails(out)
  local err = catch(tapio.shield, function()
    tapio.sleep(0.01)
    error("inner broke", 0)
  end)
  out[#out + 1] = "shield raised " .. tostring(err)
end

function S.task_group_body_fails(out)
  local err = catch(tapio.TaskGroup, function(tg)
    tg:create_task(sleeper(out, "child", 1))
    tapio.sleep(0)
    error("body broke", 0)
  end)
  out[#out + 1] = ("group raised %d: %s"):format(#err.exceptions,
    tostring(err.exceptions[1]))
end

function S.wait_first_exception(out)
  local ts = {}
  for _, case in ipairs({ { 0.01, false }, { 0.02, true }, { 0.03, false } }) do
    ts[#ts + 1] = tapio.create_task(function()
      tapio.sleep(case[1])
      if case[2] then error("boom", 0) end
      return case[1]
    end)
  end
  local done, pending = tapio.wait(ts,
    { return_when = tapio.FIRST_EXCEPTION })
  out[#out + 1] = ("done %d, pending %d"):format(#done, #pending)
  out[#out + 1] = "third done: " .. py(ts[3]:done())
  tapio.wait(ts)
  local errors = 0
  for _, t in ipairs(ts) do
    if t:exception() ~= nil then errors = errors + 1 end
  end
  out[#out + 1] = "errors " .. errors
end

function S.as_completed_timeout(out)
  local slow = tapio.create_task(after(1, "slow"))
  local err = catch(function()
    for fut in tapio.as_completed({ after(0.01, "quick"), slow },
                                  { timeout = 0.05 }) do
      local name = fut:await()
      out[#out + 1] = name
    end
  end)
  if err and err.code == tapio.ETIMEDOUT then out[#out + 1] = "timed out" end
  out[#out + 1] = "slow cancelled: " .. py(slow:cancelled())
  slow:cancel()
end

function S.barrier_abort(out)
  local barrier = tapio.Barrier(3)
  local ts = {}
  for _, name in ipairs({ "a", "b" }) do
    ts[#ts + 1] = tapio.create_task(function()
      local err = catch(barrier.wait, barrier)
      if err and err.name == "BrokenBarrierError" then
        out[#out + 1] = name .. " broken"
      end
    end)
  end
  tapio.sleep(0)
  barrier:abort()
  tapio.gather(ts)
  out[#out + 1] = "broken: " .. py(barrier:broken())
end

function S.done_callback_added_late(out, loop)
  local fut = loop:create_future()
  fut:set_result(1)
  fut:add_done_callback(function() out[#out + 1] = "late callback" end)
  loop:call_soon(function() out[#out + 1] = "soon after it" end)
  out[#out + 1] = "added"
  tapio.sleep(0)
  tapio.sleep(0)
end

-- StreamReader, fed by hand: each read's result as [bytes], or its error
-- as parity.py writes it.
local function attempt(out, label, reader, method, ...)
  local ok, r = pcall(reader[method], reader, ...)
  local line
  if ok then
    line = "[" .. r:gsub("\n", "\\n") .. "]"
  elseif type(r) == "table" and r.name == "IncompleteReadError" then
    line = ("IncompleteReadError partial [%s] expected %s: %s"):format(
      r.partial, r.expected == nil and "None" or r.expected, r.message)
  elseif type(r) == "table" and r.name == "LimitOverrunError" then
    line = method == "readline" -- asyncio: a ValueError, no consumed
      and "LimitOverrunError: " .. r.message
      or ("LimitOverrunError consumed %d: %s"):format(r.consumed, r.message)
  else
    error(r, 0)
  end
  out[#out + 1] = label .. " -> " .. line
end

function S.reader_lines_and_limit(out)
  local r = tapio.StreamReader(7)
  r:feed_data("1234567\n12345678\nab")
  r:feed_eof()
  for _ = 1, 4 do attempt(out, "readline", r, "readline") end
  out[#out + 1] = "at_eof " .. py(r:at_eof())
end

function S.reader_line_over_limit_unfinished(out)
  local r = tapio.StreamReader(4)
  r:feed_data("abcdefghij")
  attempt(out, "readline", r, "readline")
  r:feed_data("xy\n")
  r:feed_eof()
  attempt(out, "read", r, "read")
end

function S.reader_readexactly(out)
  local r = tapio.StreamReader()
  r:feed_data("abcdef")
  attempt(out, "readexactly 4", r, "readexactly", 4)
  attempt(out, "readexactly 0", r, "readexactly", 0)
  r:feed_eof()
  attempt(out, "readexactly 5", r, "readexactly", 5)
  attempt(out, "read", r, "read")
end

function S.reader_readuntil(out)
  local r = tapio.StreamReader(6)
  r:feed_data("ab--cdefghij")
  attempt(out, "readuntil --", r, "readuntil", "--")
  attempt(out, "readuntil --", r, "readuntil", "--")
  r:feed_data("k--")
  attempt(out, "readuntil --", r, "readuntil", "--")
  attempt(out, "read 4", r, "read", 4)
  r:feed_data("rest")
  r:feed_eof()
  attempt(out, "readuntil --", r, "readuntil", "--")
  attempt(out, "read", r, "read")
end

function S.reader_read_sizes(out, loop)
  local r = tapio.StreamReader()
  attempt(out, "read 0", r, "read", 0)
  loop:call_soon(function() r:feed_data("hello") end)
  attempt(out, "read 3", r, "read", 3)
  attempt(out, "read 10", r, "read", 10)
  loop:call_soon(function() r:feed_data("wor") end)
  loop:call_soon(function() r:feed_data("ld\nand more") end)
  attempt(out, "readline", r, "readline")
  loop:call_soon(function() r:feed_eof() end)
  attempt(out, "read", r, "read")
  attempt(out, "read", r, "read")
  out[#out + 1] = "at_eof " .. py(r:at_eof())
end

function S.reader_at_eof(out)
  local r = tapio.StreamReader()
  out[#out + 1] = "fresh: at_eof " .. py(r:at_eof())
  r:feed_data("ab")
  r:feed_eof()
  out[#out + 1] = "fed: at_eof " .. py(r:at_eof())
  attempt(out, "read 1", r, "read", 1)
  out[#out + 1] = "at_eof " .. py(r:at_eof())
  attempt(out, "read 1", r, "read", 1)
  out[#out + 1] = "at_eof " .. py(r:at_eof())
end

function S.reader_exception(out)
  local r = tapio.StreamReader()
  r:feed_data("buffered")
  r:set_exception(tapio.error(tapio.ECONNRESET, "reset by peer"))
  local ok, err = pcall(r.read, r, 3)
  if not ok then out[#out + 1] = "read raised " .. err.message end
end

-- Runs scenario(out, loop) as a task on a virtual clock that moves, when
-- nothing is ready, to the next timer (as parity.py's loop does): the
-- order of events depends on no machine's speed.
local function run_virtual(scenario, out)
  local loop, clock = testing.new_loop()
  local errors = {}
  loop:set_exception_handler(function(_, ctx) errors[#errors + 1] = ctx end)
  local task = loop:create_task(scenario, out, loop)
  clock:run_until_idle()
  while not task:done() do
    local due = clock:next_timer()
    assert(due, "the scenario waits, and no timer is due")
    clock:advance(due - clock:time())
  end
  loop:close()
  task:result()
  assert.are.same({}, errors)
end

-- What Python's asyncio wrote down running spec/support/SCRIPT (lines
-- "scenario|event"), by scenario: a list of events, or with sides (lines
-- "scenario|side|event") a list per side, server and peer.
local function python_traces(script, sides)
  local out, status = helper.execute("TAPIO_TLS_CERTS="
    .. helper.shell_quote(helper.certs()) .. " timeout 120 /usr/bin/python3 "
    .. "spec/support/" .. script)
  assert(status == 0, out)
  local traces = {}
  for name, event in out:gmatch("([%w_]+)|([^\n]*)\n") do
    local trace = traces[name] or (sides and { server = {}, peer = {} } or {})
    traces[name] = trace
    if sides then
      local side
      side, event = event:match("^(%a+)|(.*)$")
      trace = trace[side]
    end
    trace[#trace + 1] = event
  end
  return traces
end

describe("asyncio parity: the same scenario on asyncio and tapio", function()
  local expected = python_traces("parity.py")

  it("runs every scenario parity.py has, and no other", function()
    assert.are.same(sorted_keys(expected), sorted_keys(S))
  end)

  for _, name in ipairs(sorted_keys(S)) do
    it(name, function()
      local out = {}
      run_virtual(S[name], out)
      assert.are.same(expected[name], out)
    end)
  end
end)

-- ---- Real sockets and processes ------------------------------------------
-- spec/support/parity_proto.py's peer does the same to a server on
-- asyncio (in that script) and to this one on tapio; both servers write
-- down their protocol's callbacks, the peer what it read.

local BIG = 256 * 1024
-- parity_proto.py's TLS peers find the certificates there
local PEER_ENV = { TAPIO_TLS_CERTS = helper.certs() }

-- Inside a task: parity_proto.py's listener for scenario name (a peer
-- server); returns its port and the process.
local function listen(name)
  local peer = tapio.create_subprocess_exec("/usr/bin/python3",
    { "spec/support/parity_proto.py", "listen", name },
    { stdout = "pipe", env = PEER_ENV, extend_env = true })
  return tonumber(peer.stdout:readline()), peer
end

-- Inside a task: what a peer process printed ("peer|event" lines), once
-- it has ended well, added to peer_out.
local function peer_lines(peer, peer_out)
  local printed = peer.stdout:read()
  assert.are.equal(0, peer:wait())
  for event in printed:gmatch("peer|([^\n]*)\n") do
    peer_out[#peer_out + 1] = event
  end
end

-- Python's repr of a plain string (no quotes in it).
local function repr(str)
  if str == nil then return "None" end
  return "'" .. str:gsub("\\", "\\\\"):gsub("\n", "\\n") .. "'"
end

local function error_name(err)
  if err == nil then return "nil" end
  return type(err) == "table" and err.name or tostring(err)
end

-- A protocol writing down its callbacks in out; lost is set at the end.
local function recorder(out, lost, methods)
  local p = {
    connection_made = function(self, t)
      self.transport = t
      out[#out + 1] = "connection_made"
    end,
    data_received = function(_, data)
      out[#out + 1] = "data_received " .. data
    end,
    eof_received = function()
      out[#out + 1] = "eof_received"
    end,
    connection_lost = function(_, err)
      out[#out + 1] = "connection_lost " .. error_name(err)
      lost:set_result(true)
    end,
  }
  for name, fn in pairs(methods or {}) do
    local base = p[name]
    p[name] = function(self, ...)
      if base then base(self, ...) end
      return fn(self, ...)
    end
  end
  return p
end

local P = {}

function P.half_close(out, lost)
  return recorder(out, lost)
end

function P.eof_keep_open(out, lost)
  return recorder(out, lost, { eof_received = function(self)
    tapio.get_running_loop():call_soon(function()
      out[#out + 1] = "is_closing " .. py(self.transport:is_closing())
      self.transport:write("bye")
      self.transport:close()
    end)
    return true -- half-open: the transport stays for the goodbye
  end })
end

function P.reset(out, lost)
  return recorder(out, lost, { data_received = function(self, data)
    self.transport:write("got " .. data)
  end })
end

function P.close_flushes(out, lost)
  return recorder(out, lost, { connection_made = function(self, t)
    t:write(("z"):rep(BIG))
    t:close()
    out[#out + 1] = "is_closing " .. py(t:is_closing())
  end })
end

function P.write_eof(out, lost)
  return recorder(out, lost, { data_received = function(self, data)
    if data == "ping" then
      self.transport:write("pong")
      out[#out + 1] = "can_write_eof " .. py(self.transport:can_write_eof())
      self.transport:write_eof()
    end
  end })
end

function P.small_buffer(out, lost)
  local buf, got = tapio.buffer(4), {}
  local p = recorder(out, lost)
  p.data_received = nil
  p.get_buffer = function() return buf end
  p.buffer_updated = function(self, n)
    got[#got + 1] = buf:sub(1, n)
    out[#out + 1] = "buffer_updated " .. n
    if #table.concat(got) == 10 then self.transport:write("done") end
  end
  return p
end

function P.paused(out, lost)
  return recorder(out, lost, { connection_made = function(self, t)
    t:pause_reading() -- (Python 3.11.2 cannot pause here: parity_proto.py)
    out[#out + 1] = "is_reading " .. py(t:is_reading())
    tapio.get_running_loop():call_later(0.05, function()
      out[#out + 1] = "resumed"
      self.transport:resume_reading()
    end)
  end })
end

function P.flow_control(out, lost, go)
  local p = recorder(out, lost, { connection_made = function(_, t)
    t:set_write_buffer_limits(64 * 1024)
    out[#out + 1] = ("limits %d %d"):format(t:get_write_buffer_limits())
    t:write(("z"):rep(128 * BIG))
    out[#out + 1] = "wrote"
    go() -- the peer reads from now on (see parity_proto.py's GO)
  end })
  p.pause_writing = function() out[#out + 1] = "pause_writing" end
  p.resume_writing = function(self)
    out[#out + 1] = "resume_writing " .. self.transport:get_write_buffer_size()
    self.transport:close() -- (Python 3.11 cannot close here: parity_proto.py)
  end
  return p
end

-- TLS servers (every scenario named tls_*), the peer a blocking ssl socket.

function P.tls_server_closes(out, lost)
  return recorder(out, lost, {
    connection_made = function(_, t)
      out[#out + 1] = "over " .. t:get_extra_info("cipher")[2]
      out[#out + 1] = "can_write_eof " .. py(t:can_write_eof())
      if not pcall(t.write_eof, t) then
        out[#out + 1] = "write_eof refused"
      end
    end,
    data_received = function(self)
      self.transport:write("bye")
      self.transport:close()
    end })
end

P.tls_peer_closes = P.reset -- the same protocol: it answers "got " .. data

-- Reads only once the peer has sent its data and close_notify (as
-- P.paused); the data as one line, however many records brought it.
function P.tls_paused_close_notify(out, lost)
  local got = {}
  local p = P.paused(out, lost)
  p.data_received = function(_, data) got[#got + 1] = data end
  p.eof_received = function()
    out[#out + 1] = "eof_received after " .. repr(table.concat(got))
  end
  return p
end

-- Client protocols (C, by scenario; those named tls_* over TLS) against
-- parity_proto.py's listener of the same name. Their trace is the
-- "server" side (the side under test), the listener's the "peer" side.
local C = {}

local function hello(out, lost) -- says hello once connected
  return recorder(out, lost, { connection_made = function(_, t)
    t:write("hello")
  end })
end

C.client_server_closes = hello
C.client_half_close = recorder
C.client_eof_keep_open = P.eof_keep_open
C.client_reset = hello

-- Python's repr of a value of peercert (strings, numbers, and lists as
-- tuples).
local function pyrepr(v)
  if type(v) ~= "table" then
    return type(v) == "string" and repr(v) or tostring(v)
  end
  local items = {}
  for i, item in ipairs(v) do items[i] = pyrepr(item) end
  return "(" .. table.concat(items, ", ") .. (#items == 1 and ",)" or ")")
end

-- What a TLS client's transport tells, then hello; closes on hi.
function C.tls_client(out, lost)
  local p = hello(out, lost)
  local made = p.connection_made
  function p.connection_made(self, t)
    local cipher = t:get_extra_info("cipher")
    out[#out + 1] = ("over %s %s %d"):format(cipher[1], cipher[2], cipher[3])
    out[#out + 1] = "alpn " .. t:get_extra_info("alpn_protocol")
    local cert = t:get_extra_info("peercert")
    for _, key in ipairs({ "subject", "issuer", "subjectAltName" }) do
      out[#out + 1] = key .. " " .. pyrepr(cert[key])
    end
    for _, key in ipairs({ "notBefore", "notAfter", "serialNumber" }) do
      out[#out + 1] = key .. " " .. cert[key]
    end
    made(self, t)
  end
  function p.data_received(self, data)
    out[#out + 1] = "data_received " .. data
    self.transport:close()
  end
  return p
end

-- STARTTLS from the client: upgrades on GO, closes after welcome, the
-- server's first bytes over TLS.
function C.starttls_client(out, lost)
  local loop = tapio.get_running_loop()
  local welcome = loop:create_future()
  return recorder(out, lost, {
    connection_made = function(_, t) t:write("STARTTLS") end,
    data_received = function(self, data)
      if data == "GO" then
        loop:create_task(function()
          local tls = loop:start_tls(self.transport, self, helper.client_ctx(),
            { server_hostname = "localhost" })
          welcome:await() -- (it may come before start_tls returns)
          out[#out + 1] = "upgraded over " .. tls:get_extra_info("cipher")[2]
          tls:close()
        end)
      elseif data == "welcome" then
        welcome:set_result(true)
      end
    end })
end

-- Datagram endpoints: scenario(out, loop) on a connected endpoint, its
-- peer a UDP echo (parity_proto.py udp-echo) or a closed port.
local function dgram_recorder(out, lost, done_after, peer_port)
  local p = { echoes = 0, errors = 0 }
  function p:connection_made(t)
    self.transport = t
    out[#out + 1] = "connection_made"
  end
  function p:datagram_received(data, addr)
    out[#out + 1] = ("datagram_received %s from the peer: %s"):format(data,
      py(addr.port == peer_port))
    self.echoes = self.echoes + 1
    if self.echoes == done_after then
      self.transport:close()
      out[#out + 1] = "is_closing " .. py(self.transport:is_closing())
    end
  end
  function p:error_received(err)
    out[#out + 1] = "error_received " .. error_name(err)
    self.errors = self.errors + 1
    if self.errors == 1 then -- the endpoint still sends
      self.transport:sendto("after the error")
    else
      self.transport:close()
    end
  end
  function p:connection_lost(err)
    out[#out + 1] = "connection_lost " .. error_name(err)
    lost:set_result(true)
  end
  return p
end

local D = {}

function D.datagram_echo(out, loop)
  local echo = tapio.create_subprocess_exec("/usr/bin/python3",
    { "spec/support/parity_proto.py", "udp-echo" }, { stdout = "pipe" })
  local port = tonumber(echo.stdout:readline())
  local lost = loop:create_future()
  local t = loop:create_datagram_endpoint(function()
    return dgram_recorder(out, lost, 3, port)
  end, { remote_addr = { "127.0.0.1", port } })
  for _, data in ipairs({ "one", "two", "stop" }) do t:sendto(data) end
  lost:await()
  assert.are.equal(0, echo:wait())
end

function D.datagram_refused(out, loop)
  local closed = loop:create_datagram_endpoint(function() return {} end,
    { local_addr = { "127.0.0.1", 0 } })
  local port = closed:get_extra_info("sockname").port
  closed:close()
  local lost = loop:create_future()
  local t = loop:create_datagram_endpoint(function()
    return dgram_recorder(out, lost, 0, port)
  end, { remote_addr = { "127.0.0.1", port } })
  t:sendto("anyone?")
  lost:await()
end

-- An unconnected endpoint answering two peers (addr says which), one of
-- them with an empty datagram; a sendto after close is dropped silently.
function D.datagram_peers(out, loop, peer_out)
  local lost, names, peers = loop:create_future(), {}, {}
  local server = loop:create_datagram_endpoint(function()
    return {
      datagram_received = function(self, data, addr)
        local name
        for peer_name, peer in pairs(peers) do
          if peer[1]:get_extra_info("sockname") == addr then
            name = peer_name
          end
        end
        out[#out + 1] = ("datagram_received %s from %s"):format(repr(data),
          name)
        self.transport:sendto(data:upper(), addr)
      end,
      connection_made = function(self, t) self.transport = t end,
      connection_lost = function(_, err)
        out[#out + 1] = "connection_lost " .. error_name(err)
        lost:set_result(true)
      end }
  end, { local_addr = { "127.0.0.1", 0 } })
  for _, name in ipairs({ "a", "b" }) do
    local queue = tapio.Queue()
    local peer = loop:create_datagram_endpoint(function()
      return { datagram_received = function(_, data)
        queue:put_nowait(data)
      end }
    end, { remote_addr = server:get_extra_info("sockname") })
    peers[name] = { peer, queue }
  end
  for _, case in ipairs({ { "a", "one" }, { "b", "" }, { "a", "two" } }) do
    local peer, queue = peers[case[1]][1], peers[case[1]][2]
    peer:sendto(case[2])
    peer_out[#peer_out + 1] = ("%s got %s"):format(case[1],
      repr(queue:get()))
  end
  server:close()
  server:sendto("late", peers.a[1]:get_extra_info("sockname"))
  out[#out + 1] = "sendto after close: no error, is_closing "
    .. py(server:is_closing())
  lost:await()
  for _, peer in pairs(peers) do peer[1]:close() end
end

-- The handshakes that fail, as the client sees them: what it trusts, the
-- name it asks for (parity_proto.py's listener shows each certificate).
local FAILS = { { "unknown CA", "ca2.pem", "localhost" },
  { "wrong host name", "ca.pem", "other.example" },
  { "expired", "ca.pem", "localhost" } }
-- The words for the error values' names, as parity_proto.py's VERIFY.
local VERIFY = { ETLS_UNKNOWN_CA = "unknown CA",
  ETLS_HOSTNAME = "wrong host name", ETLS_EXPIRED = "expired" }

-- A factory of protocols writing down every callback they get in calls;
-- and what they got, as a line.
local function calls_factory(calls)
  return function()
    return {
      connection_made = function() calls[#calls + 1] = "connection_made" end,
      connection_lost = function() calls[#calls + 1] = "connection_lost" end }
  end
end

local function calls_line(calls)
  return "protocol calls: "
    .. (#calls > 0 and table.concat(calls, ", ") or "none")
end

function D.tls_handshake_fails(out, loop, peer_out)
  local port, peer = listen("tls_handshake_fails")
  local calls = {}
  for _, case in ipairs(FAILS) do
    local err = catch(loop.create_connection, loop, calls_factory(calls),
      "127.0.0.1", port, { server_hostname = case[3],
      ssl = helper.client_ctx({ cafile = helper.cert(case[2]) }) })
    out[#out + 1] = err and ("%s: create_connection failed: %s"):format(
      case[1], VERIFY[err.name] or err.name) or case[1] .. ": connected"
  end
  peer_lines(peer, peer_out)
  out[#out + 1] = calls_line(calls)
end

function D.client_refused(out, loop)
  local closed = loop:create_server(function() return {} end, "127.0.0.1", 0)
  local port = helper.port(closed)
  closed:close()
  local calls = {}
  local err = catch(loop.create_connection, loop, calls_factory(calls),
    "127.0.0.1", port)
  out[#out + 1] = err and "create_connection failed: " .. error_name(err)
    or "connected"
  out[#out + 1] = calls_line(calls)
end

-- STARTTLS on a server whose peer sends its ClientHello with the STARTTLS
-- line, in one segment (Python's steps around cpython#142352).
function D.starttls_server(out, loop, peer_out)
  local handled = loop:create_future()
  local server = tapio.start_server(function(reader, writer)
    out[#out + 1] = "server read " .. repr(reader:readline())
    writer:start_tls(helper.server_ctx())
    out[#out + 1] = "server upgraded over "
      .. writer:get_extra_info("cipher")[2]
    local line = reader:readline()
    out[#out + 1] = "server read " .. repr(line)
    writer:write("got " .. line)
    writer:drain()
    out[#out + 1] = "server read to the end " .. repr(reader:read())
    writer:close()
    writer:wait_closed()
    handled:set_result(true)
  end, "127.0.0.1", 0)
  local peer = tapio.create_subprocess_exec("/usr/bin/python3",
    { "spec/support/parity_proto.py", "peer", "starttls_server",
      tostring(helper.port(server)) },
    { stdout = "pipe", env = PEER_ENV, extend_env = true })
  handled:await()
  peer_lines(peer, peer_out)
  server:close()
  server:wait_closed()
end

-- Servers: a protocol answering "got " .. data (P.reset's), setting made
-- (a future) to itself once connected.
local function lifecycle(out, lost, made)
  local p = P.reset(out, lost)
  local base = p.connection_made
  function p.connection_made(self, t)
    base(self, t)
    made:set_result(self)
  end
  return p
end

local function refused(port, peer_out)
  local err = catch(tapio.open_connection, "127.0.0.1", port)
  if err and err.code == tapio.ECONNREFUSED then
    peer_out[#peer_out + 1] = "a new client is refused"
  end
end

function D.server_close_live(out, loop, peer_out)
  local lost, made = loop:create_future(), loop:create_future()
  local server = loop:create_server(function()
    return lifecycle(out, lost, made)
  end, "127.0.0.1", 0)
  local port = helper.port(server)
  local reader, writer = tapio.open_connection("127.0.0.1", port)
  made:await()
  server:close()
  out[#out + 1] = "closed: is_serving " .. py(server:is_serving())
  local closed = tapio.create_task(server.wait_closed, server)
  writer:write("x")
  peer_out[#peer_out + 1] = "client read " .. repr(reader:readexactly(5))
  refused(port, peer_out)
  out[#out + 1] = "wait_closed done " .. py(closed:done())
  writer:close()
  closed:await()
  out[#out + 1] = "wait_closed returned"
end

function D.server_serving(out, loop, peer_out)
  local lost, made = loop:create_future(), loop:create_future()
  local server = loop:create_server(function()
    return lifecycle(out, lost, made)
  end, "127.0.0.1", 0, { start_serving = false })
  local port = helper.port(server)
  out[#out + 1] = "is_serving " .. py(server:is_serving())
  server:start_serving()
  out[#out + 1] = "start_serving: is_serving " .. py(server:is_serving())
  local reader, writer = tapio.open_connection("127.0.0.1", port)
  writer:write("x")
  peer_out[#peer_out + 1] = "client read " .. repr(reader:readexactly(5))
  writer:close()
  lost:await()
  local forever = tapio.create_task(server.serve_forever, server)
  tapio.sleep(0)
  out[#out + 1] = "serve_forever: is_serving " .. py(server:is_serving())
  forever:cancel()
  local ok, err = pcall(forever.await, forever)
  if not ok and tapio.is_cancelled(err) then
    out[#out + 1] = "serve_forever cancelled: is_serving "
      .. py(server:is_serving())
  end
  refused(port, peer_out)
end

-- A transport's sockname and peername, the socket's path as PATH.
local function addresses(t, path)
  local names = {}
  for i, key in ipairs({ "sockname", "peername" }) do
    local name = t:get_extra_info(key)
    names[i] = name == path and "'PATH'" or repr(name)
  end
  return ("sockname %s, peername %s"):format(names[1], names[2])
end

-- A Unix server taking over a stale socket file at its path.
function D.unix_server(out, loop, peer_out)
  local lost, made = loop:create_future(), loop:create_future()
  local path = os.tmpname()
  os.remove(path)
  loop:create_unix_server(function() return {} end, path,
    { cleanup_socket = false }):close() -- a socket file no one serves
  local server = loop:create_unix_server(function()
    return lifecycle(out, lost, made)
  end, path)
  out[#out + 1] = "serving at PATH " .. py(server:addresses()[1] == path)
  local reader, writer = tapio.open_unix_connection(path)
  local protocol = made:await()
  out[#out + 1] = "server side: " .. addresses(protocol.transport, path)
  peer_out[#peer_out + 1] = "client side: " .. addresses(writer, path)
  writer:write("x")
  peer_out[#peer_out + 1] = "client read " .. repr(reader:readexactly(5))
  writer:close()
  lost:await()
  server:close()
  server:wait_closed()
  os.remove(path) -- (if tapio has not: asyncio 3.11 leaves it)
end

-- Subprocesses with streams (D too: a scenario writing to out).

function D.subprocess_communicate(out)
  local p = tapio.create_subprocess_exec("/bin/sh",
    { "-c", "echo out; echo err >&2; exit 3" },
    { stdout = "pipe", stderr = "pipe" })
  local stdout, stderr = p:communicate()
  out[#out + 1] = ("stdout %s stderr %s returncode %d"):format(repr(stdout),
    repr(stderr), p.returncode)
end

function D.subprocess_large_input(out)
  local data = ("x"):rep(4 * 1024 * 1024)
  local p = tapio.create_subprocess_exec("/bin/cat", nil,
    { stdin = "pipe", stdout = "pipe" })
  local stdout, stderr = p:communicate(data)
  out[#out + 1] = ("echoed %s, stderr %s, returncode %d"):format(
    py(stdout == data), repr(stderr), p.returncode)
end

function D.subprocess_lines(out)
  local p = tapio.create_subprocess_exec("/bin/sh",
    { "-c", "printf 'a\\nbb\\nccc'" }, { stdout = "pipe" })
  for line in p.stdout:lines() do
    out[#out + 1] = "line " .. repr(line)
  end
  out[#out + 1] = "returncode " .. p:wait()
end

function D.subprocess_signals(out)
  for _, how in ipairs({ "terminate", "kill" }) do
    local p = tapio.create_subprocess_exec("/bin/sleep", { "10" })
    p[how](p)
    out[#out + 1] = ("%s: returncode %d"):format(how, p:wait())
  end
end

function D.subprocess_shell(out)
  local p = tapio.create_subprocess_shell('read x; echo "got $x"; exit 7',
    { stdin = "pipe", stdout = "pipe" })
  local stdout = p:communicate("hi\n")
  out[#out + 1] = ("stdout %s returncode %d"):format(repr(stdout),
    p.returncode)
end

-- Streams on real sockets (D too: out is the server's handler's, peer_out
-- the client's).

function D.streams_echo(out, loop, peer_out)
  local handled = loop:create_future()
  local server = tapio.start_server(function(reader, writer)
    local line = reader:readline()
    out[#out + 1] = "server read " .. repr(line)
    writer:write(line:upper())
    writer:drain()
    out[#out + 1] = "server at_eof " .. py(reader:at_eof())
    out[#out + 1] = "server read to the end " .. repr(reader:read())
    out[#out + 1] = "server at_eof " .. py(reader:at_eof())
    writer:close()
    out[#out + 1] = "server is_closing " .. py(writer:is_closing())
    writer:wait_closed()
    handled:set_result(true)
  end, "127.0.0.1", 0)
  local reader, writer = tapio.open_connection("127.0.0.1",
    helper.port(server))
  writer:write("hello\n")
  local line = reader:readline()
  peer_out[#peer_out + 1] = "client read " .. repr(line)
  peer_out[#peer_out + 1] = "client can_write_eof "
    .. py(writer:can_write_eof())
  writer:write("last words")
  writer:write_eof()
  local rest = reader:read()
  peer_out[#peer_out + 1] = "client read to the end " .. repr(rest)
  peer_out[#peer_out + 1] = "client at_eof " .. py(reader:at_eof())
  writer:close()
  writer:wait_closed()
  handled:await()
  server:close()
  server:wait_closed()
end

function D.streams_incomplete(out, loop, peer_out)
  local handled = loop:create_future()
  local server = tapio.start_server(function(reader, writer)
    local err = catch(reader.readexactly, reader, 10)
    out[#out + 1] = ("server readexactly: partial %s expected %d"):format(
      repr(err.partial), err.expected)
    err = catch(reader.readuntil, reader, "\n")
    out[#out + 1] = ("server readuntil: partial %s expected %s"):format(
      repr(err.partial), err.expected == nil and "None" or err.expected)
    writer:close()
    writer:wait_closed()
    handled:set_result(true)
  end, "127.0.0.1", 0)
  local _, writer = tapio.open_connection("127.0.0.1", helper.port(server))
  writer:write("short")
  writer:close()
  writer:wait_closed()
  peer_out[#peer_out + 1] = "client closed: is_closing "
    .. py(writer:is_closing())
  handled:await()
  server:close()
  server:wait_closed()
end

-- Closed shells: what a transport answers after connection_lost (D too).

-- Python's words for a value that is nil.
local function none(v) return v == nil and "None" or tostring(v) end

-- What a transport with a write buffer answers after the end.
local function shell_answers(out, t)
  out[#out + 1] = "get_write_buffer_size " .. t:get_write_buffer_size()
  out[#out + 1] = ("get_write_buffer_limits %d %d"):format(
    t:get_write_buffer_limits())
  t:set_write_buffer_limits(400, 100)
  out[#out + 1] = ("then %d %d"):format(t:get_write_buffer_limits())
  if catch(t.set_write_buffer_limits, t, 10, 20) then
    out[#out + 1] = "low > high refused"
  end
  out[#out + 1] = "get_protocol " .. none(t:get_protocol())
  local other = {}
  t:set_protocol(other)
  out[#out + 1] = "set_protocol kept " .. py(t:get_protocol() == other)
end

-- A protocol setting lost once connection_lost has run.
local function ends(lost)
  return { connection_lost = function() lost:set_result(true) end }
end

function D.closed_shell(out, loop)
  local lost = loop:create_future()
  local server = loop:create_server(function() return {} end,
    "127.0.0.1", 0)
  local port = helper.port(server)
  local t = loop:create_connection(function() return ends(lost) end,
    "127.0.0.1", port)
  local sockname = t:get_extra_info("sockname")
  local seen = loop:create_future()
  lost:add_done_callback(function()
    seen:set_result(t:get_extra_info("peername"))
  end)
  t:set_write_buffer_limits(1000)
  t:close()
  out[#out + 1] = "peername in a done callback is the server's "
    .. py(seen:await()[2] == port)
  out[#out + 1] = "sockname kept " .. py(t:get_extra_info("sockname")
    == sockname)
  out[#out + 1] = ("is_closing %s, is_reading %s"):format(py(t:is_closing()),
    py(t:is_reading()))
  t:close()
  t:abort()
  t:pause_reading()
  t:resume_reading()
  shell_answers(out, t)
  out[#out + 1] = "can_write_eof " .. py(t:can_write_eof())
  t:write_eof()
  out[#out + 1] = "write_eof: nothing to do"
  server:close()
  server:wait_closed()
end

function D.closed_shell_subprocess(out, loop)
  local lost = loop:create_future()
  local t = loop:subprocess_exec(function() return ends(lost) end,
    "/bin/sh", { "-c", "exit 3" },
    { stdin = "pipe", stdout = "pipe", stderr = "devnull" })
  local pid = t:get_pid()
  lost:await()
  out[#out + 1] = ("get_pid kept %s, get_returncode %d"):format(
    py(t:get_pid() == pid), t:get_returncode())
  local stdin = t:get_pipe_transport(0)
  out[#out + 1] = "stdin is_closing " .. py(stdin:is_closing())
  stdin:close()
  shell_answers(out, stdin)
  out[#out + 1] = "stdin can_write_eof " .. py(stdin:can_write_eof())
  stdin:write_eof()
  local stdout = t:get_pipe_transport(1)
  out[#out + 1] = "stdout is_closing " .. py(stdout:is_closing())
  out[#out + 1] = "stderr " .. none(t:get_pipe_transport(2))
  out[#out + 1] = "get_protocol " .. none(t:get_protocol())
  local ok, err = t:kill() -- (asyncio raises ProcessLookupError)
  if not ok and err.code == tapio.ESRCH then
    out[#out + 1] = "kill: no such process"
  end
  t:close()
  out[#out + 1] = "is_closing " .. py(t:is_closing())
end

describe("asyncio parity: real sockets and processes", function()
  local expected = python_traces("parity_proto.py asyncio", true)

  it("runs every scenario parity_proto.py has, and no other", function()
    assert.are.same(sorted_keys(expected), sorted_keys(P, C, D))
  end)

  for _, name in ipairs(sorted_keys(D)) do
    local scenario = D[name]
    it(name, function()
      local out, peer_out = {}, {}
      helper.run(function(loop) scenario(out, loop, peer_out) end)
      assert.are.same(expected[name].server, out)
      assert.are.same(expected[name].peer, peer_out)
    end)
  end

  for _, name in ipairs(sorted_keys(P)) do
    it(name, function()
      local server_out, peer_out = {}, {}
      helper.run(function(loop)
        local lost, peer = loop:create_future(), nil
        local function go() peer.stdin:write("go\n") end
        local server = loop:create_server(function()
          return P[name](server_out, lost, go)
        end, "127.0.0.1", 0,
          { ssl = name:match("^tls_") and helper.server_ctx() or nil })
        peer = tapio.create_subprocess_exec("/usr/bin/python3",
          { "spec/support/parity_proto.py", "peer", name,
            tostring(helper.port(server)) },
          { stdin = "pipe", stdout = "pipe", env = PEER_ENV,
            extend_env = true })
        peer_lines(peer, peer_out)
        lost:await()
        server:close()
      end)
      assert.are.same(expected[name].server, server_out)
      assert.are.same(expected[name].peer, peer_out)
    end)
  end

  for _, name in ipairs(sorted_keys(C)) do
    it(name, function()
      local out, peer_out = {}, {}
      helper.run(function(loop)
        local port, peer = listen(name)
        local lost = loop:create_future()
        loop:create_connection(function() return C[name](out, lost) end,
          "127.0.0.1", port, name:match("^tls_") and { server_hostname =
            "localhost", ssl = helper.client_ctx({ alpn = { "h2",
            "parity/1" } }) } or nil)
        lost:await()
        peer_lines(peer, peer_out)
      end)
      assert.are.same(expected[name].server, out)
      assert.are.same(expected[name].peer, peer_out)
    end)
  end
end)
