--- tapio.context (internal): context variables, Python's contextvars as
-- asyncio uses them. A context is a box holding a mapping (ContextVar ->
-- value) that is never written once made: set() puts a new mapping in the
-- box, so copy_context() is a new box around the same mapping, and a
-- task or a callback that captures a context pays one small table.
--
-- One context is current at a time (`current`): the root one, where the
-- main chunk runs, until a task step or a callback switches to its own.
-- Nothing of it costs anything until the first tapio.ContextVar is made
-- (Python's advice, and ours: make them at a module's top level): before
-- that every context is empty, so tasks capture nothing (a task's
-- context is made when asked for), callbacks capture nothing, and task
-- steps switch nothing. The first ContextVar turns it on (activate):
-- tapio.task's resume then switches to the task's context when it is not
-- the current one (a pointer swap), loop:call_soon, call_later and
-- call_at capture the current context, and done callbacks too.
local core = require "tapio.core"
local U = require "tapio.util"
local F = require "tapio.future"

local M = { api = {} } -- api: what `tapio` holds too (see tapio.util)
local api = M.api
local tasks = F.tasks
local check_callable, typename = U.check_callable, U.typename

local EMPTY = {} -- the mapping of a context where nothing is set
local NIL = {} -- a ContextVar set to nil, in a mapping

local Context, check_context = U.class("tapio.Context")
local ContextVar, check_var = U.class("tapio.ContextVar")
local Token = U.class("tapio.Token")
M.Context, M.ContextVar, M.Token = Context, ContextVar, Token

--- Token.MISSING: a token's old_value when the variable had no value.
Token.MISSING = setmetatable({}, { __name = "tapio.Token.MISSING",
  __tostring = function() return "<Token.MISSING>" end })
local MISSING = Token.MISSING

local function new_context(vars)
  return setmetatable({ _vars = vars, _entered = false }, Context)
end

local root = new_context(EMPTY) -- where the main chunk runs
local current = root

-- state.on: a ContextVar exists (tapio.task reads it when told, through
-- hooks.on, and keeps it as an upvalue; tapio.future is told by turn_on);
-- state.given: the context loop:create_task_in gives the task it makes.
local state = F.context.state
M.state = state

--- A copy of the current context (for a task or a callback made now).
local function capture()
  local given = state.given
  if given then
    state.given = nil
    return given
  end
  return new_context(current._vars)
end
M.capture = capture

--- A new empty context.
function M.empty_context()
  return new_context(EMPTY)
end

--- The context of a task (made now for one made before the first
-- ContextVar: everything was empty then).
local function of_task(task)
  local ctx = task._context
  if not ctx then
    ctx = new_context(EMPTY)
    task._context = ctx
  end
  return ctx
end
M.of_task = of_task

-- ---- Running in a context ------------------------------------------------

-- run_in(ctx, fn, ...): ctx entered, fn(...) called, the previous context
-- current again, also when fn raised. A task may wait inside (see
-- resuming). Lua 5.4: a to-be-closed variable leaves ctx, so an error
-- passes untouched and its traceback (the loop's report, a task's) shows
-- where it was raised. LuaJIT has none: a pcall, and the error raised
-- again as it was (a string keeps its position; the traceback starts at
-- the run).
local function enter(ctx)
  ctx._outer, ctx._entered = current, true
  current = ctx
  return ctx
end

Context.__close = function(ctx) -- leaves ctx (see enter)
  current, ctx._outer, ctx._entered = ctx._outer, nil, false
end

local function finish(ctx, ok, ...)
  Context.__close(ctx)
  if not ok then
    error((...), 0)
  end
  return ...
end

local run_in
if _VERSION == "Lua 5.4" then
  run_in = assert(load([[
    local enter = ...
    return function(ctx, fn, ...)
      local entered <close> = enter(ctx)
      return fn(...)
    end]], "=tapio.context"))(enter)
else
  run_in = function(ctx, fn, ...)
    return finish(enter(ctx), pcall(fn, ...))
  end
end

--- ctx:run(fn, ...): fn(...) with ctx current; returns its results. What
-- fn sets stays in ctx. A context runs one fn at a time.
function Context:run(fn, ...)
  check_context(self, "context:run")
  check_callable(fn, "context:run", 1, "fn")
  if self._entered then
    error("tapio: context:run: cannot enter the context: it is already "
      .. "entered", 2)
  end
  return run_in(self, fn, ...)
end

