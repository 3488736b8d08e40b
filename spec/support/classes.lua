-- The public classes of the Lua API and the tables their public names
-- live in at run time: one list for the checks that each is documented
-- (spec/docs_spec.lua, against lua/README.md) and annotated
-- (spec/embed/test_meta.lua, against lua/tapio/_meta.lua), so a class
-- added here is checked by both.
local M = {}

-- { doc = name in docs_spec, meta = the _meta.lua class (nil: annotated
-- with ---@field lines, not functions), methods = the table } per class.
function M.list()
  local tapio = require "tapio"
  local core = require "tapio.core"
  local testing = require "tapio.testing"
  local loop = tapio.new_loop()
  local ctx = tapio.tls_context { side = "client" }
  local function class(doc, meta, methods)
    return { doc = doc, meta = meta, methods = methods }
  end
  local list = {
    class("tapio", "tapio", tapio),
    class("testing", "testing", testing),
    class("loop", "Loop", getmetatable(loop).__index),
    class("transport", "Transport", core.transport_methods),
    class("read_transport", "ReadTransport", core.read_transport_methods),
    class("write_transport", "WriteTransport", core.write_transport_methods),
    class("subprocess_transport", "SubprocessTransport",
      core.subprocess_transport_methods),
    class("datagram_transport", "DatagramTransport",
      core.datagram_transport_methods),
    class("server", "Server", core.server_methods),
    class("handle", "Handle", core.handle_methods),
    class("future", "Future", tapio.Future),
    class("task", "Task", tapio.Task),
    class("buffer", "Buffer", core.buffer_methods),
    class("tls_context", nil, getmetatable(ctx).__index),
    class("StreamReader", "StreamReader", tapio.StreamReader),
    class("StreamWriter", "StreamWriter", tapio.StreamWriter),
    class("Process", "Process", tapio.Process),
    class("Event", "Event", tapio.Event),
    class("Lock", "Lock", tapio.Lock),
    class("Semaphore", "Semaphore", tapio.Semaphore),
    class("Condition", "Condition", tapio.Condition),
    class("Barrier", "Barrier", tapio.Barrier),
    class("Queue", "Queue", tapio.Queue),
    class("TaskGroup", "TaskGroup", require("tapio.group").TaskGroup),
    class("Runner", "Runner", require("tapio.runner").Runner),
    class("Context", "Context", tapio.Context),
    class("ContextVar", "ContextVar", require("tapio.context").ContextVar),
    class("Token", nil, tapio.Token),
    class("clock", "Clock",
      getmetatable(testing.clock(testing.new_loop()))),
    class("recorder", "Recorder", getmetatable(testing.recorder()).__index),
    class("child", "Child", testing._Child),
  }
  ctx:close()
  loop:close()
  return list
end

return M
