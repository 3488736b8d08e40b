-- The streams page's TCP echo server: start_server runs handle_echo as a
-- task for each connection.
-- Usage: tapio examples/streams_echo_server.lua [port]   (127.0.0.1, 8888)
local tapio = require "tapio"

local port = tonumber(arg and arg[1]) or 8888

local function handle_echo(reader, writer)
  local data = reader:read(100)
  local message = data
  local addr = writer:get_extra_info("peername")

  print(("Received %s from %s"):format(tapio.repr(message), tostring(addr)))

  print(("Send: %s"):format(tapio.repr(message)))
  writer:write(data)
  writer:drain()

  print("Close the connection")
  writer:close()
end

tapio.run(function()
  local server = tapio.start_server(handle_echo, "127.0.0.1", port)

  local addr = server:addresses()[1]
  print(("Serving on %s"):format(tostring(addr)))

  server:serve_forever()
end)
