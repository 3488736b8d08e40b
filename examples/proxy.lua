-- A TCP proxy with streams, ported from python/proxy.py: each client's
-- connection is joined to a new connection to HOST:UPSTREAM, raced over
-- the name's IPv6 and IPv4 addresses (Happy Eyeballs), and bytes pass
-- both ways; each direction's end is passed on (write_eof), and the bytes
-- each way are counted.
-- Usage: tapio examples/proxy.lua PORT HOST UPSTREAM
local tapio = require "tapio"

local PORT, HOST, UPSTREAM = tonumber(arg[1]), arg[2], tonumber(arg[3])

local function pipe(reader, writer)
  local count = 0
  for data in function() return reader:read(65536) end do
    if data == "" then
      break
    end
    writer:write(data)
    count = count + #data
    writer:drain()
  end
  writer:write_eof() -- the other side's end, passed on
  return count
end

local function handle_client(reader, writer)
  local ok, up_reader, up_writer = pcall(tapio.open_connection, HOST,
    UPSTREAM, { happy_eyeballs_delay = 0.25 })
  if not ok then
    print("cannot reach " .. HOST .. ": " .. tostring(up_reader))
    writer:close()
    return
  end
  local via = up_writer:get_extra_info("peername").host
  local up, down
  local err
  ok, err = pcall(tapio.TaskGroup, function(tg)
    up = tg:create_task(pipe, reader, up_writer)
    down = tg:create_task(pipe, up_reader, writer)
  end)
  if ok then
    print(("via %s: %d bytes up, %d down"):format(via, up:result(),
                                                  down:result()))
  end
  writer:close()
  up_writer:close()
  if not ok then
    error(err, 0)
  end
end

tapio.run(function()
  local server = tapio.start_server(handle_client, "127.0.0.1", PORT)
  server:serve_forever()
end)
