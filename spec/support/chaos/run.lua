-- One round of the chaos spec: its actors set up, the loop run (again
-- after each stop) until every actor reached its end, then the checks of
-- what must hold after loop:close().
local helper = require "spec.helper"
local round = require "spec.support.chaos.round"
local closed = require "spec.support.chaos.closed"
local actors = require "spec.support.chaos.actors"
local streams = require "spec.support.chaos.streams"
require "spec.support.chaos.act" -- act.transport, what every actor does
local tapio = helper.tapio
local new_round = round.new_round
local poke_closed = closed.poke_closed
local sink, stream_pair, pipe_pair = actors.sink, actors.stream_pair,
  actors.pipe_pair
local dgram_pair, process, timer = actors.dgram_pair, actors.process,
  actors.timer
local streams_pair = streams.streams_pair

local QUIET = 0.05          -- seconds without an event before finishing
local STUCK = 40            -- quiet times before a round fails
local ROUND_DEADLINE = 8    -- seconds one round may take at most

local function all_done(R)
  for _, a in ipairs(R.actors) do
    if not a.done then
      -- a server side never made whose client ended (a connection still in
      -- the backlog of a closed server never reaches the factory)
      local c = a.done_unless_made
      if not (c and c.done and not a.made) then
        return false
      end
    end
  end
  return true
end

-- Nothing happened for QUIET seconds: the first time close what is open,
-- then abort it and cancel the tasks (again each time: a child's exit may
-- be slow on a loaded machine); after STUCK times the round fails.
local function finish(R, pass)
  R.finishing = true
  for _, a in ipairs(R.actors) do
    if not a.done then
      R:note(a, "finish" .. pass)
      local t = a.transport or R.weak[a.id]
      if t and not a.lost then
        if pass == 1 or not t.abort then
          t:close()
        else
          t:abort()
        end
      end
      if a.writer then
        if pass == 1 then a.writer:close() else a.writer.transport:abort() end
      end
    end
  end
  for _, task in ipairs(R.tasks) do
    if pass > 1 and not task:done() then
      task:cancel("finish")
    end
  end
  for _, rec in ipairs(R.servers) do
    local s = R:server_of(rec)
    if s then
      s:close()
    end
  end
end

local KINDS = { "tcp", "tcp", "unix", "tls", "starttls", "pipe", "dgram",
                "proc",
                "streams-tcp", "streams-unix", "streams-tls",
                "streams-starttls", "timer", "timer" }

-- An actor (or a pair) of one of the KINDS.
local function add_actor(R, kind)
  if kind == "tcp" or kind == "unix" or kind == "tls"
      or kind == "starttls" then
    stream_pair(R, kind)
  elseif kind == "pipe" then
    pipe_pair(R)
  elseif kind == "dgram" then
    dgram_pair(R)
  elseif kind == "proc" then
    process(R)
  elseif kind == "timer" then
    timer(R)
  else
    streams_pair(R, kind:match("streams%-(.*)"))
  end
end

local function round_main(R)
  sink(R)
  local n = 3 + R.rand(8)
  for _ = 1, n do
    add_actor(R, R:pick(KINDS))
  end
  local pass = 0
  while not all_done(R) and not R.failure do
    R.changed = R.loop:create_future()
    if not pcall(tapio.wait_for, R.changed, QUIET) then
      if R.close_early then
        return -- loop:close() ends what is open
      end
      pass = pass + 1
      if pass > STUCK then
        R.stuck = true
        return
      end
      finish(R, pass)
    end
  end
  R.finishing = true
  for _, rec in ipairs(R.servers) do
    local server = R:server_of(rec)
    if server then
      server:close()
      server:close() -- idempotent
      if server:is_serving() then
        R:fail(nil, "a closed server is serving")
      end
    end
  end
  for _ = 1, 3 do
    tapio.sleep(0) -- the reports of the tasks that just ended
    helper.collect() -- and of errors never retrieved
  end
end

