-- examples/loadgen.lua against a misbehaving asyncio server
-- (spec/support/loadgen_peer.py): one that answers, one that never
-- answers some requests, resets some connections mid-answer, closes after
-- half an answer, stops reading (the client's drain waits), accepts
-- slowly behind a full backlog (connects time out), stalls some TLS
-- handshakes; a port that refuses. The report's counts are what the
-- server says it did; every worker ends (helper.run fails on a task left
-- pending), the sockets, the loop's memory and its references are back
-- where they were, the exception handler hears nothing, and each run
-- ends within its deadline: --seconds cuts the workers short wherever
-- they wait (mid-connect, mid-handshake, mid-read, mid-drain). Then the
-- program itself: its report, Ctrl-C, a bad argument.
local helper = require "spec.helper"
local tapio = helper.tapio
local sequences = require "spec.support.sequences"

package.path = "examples/?.lua;" .. package.path
local loadgen = require "loadgen"

local unpack = table.unpack or unpack
local run = helper.run
local PEER = "spec/support/loadgen_peer.py"

-- Inside a task: the peer started with args (a list); its process and
-- port.
local function start_peer(args)
  local argv = { PEER }
  for _, a in ipairs(args or {}) do
    argv[#argv + 1] = tostring(a)
  end
  local p = tapio.create_subprocess_exec(sequences.default_python(), argv,
    { stdin = tapio.PIPE, stdout = tapio.PIPE })
  local line = p.stdout:readline()
  return p, assert(tonumber(line:match("^port (%d+)\n$")), line)
end

-- Inside a task: ends the peer; what it says it did ({answered = n, ...}).
local function stop_peer(p)
  p.stdin:close()
  local log = {}
  for _, line in ipairs(helper.output_lines(p)) do
    local what, n = line:match("^([%w_]+) (%d+)$")
    if what then
      log[what] = tonumber(n)
    end
  end
  return log
end

-- The loop's memory and references, and the sockets open, after a full
-- collection.
local function measure(loop)
  helper.collect()
  return { memory = loop:memory(), refs = loop:_debug().refs,
           sockets = helper.open_sockets() }
end

-- Inside a task: loadgen with args (after HOST PORT) against port; its
-- stats. It must leave the sockets, the loop's memory and references as
-- they were.
local function load(loop, port, args)
  local cfg = assert(loadgen.parse({ "127.0.0.1", tostring(port),
                                     unpack(args) }))
  tapio.sleep(0.001) -- a warm-up, no wait: what the first timer leaves
                     -- (the loop's deadline heap grown, a handle of ours
                     -- still referenced) is before the baseline
  local before = measure(loop)
  local stats = loadgen.run(cfg, loadgen.new_stats(cfg))
  local after = measure(loop)
  assert.are.same({}, helper.new_sockets(before.sockets))
  assert.are.equal(before.refs, after.refs)
  assert.are.equal(before.memory, after.memory)
  return stats
end

-- Inside a task: loadgen with args against a peer started with
-- peer_args; its stats and the peer's log.
local function against(loop, peer_args, args)
  local peer, port = start_peer(peer_args)
  local ok, stats = pcall(load, loop, port, args)
  local log = stop_peer(peer)
  if not ok then
    error(stats, 0)
  end
  return stats, log
end

-- stats' counts, each kind not in expected being 0.
local function assert_counts(expected, stats)
  local want = {}
  for _, kind in ipairs(loadgen.KINDS) do
    want[kind] = expected[kind] or 0
  end
  assert.are.same(want, stats.counts)
end

describe("examples/loadgen.lua", function()
  it("makes every request once; the answers are the server's", function()
    run(function(loop)
      local stats, log = against(loop, {},
        { "--conns", "4", "--requests", "200", "--timeout", "0.2" })
      assert_counts({ ok = 200 }, stats)
      assert.are.equal(200, log.answered)
      assert.are.equal(200, log.requests)
      assert.are.equal(4, stats.connects)
      assert.are.equal(4, log.connections)
      assert.are.equal(200, #stats.latencies)
      assert.matches("\nok +200\n", loadgen.report(stats))
      assert.matches("\nlatency +p50 [%d.]+ ms, p99 [%d.]+ ms\n$",
                     loadgen.report(stats))
    end)
  end)

  it("speaks lines with --line, longer than a reader's default limit",
     function()
    run(function(loop)
      local stats, log = against(loop, { "--line", "--close", "9" },
        { "--conns", "3", "--requests", "60", "--timeout", "0.2",
          "--line", "--size", "100000" })
      assert.are.equal(6, log.closed)
      assert_counts({ ok = 54, eof = 6 }, stats)
      assert.are.equal(54, log.answered)
    end)
  end)

  it("times out the requests the server never answers, and reconnects",
     function()
    run(function(loop)
      local stats, log = against(loop, { "--stall", "7" },
        { "--conns", "4", "--requests", "60", "--timeout", "0.1" })
      assert.are.equal(8, log.stalled)
      assert_counts({ ok = 52, timeout = 8 }, stats)
      assert.are.equal(52, log.answered)
      assert.are.equal(stats.connects, log.connections)
      assert.is_true(stats.connects > 4 and stats.connects <= 12)
      -- each stall costs a worker 0.1 s; 4 workers share 8 of them
      assert.is_true(stats.elapsed < 1.5, stats.elapsed)
    end)
  end)

  it("counts the connections reset mid-answer", function()
    run(function(loop)
      local stats, log = against(loop, { "--reset", "5" },
        { "--conns", "4", "--requests", "60", "--timeout", "0.2" })
      assert.are.equal(12, log.reset)
      assert_counts({ ok = 48, reset = 12 }, stats)
      assert.are.equal(48, log.answered)
    end)
  end)

  it("counts the connections closed after half an answer", function()
    run(function(loop)
      local stats, log = against(loop, { "--close", "4" },
        { "--conns", "3", "--requests", "40", "--timeout", "0.2" })
      assert.are.equal(10, log.closed)
      assert_counts({ ok = 30, eof = 10 }, stats)
    end)
  end)

  it("gives up a request whose drain waits, and aborts its connection",
     function()
    run(function(loop)
      -- 4 MB requests, which the server stops reading: more than the
      -- socket buffers hold
      local stats, log = against(loop, { "--hold", "1" },
        { "--conns", "2", "--requests", "4", "--timeout", "0.2",
          "--size", "4000000" })
      assert.are.equal(4, log.held)
      assert_counts({ timeout = 4 }, stats)
      -- each: 0.2 s for the drain, 0.2 for the close, then the abort
      assert.is_true(stats.elapsed >= 0.8 and stats.elapsed < 1.5,
                     stats.elapsed)
    end)
  end)

  it("times out connects behind a full backlog", function()
    run(function(loop)
      local stats, log = against(loop,
        { "--backlog", "1", "--accept-every", "0.05" },
        { "--conns", "8", "--requests", "40", "--timeout", "0.1" })
      assert.are.equal(40, stats:made())
      assert.is_true(stats.counts.timeout > 0, "no connect timed out")
      assert.are.equal(0, stats.counts.other)
      -- an answer may come to a connection the client gave up on
      assert.is_true(stats.counts.ok <= log.answered)
      assert.is_true(log.answered <= stats.counts.ok + stats.counts.timeout)
    end)
  end)

  it("over TLS, times out the handshakes the server never starts, and "
     .. "tells a reset from an end", function()
    run(function(loop)
      local stats, log = against(loop,
        { "--tls", helper.certs(), "--stall-handshake", "5", "--stall", "13",
          "--reset", "7", "--close", "11" },
        { "--conns", "6", "--requests", "100", "--timeout", "0.3",
          "--tls", helper.cert("ca.pem") })
      assert.are.equal(0, log.handshakes_failed)
      assert.is_true(log.handshakes_stalled >= 1)
      assert_counts({ ok = log.answered, reset = log.reset,
                      eof = log.closed,
                      timeout = log.stalled + log.handshakes_stalled }, stats)
      assert.are.equal(100, stats:made())
      assert.are.equal(stats.connects, log.handshakes)
    end)
  end)

  it("counts refused connects", function()
    run(function(loop)
      -- a port bound and not listening: nobody else takes it meanwhile
      local fd = assert(tapio.socket(tapio.AF_INET, tapio.SOCK_STREAM))
      assert(tapio.bind(fd, { "127.0.0.1", 0 }))
      local ok, stats = pcall(load, loop, tapio.getsockname(fd).port,
        { "--conns", "2", "--requests", "20", "--timeout", "0.2" })
      tapio.close_fd(fd)
      assert(ok, stats)
      assert_counts({ refused = 20 }, stats)
      assert.are.equal(0, stats.connects)
      assert.does_not.match("latency", loadgen.report(stats))
    end)
  end)

  it("leaves nothing behind with 100 workers, 50 ms timeouts and every "
     .. "misbehaviour at once", function()
    run(function(loop)
      local peer, port = start_peer({ "--stall", "13", "--reset", "7",
                                      "--close", "11" })
      local args = { "--conns", "100", "--seconds", "0.5", "--timeout",
                     "0.05" }
      local ok, err = pcall(function()
        -- a first run grows the loop's timer heap to 100 workers' timers
        local sockets = helper.open_sockets()
        local cfg = assert(loadgen.parse({ "127.0.0.1", tostring(port),
                                           unpack(args) }))
        loadgen.run(cfg, loadgen.new_stats(cfg))
        assert.are.same({}, helper.new_sockets(sockets))
        local stats = load(loop, port, args)
        assert.is_true(stats.counts.ok > 0)
        assert.are.equal(0, stats.counts.refused + stats.counts.other)
        assert.is_true(stats.elapsed < 1, stats.elapsed)
      end)
      stop_peer(peer)
      assert(ok, err)
    end)
  end)

  describe("--seconds ends every worker wherever it waits", function()
    local function cut_short(peer_args, args)
      run(function(loop)
        args[#args + 1] = "--seconds"
        args[#args + 1] = "0.3"
        local stats = against(loop, peer_args, args)
        -- the workers' own timeouts are 5 s: the run's end cancelled them
        assert.is_true(stats.elapsed >= 0.3 and stats.elapsed < 0.7,
                       stats.elapsed)
      end)
    end

    it("mid-read", function()
      cut_short({ "--stall", "1" }, { "--conns", "3", "--timeout", "5" })
    end)

    it("mid-drain", function()
      cut_short({ "--hold", "1" },
        { "--conns", "2", "--timeout", "5", "--size", "4000000" })
    end)

    it("mid-handshake", function()
      cut_short({ "--tls", helper.certs(), "--stall-handshake", "1" },
        { "--conns", "3", "--timeout", "5", "--tls", helper.cert("ca.pem") })
    end)

    it("mid-connect", function()
      cut_short({ "--backlog", "1", "--accept-every", "10" },
        { "--conns", "6", "--timeout", "5" })
    end)
  end)
end)

describe("examples/loadgen.lua as a program", function()
  -- Inside a task: the program with args; its process.
  local function start(args)
    local argv = { "examples/loadgen.lua" }
    for _, a in ipairs(args) do
      argv[#argv + 1] = tostring(a)
    end
    return tapio.create_subprocess_exec(helper.HOST, argv,
      { stdout = tapio.PIPE, stderr = tapio.PIPE })
  end

  it("prints its report", function()
    run(function()
      local peer, port = start_peer({ "--reset", "10" })
      local p = start({ "127.0.0.1", port, "--conns", "2", "--requests",
                        "30", "--timeout", "0.5" })
      local out, err = p:communicate()
      assert.are.equal(0, p:wait(), err)
      local log = stop_peer(peer)
      assert.are.equal(3, log.reset)
      assert.matches("^requests +30 in [%d.]+ s %(%d+ a second%)\n"
        .. "ok +27\ntimeout +0\nreset +3\neof +0\nrefused +0\nother +0\n"
        .. "connects +%d+\nlatency +p50 [%d.]+ ms, p99 [%d.]+ ms\n$", out)
    end)
  end)

  it("ends its workers and prints the report on Ctrl-C", function()
    run(function(loop)
      local peer, port = start_peer()
      local p = start({ "127.0.0.1", port, "--conns", "3", "--seconds",
                        "60", "--timeout", "0.5" })
      assert.are.equal("serving\n", peer.stdout:readline())
      local sent = loop:time()
      assert(p:send_signal("SIGINT"))
      local out, err = p:communicate()
      assert.are.equal(130, p:wait(), err)
      assert.is_true(loop:time() - sent < 1)
      stop_peer(peer)
      assert.matches("^requests +%d+ in [%d.]+ s", out)
      assert.matches("\nok +[1-9]%d*\ntimeout +0\nreset +0\n", out)
      assert.are.equal("", err)
    end)
  end)

  it("says what is wrong with its arguments", function()
    run(function()
      local p = start({ "127.0.0.1", "1", "--conns", "0" })
      local out, err = p:communicate()
      assert.are.equal(2, p:wait())
      assert.are.equal("", out)
      assert.matches("^loadgen.lua: %-%-conns: bad value 0\nusage: ", err)
    end)
  end)
end)
