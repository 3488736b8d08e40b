-- The chaos spec's round: its PRNG, its actors' common calls (notes,
-- draws, raised errors and what the exception handler hears), its tasks
-- and servers, and the dispatch tables its protocol actors share (check,
-- filled in by protocol.lua; act, by act.lua).
local helper = require "spec.helper"

helper.certs()
local server_ctx, client_ctx = helper.server_ctx(), helper.client_ctx()

-- The protocol actors' dispatch: protocol.lua fills in check (what each
-- callback checks), act.lua act.transport (what an actor then does).
local check, act = {}, {}

-- ---- The PRNG: Park and Miller's, exact in doubles and in integers, so a
-- seed draws the same on Lua 5.4 and LuaJIT.
local function prng(seed)
  local x = seed % 2147483646 + 1
  return function(n)
    x = x * 16807 % 2147483647
    return x % n + 1
  end
end

-- ---- A round: its loop, PRNG, actors and what was raised ---------------
local Round = {}
Round.__index = Round

local function new_round(seed, loop)
  return setmetatable({ seed = seed, loop = loop, rand = prng(seed),
    actors = {}, weak = setmetatable({}, { __mode = "v" }),
    raised = {}, late = {}, ids = 0, tags = 0, servers = {},
    tasks = {} }, Round)
end

function Round:id()
  self.ids = self.ids + 1
  return self.ids
end

function Round:chance(n)
  return self.rand(n) == 1
end

function Round:pick(list)
  return list[self.rand(#list)]
end

-- Random bytes: lowercase letters with a newline now and then.
function Round:bytes(n)
  local t = {}
  for i = 1, n do
    t[i] = self.rand(12) == 1 and "\n" or string.char(96 + self.rand(26))
  end
  return table.concat(t)
end

function Round:chunk()
  local r = self.rand(20)
  if r <= 2 then
    return string.rep(self:bytes(64), self.rand(4096)) -- up to 256 KiB
  end
  return self:bytes(self.rand(r < 5 and 2000 or 40))
end

function Round:describe(a)
  return ("actor %d (%s): %s"):format(a.id, a.kind, table.concat(a.hist, " "))
end

-- The first broken rule ends the round: it stops the loop, and the runner
-- fails with the seed and the actor's history.
function Round:fail(a, msg)
  if not self.failure then
    self.failure = ("seed %d: %s\n%s"):format(self.seed, msg,
      a and self:describe(a) or "")
    if not self.loop:is_closed() then
      self.loop:stop()
    end
  end
end

-- How often each action ran, over all rounds (TAPIO_CHAOS_STATS=1 prints
-- them).
local stats = {}

function Round:count(what)
  stats[what] = (stats[what] or 0) + 1
end

function Round:note(a, what)
  a.hist[#a.hist + 1] = what
  if self.changed and not self.changed:done() then
    self.changed:set_result(true)
  end
end

function Round:new_actor(kind)
  local a = { id = self:id(), kind = kind, hist = {}, steps = 4 + self.rand(40),
              current = {} }
  self.actors[#self.actors + 1] = a
  return a
end

-- An error value a callback raises: the exception handler must hear of
-- each exactly once.
function Round:new_error(a)
  self.tags = self.tags + 1
  local tag = setmetatable({ chaos_tag = self.tags },
    { __tostring = function(e) return "chaos error " .. e.chaos_tag end })
  self.raised[tag.chaos_tag] = { heard = 0, actor = a }
  self:note(a, "raise#" .. tag.chaos_tag)
  return tag
end

-- A create call raised err: a factory's error, if it is a chaos error.
function Round:caller_heard(err)
  if type(err) == "table" and err.chaos_tag then
    local r = self.raised[err.chaos_tag]
    r.caller = (r.caller or 0) + 1
  end
end

function Round:raise(a)
  error(self:new_error(a), 0)
end

-- Contexts of the exception handler that are not a raised error: the
-- reports the README documents.
local EXPECTED = {
  "^transport:write%a* after connection_lost: data is dropped",
  "^sendto on a closed datagram transport: datagrams are dropped",
}

function Round:hear(ctx)
  local e = ctx.exception
  if type(e) == "table" and e.chaos_tag then
    local r = self.raised[e.chaos_tag]
    r.heard = r.heard + 1
    return
  end
  local text = tostring(ctx.message)
  self:count("heard:" .. text)
  local late = ctx.transport and self.late[ctx.transport]
  if late then
    late.heard = late.heard + 1
  end
  for _, pat in ipairs(EXPECTED) do
    if text:find(pat) then
      return
    end
  end
  self:fail(nil, "unexpected call of the exception handler: "
    .. helper.describe_context(ctx))
end

-- Cancels a random task or pending connect of the round.
function Round:cancel_something(a)
  local list = {}
  for _, task in ipairs(self.tasks) do
    if not task:done() then
      list[#list + 1] = task
    end
  end
  if #list > 0 then
    local task = self:pick(list)
    self:note(a, "cancel:" .. tostring(task.chaos_name))
    task:cancel("chaos")
  end
end

-- A task of the round, that its actors may cancel. The actors it makes
-- (a list) end with it if it ended before their connection_made; one
-- cancelled must never see its factory called.
function Round:task(name, actors, fn, ...)
  local task = self.loop:create_task(fn, ...)
  task.chaos_name = name
  self.tasks[#self.tasks + 1] = task
  task:add_done_callback(function()
    self:caller_heard(not task:cancelled() and task:exception())
    for _, a in ipairs(actors) do
      if a.factory_error and task:cancelled() then
        a.factory_error.given_up = true -- as asyncio: cancel() retrieves
      end
      if not a.made then
        a.done = true
        a.cancelled_connect = task:cancelled()
        self:note(a, "not made: " .. (task:cancelled() and "cancelled"
          or tostring(task:exception())))
      end
    end
  end)
  return task
end

-- A server of the round: rec.server, until an actor drops it (the weak
-- table holds it while it is open: anchored).
-- (Round:server_of(rec): that server, while it is referenced or open.)
function Round:add_server(server, rec)
  rec = rec or {}
  rec.server, rec.key = server, "server" .. self:id()
  self.servers[#self.servers + 1] = rec
  self.weak[rec.key] = server
  return rec
end

function Round:server_of(rec)
  return rec.server or self.weak[rec.key]
end

-- An abstract name no other process (another flavour's run) takes.
local PID = tonumber(helper.pid())

function Round:unix_path()
  return ("@tapio-chaos-%d-%d-%d"):format(PID, self.seed, self:id())
end

return { Round = Round, new_round = new_round, stats = stats,
         check = check, act = act,
         server_ctx = server_ctx, client_ctx = client_ctx }
