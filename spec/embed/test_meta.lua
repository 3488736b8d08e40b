-- The Lua language server definitions (lua/tapio/_meta.lua, and
-- _meta_testing.lua for tapio.testing) against the
-- module as it is (Debian has no lua-language-server to run --check):
-- every public function of tapio, of the loop, of each transport class,
-- of the server, handle, future, task, buffer, stream reader and writer,
-- process, synchronisation primitive and task group is annotated (a doc
-- comment, and a ---@param for each parameter), every constant and value
-- of the module is a ---@field, and nothing is annotated that does not
-- exist.
-- Usage: lua5.4 test_meta.lua path/to/_meta.lua [path/to/_meta_testing.lua]
-- (tapio on the paths)
local tapio = require "tapio"
local core = require "tapio.core"
local testing = require "tapio.testing"

-- every file given: _meta.lua and _meta_testing.lua
local meta = ""
for _, path in ipairs(arg) do
  meta = meta .. assert(io.open(path)):read("a") .. "\n"
end
local failures, checks = {}, 0

local function check(cond, msg)
  checks = checks + 1
  if not cond then failures[#failures + 1] = msg end
end

-- The public functions at run time, by the class name _meta.lua uses.
local function public(t, into)
  into = into or {}
  for name, v in pairs(t) do
    if type(v) == "function" and not name:match("^_") then
      into[name] = true
    end
  end
  return into
end
local loop = tapio.new_loop()
local fut = loop:create_future()
local task = loop:create_task(function() end)
local runtime = {
  tapio = public(tapio),
  Loop = public(getmetatable(loop).__index),
  Transport = public(core.transport_methods),
  ReadTransport = public(core.read_transport_methods),
  WriteTransport = public(core.write_transport_methods),
  SubprocessTransport = public(core.subprocess_transport_methods),
  DatagramTransport = public(core.datagram_transport_methods),
  Server = public(core.server_methods),
  Handle = public(core.handle_methods),
  Future = public(getmetatable(fut).__index),
  Task = {},
  Buffer = public(core.buffer_methods),
  StreamReader = public(tapio.StreamReader),
  StreamWriter = public(tapio.StreamWriter),
  Process = public(tapio.Process),
  Event = public(tapio.Event),
  Lock = public(tapio.Lock),
  Semaphore = public(tapio.Semaphore),
  Condition = public(tapio.Condition),
  Barrier = public(tapio.Barrier),
  Queue = public(tapio.Queue),
  TaskGroup = public(require("tapio.group").TaskGroup),
  testing = public(testing),
  Clock = public(getmetatable(testing.clock(testing.new_loop()))),
  Recorder = public(getmetatable(testing.recorder()).__index),
  Child = public(testing._Child),
}
-- a task's own methods: those its class adds to the future's
for name, v in pairs(tapio.Task) do
  if type(v) == "function" and not name:match("^_") and
     rawget(tapio.Future, name) ~= v then
    runtime.Task[name] = true
  end
end
loop:run_until_complete(task)
loop:close()

-- The annotated functions: `function Class.name(` or `Class:name(`, with
-- the comment lines right above them.
local annotated = {}
local lines = {}
for line in meta:gmatch("[^\n]*") do lines[#lines + 1] = line end
for i, line in ipairs(lines) do
  local class, name, params = line:match("^function (%w+)[.:]([%w_]+)%((.-)%)")
  if class then
    annotated[class] = annotated[class] or {}
    annotated[class][name] = true
    local doc, j = {}, i - 1
    while j > 0 and lines[j]:match("^%-%-%-") do
      doc[#doc + 1] = lines[j]
      j = j - 1
    end
    local text = table.concat(doc, "\n")
    check(#doc > 0, class .. ":" .. name .. " has no annotation")
    for p in params:gmatch("[^,%s]+") do
      local pat = "%-%-%-@param " .. p:gsub("%.", "%%.") .. "[?%s]"
      check(text:match(pat), class .. ":" .. name .. ": no ---@param " .. p)
    end
  end
end

for class, names in pairs(runtime) do
  for name in pairs(names) do
    check(annotated[class] and annotated[class][name],
          ("%s.%s exists but is not annotated"):format(class, name))
  end
end
for class, names in pairs(annotated) do
  check(runtime[class], "annotated class " .. class .. " is unknown")
  for name in pairs(names) do
    check(runtime[class] and runtime[class][name],
          ("%s.%s is annotated but does not exist"):format(class, name))
  end
end
for name, v in pairs(tapio) do
  if type(v) ~= "function" and not name:match("^_") then
    check(meta:match("\n%-%-%-@field " .. name .. " "),
          "tapio." .. name .. " has no ---@field")
  end
end

for _, f in ipairs(failures) do print("FAIL " .. f) end
print(("%d passed, %d failed"):format(checks - #failures, #failures))
os.exit(#failures == 0 and 0 or 1)
