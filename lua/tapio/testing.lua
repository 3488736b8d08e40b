--- tapio.testing: the kit for testing protocols written on tapio (see
-- lua/README.md, "Testing protocols", and examples/testing/).
--
--   testing.new_loop()            a loop on a virtual clock, and its clock
--   clock:advance(s)              time moves only when the test says
--   testing.pipe_pair(a, b, opts) two protocols joined through memory
--   testing.open_pair(opts)       two reader/writer pairs, the same way
--   testing.fault(t, spec)        resets, ends, errors, stalls, drips
--   testing.datagram_faults(t, s) loss, duplication, reordering, delay of
--                                 a datagram endpoint, virtual or real
--   testing.recorder(inner)       every callback written down, in order
--   testing.fake_program(l, n, f) what subprocess_exec of n starts on a
--                                 virtual loop: f plays the child
--   testing.run(body)             a busted test body as a task on a
--                                 virtual loop, checked for what it leaves
--
-- The protocol under test is the one that runs on real sockets: only the
-- loop and the transports' far ends are the kit's. Built on the core's
-- testing section (capi/tapio.h) through tapio.core.testing.
local core = require "tapio.core"
local tapio = require "tapio"
local U = require "tapio.util"
local F = require "tapio.future"
local R = require "tapio.reader"
local S = require "tapio.streams"
local T = require "tapio.task"

local K = core.testing
local testing = {}
local resolve = F.resolve
local typename = U.typename

local function argerror(fn, n, name, msg, level)
  error(("tapio: testing.%s: bad argument #%d '%s' (%s)")
    :format(fn, n, name, msg), (level or 2) + 1)
end

-- ---- Seeds ------------------------------------------------------------------

-- Every draw of the kit (random chunk sizes, a fault's place within a
-- range) comes from one generator of the session's seed, so that a
-- failing run replays from its seed: TAPIO_TEST_SEED=n, testing.seed(n),
-- or testing.run's opts.seed.
local session = {}

local function fresh_seed()
  local env = tonumber(os.getenv("TAPIO_TEST_SEED") or "")
  if env then
    return env
  end
  return (os.time() * 7919 + math.floor(os.clock() * 1e6)) % 2147483647
end

--- testing.seed([n]): sets the session's seed to n (an integer); returns
-- the seed in use.
function testing.seed(n)
  if n ~= nil then
    if type(n) ~= "number" or n < 0 or n ~= math.floor(n) then
      argerror("seed", 1, "n", "integer >= 0 expected, got " .. typename(n))
    end
    session.seed, session.gen = n, K._random(n)
  elseif not session.seed then
    testing.seed(fresh_seed())
  end
  return session.seed
end

local function draw(lo, hi)
  testing.seed()
  return session.gen(lo, hi)
end

-- ---- The clock ----------------------------------------------------------------

local Clock = {}
Clock.__index = Clock
Clock.__name = "tapio.testing.clock"
local clocks = setmetatable({}, { __mode = "k" })

--- testing.clock(loop): the clock of a virtual loop.
function testing.clock(loop)
  if getmetatable(loop) ~= U.loop_mt then
    argerror("clock", 1, "loop", "tapio.loop expected, got "
      .. typename(loop))
  end
  if not K.is_virtual(loop) then
    error("tapio: testing.clock: the loop has no virtual clock "
      .. "(testing.new_loop makes one)", 2)
  end
  local c = clocks[loop]
  if not c then
    c = setmetatable({ loop = loop }, Clock)
    clocks[loop] = c
  end
  return c
end

--- testing.new_loop(): a loop whose time starts at 0 and moves only when
-- its clock is advanced; returns the loop and its clock.
function testing.new_loop()
  local loop = K.new_loop()
  return loop, testing.clock(loop)
end

--- clock:time(): the loop's time (loop:time()).
function Clock:time()
  return self.loop:time()
end

--- clock:next_timer(): when the next timer is due, or nil.
function Clock:next_timer()
  return K._next_timer(self.loop)
end

--- clock:advance(seconds): moves the time `seconds` ahead, running each
-- timer due meanwhile at its own time and everything it makes ready,
-- until nothing is left at the new time. Outside the loop's run it does
-- it all before returning; inside (a task, a callback) it follows the
-- async rule: a task waits for it, a callback gets a future.
function Clock:advance(seconds)
  if type(seconds) ~= "number" or seconds ~= seconds
      or seconds == math.huge then
    error("tapio: clock:advance: bad argument #1 'seconds' (number "
      .. "expected, got " .. (seconds ~= seconds and "NaN"
      or seconds == math.huge and "inf" or typename(seconds)) .. ")", 2)
  end
  local loop = self.loop
  if not loop:is_running() then
    K._advance(loop, seconds)
    return
  end
  local fut = loop:create_future()
  loop:_call_idle(seconds, function()
    if not fut:done() then
      fut:set_result()
    end
  end)
  return resolve(fut)
end

--- clock:run_until_idle(): clock:advance(0): everything ready now.
function Clock:run_until_idle()
  return self:advance(0)
end

--- testing.step_limit(loop [, n]): the steps a run of virtual loop may
-- make at one time before it raises (a busy loop); n sets it (0: none).
testing.step_limit = K.step_limit

-- ---- Memory pairs -----------------------------------------------------------

local SIDE = { chunk = true, splits = true, delay = true, capacity = true,
               seed = true }