local function stuck_report(R)
  local lines = {}
  for _, a in ipairs(R.actors) do
    if not a.done then
      lines[#lines + 1] = R:describe(a)
    end
  end
  return table.concat(lines, "\n")
end

-- After loop:close(): every protocol that had connection_made had its
-- connection_lost (close ends what the round left open: R.close_early),
-- and what is left answers as closed.
local function after_close(R)
  for _, a in ipairs(R.actors) do
    if a.methods and a.made and not a.lost then
      R:fail(a, "loop:close() left it without connection_lost")
    end
    local t = R.weak[a.id]
    if t and R:chance(2) then
      poke_closed(R, a, t)
    end
  end
  local ok, err = pcall(R.loop.call_soon, R.loop, print)
  if not ok and not tostring(err):find("^tapio: ") then
    R:fail(nil, "call_soon on a closed loop raised " .. tostring(err))
  end
end

-- What the exception handler (and a create call) heard: each of the six
-- late writes' reports once, each error a callback raised once.
local function check_heard(R, seed)
  for _, late in pairs(R.late) do
    if late.heard ~= 1 then
      error(("seed %d: six writes after connection_lost, the exception "
        .. "handler heard of %d\n%s"):format(seed, late.heard,
        R:describe(late.actor)), 0)
    end
  end
  for tag, r in pairs(R.raised) do
    local heard, caller = r.heard, r.caller or 0
    -- (a client factory's error whose task or future was cancelled
    -- meanwhile is given up: cancel() retrieves it, as asyncio's does)
    if (r.by_caller and heard + caller ~= (r.given_up and caller or 1))
        or (not r.by_caller and (heard ~= 1 or caller ~= 0)) then
      error(("seed %d: error %d raised in a callback reached the exception "
        .. "handler %d times, the caller %d times\n%s"):format(seed, tag,
        heard, caller, R:describe(r.actor)), 0)
    end
  end
end

-- A round closed early (R.close_early) leaves tasks waiting in a read, a
-- drain or a connect: loop:close() ends the transports, not the tasks,
-- and a task still waiting when its loop closes is destroyed while
-- pending (on stderr: the closed loop's default handler). As asyncio.run
-- does before its close, they are cancelled (again while one reads on
-- after a cancel) and run to their end; what they leave open, the close
-- ends. Returns true once they all ended within the round's deadline.
local function end_tasks(R)
  local loop, over = R.loop, false
  local guard = loop:call_later(ROUND_DEADLINE, function()
    over = true
  end)
  while not over do
    local waiting = false
    for _, task in ipairs(R.tasks) do
      if not task:done() then
        waiting = true
        task:cancel("closing early")
      end
    end
    if not waiting then
      break
    end
    loop:run_once(true)
  end
  guard:cancel()
  return not over
end

local function run_round(seed)
  local loop = tapio.new_loop()
  local R = new_round(seed, loop)
  R.close_early = R:chance(6)
  loop:set_exception_handler(function(_, ctx)
    R:hear(ctx)
  end)
  local main = loop:create_task(round_main, R)
  local deadline = loop:call_later(ROUND_DEADLINE, function()
    R.timed_out = true
    loop:stop()
  end)
  while true do
    local ok, err = pcall(loop.run_until_complete, loop, main)
    if ok or R.failure or R.timed_out then
      break
    end
    if not tostring(err):find("stopped before the future completed") then
      R.failure = ("seed %d: the round's main task failed: %s\n%s"):format(
        seed, tostring(err), main:get_traceback() or "")
      break
    end
    R:count("loop run again")
    for _ = 1, R.rand(4) - 1 do
      loop:run_once(false) -- as a host steps it, in between
    end
  end
  deadline:cancel()
  R.finishing = true
  if R.failure then
    loop:close()
    error(R.failure, 0)
  end
  if R.timed_out or R.stuck then
    local report = stuck_report(R)
    loop:close()
    error(("seed %d: the round did not end:\n%s"):format(seed, report), 0)
  end
  if R.close_early and not end_tasks(R) then
    local report = stuck_report(R)
    loop:close()
    error(("seed %d: the round's tasks did not end once cancelled:\n%s")
      :format(seed, report), 0)
  end
  loop:close()
  after_close(R)
  if R.failure then
    error(R.failure, 0)
  end
  check_heard(R, seed)
  if os.getenv("TAPIO_CHAOS_VERBOSE") then
    for _, a in ipairs(R.actors) do
      io.stdout:write(("seed %d: %s\n"):format(seed, R:describe(a)))
    end
  end
  return R
end

return { run_round = run_round }
