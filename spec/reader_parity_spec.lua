-- tapio's StreamReader against asyncio's, operation by operation, on
-- random sequences: spec/support/reader_parity.py draws each sequence
-- from a seed (feeds of separator-rich chunks, feed_eof, set_exception,
-- at_eof, read/readline/readexactly/readuntil with small limits), runs
-- it on asyncio and prints what each operation gave and the bytes left
-- buffered; here the same operations run on tapio, on a virtual loop,
-- and every event must be the same (spec/support/sequences.lua).
--
-- A read runs as a task; once nothing is ready it is "pending" if not
-- done, and its end is the event after the operation that ended it. The
-- reader's transport is a stub that says whether it was paused; every
-- other feed comes through a connection's data_received. Where tapio
-- differs by design (read(-1) and cancels, the pause decided after a
-- woken read) and where asyncio is wrong (a readuntil's search offset
-- across another task's read), reader_parity.py says what is left out.
-- TAPIO_PARITY_COUNT=20000 for a long run (see sequences.lua).
local tapio = require "tapio"
local reader_mod = require "tapio.reader"
local testing = require "tapio.testing"
local seqs = require "spec.support.sequences"

local quoted, unesc = seqs.quoted, seqs.unesc

-- The bytes a reader holds, unread (its fields, as the Python side reads
-- asyncio's private _buffer).
local function buffered(r)
  local parts = {}
  for i = r._head, r._tail do
    parts[#parts + 1] = r._chunks[i]
  end
  return table.concat(parts):sub(r._off)
end

-- " paused" where the transport is, as reader_parity.py writes it: ""
-- where the buffer is not compared or after the end, " ~" in the band
-- where tapio decides the pause after a woken read.
local function flow(r, transport, hidden)
  local size = r._size
  if hidden or r._eof then
    return ""
  elseif size > r._limit and size <= 2 * r._limit then
    return " ~"
  end
  return transport.paused and " paused" or ""
end

-- What reader_parity.py's outcome writes for an error (name: the
-- operation).
local function failure(name, err)
  if type(err) ~= "table" then
    if tostring(err):match("feed_data after feed_eof") then
      return "AssertionError: feed_data after feed_eof" -- (asyncio's assert)
    elseif tostring(err):match("another task is already waiting") then
      return "RuntimeError" -- (asyncio's words differ)
    end
    error(err, 0)
  elseif err.name == "IncompleteReadError" then
    return ("IncompleteReadError partial=%s expected=%s: %s"):format(
      quoted(err.partial), err.expected == nil and "None" or err.expected,
      err.message)
  elseif err.name == "LimitOverrunError" and name == "readline" then
    return "ValueError: " .. err.message -- (asyncio: a ValueError)
  elseif err.name == "LimitOverrunError" then
    return ("LimitOverrunError consumed=%d: %s"):format(err.consumed,
      err.message)
  elseif err.name == "ConnectionResetError" then
    return "ConnectionResetError: " .. err.message
  end
  error(err, 0)
end

local function task_outcome(name, task)
  if task:cancelled() then
    return "CancelledError"
  end
  local ok, v = pcall(task.result, task)
  if ok then
    return "ok " .. quoted(v)
  end
  return failure(name, v)
end

-- Each read: the function its task runs, given the reader and the
-- operation's argument as reader_parity.py prints it.
local READS = {
  read = function(r, arg) return r:read(tonumber(arg)) end,
  readline = function(r) return r:readline() end,
  readexactly = function(r, arg) return r:readexactly(tonumber(arg)) end,
  readuntil = function(r, arg) return r:readuntil(unesc(arg)) end,
  readuntils = function(r, arg)
    local list = {}
    for s in arg:gmatch("[^,]+") do
      list[#list + 1] = unesc(s)
    end
    return r:readuntil(list)
  end,
}

-- The events of one sequence's operations on tapio.
local function run(seq)
  local loop, clock = testing.new_loop()
  local r = tapio.StreamReader(tonumber(seq.ops[1][2]))
  -- the transport, as a stub that says whether it reads
  local transport = { paused = false }
  function transport.pause_reading() transport.paused = true end
  function transport.resume_reading() transport.paused = false end
  r._transport = transport
  -- A connection's data_received (which hands data to a waiting read
  -- without buffering it) for every other feed, feed_data for the rest:
  -- asyncio's protocol calls feed_data.
  local protocol = { _reader = r }
  local events, pending = {}, nil
  -- The buffer is not compared while a read(-1) waits, nor after one
  -- failed (see reader_parity.py).
  local to_end_waits, dropped = false, false
  local function event(i, name, text)
    local hidden = to_end_waits or dropped
    events[#events + 1] = ("#%d %s -> %s | %s%s"):format(i, name, text,
      hidden and "?" or quoted(buffered(r)), flow(r, transport, hidden))
  end
  local function settle()
    clock:run_until_idle()
    if pending and pending.task:done() then
      local p = pending
      pending = nil
      if to_end_waits then
        to_end_waits = false
        dropped = p.task:exception() ~= nil
      end
      event(p.i, "done", task_outcome(p.name, p.task))
    end
  end
  local OPS = {
    feed = function(i, arg)
      local ok, err = true, nil
      if i % 2 == 0 and not r._eof then -- (no transport reads after it)
        reader_mod.data_received(protocol, unesc(arg))
      else
        ok, err = pcall(r.feed_data, r, unesc(arg))
      end
      local text = ok and "ok" or failure("feed", err)
      settle()
      event(i, "feed", text)
    end,
    eof = function(i)
      r:feed_eof()
      settle()
      event(i, "eof", "ok")
    end,
    exception = function(i)
      r:set_exception(setmetatable({ name = "ConnectionResetError",
        message = "reset" }, { __tostring = function() return "reset" end }))
      settle()
      event(i, "exception", "ok")
    end,
    cancel = function(i)
      pending.task:cancel()
      settle()
      event(i, "cancel", "ok")
    end,
    at_eof = function(i)
      event(i, "at_eof", dropped and "?" or r:at_eof() and "True" or "False")
    end,
  }
  for i = 2, #seq.ops do
    local name, arg = seq.ops[i][1], seq.ops[i][2]
    if OPS[name] then
      OPS[name](i, arg)
    else
      local task = loop:create_task(READS[name], r, arg)
      clock:run_until_idle()
      if task:done() then
        event(i, name, task_outcome(name, task))
      else
        assert(not pending, "a second read waits")
        pending = { i = i, name = name, task = task }
        to_end_waits = name == "read" and arg == "-1"
        event(i, name, "pending")
      end
    end
  end
  loop:close()
  return events
end

describe("StreamReader against asyncio's, on random sequences", function()
  it("gives what asyncio gives, operation by operation", function()
    seqs.check("reader_parity.py", 300, run)
  end)
end)
