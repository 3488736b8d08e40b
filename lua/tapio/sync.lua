--- tapio.sync (internal): asyncio's synchronisation primitives for
-- tasks: Event, Lock, Semaphore, BoundedSemaphore, Condition, Barrier
-- (the queues, tapio.queue, wait on the waiter lists kept here). Their
-- waits follow the async rule (inside a task they suspend it; elsewhere
-- they return a future), and are first come, first served, as asyncio's
-- are, cancellations included: a waiter cancelled after it was woken
-- passes its turn on, so nobody is left waiting with the lock free (the
-- bugs asyncio had: python/asyncio issue 270, cpython issue 90155) and no
-- condition's notify is lost (cpython gh-112202).
local core = require "tapio.core"
local U = require "tapio.util"
local F = require "tapio.future"

local M = { api = {} } -- api: what `tapio` holds too (see tapio.util)
local api = M.api
local await, async, current_task = F.await, F.async, F.api.current_task
local is_cancelled = U.api.is_cancelled
local EPIPE = core.errors.EPIPE

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

-- Wakes the first n waiters not done yet, leaving them in the list (they
-- take themselves out: wait_in).
local function wake(w, n)
  for i = w.head, w.tail do
    if n <= 0 then
      return
    end
    if not w[i]:done() then
      w[i]:set_result(true)
      n = n - 1
    end
  end
end

-- Takes the first waiter not done out of the list and wakes it; false
-- when there was none (the queues', which take their waiters out).
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

local argerror = U.argerror

-- Argument #1, an integer >= min (0 unless given; -math.huge: any
-- integer); nil is default.
local function check_count(v, fn, name, default, min)
  min = min or 0
  if v == nil and default ~= nil then
    return default
  end
  if type(v) ~= "number" or v < min or v ~= math.floor(v) then
    argerror(fn, 1, name, (min == -math.huge and "an integer" or
      ("an integer >= %d"):format(min)) .. " expected, got " ..
      (type(v) == "number" and tostring(v) or U.typename(v)))
  end
  return v
end

local named_error = U.named_error

-- What tapio.queue shares.
M.new_waiters, M.wake_next, M.wait_in = new_waiters, wake_next, wait_in
M.argerror, M.check_count = argerror, check_count

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
    wake(self._waiters, math.huge)
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

-- Frees lock for fn (named in the error, at fn's caller, if it is not
-- held); the first task waiting gets it.
local function unlock(lock, fn)
  if not lock._locked then
    error(("tapio: %s: the lock is not acquired"):format(fn), 3)
  end
  lock._locked = false
  wake_first(lock._waiters)
end

--- lock:release(): frees the lock; the first task waiting gets it.
function Lock:release()
  check_lock(self, "lock:release")
  unlock(self, "lock:release")
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


-- ---- Condition -----------------------------------------------------------

local Condition, check_cond = U.class("tapio.Condition")

--- tapio.Condition([lock]): tasks holding lock (a tapio.Lock, default a
-- new one) wait until another notifies them.
api.Condition = setmetatable(Condition, { __call = function(_, lock)
  if lock == nil then
    lock = Lock()
  elseif getmetatable(lock) ~= Lock then
    argerror("Condition", 1, "lock", "tapio.Lock expected, got " ..
      U.typename(lock), 3)
  end
  return setmetatable({ _lock = lock, _waiters = new_waiters() }, Condition)
end })

function Condition:locked()
  check_cond(self, "condition:locked")
  return self._lock._locked
end

--- condition:acquire(): true once the lock is the task's.
function Condition:acquire()
  check_cond(self, "condition:acquire")
  return async(self._lock, "condition:acquire", lock_acquire)
end

function Condition:release()
  check_cond(self, "condition:release")
  unlock(self._lock, "condition:release")
end

--- condition:with(fn, ...): fn(...)'s results, run holding the lock.
function Condition:with(fn, ...)
  check_cond(self, "condition:with")
  check_with(fn, "condition:with")
  return holding(self, fn, ...)
end

-- Takes lock again for a condition's wait whatever happens: asyncio's
-- wait holds the lock when it returns and when it raises, also when it
-- is cancelled (again) meanwhile. Returns the last cancellation that had
-- to wait, or nil.
local function reacquire(lock)
  local cancelled
  while true do
    local ok, err = pcall(lock_acquire, lock)
    if ok then
      return cancelled
    elseif not is_cancelled(err) then
      error(err, 0)
    end
    cancelled = err
  end
end

local function cond_wait(self)
  unlock(self._lock, "condition:wait")
  local ok, err, fut = wait_in(self._waiters)
  local cancelled = reacquire(self._lock)
  if ok and cancelled then
    ok, err = false, cancelled
  end
  if not ok then
    if fut:done() and not fut:cancelled() then
      wake(self._waiters, 1) -- it was notified: another takes the notify
    end
    error(err, 0)
  end
  return true
end