local PAIR = { loop = true, a = true, b = true }
for k in pairs(SIDE) do
  PAIR[k] = true
end

local function is_count(v, min)
  return type(v) == "number" and v == math.floor(v) and v >= min
    and v <= 2 ^ 53
end

-- A list of ascending integers >= 1.
local function ascending(list)
  local ok = type(list) == "table"
  for i = 1, ok and #list or 0 do
    ok = ok and is_count(list[i], 1) and (i == 1 or list[i] > list[i - 1])
  end
  return ok
end

-- Checks one side's options (opts.a, opts.b, or the shared ones) of fn,
-- where opts is argument n; errors at the caller of fn.
local function check_side(o, where, fn, n)
  local function bad(msg)
    argerror(fn, n, where, msg, 5)
  end
  for k in pairs(o) do
    if not (where == "opts" and PAIR[k] or SIDE[k]) then
      bad("unknown option '" .. tostring(k) .. "'")
    end
  end
  local c = o.chunk
  if c ~= nil and not is_count(c, 1) and not (type(c) == "table"
      and is_count(c[1], 1) and is_count(c[2], c[1] or 1)) then
    bad("chunk: a size >= 1 or {min, max} expected")
  end
  if o.splits ~= nil and not ascending(o.splits) then
    bad("splits: ascending offsets >= 1 expected")
  end
  if o.delay ~= nil and not (type(o.delay) == "number" and o.delay >= 0) then
    bad("delay: seconds >= 0 expected")
  end
  if o.capacity ~= nil and not is_count(o.capacity, 1) then
    bad("capacity: a size >= 1 expected")
  end
  if o.seed ~= nil and not is_count(o.seed, 0) then
    bad("seed: an integer >= 0 expected")
  end
end

-- Checks a pair's options (argument n of fn): the shared ones, then each
-- side's; returns them (nil: {}).
local function check_options(opts, fn, n)
  if opts ~= nil and type(opts) ~= "table" then
    argerror(fn, n, "opts", "table expected, got " .. typename(opts), 3)
  end
  opts = opts or {}
  check_side(opts, "opts", fn, n)
  for _, side in ipairs({ "a", "b" }) do
    if opts[side] ~= nil then
      if type(opts[side]) ~= "table" then
        argerror(fn, n, "opts", side .. ": table expected", 3)
      end
      check_side(opts[side], "opts." .. side, fn, n)
    end
  end
  return opts
end

-- What t sends, as the shared options and its own say.
local function apply(t, shared, own)
  local function get(k)
    if own and own[k] ~= nil then
      return own[k]
    end
    return shared[k]
  end
  local c = get("chunk")
  if type(c) == "number" then
    K._chunks(t, c, c, 0)
  elseif c then
    K._chunks(t, c[1], c[2], get("seed") or draw(0, 2147483647))
  end
  if get("splits") then
    K._splits(t, get("splits"))
  end
  if get("delay") then
    K._delay(t, get("delay"))
  end
  if get("capacity") then
    K._capacity(t, get("capacity"))
  end
end

-- Joins protocols a and b through memory, as opts says.
local function join(loop, a, b, opts)
  local ta, tb = K._pipe_pair(loop, a, b)
  apply(ta, opts, opts.a)
  apply(tb, opts, opts.b)
  return ta, tb
end

-- opts.loop, or the running one (for fn, where opts is argument n).
local function running_loop(opts, fn, n)
  if opts.loop ~= nil then
    if getmetatable(opts.loop) ~= U.loop_mt then
      argerror(fn, n, "opts", "loop: tapio.loop expected", 3)
    end
    return opts.loop
  end
  local loop = core.get_running_loop()
  if not loop then
    error("tapio: testing." .. fn .. ": no running loop (give opts.loop)",
      3)
  end
  return loop
end

--- testing.pipe_pair(protocol_a, protocol_b, opts): joins two protocols
-- (tables) through memory; returns their transports at once (each a
-- tapio.transport: the stream's methods, flow control, BufferedProtocol);
-- connection_made comes from the loop, a's first. opts: loop (default:
-- the running one); how bytes travel, for both directions or for what
-- one side sends (opts.a, opts.b): chunk (a read's size: 1 is every byte
-- on its own; {min, max}: drawn from seed), splits (offsets no read
-- spans), delay (seconds), capacity (bytes a direction holds, 65536),
-- seed.
function testing.pipe_pair(protocol_a, protocol_b, opts)
  for n = 1, 2 do
    local p = select(n, protocol_a, protocol_b)
    if type(p) ~= "table" then
      argerror("pipe_pair", n, n == 1 and "protocol_a" or "protocol_b",
        "table expected, got " .. typename(p))
    end
  end
  opts = check_options(opts, "pipe_pair", 3)
  return join(running_loop(opts, "pipe_pair", 3), protocol_a, protocol_b,
    opts)
end

-- Both sides made: the readers and writers of protocols a and b.
local function both_opened(a, made, b)
  F.await(made)
  return a._reader, a._writer, b._reader, b._writer
end

