-- A seeded chaos test of the binding's lifetime rules, tasks and streams.
-- Each round runs one loop with many actors at once: protocol-API
-- connections (TCP, Unix, TLS), a pipe, datagram endpoints, a `sh -c cat`
-- subprocess, streams-API tasks (TCP, Unix, TLS, STARTTLS), timers and
-- cancelled connects. At every callback or await point an actor draws from
-- a seeded PRNG what to do: write, pause, resume, close, abort, raise,
-- replace its method or its whole protocol, drop its transport and collect,
-- cancel a task, stop the loop (the round runs it again), call methods of a
-- closed transport. Every event is checked against the rules of DESIGN.md
-- and lua/README.md (see protocol.lua); a broken rule fails the round with its
-- seed and the actor's history. A round ends when every actor reached its
-- end; when nothing happens for QUIET seconds the round closes, then
-- aborts, what is left (that is the actors' end, not a sleep), and a round
-- where nothing happens any more (STUCK quiet times) fails.
--
-- TAPIO_CHAOS_SEED=n replays one seed; TAPIO_CHAOS_ROUNDS=n runs n seeds
-- from TAPIO_CHAOS_SEED (or 1) on, for a longer run; TAPIO_CHAOS_STATS=1
-- prints how often each action and callback ran; TAPIO_CHAOS_VERBOSE=1
-- prints each round's actors and their histories.
--
-- The parts, in spec/support/chaos/: round.lua (the PRNG and what every
-- actor shares), protocol.lua (the protocol actors' callbacks and their
-- checks), closed.lua (calls of a closed transport), act.lua (what a
-- protocol actor does), actors.lua (setting them up), streams.lua (the
-- streams-API actors) and run.lua (one round).
local run_round = require("spec.support.chaos.run").run_round
local stats = require("spec.support.chaos.round").stats

local SEEDS = 50            -- the default run: seeds 1 to 50 (~7 s)

-- The seeds to run: TAPIO_CHAOS_ROUNDS of them from TAPIO_CHAOS_SEED (1
-- and SEEDS by default; TAPIO_CHAOS_SEED alone: that one).
local function seeds()
  local first = tonumber(os.getenv("TAPIO_CHAOS_SEED"))
  local rounds = tonumber(os.getenv("TAPIO_CHAOS_ROUNDS"))
    or (first and 1 or SEEDS)
  local list = {}
  for i = 0, rounds - 1 do
    list[#list + 1] = (first or 1) + i
  end
  return list
end

describe("chaos", function()
  it("keeps every rule under seeded random actors", function()
    for _, seed in ipairs(seeds()) do
      run_round(seed)
    end
    if os.getenv("TAPIO_CHAOS_STATS") then
      local names = {}
      for k in pairs(stats) do
        names[#names + 1] = k
      end
      table.sort(names)
      for _, k in ipairs(names) do
        io.stderr:write(("%-24s %d\n"):format(k, stats[k]))
      end
    end
  end)
end)
