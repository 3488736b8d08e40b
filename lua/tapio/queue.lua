--- tapio.queue (internal): asyncio's queues for tasks: Queue (first in,
-- first out), PriorityQueue (smallest first), LifoQueue (last in, first
-- out). One Queue class; each kind is only its storage, behind init, put,
-- get and size. Waits follow the async rule and tapio.sync's waiter lists:
-- first come, first served, and a waiter cancelled after it was woken
-- passes its turn on.
local core = require "tapio.core"
local U = require "tapio.util"
local F = require "tapio.future"
local Y = require "tapio.sync"

local M = { api = {} } -- api: what `tapio` holds too (see tapio.util)
local api = M.api
local async = F.async
local new_waiters, wake_next, wait_in = Y.new_waiters, Y.wake_next, Y.wait_in
local argerror, check_count = Y.argerror, Y.check_count
local named_error = U.named_error
local EAGAIN, ESHUTDOWN = core.errors.EAGAIN, core.errors.ESHUTDOWN
local floor = math.floor

-- ---- The storage of each kind --------------------------------------------

-- First in, first out: items[head..tail].
local fifo = {
  init = function(q)
    q._items, q._head, q._tail = {}, 1, 0
  end,
  size = function(q)
    return q._tail - q._head + 1
  end,
  put = function(q, item)
    q._tail = q._tail + 1
    q._items[q._tail] = item
  end,
  get = function(q)
    local item = q._items[q._head]
    q._items[q._head] = nil
    q._head = q._head + 1
    return item
  end,
}

-- Last in, first out: items[1..n].
local function stack_size(q)
  return q._n
end

local lifo = {
  init = function(q)
    q._items, q._n = {}, 0
  end,
  size = stack_size,
  put = function(q, item)
    q._n = q._n + 1
    q._items[q._n] = item
  end,
  get = function(q)
    local item = q._items[q._n]
    q._items[q._n] = nil
    q._n = q._n - 1
    return item
  end,
}

-- Priority: a binary heap in items[1..n], with each item's put number in
-- seqs (equals come out in the order they were put). A comparison that
-- raises leaves the heap as it was: where an item goes is found first,
-- with nothing moved, then the items on its path move.

-- The priority of an item: a table's first field, else the item.
local function priority(v)
  if type(v) == "table" then
    return v[1]
  end
  return v
end

local function by_priority(a, b)
  return priority(a) < priority(b)
end

-- Whether the item at i comes out before the one at j.
local function before(q, i, j)
  local a, b, less = q._items[i], q._items[j], q._less
  if less(a, b) then
    return true
  end
  return not less(b, a) and q._seqs[i] < q._seqs[j]
end

-- Where the item at n (a leaf) rises to.
local function rise_to(q, n)
  local i = n
  while i > 1 and before(q, n, floor(i / 2)) do
    i = floor(i / 2)
  end
  return i
end

-- Where the item at n sinks to from the root, the root gone (heap 1..n-1).
local function sink_to(q, n)
  local i = 1
  while 2 * i < n do
    local c = 2 * i
    if c + 1 < n and before(q, c + 1, c) then
      c = c + 1
    end
    if not before(q, c, n) then
      break
    end
    i = c
  end
  return i
end

-- rise: the item at from (a leaf) goes up to to, and the items on the
-- way move one step down.
local function rise(q, from, to)
  local items, seqs = q._items, q._seqs
  local item, seq = items[from], seqs[from]
  local i = from
  while i > to do
    local up = floor(i / 2)
    items[i], seqs[i] = items[up], seqs[up]
    i = up
  end
  items[to], seqs[to] = item, seq
end