--- testing.open_pair([opts]) -> reader_a, writer_a, reader_b, writer_b:
-- two streams (StreamReader, StreamWriter: open_connection's) joined
-- through memory, for code written with streams. opts: pipe_pair's, and
-- limit (each reader's, 64 KiB). The async rule: a task waits until both
-- sides are made; elsewhere it returns a task of those four results.
-- writer.transport is the side's transport (testing.fault takes it).
function testing.open_pair(opts)
  local popts, limit = S.split_options(opts, "testing.open_pair", 1)
  popts = check_options(popts, "open_pair", 1)
  local loop = running_loop(popts, "open_pair", 1)
  local a, b = S.new_protocol(loop, limit), S.new_protocol(loop, limit)
  local made, n = loop:create_future(), 0
  for _, p in ipairs({ a, b }) do
    local connection_made = p.connection_made
    function p.connection_made(self, t)
      connection_made(self, t)
      n = n + 1
      if n == 2 then
        made:set_result()
      end
    end
  end
  join(loop, a, b, popts)
  return R.async(a, "testing.open_pair", both_opened, made, b)
end

--- testing.in_flight(t): the bytes t wrote that its peer has not read.
testing.in_flight = K.in_flight
--- testing.peer(t): the other side of t's pair, or nil.
testing.peer = K.peer
--- testing.transport_count(loop): transports made and not yet ended.
testing.transport_count = K.transport_count
--- testing.server_count(loop): servers made and not yet closed.
testing.server_count = K.server_count

-- ---- Faults ---------------------------------------------------------------

local FAULTS = { reset_after = true, read_error = true,
                 read_error_after = true, eof_after = true,
                 write_error = true, write_error_after = true,
                 stop_reading = true, stop_writing = true, drip = true,
                 drip_interval = true, seed = true }
local READ_ERROR, EOF, WRITE_ERROR, STOP_READING, STOP_WRITING =
  1, 2, 3, 4, 5

-- A count of bytes: n, or {lo, hi} drawn from the spec's generator.
local function bytes(v, gen, name)
  if type(v) == "table" and is_count(v[1], 0) and is_count(v[2], v[1]) then
    return gen(v[1], v[2])
  end
  if not is_count(v, 0) then
    argerror("fault", 2, "spec", name .. ": a count of bytes or {lo, hi} "
      .. "expected", 4)
  end
  return v
end

local function error_code(v, name)
  if type(v) == "table" and type(v.code) == "number" then
    v = v.code
  end
  if type(v) == "string" then
    v = tapio.errors[v] or tapio.errors["E" .. v]
  end
  if type(v) ~= "number" or v >= 0 then
    argerror("fault", 2, "spec", name .. ": an error name ('ECONNRESET') "
      .. "or code expected", 3)
  end
  return v
end

local function check_drip(drip, interval)
  if not is_count(drip, 0) or drip > 2147483647 then
    argerror("fault", 2, "spec", "drip: a count of bytes expected", 3)
  end
  if type(interval) ~= "number" or not (interval >= 0)
     or interval == math.huge then
    argerror("fault", 2, "spec", "drip_interval: seconds >= 0 expected", 3)
  end
  if interval > 0 and drip == 0 then
    argerror("fault", 2, "spec", "a drip_interval wants a drip size", 3)
  end
end

--- testing.fault(t, spec): breaks t's bytes where spec says; t is a
-- memory pair's transport or a real stream (socket or pipe). Counts are
-- bytes from now, a number or {lo, hi} drawn from spec.seed (default:
-- the session's seed). reset_after (a reset both ways), read_error (a
-- name or code) and read_error_after, eof_after, write_error and
-- write_error_after, stop_reading and stop_writing (true, or after a
-- count), drip (bytes per read) and drip_interval (seconds). Returns the
-- faults as set, counts drawn.
function testing.fault(t, spec)
  if type(spec) ~= "table" then
    argerror("fault", 2, "spec", "table expected, got " .. typename(spec))
  end
  for k in pairs(spec) do
    if not FAULTS[k] then
      argerror("fault", 2, "spec", "unknown fault '" .. tostring(k) .. "'")
    end
  end
  local gen = spec.seed and K._random(spec.seed) or draw
  local set, calls = {}, {}
  local function count(name, default)
    local v = spec[name]
    if v == nil then
      v = default
    end
    set[name] = bytes(v, gen, name)
    return set[name]
  end
  -- Every value is checked (and drawn) before any fault is set: a spec
  -- that raises leaves t as it was.
  local function add(which, after, code)
    calls[#calls + 1] = { which, after, code }
  end
  if spec.reset_after ~= nil then
    add(READ_ERROR, count("reset_after"), tapio.ECONNRESET)
  end
  if spec.read_error ~= nil then
    set.read_error = spec.read_error
    add(READ_ERROR, count("read_error_after", 0),
      error_code(spec.read_error, "read_error"))
  end
  if spec.eof_after ~= nil then
    add(EOF, count("eof_after"))
  end
  if spec.write_error ~= nil then
    set.write_error = spec.write_error
    add(WRITE_ERROR, count("write_error_after", 0),
      error_code(spec.write_error, "write_error"))
  end
  -- in a fixed order: the draws replay from the seed on either flavour
  for _, stop in ipairs({ { "stop_reading", STOP_READING },
                          { "stop_writing", STOP_WRITING } }) do
    local name, which = stop[1], stop[2]
    if spec[name] == true then
      add(which, 0)
      set[name] = 0
    elseif spec[name] ~= nil and spec[name] ~= false then
      add(which, count(name))
    end
  end
  local drip, interval = spec.drip, spec.drip_interval
  if drip ~= nil or interval ~= nil then
    check_drip(drip or 0, interval or 0)
    set.drip, set.drip_interval = drip, interval
  end
  for _, c in ipairs(calls) do
    K._fault(t, c[1], c[2], c[3])
  end
  if drip ~= nil or interval ~= nil then
    K._drip(t, drip or 0, interval or 0)
  end
  return set
end

--- testing.clear_faults(t): lifts t's faults; what was held goes on.
testing.clear_faults = K.clear_faults

-- ---- Datagram faults --------------------------------------------------------

local DGRAM = { loss = true, duplicate = true, reorder = true, delay = true,
                jitter = true, seed = true, drop = true, capacity = true }

local function check_dgram(spec)
  local function bad(msg)
    argerror("datagram_faults", 2, "spec", msg, 4)
  end
  for k in pairs(spec) do
    if not DGRAM[k] then
      bad("unknown fault '" .. tostring(k) .. "'")
    end
  end
  for _, k in ipairs({ "loss", "duplicate" }) do
    local v = spec[k]
    if v ~= nil and not (type(v) == "number" and v >= 0 and v <= 1) then
      bad(k .. ": a probability 0..1 expected")
    end
  end
  for _, k in ipairs({ "delay", "jitter" }) do
    local v = spec[k]
    if v ~= nil and not (type(v) == "number" and v >= 0 and v < math.huge)
    then
      bad(k .. ": seconds >= 0 expected")
    end
  end
  if spec.reorder ~= nil and not (is_count(spec.reorder, 0)
      and spec.reorder <= 2 ^ 31) then
    bad("reorder: a count >= 0 expected")
  end
  if spec.drop ~= nil and not ascending(spec.drop) then
    bad("drop: ascending datagram numbers >= 1 expected")
  end
  if spec.seed ~= nil and not is_count(spec.seed, 0) then
    bad("seed: an integer >= 0 expected")
  end
  if spec.capacity ~= nil and not (is_count(spec.capacity, 1)
      and spec.capacity <= 2 ^ 31 - 1) then
    bad("capacity: a size >= 1 expected")
  end
end

--- testing.datagram_faults(t, spec): faults of what t (a datagram
-- endpoint: a virtual loop's, or a real socket's, where what is delayed
-- or held back waits in tapio) sends from now on: loss and duplicate
-- (chances), reorder (a datagram lets up to that many later ones pass),
-- delay and jitter (seconds), drop (the datagrams lost for sure, 1 the
-- next one sent after this call), capacity (bytes in flight before the write buffer
-- fills: the virtual network's only), seed (the draws': the session's
-- seed gives one unless set). nil or {} clears them. Returns the spec
-- with the seed used.
function testing.datagram_faults(t, spec)
  if spec ~= nil and type(spec) ~= "table" then
    argerror("datagram_faults", 2, "spec", "table expected, got "
      .. typename(spec))
  end
  local set = {}
  for k, v in pairs(spec or {}) do
    set[k] = v
  end
  check_dgram(set)
  if set.seed == nil then
    set.seed = draw(0, 2147483647)
  end
  K._datagram_faults(t, set)
  if set.capacity then
    K._datagram_capacity(t, set.capacity)
  end
  return set
end

--- testing.datagram_in_flight(t): the bytes of t's datagrams in flight.
testing.datagram_in_flight = K.datagram_in_flight

--- testing.datagram_fault_counts(t): how many datagrams each fault of t
-- hit in its life (setting or clearing the faults does not reset them;
-- they read after t's connection_lost): sent, lost, dropped, duplicated,
-- reordered, delayed.
testing.datagram_fault_counts = K.datagram_fault_counts

-- ---- Fake programs ---------------------------------------------------------

--- testing.fake_program(loop, name, fn): see tapio.fake (lua/README.md,
-- "Fake programs").
local fake = require "tapio.fake"
testing.fake_program = fake.fake_program
testing._Child = fake.Child -- the child's class (spec/embed/test_meta.lua)

-- ---- The recorder -----------------------------------------------------------

-- Every callback tapio knows, by the kind of protocol that has it. The
-- stream's are recorded always; the others when the inner protocol has
-- them (get_buffer makes a BufferedProtocol: only then is it defined).
local STREAM = { "connection_made", "data_received", "eof_received",
                 "connection_lost", "pause_writing", "resume_writing" }
local OPTIONAL = { "get_buffer", "buffer_updated", "datagram_received",
                   "error_received", "pipe_data_received",
                   "pipe_connection_lost", "process_exited" }
-- opts.kind: a recorder with no inner protocol for such a transport.
local KINDS = { datagram = { "datagram_received", "error_received" },
                subprocess = { "pipe_data_received", "pipe_connection_lost",
                               "process_exited" } }

local Recorder = {}
Recorder.__index = Recorder

local function describe(err)
  if err == nil then
    return "nil"
  end
  if type(err) == "table" and type(err.name) == "string" then
    return err.name
  end
  local ok, s = pcall(tostring, err)
  return ok and s or type(err)
end

-- Writes an event down; with merge, bytes that follow bytes of the same
-- event go into it.
local function add(rec, name, arg, data)
  local ev = arg == nil and name or name .. ":" .. arg
  local n = #rec.events
  if data and rec.merge and rec._last == name .. (rec._key or "") then
    rec.events[n] = rec.events[n] .. data
  else
    rec.events[n + 1] = ev .. (data or "")
  end
  rec._last = data and name .. (rec._key or "") or nil
  rec._key = nil
  local written = rec.events[#rec.events] -- with the bytes so far
  for i = #rec._waiters, 1, -1 do
    local w = rec._waiters[i]
    if written:sub(1, #w.prefix) == w.prefix and not w.fut:done() then
      table.remove(rec._waiters, i)
      w.fut:set_result(written)
    end
  end
end

local function forward(rec, name, ...)
  local inner = rec.inner
  local f = inner and inner[name]
  if f then
    return f(inner, ...)
  end
end

local record = {
  connection_made = function(rec, t)
    rec.transport, rec._loop = t, t:get_loop()
    add(rec, "connection_made")
    return forward(rec, "connection_made", t)
  end,
  data_received = function(rec, data)
    add(rec, "data_received", "", data)
    return forward(rec, "data_received", data)
  end,
  eof_received = function(rec)
    add(rec, "eof_received")
    return forward(rec, "eof_received")
  end,
  connection_lost = function(rec, err)
    add(rec, "connection_lost", describe(err))
    return forward(rec, "connection_lost", err)
  end,
  pause_writing = function(rec)
    add(rec, "pause_writing")
    return forward(rec, "pause_writing")
  end,
  resume_writing = function(rec)
    add(rec, "resume_writing")
    return forward(rec, "resume_writing")
  end,
  get_buffer = function(rec, sizehint)
    if not rec.merge then
      add(rec, "get_buffer", tostring(sizehint))
    end
    local buf, at = forward(rec, "get_buffer", sizehint)
    rec._buf, rec._at = buf, at or 1
    return buf, at
  end,
  buffer_updated = function(rec, n)
    local ok, data = pcall(rec._buf.sub, rec._buf, rec._at, rec._at + n - 1)
    add(rec, "buffer_updated", "", ok and data or "?")
    return forward(rec, "buffer_updated", n)
  end,
  datagram_received = function(rec, data, addr)
    add(rec, "datagram_received", data)
    return forward(rec, "datagram_received", data, addr)
  end,
  error_received = function(rec, err)
    add(rec, "error_received", describe(err))
    return forward(rec, "error_received", err)
  end,
  pipe_data_received = function(rec, fd, data)
    rec._key = fd
    add(rec, "pipe_data_received", fd .. ":", data)
    return forward(rec, "pipe_data_received", fd, data)
  end,
  pipe_connection_lost = function(rec, fd, err)
    add(rec, "pipe_connection_lost", fd .. ":" .. describe(err))
    return forward(rec, "pipe_connection_lost", fd, err)
  end,
  process_exited = function(rec)
    add(rec, "process_exited")
    return forward(rec, "process_exited")
  end,
}

--- testing.recorder([inner [, opts]]): a protocol that writes down every
-- callback with its arguments in rec.events ("connection_made",
-- "data_received:abc", "eof_received", "connection_lost:nil" or
-- ":ECONNRESET", ...) and then calls inner's method, returning what it
-- returns (a missing one: the reference's default). opts.merge: bytes
-- that follow bytes are one event (the byte stream, whatever its chunks;
-- get_buffer is then not written down). opts.kind, "datagram" or
-- "subprocess": that protocol's callbacks are written down too, also
-- without an inner protocol that has them. The events read as the C
-- recorder's (tapio_recorder_new).
function testing.recorder(inner, opts)
  local kind = type(opts) == "table" and opts.kind
  if inner ~= nil and type(inner) ~= "table" then
    argerror("recorder", 1, "inner", "table expected, got "
      .. typename(inner))
  end
  if opts ~= nil and type(opts) ~= "table" then
    argerror("recorder", 2, "opts", "table expected, got " .. typename(opts))
  end
  for k in pairs(opts or {}) do -- a typo (merged) would record unmerged
    if k ~= "merge" and k ~= "kind" then
      argerror("recorder", 2, "opts", "unknown option '" .. tostring(k)
        .. "'")
    end
  end
  if kind and not KINDS[kind] then
    argerror("recorder", 2, "opts.kind", "'datagram' or 'subprocess' "
      .. "expected, got " .. tostring(kind))
  end
  local rec = setmetatable({ events = {}, inner = inner,
                             merge = opts and opts.merge or false,
                             _waiters = {} }, Recorder)
  for _, name in ipairs(STREAM) do
    rec[name] = record[name]
  end
  for _, name in ipairs(OPTIONAL) do
    if inner and inner[name] ~= nil then
      rec[name] = record[name]
    end
  end
  for _, name in ipairs(kind and KINDS[kind] or {}) do
    rec[name] = record[name]
  end
  return rec
end

--- rec:wait(prefix): the first event that starts with prefix
-- ("connection_lost"), once it is written down: the async rule (a task
-- waits; elsewhere, a future of the transport's loop, or the running
-- one's).
function Recorder:wait(prefix)
  if type(prefix) ~= "string" then
    error("tapio: recorder:wait: bad argument #1 'prefix' (string "
      .. "expected, got " .. typename(prefix) .. ")", 2)
  end
  local loop = self._loop or core.get_running_loop()
  if not loop then
    error("tapio: recorder:wait: no transport yet and no running loop", 2)
  end
  local fut = loop:create_future()
  for _, ev in ipairs(self.events) do
    if ev:sub(1, #prefix) == prefix then
      fut:set_result(ev)
      return resolve(fut)
    end
  end
  self._waiters[#self._waiters + 1] = { prefix = prefix, fut = fut }
  return resolve(fut)
end

--- rec:clear(): forgets the events so far.
function Recorder:clear()
  self.events = {}
  self._last = nil
end

-- ---- The busted helper ------------------------------------------------------

-- Each task, named, and where it waits.
local function tracebacks(tasks)
  local out = {}
  for _, task in ipairs(tasks) do
    out[#out + 1] = "\n  " .. tostring(task) .. ", waiting at:"
      .. debug.traceback(task:get_coro(), "", 0)
  end
  return table.concat(out)
end

local function describe_context(ctx)
  local s = tostring(ctx.message)
  if ctx.task ~= nil then -- which task, as the default handler says
    s = s .. " (" .. tostring(ctx.task) .. ")"
  end
  if ctx.traceback then
    return s .. "\n" .. ctx.traceback
  end
  return s .. (ctx.exception ~= nil and "\n" .. describe(ctx.exception) or "")
end

-- Raises what testing.run found. A failed expectation stays one: busted
-- raises its assertions' failures as tables whose metatable has a
-- __type, and tells them from errors by it; the text is the kit's.
local function raise(cause, text)
  local mt = type(cause) == "table" and getmetatable(cause)
  if type(mt) == "table" and mt.__type then
    error(setmetatable({ message = text }, mt), 0)
  end
  error(text, 0)
end

-- " at <sockname> to <peername>" of a transport that has them (a
-- client and its server's side then tell apart), else "".
local function ends(t)
  local ok, me = pcall(t.get_extra_info, t, "sockname")
  local _, peer = pcall(t.get_extra_info, t, "peername")
  if not ok or me == nil then
    return ""
  end
  return " at " .. tostring(me) .. (peer and " to " .. tostring(peer) or "")
end

-- A line per transport left open: it, where it is, its protocol and, for
-- a recorder, its last event, so that the message says which were left.
local function open_transports(loop)
  local _, transports = loop:_open()
  local out = {}
  for _, t in ipairs(transports) do
    local p = t:get_protocol()
    local line = ("\n  %s%s, protocol %s"):format(tostring(t), ends(t),
      tostring(p))
    if getmetatable(p) == Recorder and #p.events > 0 then
      line = line .. ", last event "
        .. tapio.repr(p.events[#p.events]:sub(1, 60))
    end
    out[#out + 1] = line
  end
  return table.concat(out)
end

-- A line per server left listening, with its addresses.
local function open_servers(loop)
  local out = {}
  for _, s in ipairs((loop:_open())) do
    local at = {}
    for i, a in ipairs(s:addresses()) do
      at[i] = tostring(a)
    end
    out[#out + 1] = ("\n  %s at %s"):format(tostring(s),
      table.concat(at, ", "))
  end
  return table.concat(out)
end

-- What the body left open, transports and servers in one message.
local function left_open(loop, opts)
  local msg = {}
  local open = K.transport_count(loop)
  if open > 0 and not opts.transports_ok then
    msg[1] = ("the test body left %d transport(s) open (close them, or "
      .. "opts.transports_ok):%s"):format(open, open_transports(loop))
  end
  local servers = K.server_count(loop)
  if servers > 0 and not opts.servers_ok then
    msg[#msg + 1] = ("the test body left %d server(s) open (close them, or "
      .. "opts.servers_ok):%s"):format(servers, open_servers(loop))
  end
  return msg[1] and table.concat(msg, "\n")
end

-- The next timer that can fire, or nil: one due at infinity (a sleep for
-- ever) never does, as on a real loop.
local function next_due(loop)
  local t = K._next_timer(loop)
  return t ~= math.huge and t or nil
end

-- What went wrong with the body of testing.run, or nil.
local function body_failure(loop, task, opts, late)
  if late then
    return ("the test body did not end within its deadline of %g s%s; it "
      .. "waits at:%s"):format(opts.deadline or 10, opts.real and ""
        or (" of real time (autojump had moved the clock to t=%g)")
          :format(loop:time()),
      debug.traceback(task:get_coro(), "", 0))
  end
  if not task:done() then
    local next_timer = K._next_timer(loop)
    return ("the test body waits and nothing is left to run: the loop is "
      .. "idle at t=%g (%s); it waits at:%s"):format(loop:time(),
      next_timer == math.huge and "no timer but at t=inf, never due"
        or next_timer and ("next timer at t=%g: advance the clock"):format(
        next_timer) or "no timer pending",
      debug.traceback(task:get_coro(), "", 0))
  end
  if task:cancelled() then
    return "the test body was cancelled"
  end
  if task._state == "failed" then
    local err = task:exception()
    return task:get_traceback() or describe(err)
  end
end

-- A body's failure says what the exception handler got too: a task that
-- died unseen is often why the body failed (it waited for its work).
local function with_errors(failure, errors, opts)
  if #errors == 0 or opts.errors_ok then
    return failure
  end
  return ("%s\nthe exception handler was called too: %s%s"):format(failure,
    describe_context(errors[1]),
    #errors > 1 and ("\n(and %d more times)"):format(#errors - 1) or "")
end

-- A run that raised (the loop kept busy at one time, or the rare failure
-- of a poll): what it said, and the tasks pending then, each named with
-- where it waits.
local function run_failure(loop, err)
  local pending = tapio.all_tasks(loop)
  local busy = type(err) == "table" and err.code == tapio.ESPIN
  return ("%s\n%s"):format(tostring(err), #pending == 0
    and (busy and "no task is pending: a callback keeps scheduling itself"
         or "no task is pending")
    or ("%d task(s) pending:%s"):format(#pending, tracebacks(pending)))
end

-- What went wrong in a run of testing.run, or nil (late: the body did
-- not end by its deadline; err: what its run raised).
local function verdict(loop, task, errors, opts, late, err)
  if err then
    return with_errors(run_failure(loop, err), errors, opts)
  end
  local failure = body_failure(loop, task, opts, late)
  if failure then
    return with_errors(failure, errors, opts)
  end
  if #errors > 0 and not opts.errors_ok then
    return "unexpected call of the exception handler: "
      .. describe_context(errors[1])
  end
  local left = {}
  for _, t in ipairs(tapio.all_tasks(loop)) do
    if t ~= task then
      left[#left + 1] = t
    end
  end
  if #left > 0 and not opts.tasks_ok then
    return ("the test body left %d task(s) pending:%s"):format(#left,
      tracebacks(left))
  end
  return left_open(loop, opts) or nil
end

-- A timer the body left pending, read once the tasks it left are
-- cancelled (a task's sleep goes with it: opts.tasks_ok allowed it), or
-- nil.
local function timer_left(loop, opts)
  local due = not opts.real and K._next_timer(loop)
  if due and not opts.timers_ok then
    return ("the test body left a timer pending, due at t=%g (cancel its "
      .. "handle, or opts.timers_ok)"):format(due)
  end
end

-- What a run of the virtual loop raised (it kept busy at one time past
-- its step limit, or its poll failed), or nil.
local function raised(fn, ...)
  local ok, err = pcall(fn, ...)
  if not ok then
    return err
  end
end

-- testing.run on a virtual loop: until the body ends, or nothing is left
-- to run (with autojump, until no timer is left either, or until the
-- real-time deadline: code that retries on a timer for ever would jump
-- for ever). Returns true if the deadline ended it, else nil and what a
-- run raised.
local function run_virtual(loop, clock, task, opts)
  local stop_at = core._monotonic() + (opts.deadline or 10)
  local err = raised(loop.run_forever, loop) -- until the body ends, or idle
  while not err and opts.autojump and not task:done()
      and next_due(loop) do
    if core._monotonic() > stop_at then
      return true
    end
    err = raised(K._advance, loop, next_due(loop) - loop:time())
      or raised(loop.run_forever, loop)
  end
  if not err and task:done() then
    err = raised(K._advance, loop, 0)
  end
  return false, err
end

-- testing.run on a real loop: until the body ends or its deadline, then
-- up to a second more while transports it closed are still ending.
local function run_real(loop, task, deadline)
  local timer = loop:call_later(deadline, function()
    loop:stop()
  end)
  loop:run_forever()
  timer:cancel()
  if not task:done() then
    return
  end
  local over = false
  local grace = loop:call_later(1, function()
    over = true
  end)
  while K.transport_count(loop) > 0 and not over do
    loop:run_once(true)
  end
  grace:cancel()
end

-- The tasks the body left (opts.tasks_ok), cancelled at its end: one that
-- failed with an error instead (its cleanup raised) fails the test, as
-- asyncio.run reports an error in a task it cancels at its shutdown; each
-- such error is retrieved (no report when its task is collected).
local function failed_when_cancelled(tasks)
  local failure, cause
  for _, t in ipairs(tasks) do
    if t._state == "failed" then
      local err = t:exception()
      if not failure then
        failure, cause = ("a task the test body left running failed when "
          .. "testing.run cancelled it: %s"):format(tostring(err)), err
      end
    end
  end
  return failure, cause
end

-- The tasks of the list not done yet (a list).
local function not_done(tasks)
  local left = {}
  for _, t in ipairs(tasks) do
    if not t:done() then
      left[#left + 1] = t
    end
  end
  return left
end

local function all_done(tasks)
  return #not_done(tasks) == 0
end

-- The tasks the body left: cancelled, and the loop run until they end,
-- as asyncio.run runs its loop until the tasks it cancelled end (one
-- still waiting at the close would be a task destroyed while pending),
-- for up to a second of real time; a virtual loop's clock jumps to each
-- next timer meanwhile (the body is over: nothing else moves it).
-- Returns those that did not end.
local function end_tasks(loop, clock, tasks)
  for _, t in ipairs(tasks) do
    t:cancel()
  end
  if clock then
    local stop_at = core._monotonic() + 1
    local err = raised(K._advance, loop, 0) -- a busy loop is told above
    while not err and not all_done(tasks) and next_due(loop)
        and core._monotonic() < stop_at do
      err = raised(K._advance, loop, next_due(loop) - loop:time())
    end
  else
    loop:run_once(false)
    local over = false
    local grace = loop:call_later(1, function()
      over = true
    end)
    while not all_done(tasks) and not over do
      loop:run_once(true)
    end
    grace:cancel()
  end
  return not_done(tasks)
end

local RUN_OPTS = { seed = true, autojump = true, real = true,
  deadline = true, errors_ok = true, tasks_ok = true, transports_ok = true,
  servers_ok = true, timers_ok = true, step_limit = true }

--- testing.run(body [, opts]): a function for busted's it(): body(clock,
-- loop) runs as a task on a fresh virtual loop; afterwards the loop runs
-- until idle, and the test fails, with a traceback and the seed that
-- replays it, if the body raised, is left waiting with nothing to wake
-- it, called the exception handler (the contexts are clock.errors;
-- opts.errors_ok allows them), or left tasks (opts.tasks_ok: they are
-- cancelled and run to their end, as asyncio.run does, and one that
-- fails with an error then, or has not ended a second later, fails the
-- test),
-- transports (opts.transports_ok) or servers (opts.servers_ok) open, or a
-- timer pending (opts.timers_ok). opts.seed: the session's seed
-- for the run. opts.autojump: while the body waits and nothing is left
-- to run, the clock jumps to the next timer (trio's autojump, tokio's
-- paused time): a tapio.sleep(3600) passes at once, in order.
-- opts.real: on a fresh real loop instead (tapio.new_loop(); clock is
-- nil), for tests with real sockets, pipes, children or other programs:
-- the body has opts.deadline seconds (default 10) to end, then up to a
-- second for what it closed to end too; the same checks but timers'.
-- On a virtual loop with autojump, opts.deadline (real seconds) ends a
-- body that keeps the clock jumping.
function testing.run(body, opts)
  U.check_callable(body, "testing.run", 1, "body")
  if opts ~= nil and type(opts) ~= "table" then
    argerror("run", 2, "opts", "table expected, got " .. typename(opts))
  end
  opts = opts or {}
  for k in pairs(opts) do
    if not RUN_OPTS[k] then
      argerror("run", 2, "opts", "unknown option '" .. tostring(k) .. "'")
    end
  end
  if opts.deadline ~= nil and not (type(opts.deadline) == "number"
      and opts.deadline > 0) then
    argerror("run", 2, "opts", "opts.deadline: a number of seconds > 0 "
      .. "expected, got " .. tostring(opts.deadline))
  end
  if opts.step_limit ~= nil and not (is_count(opts.step_limit, 0)
      and opts.step_limit <= 2 ^ 31 - 1) then
    argerror("run", 2, "opts", "opts.step_limit: an integer >= 0 expected, "
      .. "got " .. tostring(opts.step_limit))
  end
  if opts.step_limit ~= nil and opts.real then
    argerror("run", 2, "opts", "opts.step_limit is a virtual loop's (a "
      .. "real loop's time moves on its own)")
  end
  return function()
    local seed = testing.seed(opts.seed or fresh_seed())
    local loop, clock
    if opts.real then
      loop = tapio.new_loop()
    else
      loop, clock = testing.new_loop()
      if opts.step_limit then
        K.step_limit(loop, opts.step_limit)
      end
    end
    local errors = {}
    if clock then
      clock.errors = errors
    end
    loop:set_exception_handler(function(_, ctx)
      errors[#errors + 1] = ctx
    end)
    local task = loop:create_task(body, clock, loop)
    task:add_done_callback(function()
      loop:stop()
    end)
    local late, err
    if opts.real then
      run_real(loop, task, opts.deadline or 10)
      late = not task:done()
    else
      late, err = run_virtual(loop, clock, task, opts)
    end
    -- A failed task's error nobody retrieved is reported when Lua
    -- collects the task, maybe long after the test: report it now.
    T.report_unretrieved(loop, task)
    local failure = verdict(loop, task, errors, opts, late, err)
    local cause = task._state == "failed" and task:exception() or nil
    local left = tapio.all_tasks(loop)
    local stuck = end_tasks(loop, clock, left)
    local timer = timer_left(loop, opts)
    loop:close()
    if not failure then
      failure, cause = failed_when_cancelled(left)
    end
    if not failure and #stuck > 0 then
      failure = ("a task the test body left running did not end when "
        .. "testing.run cancelled it:%s"):format(tracebacks(stuck))
    end
    for _, t in ipairs(stuck) do
      T.not_reported(t) -- said here (or the body's failure is the cause)
    end
    failure = failure or timer
    if failure then
      raise(cause, ("%s\n(tapio.testing seed %d: TAPIO_TEST_SEED=%d replays "
        .. "it)"):format(failure, seed, seed))
    end
  end
end

-- ---- Bytes in busted's failure messages -------------------------------------

-- luassert prints a string as it is, so a failed expectation on a binary
-- protocol's events stopped at the first NUL of the terminal's output and
-- showed other bytes raw. Under busted (luassert loaded before the spec
-- files), a formatter gives such strings, alone or in tables, to
-- luassert's own formatters escaped as tapio.repr escapes them; the
-- failure's marks (which element differs) stay luassert's.
local function needs_escape(v, seen)
  if type(v) == "string" then
    return not U.plain_text(v)
  end
  if type(v) ~= "table" or seen[v] then
    return false
  end
  seen[v] = true
  for k, x in pairs(v) do
    if needs_escape(k, seen) or needs_escape(x, seen) then
      return true
    end
  end
  return false
end

local function escaped(v, copies)
  if type(v) == "string" then
    return tapio.repr(v):sub(2, -2)
  end
  if type(v) ~= "table" then
    return v
  end
  if not copies[v] then
    local copy = {}
    copies[v] = copy
    for k, x in pairs(v) do
      copy[escaped(k, copies)] = escaped(x, copies)
    end
  end
  return copies[v]
end

local function add_bytes_formatter(state)
  local busy = false
  state.add_formatter(function(v, fmtargs)
    if busy or not needs_escape(v, {}) then
      return nil
    end
    busy = true
    local ok, text = pcall(state.format_argument, escaped(v, {}), nil,
      fmtargs)
    busy = false
    return ok and text or nil
  end)
end

if package.loaded["luassert.state"] then
  add_bytes_formatter(package.loaded["luassert.state"])
end

return testing
