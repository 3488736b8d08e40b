-- Serves examples/testing/line_protocol.lua on a real socket.
-- Usage: tapio examples/testing/line_server.lua [port] [idle_timeout]
--        (127.0.0.1, 8888, 30 seconds; port 0: any free one, printed);
--        try it with `nc 127.0.0.1 8888`.
local tapio = require "tapio"
package.path = (arg[0]:match("^(.*/)") or "./") .. "?.lua;" .. package.path
local line_protocol = require "line_protocol"

local port = tonumber(arg and arg[1]) or 8888
local idle = tonumber(arg and arg[2])

tapio.run(function()
  local loop = tapio.get_running_loop()
  local server = loop:create_server(function()
    return line_protocol.new({ idle_timeout = idle })
  end, "127.0.0.1", port)
  print(("serving lines on 127.0.0.1:%d"):format(server:addresses()[1][2]))
  server:serve_forever()
end)