-- After a task's step: the task's own context left (unless it waits
-- inside a ctx:run, where its next step resumes), the outer one current.
local function left(task, outer, was, ...)
  local now = current
  local own = task._context
  if now == own then
    task._ctx_at = nil
    if not was then
      own._entered = false
    end
  else
    task._ctx_at = now
  end
  current = outer
  return ...
end

--- tapio.task's resume, once on: resume(co, ...) with the task's
-- context current during the step.
function M.resuming(resume)
  return function(co, ...)
    local task = tasks[co]
    if not task then
      return resume(co, ...)
    end
    local ctx = task._ctx_at or of_task(task)
    local outer, was = current, ctx._entered
    ctx._entered = true
    current = ctx
    return left(task, outer, was, resume(co, ...))
  end
end

-- ---- Callbacks -------------------------------------------------------------

local Loop = core.loop_methods
local call_soon, call_later, call_at =
  Loop.call_soon, Loop.call_later, Loop.call_at

--- Callbacks that choose their context themselves (a task's step: its
-- task's), which call_soon schedules as they are.
M.own = {}
local own = M.own

-- Installed when on: each captures a copy of the current context, in
-- which the callback runs (asyncio's Handle).
-- (The checks and the copy inline: these run per callback.)
local function soon(loop, fn, ...)
  if own[fn] then
    return call_soon(loop, fn, ...)
  end
  if type(fn) ~= "function" then
    check_callable(fn, "loop:call_soon", 1, "callback")
  end
  return call_soon(loop, run_in, setmetatable({ _vars = current._vars,
    _entered = false }, Context), fn, ...)
end

local function later(loop, delay, fn, ...)
  if type(fn) ~= "function" then
    check_callable(fn, "loop:call_later", 2, "callback")
  end
  return call_later(loop, delay, run_in, setmetatable({
    _vars = current._vars, _entered = false }, Context), fn, ...)
end

local function at(loop, when, fn, ...)
  if type(fn) ~= "function" then
    check_callable(fn, "loop:call_at", 2, "callback")
  end
  return call_at(loop, when, run_in, setmetatable({ _vars = current._vars,
    _entered = false }, Context), fn, ...)
end

-- A future's done callbacks (tapio.future): fn's context (the current
-- one when it was added), in fut._contexts at fn's place; schedule runs
-- them there (one added before the first ContextVar has none).
function F.context.note(fut, i)
  local list = fut._contexts
  if not list then
    list = {}
    fut._contexts = list
  end
  list[i] = capture()
end

function F.context.schedule(fut, fn, ctx)
  if ctx then
    return call_soon(fut._loop, run_in, ctx, fn, fut)
  end
  return call_soon(fut._loop, fn, fut)
end

-- ---- A transport's context (lua/context.c) -------------------------------
-- A transport made once this is on keeps a context, as asyncio's do
-- through the handles they make when made: a client's is the context of
-- the code that made it (its factory runs there) and then a copy of it;
-- a server keeps a copy of the one current when it was made, and each
-- connection it accepts a copy of that. Its protocol's callbacks run in
-- it, connection_made in a copy of its own (a call_soon's in asyncio).

-- enter(ctx, own): ctx entered (own: a new copy of it), and returned;
-- false when ctx is entered already (a callback of the transport inside
-- another of its own, or write's pause_writing): nothing to enter.
local function transport_enter(ctx, own)
  if own then
    ctx = new_context(ctx._vars)
  elseif ctx._entered then
    return false
  end
  ctx._outer, ctx._entered = current, true -- enter's, inline: per callback
  current = ctx
  return ctx
end

-- capture(ctx, copy): ctx (nil: the current context) or a copy of it.
local function transport_capture(ctx, copy)
  ctx = ctx or current
  if copy then
    return new_context(ctx._vars)
  end
  return ctx
end

-- run_factory(ctx, fn): fn() in ctx (where it is: one entered already).
local function run_factory(ctx, fn)
  if ctx._entered then
    return fn()
  end
  return run_in(ctx, fn)
end

-- ---- Turning it on ---------------------------------------------------------

-- tapio.task's: switch resume, and the restore at the end of the step
-- that made the first ContextVar, when a task's did.
M.hooks = {}

local function back(outer)
  local ctx = current
  current = outer
  ctx._entered = false
end

local function activate()
  state.on = true
  F.context.turn_on()
  Loop.call_soon, Loop.call_later, Loop.call_at = soon, later, at
  core._context_hooks(transport_enter, Context.__close, transport_capture,
                      run_factory)
  M.hooks.on()
  local task = F.api.current_task()
  if task then -- its step began with nothing to switch: switch now
    local ctx = of_task(task)
    ctx._entered = true
    M.hooks.after_step(back, current)
    current = ctx
  end
end

-- ---- ContextVar and Token --------------------------------------------------

--- tapio.ContextVar(name [, default]): a context variable. A default
-- given as nil counts (select("#")): get() then returns nil when unset.
function api.ContextVar(name, ...)
  if type(name) ~= "string" then
    U.argerror("ContextVar", 1, "name", "string expected, got "
      .. typename(name), 3)
  end
  if not state.on then
    activate()
  end
  local var = setmetatable({ name = name }, ContextVar)
  if select("#", ...) > 0 then
    var._has_default, var._default = true, (...)
  end
  return var
end

ContextVar.__tostring = function(var)
  return ("tapio.ContextVar '%s'"):format(var.name)
end

local function lookup_error(var)
  return U.named_error(core.errors.ENOENT, "LookupError",
    ("ContextVar '%s' has no value and no default"):format(var.name),
    { var = var })
end
M.lookup_error = lookup_error

--- var:get([default]): the value in the current context, else default
-- (if given), else the var's default, else raises a LookupError value.
function ContextVar:get(...)
  check_var(self, "contextvar:get")
  local v = current._vars[self]
  if v ~= nil then
    if v == NIL then
      return nil
    end
    return v
  end
  if select("#", ...) > 0 then
    return (...)
  end
  if self._has_default then
    return self._default
  end
  error(lookup_error(self), 2)
end

-- A new mapping: vars with var set to value (nil: removed).
local function with(vars, var, value)
  local t = {}
  for k, v in pairs(vars) do
    t[k] = v
  end
  t[var] = value
  return t
end

--- var:set(value): sets it in the current context; returns a token for
-- var:reset.
function ContextVar:set(value)
  check_var(self, "contextvar:set")
  local ctx = current
  local old = ctx._vars[self]
  ctx._vars = with(ctx._vars, self, value == nil and NIL or value)
  return setmetatable({ var = self, _old = old, _ctx = ctx, _used = false,
    old_value = old == nil and MISSING or (old ~= NIL and old or nil) },
    Token)
end

--- var:reset(token): gives var back the value it had before the set that
-- made token. The checks and their order are Python's.
function ContextVar:reset(token)
  check_var(self, "contextvar:reset")
  if getmetatable(token) ~= Token then
    U.argerror("contextvar:reset", 1, "token", "tapio.Token expected, got "
      .. typename(token), 3)
  end
  local problem = token._used and "has already been used once"
    or token.var ~= self and "was made by another ContextVar"
    or token._ctx ~= current and "was made in another context"
  if problem then
    error("tapio: contextvar:reset: the token " .. problem, 2)
  end
  token._used = true
  current._vars = with(current._vars, self, token._old)
end

Token.__tostring = function(t)
  return ("tapio.Token for '%s'%s"):format(t.var.name,
    t._used and " (used)" or "")
end

-- ---- Contexts --------------------------------------------------------------

--- tapio.copy_context(): a copy of the current context.
function api.copy_context()
  return new_context(current._vars)
end

--- ctx:get(var [, default]): var's value in ctx (not the current one),
-- else default (nil if not given).
function Context:get(var, ...)
  check_context(self, "context:get")
  if getmetatable(var) ~= ContextVar then
    U.argerror("context:get", 1, "var", "tapio.ContextVar expected, got "
      .. typename(var), 3)
  end
  local v = self._vars[var]
  if v == nil then
    return (...)
  end
  if v == NIL then
    return nil
  end
  return v
end

--- ctx:has(var): whether var has a value in ctx (Python's `var in ctx`).
function Context:has(var)
  check_context(self, "context:has")
  return self._vars[var] ~= nil
end

--- ctx:items(): an iterator of var, value for the vars set in ctx (in no
-- particular order).
function Context:items()
  check_context(self, "context:items")
  local vars, k = self._vars, nil
  return function()
    local v
    k, v = next(vars, k)
    if k == nil then
      return nil
    end
    if v == NIL then
      v = nil
    end
    return k, v
  end
end

--- ctx:copy(): a copy of ctx.
function Context:copy()
  check_context(self, "context:copy")
  return new_context(self._vars)
end

Context.__tostring = function(ctx)
  local n = 0
  for _ in pairs(ctx._vars) do
    n = n + 1
  end
  return ("tapio.Context (%d set)"):format(n)
end

-- ---- Giving a context ------------------------------------------------------
-- asyncio's `context=` keyword has no room among Lua's varargs: the
-- functions that take one are the plain ones with `_in` and the context
-- first (create_task_in, call_soon_in, ...).

--- Raises the argument error of a ctx that is not a tapio.Context, at the
-- caller of the function name (level: 3 from a method checking its own
-- argument, as U.argerror counts).
function M.check_given(ctx, name, level)
  if getmetatable(ctx) ~= Context then
    U.argerror(name, 1, "ctx", "tapio.Context expected, got "
      .. typename(ctx), (level or 3) + 1)
  end
end
local check_given = M.check_given

--- loop:create_task_in(ctx, fn, ...): create_task with ctx itself as the
-- task's context (asyncio's create_task(coro, context=ctx)): what the
-- task sets is set in ctx.
function Loop:create_task_in(ctx, fn, ...)
  check_given(ctx, "loop:create_task_in")
  check_callable(fn, "loop:create_task_in", 2, "fn")
  if not state.on then
    activate()
  end
  state.given = ctx
  local ok, task = pcall(self.create_task, self, fn, ...)
  state.given = nil
  if not ok then
    error(task, 0)
  end
  return task
end

function api.create_task_in(ctx, fn, ...)
  return U.running_loop("create_task_in"):create_task_in(ctx, fn, ...)
end

-- A callback given its context: ctx entered as ctx:run enters it, an
-- error (reported by the loop) if ctx is entered already (asyncio's
-- Context.run raises then, as the handle runs).
local function run_given(name, ctx, fn, ...)
  if ctx._entered then
    error("tapio: " .. name .. ": cannot enter the context given to the "
      .. "callback: it is already entered", 0)
  end
  return run_in(ctx, fn, ...)
end

local function check_time(t, name, what)
  if type(t) ~= "number" then
    U.argerror(name, 2, what, "number expected, got " .. typename(t), 4)
  end
end

--- loop:call_soon_in(ctx, fn, ...), loop:call_later_in(ctx, delay, fn,
-- ...), loop:call_at_in(ctx, when, fn, ...): call_soon, call_later and
-- call_at whose callback runs in ctx itself, not in a copy of the
-- current context (asyncio's context= keyword): what it sets is set in
-- ctx. Before the first ContextVar too (nothing is turned on for it).
function Loop:call_soon_in(ctx, fn, ...)
  U.check_loop(self, "loop:call_soon_in")
  check_given(ctx, "loop:call_soon_in")
  check_callable(fn, "loop:call_soon_in", 2, "callback")
  return call_soon(self, run_given, "loop:call_soon_in", ctx, fn, ...)
end

function Loop:call_later_in(ctx, delay, fn, ...)
  U.check_loop(self, "loop:call_later_in")
  check_given(ctx, "loop:call_later_in")
  check_time(delay, "loop:call_later_in", "delay")
  check_callable(fn, "loop:call_later_in", 3, "callback")
  return call_later(self, delay, run_given, "loop:call_later_in", ctx, fn,
    ...)
end

function Loop:call_at_in(ctx, when, fn, ...)
  U.check_loop(self, "loop:call_at_in")
  check_given(ctx, "loop:call_at_in")
  check_time(when, "loop:call_at_in", "when")
  check_callable(fn, "loop:call_at_in", 3, "callback")
  return call_at(self, when, run_given, "loop:call_at_in", ctx, fn, ...)
end

-- ---- A handle's context ----------------------------------------------------

local Handle = core.handle_methods
-- A handle keeps its call (fn, args..., n) as its user value (lua/call.c).
local stored_call = debug.getuservalue or debug.getfenv

--- handle:get_context(): the context its callback runs in (asyncio's
-- Handle.get_context): the one given to call_soon_in and the like, else
-- the copy of the current context call_soon took. A handle scheduled
-- before the first ContextVar took none (every context was empty then):
-- an empty one, made when first asked for.
function Handle:get_context()
  local mt = getmetatable(self)
  if type(mt) ~= "table" or mt.__index ~= Handle then
    error("tapio: handle:get_context: bad self (tapio.handle expected, got "
      .. typename(self) .. ")", 2)
  end
  local call = stored_call(self, 1)
  local fn = call[1]
  if fn == run_in then
    return call[2]
  elseif fn == run_given then
    return call[3]
  end
  local ctx = call.context
  if not ctx then
    ctx = new_context(EMPTY)
    call.context = ctx
  end
  return ctx
end

return M
