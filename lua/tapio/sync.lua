--- tapio.sync (internal): asyncio's synchronisation primitives and queue
-- for tasks: Event, Lock, Semaphore, BoundedSemaphore, Queue. Their waits
-- follow the async rule (inside a task they suspend it; elsewhere they
-- return a future), and are first come, first served, as asyncio's are,
-- cancellations included: a waiter cancelled after it was woken passes
-- its turn on, so nobody is left waiting with the lock free (the bugs
-- asyncio had: python/asyncio issue 270, cpython issue 90155).
local core = require "tapio.core"
local U = require "tapio.util"
local F = require "tapio.future"

local M = { api = {} } -- api: what `tapio` holds too (see tapio.util)
local api = M.api
local await, async, current_task = F.await, F.async, F.api.current_task
local EAGAIN = core.errors.EAGAIN

-- ---- Waiters: a first-in, first-out list of futures ----------------------

local function new_waiters()
  return { head = 1, tail = 0 }
end

local function push(w, fut)
  w.tail = w.tail + 1
  w[w.tail] = fut
end

-- Removes fut wherever it is (most often first: the one woken).
local function remove(w, fut)
  if w[w.head] == fut then
    w[w.head] = nil
    w.head = w.head + 1
    return
  end
  for i = w.head + 1, w.tail do
    if w[i] == fut then
      for j = i, w.tail - 1 do
        w[j] = w[j + 1]
      end
      w[w.tail] = nil
      w.tail = w.tail - 1
      return
    end
  end
end

-- The first waiter not done yet, or nil.
local function first_pending(w)
  for i = w.head, w.tail do
    if not w[i]:done() then
      return w[i]
    end
  end
end

-- Whether any waiter is not cancelled (one woken but not yet run counts:
-- the turn is its).
local function any_live(w)
  for i = w.head, w.tail do
    if not w[i]:cancelled() then
      return true
    end
  end
  return false
end

-- Takes the first waiter not done out of the list and wakes it; false
-- when there was none (Queue's, which take their waiters out).
local function wake_next(w)
  while w.head <= w.tail do
    local fut = w[w.head]
    w[w.head] = nil
    w.head = w.head + 1
    if not fut:done() then
      fut:set_result(true)
      return true
    end
  end
  return false
end

-- Waits on a new future at the end of w, in the running task, and takes
-- it out of w after (unless wake_next did: popped). Returns true, or
-- false, err when the wait was cancelled (fut tells whether it had been
-- woken first).
local function wait_in(w, popped)
  local fut = current_task()._loop:create_future()
  push(w, fut)
  local ok, err = pcall(await, fut)
  if not (popped and fut:done() and not fut:cancelled()) then
    remove(w, fut)
  end
  return ok, err, fut
end

-- The constructors' argument errors, at the user's line (level 4: the
-- constructors reach check_count by tail calls).
local function argerror(fn, n, name, msg)
  error(("tapio: %s: bad argument #%d '%s' (%s)"):format(fn, n, name, msg),
    4)
end

local function check_count(v, fn, name, default)
  if v == nil then
    return default
  end
  if type(v) ~= "number" or v < 0 or v ~= math.floor(v) then
    argerror(fn, 1, name, "an integer >= 0 expected, got " .. tostring(v))
  end
  return v
end

-- ---- Event ---------------------------------------------------------------

local Event, check_event = U.class("tapio.Event")

--- tapio.Event(): a flag tasks wait for: wait() until set().
api.Event = setmetatable(Event, { __call = function()
  return setmetatable({ _value = false, _waiters = new_waiters() }, Event)
end })

function Event:is_set()
  check_event(self, "event:is_set")
  return self._value
end

--- Sets the flag and wakes every task waiting.
function Event:set()
  check_event(self, "event:set")
  if not self._value then
    self._value = true
    local w = self._waiters
    for i = w.head, w.tail do
      if not w[i]:done() then
        w[i]:set_result(true)
      end
    end
  end
end

function Event:clear()
  check_event(self, "event:clear")
  self._value = false
end

local function event_wait(self)
  if self._value then
    return true
  end
  local ok, err = wait_in(self._waiters)
  if not ok then
    error(err, 0)
  end
  return true
end

--- event:wait(): true once the flag is set (at once if it is).
function Event:wait()
  check_event(self, "event:wait")
  return async(self, "event:wait", event_wait)
end

-- ---- Lock ----------------------------------------------------------------

local Lock, check_lock = U.class("tapio.Lock")

--- tapio.Lock(): held by one task at a time, first come first served.
api.Lock = setmetatable(Lock, { __call = function()
  return setmetatable({ _locked = false, _waiters = new_waiters() }, Lock)
end })

function Lock:locked()
  check_lock(self, "lock:locked")
  return self._locked
end

-- Wakes the first in line, unless it is woken already (it will take the
-- lock, or pass it on if cancelled first): one woken at a time.
local function wake_first(w)
  local fut = w[w.head]
  if fut and not fut:done() then
    fut:set_result(true)
  end
end

local function lock_acquire(self)
  if not self._locked and not any_live(self._waiters) then
    self._locked = true
    return true
  end
  local ok, err = wait_in(self._waiters)
  if not ok then
    if not self._locked then -- woken and cancelled before it ran, or
      wake_first(self._waiters) -- first and cancelled: the next one's turn
    end
    error(err, 0)
  end
  self._locked = true
  return true
end

--- lock:acquire(): true once the lock is the task's.
function Lock:acquire()
  check_lock(self, "lock:acquire")
  return async(self, "lock:acquire", lock_acquire)
end

--- lock:release(): frees the lock; the first task waiting gets it.
function Lock:release()
  check_lock(self, "lock:release")
  if not self._locked then
    error("tapio: lock:release: the lock is not acquired", 2)
  end
  self._locked = false
  wake_first(self._waiters)
end

-- What with(fn, ...) checks: fn, and that a task runs it (it waits).
local function check_with(fn, name)
  U.check_callable(fn, name, 1, "fn", 4)
  if not current_task() then
    error(("tapio: %s: not inside a task"):format(name), 3)
  end
end

-- Runs fn(...) holding what acquire took; releases it also when fn
-- raises. Returns fn's results.
local function holding(self, fn, ...)
  self:acquire()
  local r = U.pack(pcall(fn, ...))
  self:release()
  if not r[1] then
    error(r[2], 0)
  end
  return U.unpack(r, 2, r.n)
end

--- lock:with(fn, ...): fn(...)'s results, run holding the lock (asyncio's
-- `async with lock`); in a task only.
function Lock:with(fn, ...)
  check_lock(self, "lock:with")
  check_with(fn, "lock:with")
  return holding(self, fn, ...)
