--- tapio.reader (internal): StreamReader, the buffer a task reads a
-- connection from, and its error values (IncompleteReadError,
-- LimitOverrunError), as asyncio's streams page defines them.
--
-- The buffer is a queue of the strings received (chunks) and an offset
-- into the first one; nothing is copied when a chunk arrives, and a read
-- copies only what it returns (one string.sub, or one table.concat of the
-- chunks it spans). So reading 64 MiB to EOF in 64 KiB chunks joins the
-- chunks once, at the end, and 100-byte lines read out of a 64 KiB chunk
-- cost a find and a sub each. A search for a separator resumes where the
-- last one stopped, so a line that arrives a byte at a time is scanned
-- once.
--
-- Backpressure: when more than twice the limit is buffered and no task
-- waits for more, the transport stops reading, and reads again once a
-- read leaves the limit or less (or a task must wait for more than is
-- there).
local core = require "tapio.core"
local U = require "tapio.util"
local F = require "tapio.future"
local T = require "tapio.task"

local M = { api = {} } -- api: what `tapio` holds too (see tapio.util)
-- debug.getmetatable: no __metatable lookup (half the cost of getmetatable)
local getmt = debug and debug.getmetatable or getmetatable
local find, sub, concat = string.find, string.sub, table.concat
local tasks, running, yield = F.tasks, coroutine.running, coroutine.yield
local bind = F.bind
local PARK, CANCEL, cancelled = F.PARK, F.CANCEL, F.cancelled
local unpark = T.unpark

M.DEFAULT_LIMIT = 65536

-- ---- Error values --------------------------------------------------------

local stream_error = U.named_error

-- The api functions' argument checks: argument n of fn, raised at fn's
-- caller. check_count: an integer >= 0 (a size).
local function check_count(v, fn, n, name, expected)
  if type(v) ~= "number" or v ~= math.floor(v) or v < 0 then
    U.argerror(fn, n, name, ("%s expected, got %s"):format(expected,
      type(v) == "number" and tostring(v) or type(v)))
  end
end

local function check_string(v, fn, n, name)
  if type(v) ~= "string" then
    U.argerror(fn, n, name, "string expected, got " .. U.typename(v))
  end
end

