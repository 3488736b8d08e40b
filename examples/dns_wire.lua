-- RFC 1035's wire format, as examples/dns_forwarder.lua needs it: a
-- query's question, the records of an answer and their TTLs, an answer cut
-- to fit 512 bytes, the answers of an error. No bit operators: LuaJIT
-- runs it too (the forwarder's spec on the virtual clock).
local floor, char = math.floor, string.char
local QR, TC = 0x80, 0x02 -- bits of the flags' first byte (RD: 0x01)
local NOERROR, FORMERR, SERVFAIL, NXDOMAIN = 0, 1, 2, 3
local OPT = 41 -- EDNS's pseudo-record: its "TTL" is no TTL
local UDP_MAX = 512 -- RFC 1035's limit for an answer over UDP
local TYPES = { [1] = "A", [2] = "NS", [5] = "CNAME", [6] = "SOA",
                [12] = "PTR", [15] = "MX", [16] = "TXT", [28] = "AAAA",
                [33] = "SRV", [255] = "ANY" }

-- Integers in network order.
local function u16(s, i)
  local a, b = s:byte(i, i + 1)
  return a * 256 + b
end

local function u32(s, i)
  return u16(s, i) * 65536 + u16(s, i + 2)
end

local function p16(n)
  return char(floor(n / 256) % 256, n % 256)
end

local function p32(n)
  return p16(floor(n / 65536)) .. p16(n % 65536)
end

local function has(byte, bit) -- is bit (a power of 2) set in byte?
  return floor(byte / bit) % 2 == 1
end

-- The position after the name at i (labels, or a compression pointer),
-- and its text; nil if it runs off the end.
local function skip_name(msg, i)
  local labels = {}
  while true do
    local n = msg:byte(i)
    if not n then
      return nil
    elseif n == 0 then
      return i + 1, table.concat(labels, ".")
    elseif n >= 0xC0 then
      return (i + 2 <= #msg + 1) and i + 2 or nil, "(compressed)"
    elseif n >= 0x40 or i + n > #msg then
      return nil
    end
    labels[#labels + 1] = msg:sub(i + 1, i + n)
    i = i + 1 + n
  end
end

-- A query's parts: id and question (name, type, class: the bytes), its
-- name and type for the log, the cache's key. Nil for what is no query
-- of one question.
local function parse_query(msg)
  -- flags' first byte 0x08 or more: a response, or an opcode not QUERY
  if #msg < 12 or msg:byte(3) >= 0x08 or u16(msg, 5) ~= 1 then
    return nil
  end
  local finish, name = skip_name(msg, 13)
  if not finish or finish + 3 > #msg or name == "(compressed)" then
    return nil
  end
  local question = msg:sub(13, finish + 3)
  local qtype = u16(msg, finish)
  return { msg = msg, id = msg:sub(1, 2), question = question, name = name,
           type = TYPES[qtype] or "TYPE" .. qtype, key = question:lower() }
end

-- The records after the question: for each, its type, where its TTL is
-- and where it ends. Nil if the message is cut short.
local function records(msg, qlen)
  local list, i = {}, 13 + qlen
  local count = u16(msg, 7) + u16(msg, 9) + u16(msg, 11)
  for n = 1, count do
    i = skip_name(msg, i)
    if not i or i + 9 > #msg then
      return nil
    end
    local finish = i + 10 + u16(msg, i + 8)
    if finish > #msg + 1 then
      return nil
    end
    list[n] = { type = u16(msg, i), ttl_at = i + 4, finish = finish }
    i = finish
  end
  return list
end

-- msg with every TTL lowered by age seconds (never below 0).
local function aged(msg, list, age)
  local parts, from = {}, 1
  for _, r in ipairs(list) do
    if r.type ~= OPT then
      parts[#parts + 1] = msg:sub(from, r.ttl_at - 1)
      parts[#parts + 1] = p32(math.max(0, u32(msg, r.ttl_at) - age))
      from = r.ttl_at + 4
    end
  end
  parts[#parts + 1] = msg:sub(from)
  return table.concat(parts)
end

-- An answer (whose question is qlen bytes) cut to the records that fit in
-- limit bytes, TC set and the sections' counts fixed.
local function truncated(msg, qlen, limit)
  local list = records(msg, qlen) or {}
  local kept, size = 0, 12 + qlen
  for n, r in ipairs(list) do
    if r.finish - 1 > limit then
      break
    end
    kept, size = n, r.finish - 1
  end
  local counts = {}
  for s = 1, 3 do
    counts[s] = math.min(u16(msg, 5 + 2 * s), kept)
    kept = kept - counts[s]
  end
  local flags = msg:byte(3)
  return msg:sub(1, 2) .. char(has(flags, TC) and flags or flags + TC)
    .. msg:sub(4, 6) .. p16(counts[1]) .. p16(counts[2]) .. p16(counts[3])
    .. msg:sub(13, size)
end

-- An answer of rcode with no records to the query msg (q: its parts, or
-- nil to leave the question out): its id, opcode and RD bit, RA set.
local function error_answer(msg, q, rcode)
  local b = msg:byte(3)
  return msg:sub(1, 2) .. char(QR + (b - b % 8) % 0x80 + b % 2, 0x80 + rcode)
    .. p16(q and 1 or 0) .. p16(0) .. p16(0) .. p16(0)
    .. (q and q.question or "")
end

-- Is msg an answer with this id to this question (its bytes)?
local function answers(msg, id, question)
  return #msg >= 12 + #question and u16(msg, 1) == id
    and has(msg:byte(3), QR) and u16(msg, 5) == 1
    and msg:sub(13, 12 + #question) == question
end

return { QR = QR, TC = TC, NOERROR = NOERROR, FORMERR = FORMERR,
         SERVFAIL = SERVFAIL, NXDOMAIN = NXDOMAIN, OPT = OPT,
         UDP_MAX = UDP_MAX, u16 = u16, u32 = u32, p16 = p16, has = has,
         parse_query = parse_query, records = records, aged = aged,
         truncated = truncated, error_answer = error_answer,
         answers = answers }