local function cond_wait_for(self, predicate)
  local result = predicate()
  while not result do
    cond_wait(self)
    result = predicate()
  end
  return result
end

-- Raises at the method's caller when the task does not hold the lock.
local function check_held(self, fn)
  if not self._lock._locked then
    error(("tapio: %s: the lock is not acquired"):format(fn), 3)
  end
end

--- condition:wait(): releases the lock, waits for a notify, takes the
-- lock again (also when cancelled) and returns true.
function Condition:wait()
  check_cond(self, "condition:wait")
  check_held(self, "condition:wait")
  return async(self, "condition:wait", cond_wait)
end

--- condition:wait_for(predicate): waits until predicate() is true;
-- returns that value.
function Condition:wait_for(predicate)
  check_cond(self, "condition:wait_for")
  U.check_callable(predicate, "condition:wait_for", 1, "predicate")
  check_held(self, "condition:wait_for")
  return async(self, "condition:wait_for", cond_wait_for, predicate)
end

--- condition:notify([n]): wakes n tasks waiting (default 1), the first.
function Condition:notify(n)
  check_cond(self, "condition:notify")
  n = check_count(n, "condition:notify", "n", 1)
  check_held(self, "condition:notify")
  wake(self._waiters, n)
end

function Condition:notify_all()
  check_cond(self, "condition:notify_all")
  check_held(self, "condition:notify_all")
  wake(self._waiters, math.huge)
end

-- ---- Barrier -------------------------------------------------------------

-- A barrier fills until parties tasks wait, then drains: they all go on,
-- and a task arriving meanwhile waits for the next round. Reset drains it
-- too (the tasks in it raise), abort breaks it until a reset. Every
-- change of state wakes every waiter, to look again.
local Barrier, check_barrier = U.class("tapio.Barrier")

--- tapio.Barrier(parties): parties tasks wait() for each other.
api.Barrier = setmetatable(Barrier, { __call = function(_, parties)
  parties = check_count(parties, "Barrier", "parties", nil, 1)
  return setmetatable({ parties = parties, _state = "filling", _count = 0,
                        _free = {}, _waiters = new_waiters() }, Barrier)
end })

local function broken_error(message)
  return named_error(EPIPE, "BrokenBarrierError", "barrier:wait: " ..
    message)
end

local function changed(self)
  wake(self._waiters, math.huge)
end

-- Waits until not busy(self); raises a cancellation.
local function barrier_until(self, busy)
  while busy(self) do
    local ok, err = wait_in(self._waiters)
    if not ok then
      error(err, 0)
    end
  end
end

local function draining(self)
  return self._state == "draining" or self._state == "resetting"
end

local function filling(self)
  return self._state == "filling"
end

-- Waits for the round to fill (the last one in fills it). Returns true,
-- or false and the error to raise.
local function wait_round(self)
  if self._count == self.parties then
    self._state = "draining"
    changed(self)
    return true
  end
  local ok, err = pcall(barrier_until, self, filling)
  if ok and self._state == "resetting" then
    return false, broken_error("the barrier was reset")
  elseif ok and self._state == "broken" then
    return false, broken_error("the barrier was aborted")
  end
  return ok, err
end

local function barrier_wait(self)
  barrier_until(self, draining) -- the last round's tasks leave first
  if self._state == "broken" then
    error(broken_error("the barrier is broken"), 0)
  end
  -- a task that left the round filling (cancelled) left its index free
  local index = table.remove(self._free) or self._count
  self._count = self._count + 1
  local ok, err = wait_round(self)
  self._count = self._count - 1
  if not ok and filling(self) then
    self._free[#self._free + 1] = index
  end
  if self._count == 0 then -- the last one out: the next round fills
    if draining(self) then
      self._state = "filling"
    end
    self._free = {}
    changed(self)
  end
  if not ok then
    error(err, 0)
  end
  return index
end

--- barrier:wait(): this task's index in its round, 0 to parties - 1 in
-- the order they came (one that left the round, cancelled, leaves its
-- index to the next to come), once parties tasks wait; raises
-- BrokenBarrierError when broken, reset or aborted.
function Barrier:wait()
  check_barrier(self, "barrier:wait")
  return async(self, "barrier:wait", barrier_wait)
end

--- barrier:reset(): the tasks waiting raise BrokenBarrierError; once
-- they are out, it fills again (and is no longer broken).
function Barrier:reset()
  check_barrier(self, "barrier:reset")
  self._state = self._count > 0 and "resetting" or "filling"
  changed(self)
end

--- barrier:abort(): breaks it: every wait raises until a reset.
function Barrier:abort()
  check_barrier(self, "barrier:abort")
  self._state = "broken"
  changed(self)
end

--- barrier:n_waiting(): how many wait for the round to fill.
function Barrier:n_waiting()
  check_barrier(self, "barrier:n_waiting")
  return self._state == "filling" and self._count or 0
end

function Barrier:broken()
  check_barrier(self, "barrier:broken")
  return self._state == "broken"
end

return M