--- The end came before the read was complete: partial holds what was
-- read (and is consumed), expected the size asked for (nil: a separator).
function M.api.incomplete_read_error(partial, expected)
  local fn = "incomplete_read_error"
  check_string(partial, fn, 1, "partial")
  if expected ~= nil then
    check_count(expected, fn, 2, "expected", "integer >= 0 or nil")
  end
  return stream_error(core.errors.EOF, "IncompleteReadError",
    ("%d bytes read on a total of %s expected bytes")
      :format(#partial, expected and tostring(expected) or "undefined"),
    { partial = partial, expected = expected })
end

--- A separator was not found within the limit: consumed is how far the
-- buffer was searched (nothing of it is consumed).
function M.api.limit_overrun_error(message, consumed)
  check_string(message, "limit_overrun_error", 1, "message")
  check_count(consumed, "limit_overrun_error", 2, "consumed", "integer >= 0")
  return stream_error(core.errors.EMSGSIZE, "LimitOverrunError", message,
    { consumed = consumed })
end
local incomplete_read_error = M.api.incomplete_read_error
local limit_overrun_error = M.api.limit_overrun_error

-- ---- The buffer ----------------------------------------------------------

-- check_reader raises for a bad self; the methods call it only when the
-- metatable is not StreamReader's, so the good path makes no call.
local StreamReader, check_reader = U.class("tapio.StreamReader")
M.StreamReader = StreamReader
-- The readers made here, each with the task that last read it (see
-- future.lua's owners): read and readline check self and that a task
-- runs them with one lookup in it (debug.getmetatable costs twice one).
local readers = F.owners()

-- A reader's limit (nil: the default), or raises at the given level.
local function check_limit(limit, fn, what, level)
  if limit == nil then
    return M.DEFAULT_LIMIT
  end
  if type(limit) ~= "number" or limit ~= math.floor(limit) or limit <= 0
     or limit >= 2 ^ 53 then
    error(("tapio: %s: %s (integer > 0 expected, got %s)")
      :format(fn, what, type(limit) == "number" and tostring(limit)
                        or type(limit)), level + 1)
  end
  return limit
end
M.check_limit = check_limit

-- loop: where the reading methods make their task outside a task (nil:
-- the running loop).
function M.new_reader(limit, loop)
  local reader = setmetatable({
    _limit = limit, _loop = loop, _chunks = {}, _head = 1, _tail = 0, _off = 1,
    _size = 0,        -- bytes buffered and unread
    -- Bytes taken out of the buffer so far: a search's marker, which
    -- moves when another task reads meanwhile. What data_received hands a
    -- waiting read is not counted: it never enters the buffer, and no
    -- search waits then (one task waits at a time).
    _consumed = 0,
    -- The hot paths read no field that is nil (a field absent from the
    -- table is looked for through the metatable's __index too): _failed
    -- says whether _exception is set, _waiter is false when none waits.
    _eof = false, _exception = nil, _failed = false,
    _waiter = false,  -- the task waiting for data (parked on the reader)
    _want = 0,        -- wake it once this much is buffered
    _take = 0,        -- or hand it what comes, up to this much (a read)
    _transport = nil, _paused = false,
  }, StreamReader)
  readers[reader] = F.NOBODY
  return reader
end

--- tapio.StreamReader([limit]): a reader of its own, fed with feed_data
-- and feed_eof (for tests; connections make theirs).
setmetatable(StreamReader, { __call = function(_, limit)
  return M.new_reader(check_limit(limit, "StreamReader",
                                  "bad argument #1 'limit'", 2))
end })

-- Removes the first n bytes (n <= size) and returns them.
local function take(self, n)
  if n == 0 then
    return ""
  end
  local chunks, head, off = self._chunks, self._head, self._off
  local first = chunks[head]
  local avail = #first - off + 1
  local out
  if n < avail then
    out = sub(first, off, off + n - 1)
    self._off = off + n
  elseif n == avail then
    out = off == 1 and first or sub(first, off)
    chunks[head] = nil
    head, self._off = head + 1, 1
  else
    local parts = { off == 1 and first or sub(first, off) }
    chunks[head] = nil
    head = head + 1
    local need, newoff = n - avail, 1
    while need > 0 do
      local c = chunks[head]
      if #c <= need then
        parts[#parts + 1] = c
        chunks[head] = nil
        head, need = head + 1, need - #c
      else -- the last one, in part
        parts[#parts + 1] = sub(c, 1, need)
        newoff, need = need + 1, 0
      end
    end
    self._off = newoff
    out = concat(parts)
  end
  local size = self._size - n
  self._size, self._consumed = size, self._consumed + n
  if size == 0 then
    self._head, self._tail, self._off = 1, 0, 1
  else
    self._head = head
  end
  return out
end

-- The chunk holding unread byte pos (0-based) and the position of that
-- chunk's first unread byte; walked from whichever end is nearer.
local function locate(self, pos)
  local chunks, i = self._chunks, nil
  if pos < self._size / 2 then
    i = self._head
    local start, len = 0, #chunks[i] - self._off + 1
    while pos >= start + len do
      start, i = start + len, i + 1
      len = #chunks[i]
    end
    return i, start
  end
  i = self._tail
  local start = self._size - #chunks[i]
  if i == self._head then
    start = 0
  end
  while start > pos do
    i = i - 1
    start = i == self._head and 0 or start - #chunks[i]
  end
  return i, start
end

-- Where sep first starts at or after unread byte pos (0-based), or nil:
-- within a chunk by string.find, across a boundary in a short string of
-- the chunk's last #sep - 1 bytes and the next #sep - 1 bytes.
local function find_sep(self, sep, pos)
  local chunks, head, tail = self._chunks, self._head, self._tail
  local seplen = #sep
  local i, start = locate(self, pos)
  while i <= tail do
    local c = chunks[i]
    local base = i == head and self._off or 1 -- c's first unread byte
    local from = base + pos - start
    if from < base then
      from = base
    end
    local s = find(c, sep, from, true)
    if s then
      return start + s - base
    end
    if seplen > 1 and i < tail then
      local k = #c - seplen + 2
      if k < from then
        k = from
      end
      if k <= #c then
        local parts, need, j = { sub(c, k) }, seplen - 1, i + 1
        while need > 0 and j <= tail do
          parts[#parts + 1] = sub(chunks[j], 1, need)
          need, j = need - #chunks[j], j + 1
        end
        s = find(concat(parts), sep, 1, true)
        if s then
          return start + k - base + s - 1
        end
      end
    end
    start, i = start + #c - base + 1, i + 1
  end
  return nil
end

-- Whether unread byte pos starts with s.
local function starts_with(self, pos, s)
  if self._size < pos + #s then
    return false
  end
  return find_sep(self, s, pos) == pos
end

local function maybe_resume(self)
  if self._paused and self._size <= self._limit then
    self._paused = false
    self._transport:resume_reading()
  end
end

M.maybe_resume = maybe_resume

--- Everything buffered, taken out of the reader (nil when empty): for
-- start_tls, whose handshake gets these bytes first (asyncio lost them:
-- cpython#142352).
function M.take_all(self)
  if self._size == 0 then
    return nil
  end
  return take(self, self._size)
end

--- Puts data taken by take_all back (the reader holds nothing else).
function M.untake(self, data)
  self._chunks[1], self._head, self._tail, self._off = data, 1, 1, 1
  self._size, self._consumed = #data, self._consumed - #data
end

-- ---- Feeding (the protocol's side) ---------------------------------------

-- Resumes the waiting task: there and then for data (one coroutine
-- switch per read: see future.lua's park), soon for the end or an error.
local function wakeup(self, how)
  local task = self._waiter
  if task then
    self._waiter = false
    how(task, self)
  end
end

--- reader:feed_data(data): appends data; the transport stops reading
-- over twice the limit, unless a task (still) waits for more.
local function feed_data(self, data)
  local n = #data
  if n == 0 then
    return
  end
  local tail = self._tail + 1
  self._chunks[tail] = data
  self._tail = tail
  local size = self._size + n
  self._size = size
  local task = self._waiter
  if task and size >= self._want then
    self._waiter = false
    unpark(task, self) -- the task may have read some already
    size = self._size
  end
  -- A task waiting now needs more than is there (a readuntil that woke
  -- and searched in vain waits again): pausing would leave it waiting.
  if size > 2 * self._limit and not self._paused and self._transport
     and not self._waiter then
    self._paused = true
    self._transport:pause_reading()
  end
end
M.feed_data = feed_data

--- A stream connection's data_received (tapio.streams' StreamProtocol):
-- feed_data on its reader, and before it, where a read waits for up to
-- n bytes and #data <= n, data is handed to it as it came, never
-- buffered (unless the task no longer waits): a read per chunk received
-- does no buffer bookkeeping. Here, not in feed_data, to save a call on
-- the way (reader:feed_data, for tests, and pipes buffer).
function M.data_received(protocol, data)
  local self = protocol._reader
  local task, n = self._waiter, #data
  if task and n > 0 and n <= self._take and self._size == 0 then
    self._waiter = false
    if unpark(task, self, data) then
      return
    end
  end
  feed_data(self, data)
end

function StreamReader:feed_data(data)
  if getmt(self) ~= StreamReader then
    check_reader(self, "reader:feed_data")
  end
  if type(data) ~= "string" then
    error("tapio: reader:feed_data: bad argument #1 'data' (string "
      .. "expected, got " .. type(data) .. ")", 2)
  end
  if self._eof then
    error("tapio: reader:feed_data: feed_data after feed_eof", 2)
  end
  feed_data(self, data)
end

function StreamReader:feed_eof()
  if getmt(self) ~= StreamReader then
    check_reader(self, "reader:feed_eof")
  end
  self._eof = true
  wakeup(self, T.unpark_soon)
end

--- reader:set_exception(err): every read from now on raises err, and a
-- waiting one at once.
function StreamReader:set_exception(err)
  if getmt(self) ~= StreamReader then
    check_reader(self, "reader:set_exception")
  end
  if err == nil then
    error("tapio: reader:set_exception: bad argument #1 'exception' (an "
      .. "error value expected, got nil)", 2)
  end
  self._exception, self._failed = err, true
  wakeup(self, T.unpark_soon)
end

function StreamReader:exception()
  if getmt(self) ~= StreamReader then
    check_reader(self, "reader:exception")
  end
  return self._exception
end

--- True once feed_eof was called and everything was read.
function StreamReader:at_eof()
  if getmt(self) ~= StreamReader then
    check_reader(self, "reader:at_eof")
  end
  return self._eof and self._size == 0
end

--- How many bytes are buffered, unread (tapio's: asyncio has none).
function StreamReader:get_buffer_size()
  if getmt(self) ~= StreamReader then
    check_reader(self, "reader:get_buffer_size")
  end
  return self._size
end

function StreamReader:__tostring()
  local t = { ("tapio.StreamReader (%d bytes"):format(self._size) }
  if self._eof then
    t[#t + 1] = ", eof"
  end
  if self._limit ~= M.DEFAULT_LIMIT then
    t[#t + 1] = (", limit=%d"):format(self._limit)
  end
  if self._failed then
    t[#t + 1] = ", exception=" .. U.safe_tostring(self._exception)
  end
  if self._paused then
    t[#t + 1] = ", paused"
  end
  return concat(t) .. ")"
end

-- ---- Reading (the task's side) -------------------------------------------

local function raise_exception(self)
  if self._failed then
    error(self._exception, 0)
  end
end

-- What a wait checks first, when self._waiter or self._paused is set:
-- another task waiting already is an error; a paused transport reads on
-- (the buffer cannot serve this read).
local function before_wait(self, fn)
  local waiter = self._waiter
  if waiter and waiter._parked == self then
    error(("tapio: reader:%s: another task is already waiting for data "
      .. "on this reader"):format(fn), 0)
  end
  if self._paused then
    self._paused = false
    self._transport:resume_reading()
  end
end

-- Suspends the task (the running one, unless given) until want bytes
-- are buffered, or the end, or an error (raised). One task at a time may
-- wait; a cancelled wait consumes nothing, so the reader stays usable,
-- and is no waiter any more: feed_data would not pause the transport for
-- its want (a read to the end's: never).
-- With take (a read of up to take bytes, into an empty buffer), the data
-- that comes may be handed over instead (see data_received): returned.
local function wait_for_data(self, fn, want, task, take)
  if self._waiter or self._paused then
    before_wait(self, fn)
  end
  task = task or tasks[running()]
  self._waiter, self._want, self._take = task, want, take or 0
  local data = yield(PARK, self) -- future.lua's park, inline
  if data == CANCEL then
    if self._waiter == task then
      self._waiter = false
    end
    cancelled()
  end
  if self._failed then
    error(self._exception, 0)
  end
  return data
end

local async = F.async
M.async = async

local function check_size(n, fn)
  if type(n) ~= "number" or n ~= math.floor(n) then
    error(("tapio: %s: bad argument #1 'n' (integer expected, got %s)")
      :format(fn, type(n) == "number" and tostring(n) or type(n)), 3)
  end
  return n
end

--- reader:read([n]): up to n bytes, waiting for some if none is there;
-- n nil or negative: everything to the end; "" at the end.
function StreamReader:read(n)
  local co, task = running(), readers[self]
  if not (task and task._co == co) then -- not the task that read last
    if not task then
      check_reader(self, "reader:read")
    end
    task = bind(readers, self, co, "reader:read")
  end
  if n == nil then
    n = -1
  elseif n ~= self._checked then -- a loop reads with one n: checked once
    self._checked = check_size(n, "reader:read")
  end
  if not task then -- then this runs again, in a task of its own
    return async(self, "reader:read", StreamReader.read, n)
  end
  if self._failed then
    error(self._exception, 0)
  end
  if n > 0 then -- the usual case: one call, one wait
    local size = self._size
    if size == 0 and not self._eof then
      local data = wait_for_data(self, "read", 1, task, n)
      if data then -- handed over by data_received
        return data
      end
      size = self._size
    end
    local data
    local head = self._head
    if n >= size and head == self._tail and self._off == 1 then
      -- One whole chunk (a read per chunk received): take's second case,
      -- inline, the chunk handed out as it came.
      local chunks = self._chunks
      data = chunks[head]
      chunks[head] = nil
      self._head, self._tail, self._size = 1, 0, 0
      self._consumed = self._consumed + size
    else
      data = take(self, n < size and n or size)
    end
    if self._paused then
      maybe_resume(self)
    end
    return data
  elseif n == 0 then
    return ""
  end
  while not self._eof do -- to the end: joined once
    wait_for_data(self, "read", math.huge, task)
  end
  local data = take(self, self._size)
  maybe_resume(self)
  return data
end

local function readexactly(self, n)
  raise_exception(self)
  if n == 0 then
    return ""
  end
  while self._size < n do
    if self._eof then
      error(incomplete_read_error(take(self, self._size), n), 0)
    end
    wait_for_data(self, "readexactly", n)
  end
  local data = take(self, n)
  maybe_resume(self)
  return data
end

-- What readexactly and readuntil check first, as read and readline do
-- inline: self, and the task's loop where a task reads self first (bind);
-- raised at the method's caller.
local function bound(self, fn)
  local co, task = running(), readers[self]
  if not (task and task._co == co) then
    if not task then
      U.check_self(self, StreamReader, fn, 4)
    end
    bind(readers, self, co, fn, 4)
  end
end

--- reader:readexactly(n): exactly n bytes, or IncompleteReadError (with
-- what came) at the end.
function StreamReader:readexactly(n)
  bound(self, "reader:readexactly")
  n = check_size(n, "reader:readexactly")
  if n < 0 then
    error("tapio: reader:readexactly: bad argument #1 'n' (size can not "
      .. "be less than zero)", 2)
  end
  return async(self, "reader:readexactly", readexactly, n)
end

-- Searches for the separators (seps: sorted by length, or nil for sep
-- alone) as asyncio's readuntil does, waiting as needed. Returns the
-- data through the first separator to end (removed from the buffer);
-- or nil, err: an IncompleteReadError at the end (the buffer emptied
-- into it) or a LimitOverrunError (the buffer untouched).
local function until_sep(self, fn, sep, seps)
  raise_exception(self)
  local minlen = #sep
  local maxlen = seps and #seps[#seps] or minlen
  local offset, consumed = 0, self._consumed
  local mstart, mend
  while true do
    local size = self._size
    if size - offset >= minlen then
      if seps then
        for i = 1, #seps do
          local s = find_sep(self, seps[i], offset)
          if s and (not mend or s + #seps[i] < mend) then
            mstart, mend = s, s + #seps[i]
          end
        end
      else
        mstart = find_sep(self, sep, offset)
        mend = mstart and mstart + minlen
      end
      if mend then
        break
      end
      offset = size + 1 - maxlen
      if offset < 0 then
        offset = 0
      end
      if offset > self._limit then
        return nil, limit_overrun_error(
          "Separator is not found, and chunk exceed the limit", offset)
      end
    end
    if self._eof then
      return nil, incomplete_read_error(take(self, self._size), nil)
    end
    wait_for_data(self, fn, 1)
    if self._consumed ~= consumed then -- another task read meanwhile
      offset, consumed = 0, self._consumed
    end
  end
  if mstart > self._limit then
    return nil, limit_overrun_error(
      "Separator is found, but chunk is longer than limit", mstart)
  end
  local data = take(self, mend)
  maybe_resume(self)
  return data
end

local function readuntil(self, sep, seps)
  local data, err = until_sep(self, "readuntil", sep, seps)
  if not data then
    error(err, 0)
  end
  return data
end

--- reader:readuntil([separator]): the data through the separator
-- ("\n" by default; a list of separators: the first match to end wins).
function StreamReader:readuntil(separator)
  local fn = "reader:readuntil"
  bound(self, fn)
  separator = separator == nil and "\n" or separator
  local seps
  if type(separator) == "table" then
    local why = U.not_a_list(separator)
    if why then
      error(("tapio: %s: bad argument #1 'separator' (list expected, %s)")
        :format(fn, why), 2)
    end
    seps = {}
    for i, s in ipairs(separator) do
      if type(s) ~= "string" then
        error(("tapio: %s: bad argument #1 'separator' (string expected "
          .. "at index %d, got %s)"):format(fn, i, type(s)), 2)
      end
      seps[i] = s
    end
    if #seps == 0 then
      error("tapio: " .. fn .. ": bad argument #1 'separator' (separator "
        .. "should contain at least one element)", 2)
    end
    table.sort(seps, function(a, b) return #a < #b end)
  elseif type(separator) ~= "string" then
    error(("tapio: %s: bad argument #1 'separator' (string or list "
      .. "expected, got %s)"):format(fn, type(separator)), 2)
  end
  local sep = seps and seps[1] or separator
  if #sep == 0 then
    error("tapio: " .. fn .. ": bad argument #1 'separator' (separator "
      .. "should be at least one-byte string)", 2)
  end
  return async(self, fn, readuntil, sep, seps)
end

local function readline(self)
  local line, err = until_sep(self, "readline", "\n")
  if line then
    return line
  end
  if err.name == "IncompleteReadError" then
    return err.partial
  end
  -- Over the limit: the line is dropped through its newline if one is
  -- there, else everything buffered is (asyncio's choice).
  if starts_with(self, err.consumed, "\n") then
    take(self, err.consumed + 1)
  else
    take(self, self._size)
  end
  maybe_resume(self)
  error(err, 0)
end

--- reader:readline(): a line through "\n"; at the end what is left ("" if
-- nothing). A line over the limit raises LimitOverrunError (asyncio:
-- ValueError) and is dropped.
function StreamReader:readline()
  local co, task = running(), readers[self]
  if not (task and task._co == co) then
    if not task then
      check_reader(self, "reader:readline")
    end
    task = bind(readers, self, co, "reader:readline")
  end
  -- The usual case, in a task: a whole line in the buffer's first chunk
  -- (and when it is not the chunk's end, take's first case inline), once
  -- some data is there (an empty buffer is waited on here first, as
  -- until_sep would: a line that came whole is then found at once).
  if task and not self._failed then
    if self._size == 0 and not self._eof then
      wait_for_data(self, "readline", 1, task)
    end
    local first = self._chunks[self._head]
    local off = self._off
    local e = first and find(first, "\n", off, true)
    if e and e - off <= self._limit then
      local line
      if e < #first then
        local n = e - off + 1
        self._off, self._size = e + 1, self._size - n
        self._consumed = self._consumed + n
        line = sub(first, off, e)
      else
        line = take(self, e - off + 1)
      end
      if self._paused then
        maybe_resume(self)
      end
      return line
    end
  end
  return async(self, "reader:readline", readline)
end

--- reader:lines(): for a task's generic for, each line (readline's,
-- through its "\n") until the end, as asyncio's `async for line in
-- reader`; readline's errors are raised where the loop is. Outside a
-- task a for loop cannot wait: an error at once.
function StreamReader:lines()
  check_reader(self, "reader:lines")
  if not F.api.current_task() then
    error("tapio: reader:lines: not inside a task (a for loop cannot "
      .. "wait anywhere else: use readline's future)", 2)
  end
  return function()
    local line = self:readline()
    if line ~= "" then
      return line
    end
  end
end

return M