-- sink: the item at from (the last) goes to to, and the items on the
-- path above it move one step up (the root's goes: it was got).
local function sink(q, from, to)
  local items, seqs = q._items, q._seqs
  local item, seq = items[from], seqs[from]
  local i = to
  while i >= 1 do -- carried up: each one's place to its parent
    item, items[i] = items[i], item
    seq, seqs[i] = seqs[i], seq
    i = floor(i / 2)
  end
end

-- A comparison raised: raised again, naming fn (the heap as it was).
local function incomparable(fn, err)
  error(("tapio: %s: the items do not compare (%s)")
    :format(fn, U.safe_tostring(err)), 0)
end

local heap = {
  init = function(q)
    q._items, q._seqs, q._n, q._puts = {}, {}, 0, 0
  end,
  size = stack_size,
  put = function(q, item, fn)
    local n = q._n + 1
    q._puts = q._puts + 1
    q._items[n], q._seqs[n] = item, q._puts
    local ok, at = pcall(rise_to, q, n)
    if not ok then
      q._items[n], q._seqs[n] = nil, nil
      incomparable(fn, at)
    end
    rise(q, n, at)
    q._n = n
  end,
  get = function(q, fn)
    local n = q._n
    local item = q._items[1]
    local ok, at = pcall(sink_to, q, n)
    if not ok then
      incomparable(fn, at)
    end
    sink(q, n, at)
    q._items[n], q._seqs[n] = nil, nil
    q._n = n - 1
    return item
  end,
}

-- ---- Queue ---------------------------------------------------------------

local Queue, check_queue = U.class("tapio.Queue")

local function new_queue(kind, maxsize, fn, less)
  local q = setmetatable({
    maxsize = check_count(maxsize, fn, "maxsize", 0, -math.huge),
    _kind = kind,
    _less = less, _getters = new_waiters(), _putters = new_waiters(),
    _unfinished = 0, _finished = Y.api.Event(), _shut = false }, Queue)
  kind.init(q)
  return q
end

--- tapio.Queue([maxsize]): first in, first out; put waits while maxsize
-- items are in it (0, the default, or less: never, as in asyncio).
api.Queue = setmetatable(Queue, { __call = function(_, maxsize)
  return new_queue(fifo, maxsize, "Queue")
end })

--- tapio.LifoQueue([maxsize]): a Queue that gives the last item put first.
function api.LifoQueue(maxsize)
  return new_queue(lifo, maxsize, "LifoQueue")
end

-- PriorityQueue's opts.less, or the default.
local function check_less(opts)
  if opts == nil then
    return by_priority
  elseif type(opts) ~= "table" then
    argerror("PriorityQueue", 2, "opts", "table expected, got " ..
      type(opts))
  end
  for k in pairs(opts) do
    if k ~= "less" then
      argerror("PriorityQueue", 2, "opts", "unknown option '" ..
        tostring(k) .. "'")
    end
  end
  if opts.less == nil then
    return by_priority
  end
  U.check_callable(opts.less, "PriorityQueue", 2, "opts.less", 4)
  return opts.less
end

--- tapio.PriorityQueue([maxsize [, opts]]): a Queue that gives the
-- smallest item first: by opts.less(a, b), else by priority (a table's
-- first field, any other item itself) compared with <; equals in the
-- order they were put.
function api.PriorityQueue(maxsize, opts)
  local less = check_less(opts)
  return new_queue(heap, maxsize, "PriorityQueue", less)
end

local function qsize(self)
  return self._kind.size(self)
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

-- What the queue raises: error values named as asyncio's exceptions,
-- QueueFull and QueueEmpty with code EAGAIN (the wait they would need),
-- QueueShutDown with ESHUTDOWN.
local function queue_error(name, message)
  return named_error(EAGAIN, name, message)
end

local function shut_down(fn)
  return named_error(ESHUTDOWN, "QueueShutDown", fn ..
    ": the queue is shut down")
end

local function put_nowait(self, item, fn)
  if self._shut then
    error(shut_down(fn), 0)
  elseif full(self) then
    error(queue_error("QueueFull", fn .. ": the queue is full"), 0)
  end
  self._kind.put(self, item, fn)
  self._unfinished = self._unfinished + 1
  self._finished:clear()
  wake_next(self._getters)
end

local function get_nowait(self, fn)
  if qsize(self) == 0 then
    error(self._shut and shut_down(fn) or
      queue_error("QueueEmpty", fn .. ": the queue is empty"), 0)
  end
  local item = self._kind.get(self, fn)
  wake_next(self._putters)
  return item
end

--- queue:put_nowait(item): raises QueueFull (code EAGAIN) when full.
function Queue:put_nowait(item)
  check_queue(self, "queue:put_nowait")
  put_nowait(self, item, "queue:put_nowait")
end

--- queue:get_nowait(): the first item, or raises QueueEmpty.
function Queue:get_nowait()
  check_queue(self, "queue:get_nowait")
  return get_nowait(self, "queue:get_nowait")
end

-- Waits in w until ready(self), unless the queue is shut down; a wait
-- woken and then cancelled wakes the next one in w when ready, as the
-- item it was woken for is not taken.
local function wait_until(self, w, ready, fn)
  while not ready(self) do
    if self._shut then
      error(shut_down(fn), 0)
    end
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
  wait_until(self, self._putters, room, "queue:put")
  put_nowait(self, item, "queue:put")
end

local function get(self)
  wait_until(self, self._getters, items, "queue:get")
  return get_nowait(self, "queue:get")
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

local function finished(self, n)
  self._unfinished = self._unfinished - n
  if self._unfinished == 0 then
    self._finished:set()
  end
end

--- queue:task_done(): one item got is dealt with (for join).
function Queue:task_done()
  check_queue(self, "queue:task_done")
  if self._unfinished <= 0 then
    error("tapio: queue:task_done: called more times than items were put",
      2)
  end
  finished(self, 1)
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

--- queue:shutdown([immediate]): put raises QueueShutDown from now on, and
-- get once the queue is empty; immediate empties it now (the items
-- dropped count as done, for join). Every task waiting is woken, to see.
function Queue:shutdown(immediate)
  check_queue(self, "queue:shutdown")
  self._shut = true
  if immediate then
    local n = qsize(self)
    self._kind.init(self)
    finished(self, math.min(n, self._unfinished))
  end
  while wake_next(self._getters) do
  end
  while wake_next(self._putters) do
  end
end

return M
