-- Every ```lua block of lua/README.md and README.md, run: the examples a
-- user copies first stay true to the API.
--
-- A block runs as a chunk: in a task on a new loop, or, when it makes its
-- own loop (tapio.run, it(...), testing.new_loop), at the top. The names
-- an example takes as given (loop, host, port, factory, reader, writer,
-- server, ...) are made for it, against real peers on 127.0.0.1: port
-- 8888, the reference's, is served (or reached) on a port the system
-- picks, so that specs running side by side never meet. A print followed
-- by a comment "--> text" must print that text ("..." stands for
-- anything); a comment "-- fails with: text" says the block raises that.
-- Marked in the Markdown by a comment on the line before the fence:
--   <!-- fragment -->    not whole (a method alone, a placeholder): only
--                        compiled;
--   <!-- signatures -->  a listing in the reference's notation
--                        (`f(a [, b]) -> x`): every tapio.NAME it names
--                        must exist, and each receiver's methods too.
-- And the other way: lua/README.md names every public function of the
-- Lua API, the Layout tables of README.md and lua/README.md every file
-- of src/ and lua/, and every file the docs name by its path exists.
local helper = require "spec.helper"
local tapio = helper.tapio
local testing = require "tapio.testing"

local DOCS = { "lua/README.md", "README.md" }
local PORT = 8888 -- the port the examples name
local DEADLINE = 5
local G = _ENV or getfenv(1) -- busted's environment (assert, it)
local unpack = table.unpack or unpack
local pack = table.pack or function(...)
  return { n = select("#", ...), ... }
end

-- The blocks of one Markdown file: { file, line, kind, lines }, line the
-- first line of code; kind "run", or the mark before the fence.
local function extract(file)
  local blocks, mark, cur, n = {}, nil, nil, 0
  for text in io.lines(file) do
    n = n + 1
    if cur then
      if text:match("^```%s*$") then
        blocks[#blocks + 1], cur = cur, nil
      elseif text:match("^```") then
        error(("%s:%d: a fence with text after it does not close the "
          .. "block"):format(file, n), 0)
      else
        cur.lines[#cur.lines + 1] = text
      end
    elseif text:match("^```lua%s*$") then
      cur = { file = file, line = n + 1, kind = mark or "run", lines = {} }
    else
      mark = text:match("^<!%-%- (%a+) %-%->%s*$")
    end
  end
  assert(not cur, file .. ": a block is never closed")
  return blocks
end

-- The block's code, its lines at their places in the file, so that an
-- error names the README's line.
local function source(b)
  return ("\n"):rep(b.line - 1) .. table.concat(b.lines, "\n")
end

local function compile(b, env)
  local chunk, err = load(source(b), "@" .. b.file, "t", env)
  if chunk and env and setfenv then
    setfenv(chunk, env)
  end
  return chunk or error(err, 0)
end

-- The code without comments and strings: what names it uses.
local function code_only(b)
  return (source(b):gsub("%-%-[^\n]*", ""):gsub('"[^"\n]*"', '""')
    :gsub("'[^'\n]*'", "''"))
end

local function uses(code, name)
  return code:find("%f[%w_]" .. name .. "%f[^%w_]")
    and not code:find("local%s+[%w_,%s]-%f[%w_]" .. name .. "%f[^%w_]")
end

-- ---- Outputs ---------------------------------------------------------

-- What the block says it prints: { line =, text = } per "--> text".
local function expected_prints(b)
  local list = {}
  for i, text in ipairs(b.lines) do
    local out = text:match("%-%->%s(.*)$")
    if out then
      list[#list + 1] = { line = b.line + i - 1, text = out }
    end
  end
  return list
end

local function squeeze(s)
  return (s:gsub("%s+", " "):gsub("^ ", ""):gsub(" $", ""))
end

-- Whether s is pattern, where "..." in pattern stands for anything.
local function matches(s, pattern)
  local parts, pos = {}, 1
  for part in (pattern .. "..."):gmatch("(.-)%.%.%.") do
    parts[#parts + 1] = part
  end
  for i, part in ipairs(parts) do
    local at, e = s:find(part, pos, true)
    if not at or (i == 1 and at ~= 1) then
      return false
    end
    pos = e + 1
  end
  return pattern:sub(-3) == "..." or pos == #s + 1
end

local function check_prints(b, printed)
  for i, want in ipairs(expected_prints(b)) do
    local got = printed[i]
    if not got or not matches(squeeze(got), squeeze(want.text)) then
      error(("%s:%d: printed %s, the README shows %q"):format(b.file,
        want.line, got and ("%q"):format(got) or "nothing", want.text), 0)
    end
  end
end

-- ---- The names examples take as given --------------------------------

-- An echo server (a protocol) that closes once the client has.
local function echo_protocol()
  return {
    connection_made = function(self, t) self.t = t end,
    data_received = function(self, data) self.t:write(data) end,
  }
end

-- Each block's world: the loop it runs on, the ports it maps, its prints.
local function new_world(b)
  local w = { block = b, ports = {}, printed = {}, servers = {} }
  w.expect = #expected_prints(b)
  return w
end

local function real_port(w, port)
  return port == PORT and w.ports[PORT] or port
end

-- A server asked for on PORT listens on a free port, which the world
-- notes; the spec's client waits for it.
local function noted(w, server)
  w.ports[PORT] = server:addresses()[1].port
  w.servers[#w.servers + 1] = server
  if w.listening and not w.listening:done() then
    w.listening:set_result(server)
  end
  return server
end

-- A loop whose create calls go to the world's ports; else the loop itself.
local function loop_proxy(w, loop)
  local proxy = {}
  function proxy.create_server(_, factory, host, port, ...)
    if port ~= PORT then
      return loop:create_server(factory, host, port, ...)
    end
    return noted(w, loop:create_server(factory, host, 0, ...))
  end
  function proxy.create_connection(_, factory, host, port, ...)
    return loop:create_connection(factory, host, real_port(w, port), ...)
  end
  return setmetatable(proxy, { __index = function(_, k)
    local v = loop[k]
    if type(v) ~= "function" then
      return v
    end
    return function(self, ...)
      return v(self == proxy and loop or self, ...)
    end
  end })
end

local function tapio_proxy(w)
  local t = {}
  function t.get_running_loop()
    return loop_proxy(w, tapio.get_running_loop())
  end
  function t.open_connection(host, port, ...)
    return tapio.open_connection(host, real_port(w, port), ...)
  end
  function t.start_server(cb, host, port, ...)
    if port ~= PORT then
      return tapio.start_server(cb, host, port, ...)
    end
    return noted(w, tapio.start_server(cb, host, 0, ...))
  end
  function t.run(main, ...)
    return w.run(main, ...)
  end
  return setmetatable(t, { __index = tapio })
end

-- The spec's peers on a loop: an echo server on PORT (unless the example
-- serves it) and a UDP echo (echo_port). Returns what ends them.
local function serve(w, loop, env)
  local echo
  if not w.serves then
    echo = loop:create_server(echo_protocol, "127.0.0.1", 0)
    w.ports[PORT] = echo:addresses()[1].port
  end
  local udp_lost = loop:create_future()
  local udp = loop:create_datagram_endpoint(function()
    return {
      connection_made = function(self, t) self.t = t end,
      datagram_received = function(self, d, a) self.t:sendto(d, a) end,
      connection_lost = function() udp_lost:set_result(true) end,
    }
  end, { local_addr = { "127.0.0.1", 0 } })
  env.echo_port = udp:get_extra_info("sockname").port
  env.client = {} -- a datagram protocol, as the example names it
  return function()
    udp:close()
    udp_lost:await()
    if echo then
      echo:close()
      tapio.wait_for(function() echo:wait_closed() end, DEADLINE)
    end
  end
end

-- The names a block uses and does not declare, made on the running loop.
local PLAIN = {
  host = "127.0.0.1", port = PORT, seconds = 1, reply = "a reply\n",
  factory = function() return {} end,
}
local GIVEN = {
  { "fetch", function()
    return function(name) tapio.sleep(0.001) return name end
  end },
  { "fetch_a", function() return function() return "a" end end },
  { "fetch_b", function()
    return function() tapio.sleep(0.001) return "b" end
  end },
  { "a", function() -- done last, so as_completed's order shows
    return tapio.create_task(function() tapio.sleep(0.01) return "a" end)
  end },
  { "b", function() return tapio.create_task(function() return "b" end) end },
  { "c", function() return tapio.create_task(function() return "c" end) end },
  { "server", function()
    return tapio.start_server(function(_, writer) writer:close() end,
      "127.0.0.1", 0)
  end },
}

local function give(w, code, env, loop)
  for name, value in pairs(PLAIN) do
    if uses(code, name) then
      env[name] = value
    end
  end
  if not loop then
    return
  end
  for _, given in ipairs(GIVEN) do
    if uses(code, given[1]) then
      env[given[1]] = given[2]()
    end
  end
  if uses(code, "reader") or uses(code, "writer") then
    env.reader, env.writer = tapio.open_connection("127.0.0.1",
      w.ports[PORT])
  end
  if uses(code, "loop") then
    env.loop = loop_proxy(w, loop)
  end
end

local function new_env(w)
  local env = setmetatable({}, { __index = G })
  env.tapio = tapio_proxy(w)
  function env.require(name)
    return name == "tapio" and env.tapio or require(name)
  end
  env.testing = testing
  function env.print(...)
    local parts = {}
    for i = 1, select("#", ...) do
      parts[i] = tostring((select(i, ...)))
    end
    w.printed[#w.printed + 1] = table.concat(parts, "\t")
    if w.all_printed and #w.printed >= w.expect
       and not w.all_printed:done() then
      w.all_printed:set_result(true)
    end
  end
  function env.it(_, fn)
    fn()
  end
  return env
end

-- Waits (bounded) for what the block prints later, from its callbacks.
local function await_prints(w)
  if w.expect > 0 then
    tapio.wait_for(w.all_printed, DEADLINE)
  end
end

-- A client of an example's server on PORT: "Hello World!", its echo;
-- then the server closes (serve_forever returns), also when that failed.
local function visit(w)
  local ok, err = pcall(function()
    w.listening:await()
    local reader, writer = tapio.open_connection("127.0.0.1",
      w.ports[PORT])
    writer:write("Hello World!")
    assert.are.equal("Hello World!", reader:read())
    writer:close()
    await_prints(w)
  end)
  for _, server in ipairs(w.servers) do
    server:close()
  end
  if not ok then
    error(err, 0)
  end
end

-- tapio.run as the example calls it: the spec's peers on its loop too.
local function run_with_peers(w, env)
  return function(main, ...)
    local args = pack(...)
    return tapio.run(function()
      local loop = tapio.get_running_loop()
      loop:set_exception_handler(function(_, ctx)
        w.errors[#w.errors + 1] = ctx
      end)
      w.all_printed = loop:create_future()
      w.listening = loop:create_future()
      local code = code_only(w.block)
      w.serves = code:find(tostring(PORT), 1, true) and
        (code:find("create_server") or code:find("start_server"))
      local stop_peers = serve(w, loop, env)
      local visitor = w.serves and tapio.create_task(visit, w)
      local r = pack(tapio.wait_for(function()
        return main(unpack(args, 1, args.n))
      end, 2 * DEADLINE))
      if visitor then
        tapio.wait_for(visitor, DEADLINE)
      end
      await_prints(w)
      stop_peers()
      return unpack(r, 1, r.n)
    end)
  end
end

-- ---- Running a block -------------------------------------------------

-- Every task of the loop but the current one, finished (bounded).
local function await_others(loop)
  local others = {}
  for _, t in ipairs(tapio.all_tasks(loop)) do
    if t ~= tapio.current_task() then
      others[#others + 1] = t
    end
  end
  if #others > 0 then
    local _, pending = tapio.wait(others, { timeout = DEADLINE })
    assert(#pending == 0, "a task of the example never finished")
  end
end

local function fails_with(b)
  for _, text in ipairs(b.lines) do
    local msg = text:match("^%-%- fails with: (.*)$")
    if msg then
      return msg
    end
  end
end

local function at_top(b)
  local code = code_only(b)
  return code:find("tapio%.run%(") or code:find("%f[%w_]it%(")
    or code:find("testing%.new_loop%(")
end

local function run_in_task(w, env, chunk)
  local code = code_only(w.block)
  helper.run(function(loop, errors)
    w.errors = errors
    w.all_printed = loop:create_future()
    serve(w, loop, env)
    give(w, code, env, loop)
    chunk()
    await_others(loop)
    await_prints(w)
    -- what the example let go and failed is reported now, not in a later
    -- block's loop
    collectgarbage()
    collectgarbage()
    tapio.sleep(0)
  end, { errors_ok = true, deadline = 2 * DEADLINE })
end

-- Exception handler calls the block's text does not announce fail it.
local function check_errors(w)
  local text = source(w.block)
  for _, ctx in ipairs(w.errors or {}) do
    if not text:find(tostring(ctx.message), 1, true) then
      error(("%s:%d: the exception handler was called: %s"):format(
        w.block.file, w.block.line, helper.describe_context(ctx)), 0)
    end
  end
end

local function run_block(b)
  local w = new_world(b)
  local env = new_env(w)
  w.run = run_with_peers(w, env)
  w.errors = {}
  local chunk = compile(b, env)
  local expected_failure = fails_with(b)
  local ok, err = pcall(function()
    if at_top(b) then
      give(w, code_only(b), env)
      chunk()
    else
      run_in_task(w, env, chunk)
    end
  end)
  if expected_failure then
    assert(not ok, ("%s:%d: the block should fail, it ran"):format(b.file,
      b.line))
    assert(matches(squeeze(tostring(err)), "..." .. squeeze(
      expected_failure) .. "..."), ("%s:%d: failed otherwise: %s"):format(
      b.file, b.line, tostring(err)))
    return
  end
  if not ok then -- named by the block, unless the README's line is there
    local msg = tostring(err)
    if not msg:find(b.file .. ":", 1, true) then
      msg = ("%s:%d: %s"):format(b.file, b.line, msg)
    end
    error(msg, 0)
  end
  check_errors(w)
  check_prints(b, w.printed)
end

-- ---- Signatures ------------------------------------------------------

-- Every tapio.NAME (and testing.NAME) a listing names exists.
local function check_names(b)
  for i, text in ipairs(b.lines) do
    local code = text:gsub("%-%-.*", "")
    for lib, name in code:gmatch("%f[%w_](%a+)%.([%a_][%w_]*)") do
      local t = ({ tapio = tapio, testing = testing })[lib]
      if t and t[name] == nil then
        error(("%s:%d: %s.%s does not exist"):format(b.file,
          b.line + i - 1, lib, name), 0)
      end
    end
  end
end

-- What a listing's receivers stand for: a maker of an object of that kind
-- ("t": every kind of transport, or the one a "-- tapio.KIND" line above
-- names).
local TRANSPORTS = { "tapio.transport", "tapio.read_transport",
  "tapio.write_transport", "tapio.datagram_transport",
  "tapio.subprocess_transport" }

local function protocol() return {} end

local function connection(loop)
  local server = loop:create_server(protocol, "127.0.0.1", 0)
  local reader, writer = tapio.open_connection("127.0.0.1",
    server:addresses()[1].port)
  return server, reader, writer
end

local SAMPLES = {
  loop = function(loop) return loop end,
  buf = function() return tapio.buffer(1) end,
  fut = function(loop) return loop:create_future() end,
  task = function() return tapio.create_task(function() end) end,
  ev = function() return tapio.Event() end,
  lock = function() return tapio.Lock() end,
  cond = function() return tapio.Condition() end,
  sem = function() return tapio.Semaphore(1) end,
  b = function() return tapio.Barrier(1) end,
  q = function() return tapio.Queue() end,
  ctx = function() return tapio.tls_context { side = "client" } end,
  server = function(loop) return (connection(loop)) end,
  reader = function(loop) return select(2, connection(loop)) end,
  writer = function(loop) return select(3, connection(loop)) end,
  ["tapio.transport"] = function(loop)
    return select(3, connection(loop)).transport
  end,
  ["tapio.read_transport"] = function(loop)
    return loop:connect_read_pipe(protocol, (tapio.pipe()))
  end,
  ["tapio.write_transport"] = function(loop)
    return loop:connect_write_pipe(protocol, select(2, tapio.pipe()))
  end,
  ["tapio.datagram_transport"] = function(loop)
    return loop:create_datagram_endpoint(protocol,
      { local_addr = { "127.0.0.1", 0 } })
  end,
  ["tapio.subprocess_transport"] = function(loop)
    return loop:subprocess_exec(protocol, "true")
  end,
  p = function() return tapio.create_subprocess_exec("true") end,
  var = function() return tapio.ContextVar("sample") end,
  context = function() return tapio.copy_context() end,
  handle = function(loop) return loop:call_soon(function() end) end,
  runner = function() return tapio.Runner() end,
  tg = function() return require("tapio.group").TaskGroup end,
  clock = function() return select(2, testing.new_loop()) end,
}

-- Each receiver:method a listing names, with the kinds it may be.
local function method_uses(b)
  local list, kind = {}, nil
  for i, text in ipairs(b.lines) do
    kind = text:match("^%-%- (tapio%.[%w_]+)%s*$") or kind
    local code = text:gsub("%-%-.*", "")
    for receiver, name in code:gmatch("%f[%w_]([%a_][%w_]*):([%a_][%w_]*)") do
      local kinds = receiver == "t" and (kind and { kind } or TRANSPORTS)
        or { receiver }
      list[#list + 1] = { receiver = receiver, name = name, kinds = kinds,
        where = ("%s:%d: "):format(b.file, b.line + i - 1) }
    end
  end
  return list
end

-- Every receiver:method(...) a listing names exists (on a real object).
local function check_methods(b, loop)
  local objects = {}
  for _, use in ipairs(method_uses(b)) do
    local found = false
    for _, k in ipairs(use.kinds) do
      local make = SAMPLES[k] or error(("%sno sample of %q to check %s "
        .. "against"):format(use.where, k, use.name), 0)
      objects[k] = objects[k] or make(loop)
      found = found or objects[k][use.name] ~= nil
    end
    if not found then
      error(("%s%s:%s does not exist"):format(use.where, use.receiver,
        use.name), 0)
    end
  end
end

-- ---- The specs -------------------------------------------------------

for _, file in ipairs(DOCS) do
  describe(file, function()
    for _, b in ipairs(extract(file)) do
      local what = ({ run = "runs", fragment = "compiles",
        signatures = "names what exists" })[b.kind]
      assert(what, ("%s:%d: unknown mark <!-- %s -->"):format(file,
        b.line - 1, b.kind))
      it(("line %d %s"):format(b.line, what), function()
        if b.kind == "run" then
          run_block(b)
        elseif b.kind == "fragment" then
          compile(b)
        else
          check_names(b)
          helper.run(function(loop)
            check_methods(b, loop)
          end)
        end
      end)
    end
  end)
end

-- ---- What exists is written down -------------------------------------

-- The public names of the Lua API at run time: { where = ..., names }
-- per class of spec/support/classes.lua (test_meta.lua's list too).
local function public_names()
  local function public(t)
    local names = {}
    for name, v in pairs(t) do
      if type(name) == "string" and not name:match("^_") then
        names[name] = type(v)
      end
    end
    return names
  end
  local classes = {}
  for _, class in ipairs(require("spec.support.classes").list()) do
    classes[class.doc] = public(class.methods)
  end
  return classes
end

local function escape(s)
  return (s:gsub("%p", "%%%0"))
end

-- How lua/README.md must name one: a function of tapio or tapio.testing
-- as tapio.NAME or testing.NAME, a method as :NAME or .NAME, a value of
-- tapio as a word (an error code is one of `tapio.errors`, which the
-- Errors section documents as a whole).
local function documented(doc, class, name, kind)
  if class == "tapio" and kind ~= "function" then
    return tapio.errors[name] ~= nil
      or doc:find("%f[%w_]" .. escape(name) .. "%f[^%w_]") ~= nil
  end
  local prefix = ({ tapio = "tapio%.", testing = "testing%." })[class]
    or "[:.]"
  return doc:find(prefix .. escape(name) .. "%f[^%w_]") ~= nil
end

-- The files of a directory (ls: LuaJIT has no directory listing).
local function files(dir, pattern)
  local list = {}
  local ls = assert(io.popen("ls " .. dir))
  for name in ls:lines() do
    if name:match(pattern) then
      list[#list + 1] = name
    end
  end
  ls:close()
  assert(#list > 0, "no file in " .. dir)
  return list
end

-- The text of a Markdown table's row that starts with `cell`.
local function layout_row(file, cell)
  for text in io.lines(file) do
    if text:find("| " .. cell .. " |", 1, true) == 1 then
      return text
    end
  end
  error(file .. ": no row " .. cell)
end

describe("what exists is written down", function()
  it("lua/README.md names every public function and value", function()
    local doc = assert(io.open("lua/README.md")):read("*a")
    local missing = {}
    for class, names in pairs(public_names()) do
      for name, kind in pairs(names) do
        if not documented(doc, class, name, kind) then
          missing[#missing + 1] = class .. "." .. name
        end
      end
    end
    table.sort(missing)
    assert(#missing == 0, "lua/README.md does not name: "
      .. table.concat(missing, ", "))
  end)

  it("the Layout tables name every file of src/ and lua/", function()
    local missing = {}
    local function check(file, text, dir, names)
      for _, name in ipairs(names) do
        if not text:find("`" .. dir .. name .. "`", 1, true)
           and not text:find("`" .. name .. "`", 1, true) then
          missing[#missing + 1] = ("%s: %s%s"):format(file, dir, name)
        end
      end
    end
    check("README.md", layout_row("README.md", "`src/`"), "src/",
      files("src", "%.[ch]$"))
    local lua_doc = assert(io.open("lua/README.md")):read("*a")
    local layout = lua_doc:match("\n## Layout\n(.-)\n## ")
    check("lua/README.md", layout, "lua/", files("lua", "%.[ch]$"))
    check("lua/README.md", layout, "lua/", files("lua", "%.cmake$"))
    check("lua/README.md", layout, "lua/tapio/",
      files("lua/tapio", "%.lua$"))
    assert(#missing == 0, "not in the Layout table: "
      .. table.concat(missing, ", "))
  end)
end)

-- The files the docs name by their path from the top (spec/x_spec.lua,
-- examples/c/echo_server.c, ...), placeholders (examples/NAME.lua) left
-- out; of bench/README.md its descriptive part, before "## Method" (the
-- findings after it are a record, files since removed included).
local TOPS = { "spec/", "examples/", "bench/", "src/", "lua/", "capi/",
  "doc/", "cmake/" }
local EXTENSIONS = { c = true, h = true, lua = true, py = true, sh = true,
  md = true, awk = true, ["1"] = true, ["in"] = true, rockspec = true }

local function named_paths(text)
  local paths = {}
  for _, top in ipairs(TOPS) do
    for path in text:gmatch("%f[%w_./-]" .. escape(top) .. "[%w_./-]*") do
      path = path:gsub("[.]+$", "")
      local ext = path:match("%.([%w]+)$")
      if ext and EXTENSIONS[ext] and not path:find("%u%u%u") then
        paths[path] = true
      end
    end
  end
  return paths
end

describe("what the docs name exists", function()
  it("every file named by its path", function()
    local missing = {}
    local docs = { "README.md", "lua/README.md", "capi/tapio.h",
      "lua/tapio_host.h", "bench/README.md" }
    for _, file in ipairs(docs) do
      local text = assert(io.open(file)):read("*a")
      if file == "bench/README.md" then
        text = text:match("^(.-)\n## Method\n")
      end
      for path in pairs(named_paths(text)) do
        local f = io.open(path)
        if f then
          f:close()
        else
          missing[#missing + 1] = file .. ": " .. path
        end
      end
    end
    table.sort(missing)
    assert(#missing == 0, "no such file: " .. table.concat(missing, ", "))
  end)
end)
