-- The chaos spec's calls of a closed transport, and its writes after
-- connection_lost.

-- Methods of a closed transport: the harmless ones never raise (a write is
-- dropped); the others answer as asyncio's closed transports do, but TLS's
-- write_eof, which raises as asyncio's always does. (Inside
-- connection_lost the transport is still open: any tapio error.)
local HARMLESS = { "close", "abort", "is_closing", "is_reading",
                   "pause_reading", "resume_reading", "write", "writelines",
                   "get_pid", "get_returncode", "get_pipe_transport", "kill",
                   "terminate" }
local CLOSED = { "get_write_buffer_size", "get_extra_info", "write_eof",
                 "get_protocol", "set_write_buffer_limits", "get_stats",
                 "sendto", "can_write_eof", "get_write_buffer_limits" }
local NO_HALF_CLOSE = "^tapio: transport:write_eof: TLS has no half%-close"
local ARGS = { write = "late", writelines = { "late" }, sendto = "late",
               get_extra_info = "socket", get_pipe_transport = 0 }

local function member(list, x)
  for _, y in ipairs(list) do
    if x == y then
      return true
    end
  end
  return false
end

local function poke_closed(R, a, t, inside)
  if not t then
    return
  end
  local name = R:chance(2) and R:pick(HARMLESS) or R:pick(CLOSED)
  if not t[name] or (a.eof_written and name:find("^write")) then
    return
  end
  R:note(a, "closed:" .. name)
  local ok, err = pcall(t[name], t, ARGS[name])
  local allowed = inside and "^tapio: "
                  or name == "write_eof" and NO_HALF_CLOSE
  if not ok and (member(HARMLESS, name) or not allowed
                 or not tostring(err):find(allowed)) then
    R:fail(a, "closed transport:" .. name .. " raised " .. tostring(err))
  end
  if t.is_closing and not t:is_closing() then
    R:fail(a, "a closed transport is not closing")
  end
end

-- Six writes after connection_lost: dropped, and the exception handler
-- hears of it once, at the fifth (checked at the round's end).
local function late_writes(R, a, t)
  R:note(a, "late writes")
  R.late[t] = { heard = 0, actor = a }
  for _ = 1, 6 do
    t:write("late")
  end
end

return { poke_closed = poke_closed, late_writes = late_writes }
