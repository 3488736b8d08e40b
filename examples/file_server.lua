-- A static file server over HTTP/1.0, with streams: each file goes out
-- with loop:sendfile (asyncio's loop.sendfile), so on a plain connection
-- the kernel sends it from the file and its bytes never pass through Lua.
-- GET and HEAD of the files under DIR. Usage: tapio
-- examples/file_server.lua DIR [PORT]
local tapio = require "tapio"

local root, port = arg[1] or ".", tonumber(arg[2] or "8080")

local function reply(writer, status, size)
  writer:write(("HTTP/1.0 %s\r\nContent-Length: %d\r\n"
    .. "Content-Type: application/octet-stream\r\n\r\n"):format(status, size))
end

local function handle(reader, writer)
  local method, path = reader:readline():match("^(%u+) (/[^ ?]*)")
  repeat -- the request's headers, unused
    local line = reader:readline()
  until line == "\r\n" or line == "\n" or line == ""
  local file = (method == "GET" or method == "HEAD")
    and not path:find("..", 1, true) and io.open(root .. path, "rb")
  if not file then
    reply(writer, "404 Not Found", 0)
  else
    reply(writer, "200 OK", file:seek("end"))
    if method == "GET" then
      local sent = tapio.get_running_loop():sendfile(writer.transport, file)
      print(("%s %d bytes"):format(path, sent))
    end
    file:close()
  end
  writer:close()
  writer:wait_closed()
end

tapio.run(function()
  local server = tapio.start_server(handle, "127.0.0.1", port)
  print(("Serving %s on http://127.0.0.1:%d"):format(root, port))
  server:serve_forever()
end)
