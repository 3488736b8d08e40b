-- The chaos spec's streams-API actors: one task each side, reading,
-- writing, draining, cancelling and closing as they draw.
local helper = require "spec.helper"
local round = require "spec.support.chaos.round"
local protocol = require "spec.support.chaos.protocol"
local tapio = helper.tapio
local server_ctx, client_ctx = round.server_ctx, round.client_ctx
local received, record_sent = protocol.received, protocol.record_sent

-- What a stream read returned or raised: bytes go to received (checked),
-- an IncompleteReadError's partial too (it was consumed); the end, an
-- error of the connection or a cancellation end the reading.
local function took(R, a, ok, res)
  if ok then
    R:note(a, "read:" .. #res)
    received(R, a, res)
    return res ~= ""
  end
  if type(res) ~= "table" then
    if not tostring(res):find("tapio: ") then -- a documented error
      R:fail(a, "a stream call raised " .. tostring(res))
    end
    R:note(a, "raised:" .. tostring(res))
    return false
  end
  R:note(a, "err:" .. tostring(res.name))
  if res.partial then
    received(R, a, res.partial)
  end
  if tapio.is_cancelled(res) then
    a.cancels = (a.cancels or 0) + 1
    if a.cancels <= 3 and not R:chance(4) then
      R:count("streams:read on after cancel")
      tapio.current_task():uncancel()
      return true -- the stream stays usable: read on
    end
    error(res, 0)
  end
  return res.name == "EMSGSIZE" -- a limit overrun leaves the buffer
end

local STREAM_STEPS = {
  "write", "write", "write", "drain", "read", "read", "readexactly",
  "readuntil", "readline", "readall", "cancel", "cancel_self", "close",
  "cancel_peer", "cancel_peer",
  "abort", "write_eof", "collect", "raise", "stop",
}

local function stream_step(R, a, reader, writer)
  local what = R:pick(STREAM_STEPS)
  R:note(a, "!" .. what)
  R:count("streams:" .. what)
  if what == "write" then
    if not writer:is_closing() and not a.eof_written then
      local data = R:chunk()
      record_sent(a, data)
      writer:write(data)
    end
  elseif what == "drain" then
    local ok, err = pcall(writer.drain, writer)
    if not ok then
      return took(R, a, ok, err)
    end
  elseif what == "read" then
    return took(R, a, pcall(reader.read, reader, R.rand(5000)))
  elseif what == "readexactly" then
    return took(R, a, pcall(reader.readexactly, reader, R.rand(3000)))
  elseif what == "readuntil" then
    return took(R, a, pcall(reader.readuntil, reader,
      R:chance(2) and "\n" or { "ab", "\n" }))
  elseif what == "readline" and not a.small_limit then
    return took(R, a, pcall(reader.readline, reader))
  elseif what == "readall" then
    return took(R, a, pcall(reader.read, reader))
  elseif what == "cancel" then
    R:cancel_something(a)
  elseif what == "cancel_peer" then
    -- the peer most likely waits in a read or a drain
    local task = a.peer.task
    if task and not task:done() then
      task:cancel("chaos peer")
    end
  elseif what == "cancel_self" then
    tapio.current_task():cancel("chaos self")
  elseif what == "close" then
    writer:close()
    local ok, err = pcall(writer.wait_closed, writer)
    if not ok then
      took(R, a, ok, err)
    end
    return false
  elseif what == "abort" then
    writer.transport:abort()
    return false
  elseif what == "write_eof" then
    if not writer:is_closing() and writer:can_write_eof() then
      a.eof_written = true
      writer:write_eof()
    end
  elseif what == "collect" then
    collectgarbage("collect")
  elseif what == "raise" and a.may_raise then
    R:raise(a)
  elseif what == "stop" then
    R.loop:stop()
  end
  return true
end

local function stream_body(R, a, reader, writer)
  a.made = true
  a.reader, a.writer = reader, writer
  if a.starttls then
    if a.kind:find("client") then
      record_sent(a, "STARTTLS\n")
      writer:write("STARTTLS\n")
      writer:start_tls(client_ctx, { server_hostname = "localhost" })
    else
      if not took(R, a, pcall(reader.readline, reader)) then
        return
      end
      writer:start_tls(server_ctx)
    end
    R:note(a, "tls")
  end
  for _ = 1, a.steps do
    if R.failure or R.finishing or not stream_step(R, a, reader, writer) then
      break
    end
  end
  writer:close()
end

-- Runs a stream actor's body in its task and marks its end.
local function stream_task(R, a, fn, ...)
  local task = tapio.current_task()
  task.chaos_name = task.chaos_name or ("stream" .. a.id)
  a.task = task
  R.tasks[#R.tasks + 1] = task
  local ok, err = pcall(fn, ...)
  a.done = true
  R:note(a, "end")
  if not ok then
    if type(err) == "table" and err.chaos_tag then
      error(err, 0) -- the server's callback raised: the handler's
    end
    if type(err) ~= "table" then
      R:fail(a, "a stream task raised " .. tostring(err))
    elseif not tapio.is_cancelled(err) then
      R:note(a, "ended with " .. tostring(err.name))
    end
  end
end

local function streams_pair(R, kind)
  local ca = R:new_actor("streams-" .. kind .. "/client")
  local sa = R:new_actor("streams-" .. kind .. "/server")
  ca.peer, sa.peer = sa, ca
  ca.received, sa.received, ca.sent, sa.sent = "", "", {}, {}
  sa.may_raise = true
  ca.starttls, sa.starttls = kind == "starttls", kind == "starttls"
  -- a small limit makes readuntil overrun it (readline would drop bytes)
  local limit = R:chance(3) and 16 + R.rand(500) or nil
  ca.small_limit, sa.small_limit = limit, limit
  local sopts = { ssl = kind == "tls" and server_ctx or nil, limit = limit }
  local copts = { ssl = kind == "tls" and client_ctx or nil, limit = limit,
    server_hostname = kind == "tls" and "localhost" or nil }
  local rec
  local function serve(reader, writer)
    rec.accepted = true
    stream_task(R, sa, stream_body, R, sa, reader, writer)
  end
  local server, path, port
  if kind == "unix" then
    path = R:unix_path()
    server = tapio.start_unix_server(serve, path, { limit = limit })
  else
    server = tapio.start_server(serve, "127.0.0.1", 0, sopts)
    port = helper.port(server)
  end
  rec = R:add_server(server)
  sa.done_unless_made = ca
  R:task("streams" .. ca.id, { ca }, function()
    stream_task(R, ca, function()
      local reader, writer
      if path then
        reader, writer = tapio.open_unix_connection(path, { limit = limit })
      else
        reader, writer = tapio.open_connection("127.0.0.1", port, copts)
      end
      stream_body(R, ca, reader, writer)
    end)
  end)
end

return { streams_pair = streams_pair }
