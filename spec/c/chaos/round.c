/* One round: a loop (real, or on a virtual clock) full of actors, run in
 * turns until each reached its end, then wound down (closed, then
 * aborted) and checked. */
#include "chaos.h"

static void on_exception(void *ud, tapio_loop *loop, int code,
                         const char *message, tapio_transport *t)
{
  chaos *c = ud;
  (void)loop;
  (void)t;
  c->n_exceptions++;
  note(&c->g, "%.3f exception %s: %.30s", now(c), tapio_errname(code),
       message ? message : "");
  if (getenv("TAPIO_CHAOS_VERBOSE"))
    fprintf(stderr, "seed %llu: exception %s: %s\n",
            (unsigned long long)c->seed, tapio_errname(code),
            message ? message : "");
}

/* Closes (then aborts) what is left: the end of every actor. */
static void wind_down(chaos *c, int abort)
{
  int i;
  note(&c->g, "%.3f %s", now(c), abort ? "abort all" : "wind down");
  for (i = 0; i < 2; i++)
    if (c->sig_on[i])
      signal_off(c, i);
  for (i = 0; i < MAX_EPS; i++) {
    ep *e = &c->eps[i];
    if (e->used && e->a.made && !e->a.lost) {
      if (e->faulted)
        ep_fault(e, FAULT_CLEAR); /* what a fault holds goes at once */
      ep_reading(e, 1);
      if (abort || !e->a.closed)
        ep_end(e, abort);
    }
  }
  for (i = 0; i < c->nsrvs; i++)
    srv_release(&c->srvs[i]);
  for (i = 0; i < c->ndgs; i++)
    if (c->dgs[i].a.made && !c->dgs[i].a.lost)
      dep_do(&c->dgs[i].a, abort ? A_ABORT : A_CLOSE);
  for (i = 0; i < c->nprocs; i++)
    if (c->procs[i].a.made && !c->procs[i].a.lost)
      proc_do(&c->procs[i].a, abort ? A_ABORT : A_CLOSE);
}

static void tick(void *ud)
{
  chaos *c = ud;
  double t = now(c);
  if (round_over(c)) {
    c->done = 1;
    tapio_loop_stop(c->loop);
    return;
  }
  if (t > c->deadline) {
    unfinished(c, 1);
    BUG(NULL, NULL, "the round did not end in %.1f s of loop time",
        c->deadline);
  }
  if (t > c->abort_at && !c->aborting) {
    if (getenv("TAPIO_CHAOS_VERBOSE")) { /* what a close did not end */
      fprintf(stderr, "seed %llu: aborting what is left:\n",
              (unsigned long long)c->seed);
      unfinished(c, 1);
    }
    c->aborting = 1;
    wind_down(c, 1);
  } else if (t > c->wind && !c->winding) {
    c->winding = 1;
    wind_down(c, 0);
  }
  check_closes(c);
  CHECK_OK(tapio_call_later(c->loop, 0.02, tick, c, NULL));
}

static void round_start_actors(chaos *c)
{
  int i, n;
  listener_start(c, K_TCP);
  listener_start(c, K_UNIX);
  listener_start(c, K_TLS);
  if (chance(c, 50))
    listener_start(c, (int)rnd(c, 3));
  n = 4 + (int)rnd(c, 3);
  for (i = 0; i < n; i++)
    c->virt ? mempair_start(c) : pipe_start(c);
  n = c->virt ? 0 : 1 + (int)rnd(c, 3); /* no descriptors on a virtual loop */
  for (i = 0; i < n; i++)
    socketpair_start(c);
  for (i = 0; i < 2; i++)
    dgram_start(c);
  n = c->virt ? 0 : 1 + (int)rnd(c, MAX_PROCS);
  for (i = 0; i < n; i++)
    proc_start(c);
  n = 8 + (int)rnd(c, 16); /* clients, in the first 0.3 s */
  for (i = 0; i < n; i++)
    timer_start(c, TG_CLIENT, NULL);
  n = 5 + (int)rnd(c, 10);
  for (i = 0; i < n; i++)
    timer_start(c, TG_GLOBAL, NULL);
  signal_on(c, 0);
  if (chance(c, 50))
    signal_on(c, 1);
}

