-- tapio.Event, Lock, Semaphore, BoundedSemaphore and Queue, on the
-- testing kit's virtual clock: the order tasks get their turn in, and
-- what a cancelled waiter passes on.
local helper = require "spec.helper"
local tapio = helper.tapio
local testing = require "tapio.testing"

local jump = { autojump = true }

local raised = helper.fails -- the error a call raised (it must raise)

-- Runs the tasks made so far until nothing is left to run now.
local function settle()
  tapio.sleep(0)
  tapio.sleep(0)
end

describe("tapio.Event", function()
  it("wakes every task waiting when set, and none after clear",
     testing.run(function(clock, loop)
    local ev = tapio.Event()
    local woken = {}
    for i = 1, 3 do
      loop:create_task(function()
        assert.is_true(ev:wait())
        woken[#woken + 1] = ("%d at %g"):format(i, clock:time())
      end)
    end
    loop:call_later(2, function() ev:set() end)
    tapio.sleep(3)
    assert.are.same({ "1 at 2", "2 at 2", "3 at 2" }, woken)
    assert.is_true(ev:is_set())
    assert.is_true(ev:wait()) -- set: at once
    ev:clear()
    assert.is_false(ev:is_set())
    local late = loop:create_task(ev.wait, ev)
    settle()
    assert.is_false(late:done())
    ev:set()
    assert.is_true(late:await())
  end, jump))

  it("forgets a cancelled waiter; outside a task wait is a future",
     testing.run(function(_, loop)
    local ev = tapio.Event()
    local gone = loop:create_task(ev.wait, ev)
    settle()
    gone:cancel()
    assert.is_true(tapio.is_cancelled(raised(gone.await, gone)))
    assert.are.equal(0, ev._waiters.tail - ev._waiters.head + 1)
    local fut
    loop:call_soon(function() fut = ev:wait() end)
    settle()
    assert.is_true(tapio.is_future(fut))
    ev:set()
    assert.is_true(fut:await())
  end))
end)

describe("tapio.Lock", function()
  it("is held by one task at a time, in the order they came",
     testing.run(function(_, loop)
    local lock, log = tapio.Lock(), {}
    local tasks = {}
    for i = 1, 3 do
      tasks[i] = loop:create_task(function()
        lock:with(function()
          log[#log + 1] = "in " .. i
          tapio.sleep(1)
          log[#log + 1] = "out " .. i
        end)
      end)
    end
    tapio.gather(tasks)
    assert.are.same({ "in 1", "out 1", "in 2", "out 2", "in 3", "out 3" },
      log)
    assert.is_false(lock:locked())
  end, jump))

  it("lets no newcomer take it from the task it woke", testing.run(
     function(_, loop)
    local lock, log = tapio.Lock(), {}
    lock:acquire()
    local b = loop:create_task(function()
      lock:acquire()
      log[#log + 1] = "b"
      lock:release()
    end)
    settle()
    lock:release() -- b is woken, has not run yet
    assert.is_false(lock:locked())
    lock:acquire() -- this task asks again at once: after b
    log[#log + 1] = "a again"
    lock:release()
    b:await()
    assert.are.same({ "b", "a again" }, log)
  end))

  it("passes the turn on when the task it woke is cancelled before it " ..
     "ran", testing.run(function(_, loop)
    local lock = tapio.Lock()
    lock:acquire()
    local b = loop:create_task(lock.acquire, lock)
    local c = loop:create_task(function()
      lock:acquire()
      return "c has it"
    end)
    settle()
    lock:release() -- wakes b
    b:cancel()     -- before it runs
    assert.is_true(tapio.is_cancelled(raised(b.await, b)))
    assert.are.equal("c has it", c:await())
    assert.is_true(lock:locked())
    lock:release()
  end))

  it("wakes one at a time: a waiter cancelled behind the one woken " ..
     "wakes nobody", testing.run(function(_, loop)
    local lock, holders, most = tapio.Lock(), 0, 0
    local function holder()
      lock:with(function()
        holders = holders + 1
        most = math.max(most, holders)
        settle()
        holders = holders - 1
      end)
    end
    lock:acquire()
    local b = loop:create_task(holder)
    local c = loop:create_task(holder)
    local d = loop:create_task(holder)
    settle()
    c:cancel()     -- behind b: it runs first, the lock free, b woken
    lock:release() -- wakes b
    raised(c.await, c)
    b:await()
    d:await()
    assert.are.equal(1, most)
    assert.is_false(lock:locked())
  end))

  it("is released by with when fn raises; release unheld raises",
     testing.run(function()
    local lock = tapio.Lock()
    assert.are.equal("inside", raised(lock.with, lock, function()
      error("inside", 0)
    end))
    assert.is_false(lock:locked())
    assert.matches("sync_spec.lua:%d+: tapio: lock:release: the lock is " ..
      "not acquired", raised(function() lock:release() end))
    assert.matches("sync_spec.lua:%d+: tapio: lock:with: bad argument #1 " ..
      "'fn'", raised(function() lock:with(5) end))
    assert.matches("bad self", raised(lock.acquire, {}))
  end))
end)

describe("tapio.Semaphore", function()
  it("lets value tasks in at once, the rest in the order they came",
     testing.run(function(clock, loop)
    local sem, log = tapio.Semaphore(2), {}
    local tasks = {}
    for i = 1, 4 do
      tasks[i] = loop:create_task(function()
        sem:with(function()
          log[#log + 1] = ("%d in at %g"):format(i, clock:time())
          tapio.sleep(1)
        end)
      end)
    end
    tapio.gather(tasks)
    assert.are.same({ "1 in at 0", "2 in at 0", "3 in at 1", "4 in at 1" },
      log)
    assert.is_false(sem:locked())
  end, jump))

  it("gives back what it woke a cancelled task for and wakes the next",
     testing.run(function(_, loop)
    local sem = tapio.Semaphore(1)
    sem:acquire()
    local b = loop:create_task(sem.acquire, sem)
    local c = loop:create_task(sem.acquire, sem)
    settle()
    sem:release() -- wakes b
    b:cancel()
    raised(b.await, b)
    assert.is_true(c:await())
    assert.is_true(sem:locked())
    sem:release()
    assert.is_false(sem:locked())
  end))

  it("with, outside a task, raises at the caller's line", function()
    local sem = tapio.Semaphore()
    assert.matches("sync_spec.lua:%d+: tapio: semaphore:with: not inside " ..
      "a task", raised(function() sem:with(print) end))
  end)

  it("bounded, refuses a release beyond its value; a bad value raises",
     testing.run(function()
    local sem = tapio.BoundedSemaphore(1)
    sem:acquire()
    sem:release()
    assert.matches("semaphore:release: released too many times",
      raised(sem.release, sem))
    local plain = tapio.Semaphore(0)
    plain:release() -- an unbounded one may grow
    assert.is_true(plain:acquire())
    assert.matches("sync_spec.lua:%d+: tapio: Semaphore: bad argument #1 " ..
      "'value' %(an integer >= 0", raised(function() tapio.Semaphore(-1) end))
    assert.matches("sync_spec.lua:%d+: tapio: BoundedSemaphore: bad " ..
      "argument #1", raised(function() tapio.BoundedSemaphore("x") end))
    assert.are.equal(tapio.Semaphore, getmetatable(sem))
  end))
end)

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
    assert.matches("sync_spec.lua:%d+: tapio: Queue: bad argument #1 " ..
      "'maxsize'", raised(function() tapio.Queue(1.5) end))
  end, jump))

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
