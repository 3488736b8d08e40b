/* A seeded chaos test of the ABI's lifetime and callback rules.
 *
 * Each round is one loop full of actors at once: TCP, Unix and TLS
 * servers with their clients, socketpairs, pipes, UDP endpoint pairs,
 * `sh -c cat` children with piped stdio, timers and signal handlers.
 * Every callback draws from the round's PRNG what to do next (write 0 to
 * 1 MiB, writelines, write_eof, pause/resume reading, close, abort, fail,
 * retain/release, close or release a server, close_clients, abort_clients,
 * STARTTLS in the middle, a new protocol table, new watermarks, a testing
 * fault, stop the loop, a timer that does one of these later, kill a
 * child, raise a signal) and checks DESIGN.md's rules on every event:
 * - connection_made at most once and from the loop, then at most one
 *   connection_lost, nothing after it; eof_received at most once, before
 *   connection_lost, and no data after it nor while reading is paused;
 * - pause_writing/resume_writing alternate, starting with pause; no
 *   callback inside a transport method but pause_writing inside a write;
 * - the bytes a peer receives are a prefix of what its peer wrote (each
 *   stream starts with its id, then bytes that depend on their offset),
 *   all of them when the writer ended cleanly and the reader saw the end;
 *   datagrams arrive whole;
 * - every handle is freed exactly once, never while one of its callbacks
 *   runs or while we hold it: the loop's allocator is the test's, which
 *   knows every live block (a free of an unknown block fails), and each
 *   handle is the start of its block, so the test sees when a transport,
 *   a server or a scheduled call goes; nothing is left when the loop is
 *   freed;
 * - the loop goes on: every actor reaches its end before a deadline in
 *   loop time (after a wind-down that closes, then aborts, what is left).
 *
 * Each seed runs twice: on a real loop, and on a virtual clock (the
 * testing kit's virtual network, with memory pairs instead of pipes,
 * socketpairs and children), which replays exactly.
 *
 * Seeds: a fixed list by default (three under valgrind);
 * TAPIO_CHAOS_SEED=n replays one, TAPIO_CHAOS_ROUNDS=n runs n seeds (from
 * TAPIO_CHAOS_SEED, or the list's first, on), TAPIO_CHAOS_VERBOSE=1 prints
 * what each round did (=2: and every event of every actor as it comes). A
 * failure prints the seed and the history of the actors concerned. On a
 * real loop, replay is as exact as the OS's timing lets it be: the draws
 * follow the order of events.
 *
 * The parts, in spec/c/chaos/: chaos.h (a round's state), prng.c (draws
 * and patterns), actor.c (every actor's rules and draw), alloc.c (the
 * loop's allocator and the frees it sees), stream.c and stream_act.c
 * (stream ends: callbacks and actions), starttls.c, connect.c (servers,
 * clients, pipes, socketpairs, memory pairs), dgram.c, proc.c, timer.c
 * (timers and signals), round.c (one round) and ends.c (what must hold as
 * it ends). */
#include "chaos/chaos.h"

static const uint64_t default_seeds[] = {
  1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12
};

tapio_tls_context *server_tls, *client_tls;

/* Each seed twice: on a real loop, then on a virtual clock. */
static void run_seed(uint64_t seed)
{
  run_round(seed, 0);
  run_round(seed, 1);
}

static void chaos_rounds(void)
{
  const char *one = getenv("TAPIO_CHAOS_SEED");
  const char *rounds = getenv("TAPIO_CHAOS_ROUNDS");
  size_t n = sizeof default_seeds / sizeof *default_seeds, i;
  trace = getenv("TAPIO_CHAOS_VERBOSE") &&
          strcmp(getenv("TAPIO_CHAOS_VERBOSE"), "2") == 0;
  signal(SIGUSR1, SIG_IGN); /* a signal raised as a handler goes: no harm */
  signal(SIGUSR2, SIG_IGN);
  server_tls = server_ctx("server");
  client_tls = client_ctx();
  if (rounds) { /* from TAPIO_CHAOS_SEED (or the list's first) on */
    uint64_t first = one ? strtoull(one, NULL, 10) : default_seeds[0];
    for (i = 0; i < strtoull(rounds, NULL, 10); i++)
      run_seed(first + i);
  } else if (one) {
    run_seed(strtoull(one, NULL, 10));
  } else {
    if (under_valgrind())
      n = 3;
    for (i = 0; i < n; i++)
      run_seed(default_seeds[i]);
  }
  tapio_tls_context_release(server_tls);
  tapio_tls_context_release(client_tls);
}

TEST_MAIN(TEST(chaos_rounds))