static tapio_options *tls_opts(chaos *c, tapio_tls_context *ctx,
                               const char *name)
{
  tapio_options *o = new_options(c->loop);
  if (ctx)
    CHECK_OK(tapio_options_set_tls(o, "ssl", ctx));
  if (name)
    CHECK_OK(tapio_options_set_str(o, "server_hostname", name));
  CHECK_OK(tapio_options_set_double(o, "ssl_handshake_timeout",
                                    2.0 * slow()));
  CHECK_OK(tapio_options_set_double(o, "ssl_shutdown_timeout",
                                    0.5 * slow()));
  return o;
}

/* The loop's turns until the round is over: run, or step (waiting or
 * not), all the same; a virtual clock moves in steps of 5 ms. */
static void run_loop(chaos *c)
{
  while (!c->done) {
    if (c->virt)
      CHECK_OK(tapio_loop_advance(c->loop, 0.005));
    else if (chance(c, 70))
      CHECK_OK(tapio_loop_run(c->loop));
    else
      CHECK_OK(tapio_loop_run_once(c->loop, chance(c, 50)));
  }
}

/* A round's state, its loop (real or virtual: tracked by our allocator)
 * and the TLS options its actors use. */
static chaos *round_new(uint64_t seed, int virt)
{
  chaos *c = calloc(1, sizeof *c);
  CHECK(c != NULL);
  current = c;
  c->seed = seed;
  c->rng = seed;
  c->virt = virt;
  c->next_sid = 1;
  snprintf(c->g.name, sizeof c->g.name, "round");
  c->max_write = under_valgrind() ? 256 * 1024 : 1024 * 1024;
  c->scratch = malloc(c->max_write + 16);
  CHECK(c->scratch != NULL);
  snprintf(c->dir, sizeof c->dir, "/tmp/tapio-chaos-XXXXXX");
  CHECK(mkdtemp(c->dir) != NULL);
  if (virt)
    CHECK_OK(tapio_loop_new_virtual(&c->loop, track_alloc, c));
  else
    CHECK_OK(tapio_loop_new_with_allocator(&c->loop, track_alloc, c));
  tapio_loop_set_exception_handler(c->loop, on_exception, c);
  c->cli_tls = tls_opts(c, client_tls, NULL);
  c->srv_tls = tls_opts(c, server_tls, NULL);
  c->up_cli = tls_opts(c, NULL, "127.0.0.1");
  c->unix_up_cli = tls_opts(c, NULL, "localhost");
  c->up_srv = tls_opts(c, NULL, NULL);
  c->t0 = tapio_loop_time(c->loop);
  c->wind = 0.6 * slow();
  c->abort_at = 1.5 * slow();
  c->deadline = 10.0 * slow();
  return c;
}

/* The loop freed: nothing of it may be left. */
static void round_free_loop(chaos *c)
{
  tapio_options_free(c->cli_tls);
  tapio_options_free(c->srv_tls);
  tapio_options_free(c->up_cli);
  tapio_options_free(c->unix_up_cli);
  tapio_options_free(c->up_srv);
  CHECK_OK(tapio_loop_free(c->loop));
  if (c->nlive)
    BUG(NULL, NULL, "%zu blocks of the loop left after tapio_loop_free",
        c->nlive);
}

static void round_free(chaos *c)
{
  int i;
  for (i = 0; i < MAX_EPS; i++)
    free(c->eps[i].buf);
  for (i = 0; i < c->nsrvs; i++)
    if (c->srvs[i].kind == K_UNIX)
      unlink(c->srvs[i].path);
  rmdir(c->dir);
  free_blocks(c);
  free(c->scratch);
  free(c);
  current = NULL;
}

void run_round(uint64_t seed, int virt)
{
  double wall = now_sec();
  chaos *c = round_new(seed, virt);
  round_start_actors(c);
  CHECK_OK(tapio_call_later(c->loop, 0.02, tick, c, NULL));
  run_loop(c);
  release_all(c);
  check_all_freed(c);
  check_exact(c);
  round_free_loop(c);
  if (getenv("TAPIO_CHAOS_VERBOSE"))
    printf("seed %llu%s: %.2f s, %lu events, %llu bytes checked, %lu exact "
           "ends, %lu upgrades, %lu frees seen, %lu exceptions\n",
           (unsigned long long)seed, virt ? " (virtual)" : "",
           now_sec() - wall, c->n_events,
           (unsigned long long)c->n_bytes, c->n_exact, c->n_upgrades,
           c->n_frees, c->n_exceptions);
  round_free(c);
}
