-- tapio.Queue, PriorityQueue and LifoQueue, on the testing kit's virtual
-- clock: the order items come out in, waits, what a cancelled waiter
-- passes on, and shutdown.
local helper = require "spec.helper"
local tapio = helper.tapio
local testing = require "tapio.testing"

local jump = { autojump = true }

local raised = helper.fails

-- Runs the tasks made so far until nothing is left to run now.
local function settle()
  tapio.sleep(0)
  tapio.sleep(0)
end

-- Every item q holds, got without waiting.
local function drain(q)
  local out = {}
  while not q:empty() do
    out[#out + 1] = q:get_nowait()
  end
  return out
end

describe("tapio.Queue", function()
  it("gives items first in, first out, nil among them, and waits when " ..
     "empty", testing.run(function(clock, loop)
    local q = tapio.Queue()
    for _, v in ipairs({ "a", false, 3 }) do
      q:put(v)
    end
    q:put(nil)
    assert.are.equal(4, q:qsize())
    assert.are.same({ "a", false, 3, nil },
      { q:get(), q:get(), q:get_nowait(), q:get() })
    assert.is_true(q:empty())
    loop:call_later(2, function() q:put_nowait("late") end)
    assert.are.equal("late", q:get())
    assert.are.equal(2, clock:time())
  end, jump))

  it("with maxsize, put waits while it is full; put_nowait and " ..
     "get_nowait raise named errors", testing.run(function(clock, loop)
    local q = tapio.Queue(2)
    q:put(1)
    q:put(2)
    assert.is_true(q:full())
    local full = raised(q.put_nowait, q, 3)
    assert.are.same({ tapio.EAGAIN, "QueueFull" }, { full.code, full.name })
    loop:call_later(1, function() assert.are.equal(1, q:get_nowait()) end)
    q:put(3) -- waits for the get
    assert.are.equal(1, clock:time())
    assert.are.same({ 2, 3 }, { q:get(), q:get() })
    local empty = raised(q.get_nowait, q)
    assert.are.same({ tapio.EAGAIN, "QueueEmpty" }, { empty.code, empty.name })
    assert.matches("queue_spec.lua:%d+: tapio: Queue: bad argument #1 " ..
      "'maxsize'", raised(function() tapio.Queue(1.5) end))
    assert.matches("'maxsize' %(an integer expected, got string%)",
      raised(function() tapio.Queue("3") end))
  end, jump))

  it("a maxsize below 0 is unbounded, as asyncio's", function()
    for _, make in ipairs({ tapio.Queue, tapio.LifoQueue,
                            tapio.PriorityQueue }) do
      local q = make(-1)
      assert.are.equal(-1, q.maxsize)
      for i = 1, 100 do q:put_nowait(i) end
      assert.is_false(q:full())
      assert.are.equal(100, q:qsize())
    end
  end)

  it("join waits for a task_done per item", testing.run(function(clock, loop)
    local q = tapio.Queue()
    q:join() -- nothing put: at once
    loop:create_task(function()
      for _ = 1, 3 do
        q:get()
        tapio.sleep(1)
        q:task_done()
      end
    end)
    for i = 1, 3 do
      q:put(i)
    end
    q:join()
    assert.are.equal(3, clock:time())
    assert.matches("queue:task_done: called more times than items were put",
      raised(q.task_done, q))
  end, jump))

  it("loses no item to a get that timed out or was cancelled after it " ..
     "was woken", testing.run(function(_, loop)
    local q = tapio.Queue()
    local err = raised(tapio.wait_for, function() return q:get() end, 1)
    assert.are.equal(tapio.ETIMEDOUT, err.code)
    local g1 = loop:create_task(q.get, q)
    local g2 = loop:create_task(q.get, q)
    settle()
    q:put_nowait("x") -- wakes g1
    g1:cancel()       -- before it runs
    raised(g1.await, g1)
    assert.are.equal("x", g2:await())
    assert.is_true(q:empty())
  end, jump))

  it("wakes the next putter when a woken one is cancelled",
     testing.run(function(_, loop)
    local q = tapio.Queue(1)
    q:put("first")
    local p1 = loop:create_task(q.put, q, "p1")
    local p2 = loop:create_task(q.put, q, "p2")
    settle()
    assert.are.equal("first", q:get_nowait()) -- wakes p1
    p1:cancel()
    raised(p1.await, p1)
    p2:await()
    assert.are.equal("p2", q:get_nowait())
  end))
end)

describe("tapio.LifoQueue", function()
  it("gives the last item put first, nil among them; waits as a Queue",
     testing.run(function(clock, loop)
    local q = tapio.LifoQueue(3)
    assert.are.equal(tapio.Queue, getmetatable(q))
    q:put("a")
    q:put(nil)
    q:put("c")
    assert.are.same({ 3, true }, { q:qsize(), q:full() })
    loop:call_later(1, function() q:get_nowait() end) -- "c"
    q:put("d") -- waits for room
    assert.are.equal(1, clock:time())
    assert.are.same({ "d", nil, "a" }, { q:get(), q:get(), q:get() })
    assert.are.equal("QueueEmpty", raised(q.get_nowait, q).name)
    loop:call_later(1, function() q:put_nowait("late") end)
    assert.are.equal("late", q:get())
    assert.matches("queue_spec.lua:%d+: tapio: LifoQueue: bad argument #1 " ..
      "'maxsize' %(an integer expected, got 0.5",
      raised(function() tapio.LifoQueue(0.5) end))
  end, jump))
end)

describe("tapio.PriorityQueue", function()
  it("gives the smallest first: numbers, strings, or a table's first " ..
     "field", testing.run(function()
    local q = tapio.PriorityQueue()
    assert.are.equal(tapio.Queue, getmetatable(q))
    for _, v in ipairs({ 5, 1, 4, 2, 3 }) do
      q:put(v)
    end
    assert.are.same({ 1, 2, 3, 4, 5 }, drain(q))
    for _, v in ipairs({ "pear", "apple", "fig" }) do
      q:put_nowait(v)
    end
    assert.are.same({ "apple", "fig", "pear" }, drain(q))
    local jobs = { { 2, "write" }, { 1, "read" }, { 3, "close" } }
    for _, job in ipairs(jobs) do
      q:put(job)
    end
    local got = drain(q)
    assert.are.same({ jobs[2], jobs[1], jobs[3] }, got)
    assert.are.equal(jobs[2], got[1]) -- the very table put
  end))

  it("gives equal priorities in the order they were put (stable)",
     testing.run(function()
    local q = tapio.PriorityQueue()
    local order = {}
    for i = 1, 40 do -- priorities 0..3, ten items each, interleaved
      local item = { i % 4, i }
      q:put_nowait(item)
    end
    for _, item in ipairs(drain(q)) do
      order[#order + 1] = item[2]
    end
    local expected = {}
    for p = 0, 3 do
      for i = 1, 40 do
        if i % 4 == p then
          expected[#expected + 1] = i
        end
      end
    end
    assert.are.same(expected, order)
  end))

  it("keeps heap order through puts and gets mixed, checked against a " ..
     "sort", testing.run(function()
    local q = tapio.PriorityQueue()
    local model, got, want, seq = {}, {}, {}, 0
    local x = 12345 -- a fixed linear congruential sequence
    local function rand(n)
      x = (x * 1103515245 + 12345) % 2147483648
      return x % n
    end
    for _ = 1, 2000 do
      if rand(3) > 0 or #model == 0 then
        seq = seq + 1
        local item = { rand(50), seq }
        q:put(item)
        model[#model + 1] = item
      else
        table.sort(model, function(a, b)
          return a[1] < b[1] or (a[1] == b[1] and a[2] < b[2])
        end)
        want[#want + 1] = table.remove(model, 1)
        got[#got + 1] = q:get()
      end
    end
    assert.are.equal(#model, q:qsize())
    assert.is_true(#got > 500)
    assert.are.same(want, got)
  end))

  it("orders by opts.less, equals still first in, first out",
     testing.run(function()
    local q = tapio.PriorityQueue(0, {
      less = function(a, b) return a.size > b.size end, -- largest first
    })
    local a, b, c = { size = 1 }, { size = 9 }, { size = 1 }
    q:put(a)
    q:put(b)
    q:put(c)
    local got = drain(q)
    assert.are.equal(b, got[1])
    assert.are.equal(a, got[2])
    assert.are.equal(c, got[3])
  end))

  it("raises for an item that does not compare and keeps the queue as " ..
     "it was", testing.run(function()
    local q = tapio.PriorityQueue()
    q:put(3)
    q:put(1)
    local err = raised(q.put, q, "two")
    assert.matches("^tapio: queue:put: the items do not compare %(.*" ..
      "attempt to compare", err)
    assert.matches("queue:put_nowait: the items do not compare",
      raised(q.put_nowait, q, {}))
    assert.are.equal(2, q:qsize())
    assert.are.same({ 1, 3 }, drain(q))
    q:task_done()
    q:task_done()
    q:join() -- the refused items were not counted
    local strict = false
    local touchy = tapio.PriorityQueue(0, { less = function(x, y)
      if strict and (x == "bad" or y == "bad") then
        error("cannot order bad", 0)
      end
      return x < y
    end })
    for _, v in ipairs({ "c", "bad", "a", "b" }) do
      touchy:put(v)
    end
    strict = true -- the get compares what is left with "bad"
    assert.are.equal("tapio: queue:get: the items do not compare " ..
      "(cannot order bad)", raised(touchy.get, touchy))
    strict = false
    assert.are.same({ "a", "b", "bad", "c" }, drain(touchy))
  end))

  it("refuses bad options", function()
    assert.matches("queue_spec.lua:%d+: tapio: PriorityQueue: bad " ..
      "argument #2 'opts' %(table expected, got function%)",
      raised(function() tapio.PriorityQueue(0, print) end))
    assert.matches("queue_spec.lua:%d+: tapio: PriorityQueue: bad " ..
      "argument #2 'opts' %(unknown option 'lt'%)",
      raised(function() tapio.PriorityQueue(0, { lt = print }) end))
    assert.matches("queue_spec.lua:%d+: tapio: PriorityQueue: bad " ..
      "argument #2 'opts.less' %(function expected, got number%)",
      raised(function() tapio.PriorityQueue(0, { less = 1 }) end))
    assert.matches("queue_spec.lua:%d+: tapio: PriorityQueue: bad " ..
      "argument #1 'maxsize'",
      raised(function() tapio.PriorityQueue("big") end))
  end)
end)

describe("queue:shutdown", function()
  local kinds = {
    { "Queue", tapio.Queue, { "a", "b" } },
    { "LifoQueue", tapio.LifoQueue, { "b", "a" } },
    { "PriorityQueue", tapio.PriorityQueue, { "a", "b" } },
  }
  for _, kind in ipairs(kinds) do
    local name, new, order = kind[1], kind[2], kind[3]

    it(name .. ": put raises QueueShutDown after; get gives what is " ..
       "left, then raises", testing.run(function()
      local q = new()
      q:put("a")
      q:put("b")
      q:shutdown()
      local err = raised(q.put, q, "c")
      assert.are.same({ "QueueShutDown", tapio.ESHUTDOWN },
        { err.name, err.code })
      assert.are.equal("queue:put: the queue is shut down", err.message)
      assert.are.equal("queue:put_nowait: the queue is shut down",
        raised(q.put_nowait, q, "c").message)
      assert.are.same(order, { q:get(), q:get_nowait() })
      assert.are.equal("queue:get: the queue is shut down",
        raised(q.get, q).message)
      assert.are.equal("QueueShutDown", raised(q.get_nowait, q).name)
      q:shutdown() -- again: nothing more
      q:task_done()
      q:task_done()
      q:join()
    end))

    it(name .. ": immediate drops the items, counted done for join",
       testing.run(function(_, loop)
      local q = new()
      q:put("a")
      q:put("b")
      assert.are.equal(order[1], q:get()) -- got, not yet done
      local joined = loop:create_task(q.join, q)
      settle()
      q:shutdown(true)
      assert.are.same({ 0, true }, { q:qsize(), q:empty() })
      assert.are.equal("QueueShutDown", raised(q.get, q).name)
      settle()
      assert.is_false(joined:done()) -- the one got is not done yet
      q:task_done()
      joined:await()
      assert.matches("called more times", raised(q.task_done, q))
    end))

    it(name .. ": wakes the getters and putters waiting, with " ..
       "QueueShutDown", testing.run(function(_, loop)
      local empty, full = new(), new(1)
      full:put("x")
      local names = {}
      local function waiting(q, fn, ...)
        return loop:create_task(function(...)
          local err = raised(fn, q, ...)
          names[#names + 1] = err.name .. " " .. err.message
        end, ...)
      end
      local g1, g2 = waiting(empty, empty.get), waiting(empty, empty.get)
      local p1 = waiting(full, full.put, "y")
      local p2 = waiting(full, full.put, "z")
      settle()
      empty:shutdown()
      full:shutdown(true) -- room now, but put raises all the same
      tapio.gather({ g1, g2, p1, p2 })
      assert.are.same({
        "QueueShutDown queue:get: the queue is shut down",
        "QueueShutDown queue:get: the queue is shut down",
        "QueueShutDown queue:put: the queue is shut down",
        "QueueShutDown queue:put: the queue is shut down" }, names)
      assert.is_true(full:empty())
    end))
  end

  it("a putter woken by a plain shutdown of a full queue raises too; " ..
     "getters still empty it", testing.run(function(_, loop)
    local q = tapio.Queue(1)
    q:put("x")
    local p = loop:create_task(q.put, q, "y")
    settle()
    q:shutdown()
    assert.are.equal("QueueShutDown", raised(p.await, p).name)
    assert.are.equal("x", q:get())
  end))

  it("a get cancelled after a shutdown woke it raises the cancellation",
     testing.run(function(_, loop)
    local q = tapio.Queue()
    local g = loop:create_task(q.get, q)
    settle()
    q:shutdown()
    g:cancel() -- woken, not yet run
    assert.is_true(tapio.is_cancelled(raised(g.await, g)))
  end))
end)

describe("a queue's methods", function()
  it("refuse a bad self in their own name", function()
    for _, name in ipairs({ "qsize", "empty", "full", "put_nowait",
                            "get_nowait", "put", "get", "task_done", "join",
                            "shutdown" }) do
      assert.matches("queue_spec.lua:%d+: tapio: queue:" .. name .. ": bad " ..
        "self %(tapio.Queue expected, got table%)",
        raised(function() tapio.Queue[name]({}) end))
    end
  end)
end)
