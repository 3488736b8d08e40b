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

-- The public functions of a class at run time.
local function public(t)
  local names = {}
  for name, v in pairs(t) do
    if type(v) == "function" and not name:match("^_") then
      names[name] = true
    end
  end
  return names
end
-- spec/support/classes.lua's list, by the class name _meta.lua uses
local runtime = {}
for _, class in ipairs(require("spec.support.classes").list()) do
  if class.meta then
    runtime[class.meta] = public(class.methods)
  end
end
-- a task's own methods: those its class adds to the future's
for name in pairs(runtime.Task) do
  if rawget(tapio.Future, name) == tapio.Task[name] then
    runtime.Task[name] = nil
  end
end

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