end

-- ---- Semaphore -----------------------------------------------------------

local Semaphore, check_sem = U.class("tapio.Semaphore")

local function new_semaphore(value, fn, bound)
  value = check_count(value, fn, "value", 1)
  return setmetatable({ _value = value, _bound = bound and value,
                        _waiters = new_waiters() }, Semaphore)
end

--- tapio.Semaphore([value]): value acquires (default 1) before one waits.
api.Semaphore = setmetatable(Semaphore, { __call = function(_, value)
  return new_semaphore(value, "Semaphore")
end })

--- tapio.BoundedSemaphore([value]): a Semaphore whose release beyond
-- value raises.
function api.BoundedSemaphore(value)
  return new_semaphore(value, "BoundedSemaphore", true)
end

local function sem_locked(self)
  return self._value == 0 or any_live(self._waiters)
end

function Semaphore:locked()
  check_sem(self, "semaphore:locked")
  return sem_locked(self)
end

-- Wakes the first waiter not done, counting its acquire; false if none.
local function sem_wake(self)
  local fut = first_pending(self._waiters)
  if not fut then
    return false
  end
  self._value = self._value - 1
  fut:set_result(true)
  return true
end

local function sem_acquire(self)
  if not sem_locked(self) then
    self._value = self._value - 1
    return true
  end
  local ok, err, fut = wait_in(self._waiters)
  if not ok and fut:done() and not fut:cancelled() then
    self._value = self._value + 1 -- woken, then cancelled: not taken
  end
  while self._value > 0 and sem_wake(self) do
  end -- those who came meanwhile and had to queue
  if not ok then
    error(err, 0)
  end
  return true
end

function Semaphore:acquire()
  check_sem(self, "semaphore:acquire")
  return async(self, "semaphore:acquire", sem_acquire)
end

function Semaphore:release()
  check_sem(self, "semaphore:release")
  if self._bound and self._value >= self._bound then
    error("tapio: semaphore:release: released too many times", 2)
  end
  self._value = self._value + 1
  sem_wake(self)
