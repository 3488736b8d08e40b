-- The streams page's TCP echo client: open_connection, write, drain, read
-- the echo, close.
-- Usage: tapio examples/streams_echo_client.lua [port]   (127.0.0.1, 8888)
local tapio = require "tapio"

local port = tonumber(arg and arg[1]) or 8888

local function tcp_echo_client(message)
  -- Inside a task, open_connection waits and returns both streams.
  local reader, writer = tapio.open_connection("127.0.0.1", port)

  print(("Send: %s"):format(tapio.repr(message)))
  writer:write(message)
  writer:drain()

  local data = reader:read(100)
  print(("Received: %s"):format(tapio.repr(data)))

  print("Close the connection")
  writer:close()
  writer:wait_closed()
end

tapio.run(tcp_echo_client, "Hello World!")