end

--- semaphore:with(fn, ...): fn(...)'s results, run holding one acquire.
function Semaphore:with(fn, ...)
  check_sem(self, "semaphore:with")
  check_with(fn, "semaphore:with")
  return holding(self, fn, ...)
end

-- ---- Queue ---------------------------------------------------------------

local Queue, check_queue = U.class("tapio.Queue")
local NIL = {} -- a nil item, kept

-- What get_nowait and put_nowait raise: error values named as asyncio's
-- exceptions, code EAGAIN (the wait they would need).
local function queue_error(name, message)
  local e = core.error(EAGAIN, message)
  e.name = name
  return e
end

--- tapio.Queue([maxsize]): first in, first out; put waits while maxsize
-- items are in it (0, the default: never).
api.Queue = setmetatable(Queue, { __call = function(_, maxsize)
  maxsize = check_count(maxsize, "Queue", "maxsize", 0)
  return setmetatable({ maxsize = maxsize, _items = {}, _head = 1,
                        _tail = 0,
                        _getters = new_waiters(), _putters = new_waiters(),
                        _unfinished = 0, _finished = Event() }, Queue)
end })

local function qsize(self)
  return self._tail - self._head + 1
end

local function full(self)
  return self.maxsize > 0 and qsize(self) >= self.maxsize
end

function Queue:qsize()
  check_queue(self, "queue:qsize")
  return qsize(self)
end

function Queue:empty()
  check_queue(self, "queue:empty")
  return qsize(self) == 0
end

function Queue:full()
  check_queue(self, "queue:full")
  return full(self)
end

local function put_nowait(self, item)
  if full(self) then
    error(queue_error("QueueFull", "queue:put_nowait: the queue is full"), 0)
  end
  self._tail = self._tail + 1
  self._items[self._tail] = item == nil and NIL or item
  self._unfinished = self._unfinished + 1
  self._finished:clear()
  wake_next(self._getters)
end

local function get_nowait(self)
  if qsize(self) == 0 then
    error(queue_error("QueueEmpty", "queue:get_nowait: the queue is empty"),
      0)
  end
  local item = self._items[self._head]
  self._items[self._head] = nil
  self._head = self._head + 1
  wake_next(self._putters)
  if item == NIL then
    return nil
  end
  return item
end

--- queue:put_nowait(item): raises QueueFull (code EAGAIN) when full.
function Queue:put_nowait(item)
  check_queue(self, "queue:put_nowait")
  put_nowait(self, item)
end

--- queue:get_nowait(): the first item, or raises QueueEmpty.
function Queue:get_nowait()
  check_queue(self, "queue:get_nowait")
  return get_nowait(self)
end

-- Waits in w until ready(self); a wait woken and then cancelled wakes the
-- next one in w when ready, as the item it was woken for is not taken.
local function wait_until(self, w, ready)
  while not ready(self) do
    local ok, err, fut = wait_in(w, true)
    if not ok then
      if ready(self) and not fut:cancelled() then
        wake_next(w)
      end
      error(err, 0)
    end
  end
end

local function room(self)
  return not full(self)
end

local function items(self)
  return qsize(self) > 0
end

local function put(self, item)
  wait_until(self, self._putters, room)
  put_nowait(self, item)
end

local function get(self)
  wait_until(self, self._getters, items)
  return get_nowait(self)
end

--- queue:put(item): waits while the queue is full.
function Queue:put(item)
  check_queue(self, "queue:put")
  return async(self, "queue:put", put, item)
end

--- queue:get(): the first item, waiting while the queue is empty.
function Queue:get()
  check_queue(self, "queue:get")
  return async(self, "queue:get", get)
end

--- queue:task_done(): one item got is dealt with (for join).
function Queue:task_done()
  check_queue(self, "queue:task_done")
  if self._unfinished <= 0 then
    error("tapio: queue:task_done: called more times than items were put",
      2)
  end
  self._unfinished = self._unfinished - 1
  if self._unfinished == 0 then
    self._finished:set()
  end
end

local function join(self)
  if self._unfinished > 0 then
    self._finished:wait()
  end
end

--- queue:join(): waits until task_done was called for every item put.
function Queue:join()
  check_queue(self, "queue:join")
  return async(self, "queue:join", join)
end

return M
