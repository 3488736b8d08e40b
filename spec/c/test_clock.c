/* The testing kit's virtual clock: time moves only when the test moves it,
 * timers fire in order at their own times, runs never sleep, tapio_call_idle
 * moves the clock from inside a run, and real I/O is refused. */
#include "test.h"

#include <math.h>
#include <pthread.h>

/* A call that writes down the clock's time when it runs. */
typedef struct stamp {
  tapio_loop *loop;
  double at[16];
  int tag[16];
  int n;
} stamp;

typedef struct mark {
  stamp *s;
  int tag;
} mark;

static void stamp_call(void *ud)
{
  mark *m = ud;
  stamp *s = m->s;
  CHECK(s->n < 16);
  s->at[s->n] = tapio_loop_time(s->loop);
  s->tag[s->n++] = m->tag;
}

/* ---- The clock ----------------------------------------------------------- */

/* A 30-second timer: nothing at 29.999, then at 30 exactly, in no time. */
static void clock_moves_only_when_told(void)
{
  tapio_loop *loop = new_virtual();
  stamp s = { loop, {0}, {0}, 0 };
  mark m = { &s, 1 };
  double t0 = now_sec();
  CHECK(tapio_loop_time(loop) == 0);
  CHECK_OK(tapio_call_later(loop, 30, stamp_call, &m, NULL));
  CHECK(tapio_loop_next_timer(loop) == 30);
  CHECK_OK(tapio_loop_run(loop)); /* idle: returns, the clock stays */
  CHECK_OK(tapio_loop_run_until_idle(loop));
  CHECK_EQ(s.n, 0);
  CHECK(tapio_loop_time(loop) == 0);
  CHECK_OK(tapio_loop_advance(loop, 29.999));
  CHECK_EQ(s.n, 0);
  CHECK(tapio_loop_time(loop) == 29.999);
  CHECK_OK(tapio_loop_advance(loop, 0.001));
  CHECK_EQ(s.n, 1);
  CHECK(s.at[0] == 30);
  CHECK(tapio_loop_next_timer(loop) == -1);
  CHECK(now_sec() - t0 < 0.5);
  free_loop(loop);
}

/* Timers fire in order of due time, each with the clock at its time;
 * those due together in the order they were scheduled; the clock ends
 * at the target. */
static void clock_fires_in_order(void)
{
  tapio_loop *loop = new_virtual();
  stamp s = { loop, {0}, {0}, 0 };
  mark m[5] = { {&s, 5}, {&s, 1}, {&s, 3}, {&s, 31}, {&s, 32} };
  CHECK_OK(tapio_call_later(loop, 5, stamp_call, &m[0], NULL));
  CHECK_OK(tapio_call_later(loop, 1, stamp_call, &m[1], NULL));
  CHECK_OK(tapio_call_at(loop, 3, stamp_call, &m[2], NULL));
  CHECK_OK(tapio_call_at(loop, 3, stamp_call, &m[3], NULL));
  CHECK_OK(tapio_call_later(loop, 3, stamp_call, &m[4], NULL));
  CHECK_OK(tapio_loop_advance(loop, 10));
  CHECK_EQ(s.n, 5);
  CHECK_EQ(s.tag[0], 1);
  CHECK(s.at[0] == 1);
  CHECK_EQ(s.tag[1], 3);
  CHECK_EQ(s.tag[2], 31);
  CHECK_EQ(s.tag[3], 32);
  CHECK(s.at[1] == 3 && s.at[2] == 3 && s.at[3] == 3);
  CHECK_EQ(s.tag[4], 5);
  CHECK(s.at[4] == 5);
  CHECK(tapio_loop_time(loop) == 10);
  free_loop(loop);
}

/* A call_at before the clock's start (0) is in the past, as on a real
 * loop: due at once, as one at 0, in the order of scheduling among those,
 * and no later timer waits behind it (it stood at the heap's top with a
 * due time the clock took for "no timer", and held every timer back). */
static void clock_fires_what_is_due_before_zero(void)
{
  tapio_loop *loop = new_virtual();
  stamp s = { loop, {0}, {0}, 0 };
  mark m[3] = { {&s, 1}, {&s, 2}, {&s, 3} };
  CHECK_OK(tapio_call_later(loop, 2, stamp_call, &m[2], NULL));
  CHECK_OK(tapio_call_at(loop, -1, stamp_call, &m[0], NULL));
  CHECK_OK(tapio_call_at(loop, -0.5, stamp_call, &m[1], NULL));
  CHECK(tapio_loop_next_timer(loop) == 0);
  CHECK_OK(tapio_loop_run_until_idle(loop));
  CHECK_EQ(s.n, 2);
  CHECK(s.tag[0] == 1 && s.tag[1] == 2);
  CHECK(s.at[0] == 0 && s.at[1] == 0);
  CHECK_OK(tapio_loop_advance(loop, 5));
  CHECK_EQ(s.n, 3);
  CHECK(s.tag[2] == 3 && s.at[2] == 2);
  free_loop(loop);
}

/* Many timers at scattered times, a third cancelled: the next timer is
 * always the earliest left, and they fire in order of due time, the
 * cancelled never (the heap of due times is the timers' own nodes). */
typedef struct order {
  tapio_loop *loop;
  double last;
  int n;
} order;

typedef struct due {
  order *o;
  double when;
} due;

/* Each fires with the clock at its own time: none was passed over. */
static void in_order(void *ud)
{
  due *d = ud;
  CHECK(tapio_loop_time(d->o->loop) == d->when);
  CHECK(d->when >= d->o->last);
  d->o->last = d->when;
  d->o->n++;
}

static void clock_many_timers_in_order(void)
{
  tapio_loop *loop = new_virtual();
  order o = { loop, 0, 0 };
  tapio_handle *h[600];
  due d[600];
  double min = 1e9;
  unsigned x = 12345;
  int i, kept = 0;
  for (i = 0; i < 600; i++) {
    x = x * 1103515245u + 12345u;
    d[i].o = &o;
    d[i].when = (double)((x >> 8) % 1000) / 10;
    CHECK_OK(tapio_call_at(loop, d[i].when, in_order, &d[i], &h[i]));
    if (i % 3 == 1 && i >= 100) /* cancelled while others come */
      tapio_handle_cancel(h[i - 100]);
  }
  for (i = 0; i < 600; i++) {
    int cancelled = i % 3 == 0 && i < 500;
    if (!cancelled) {
      kept++;
      if (d[i].when < min)
        min = d[i].when;
    }
  }
  CHECK(tapio_loop_next_timer(loop) == min);
  CHECK_OK(tapio_loop_advance(loop, 100));
  CHECK_EQ(o.n, kept);
  CHECK(tapio_loop_next_timer(loop) == -1);
  for (i = 0; i < 600; i++)
    tapio_handle_release(h[i]);
  free_loop(loop);
}

/* A time before the clock's start (call_at(-1): it starts at 0) is due
 * at once, and does not hide the timers after it (the heap said "no
 * timer" for a negative time: none fired). */
static void clock_negative_time_is_due(void)
{
  tapio_loop *loop = new_virtual();
  stamp s = { loop, {0}, {0}, 0 };
  mark m[2] = { {&s, 1}, {&s, 2} };
  CHECK_OK(tapio_call_later(loop, 1, stamp_call, &m[1], NULL));
  CHECK_OK(tapio_call_at(loop, -1, stamp_call, &m[0], NULL));
  CHECK(tapio_loop_next_timer(loop) == 0);
  CHECK_OK(tapio_loop_run_until_idle(loop));
  CHECK_EQ(s.n, 1);
  CHECK_EQ(s.tag[0], 1);
  CHECK(s.at[0] == 0);
  CHECK_OK(tapio_loop_advance(loop, 2));
  CHECK_EQ(s.n, 2);
  CHECK(s.at[1] == 1);
  free_loop(loop);
}

typedef struct chain {
  tapio_loop *loop;
  stamp s;
  mark m;
  int left;
} chain;

/* Every two seconds it schedules itself again, `left` times. */
static void chain_call(void *ud)
{
  chain *c = ud;
  stamp_call(&c->m);
  if (--c->left > 0)
    CHECK_OK(tapio_call_later(c->loop, 2, chain_call, c, NULL));
}

/* What a timer schedules fires within the same advance if it falls due
 * before its target, and not if it falls after. */
static void clock_follows_chains(void)
{
  tapio_loop *loop = new_virtual();
  chain c;
  memset(&c, 0, sizeof c);
  c.loop = loop;
  c.s.loop = loop;
  c.m.s = &c.s;
  c.left = 10;
  CHECK_OK(tapio_call_later(loop, 1, chain_call, &c, NULL));
  CHECK_OK(tapio_loop_advance(loop, 6));
  CHECK_EQ(c.s.n, 3); /* 1, 3, 5 */
  CHECK(c.s.at[2] == 5);
  CHECK(tapio_loop_next_timer(loop) == 7);
  CHECK_OK(tapio_loop_advance(loop, 100));
  CHECK_EQ(c.s.n, 10);
  CHECK(c.s.at[9] == 19);
  CHECK(tapio_loop_time(loop) == 106);
  free_loop(loop);
}

/* ---- Moving the clock from inside a run ---------------------------------- */

typedef struct idler {
  tapio_loop *loop;
  stamp s;
  mark timer_mark, idle_mark;
} idler;

static void idle_done(void *ud)
{
  stamp_call(ud);
}

/* At t=1 a callback asks the clock to move 4 seconds: the timer due at
 * t=5 fires first, then the idle call, at 5; the run then returns. */
static void start_idle(void *ud)
{
  idler *i = ud;
  CHECK_OK(tapio_call_later(i->loop, 4, stamp_call, &i->timer_mark, NULL));
  CHECK_OK(tapio_call_idle(i->loop, 4, idle_done, &i->idle_mark, NULL));
  CHECK_ERR(tapio_loop_advance(i->loop, 1), TAPIO_ERUNNING);
}

static void clock_idle_call_from_a_run(void)
{
  tapio_loop *loop = new_virtual();
  idler i;
  memset(&i, 0, sizeof i);
  i.loop = loop;
  i.s.loop = loop;
  i.timer_mark.s = i.idle_mark.s = &i.s;
  i.timer_mark.tag = 1;
  i.idle_mark.tag = 2;
  CHECK_OK(tapio_call_later(loop, 1, start_idle, &i, NULL));
  CHECK_OK(tapio_loop_advance(loop, 1));
  CHECK_OK(tapio_loop_run(loop)); /* moves the clock for the idle call */
  CHECK_EQ(i.s.n, 2);
  CHECK_EQ(i.s.tag[0], 1);
  CHECK_EQ(i.s.tag[1], 2);
  CHECK(i.s.at[0] == 5 && i.s.at[1] == 5);
  CHECK(tapio_loop_time(loop) == 5);
  free_loop(loop);
}

/* A pending idle call beyond an advance's target stays pending; a
 * cancelled one never runs, and the run no longer moves the clock. */
static void clock_idle_calls_wait_and_cancel(void)
{
  tapio_loop *loop = new_virtual();
  stamp s = { loop, {0}, {0}, 0 };
  mark m1 = { &s, 1 }, m2 = { &s, 2 };
  tapio_handle *h1, *h2;
  CHECK_OK(tapio_call_idle(loop, 10, stamp_call, &m1, &h1));
  CHECK_OK(tapio_call_idle(loop, 20, stamp_call, &m2, &h2));
  CHECK(tapio_handle_when(h1) == 10);
  CHECK_OK(tapio_loop_advance(loop, 5));
  CHECK_EQ(s.n, 0);
  CHECK_OK(tapio_loop_advance(loop, 5));
  CHECK_EQ(s.n, 1);
  CHECK(s.at[0] == 10);
  tapio_handle_cancel(h2);
  CHECK_OK(tapio_loop_run(loop));
  CHECK(tapio_loop_time(loop) == 10);
  CHECK_EQ(s.n, 1);
  tapio_handle_release(h1);
  tapio_handle_release(h2);
  /* one left pending is dropped with the loop */
  CHECK_OK(tapio_call_idle(loop, 1, stamp_call, &m1, NULL));
  free_loop(loop);
  CHECK_EQ(s.n, 1);
}

/* A timer due at infinity (a sleep for ever) never fires, as on a real
 * loop, even while an idle call lets the run move the clock as far as it
 * likes; the clock never goes to infinity. */
static void clock_never_reaches_infinity(void)
{
  tapio_loop *loop = new_virtual();
  stamp s = { loop, {0}, {0}, 0 };
  mark m1 = { &s, 1 }, m2 = { &s, 2 };
  tapio_handle *h;
  CHECK_OK(tapio_call_later(loop, INFINITY, stamp_call, &m1, &h));
  CHECK(tapio_loop_next_timer(loop) == INFINITY);
  CHECK_OK(tapio_call_idle(loop, 3, stamp_call, &m2, NULL));
  CHECK_OK(tapio_loop_run(loop));
  CHECK_EQ(s.n, 1);
  CHECK_EQ(s.tag[0], 2);
  CHECK(tapio_loop_time(loop) == 3);
  CHECK_ERR(tapio_loop_advance(loop, INFINITY), TAPIO_EINVAL);
  CHECK_ERR(tapio_call_idle(loop, INFINITY, stamp_call, &m2, NULL),
            TAPIO_EINVAL);
  CHECK_OK(tapio_loop_advance(loop, 1e9));
  CHECK_EQ(s.n, 1);
  CHECK(tapio_loop_time(loop) == 1e9 + 3);
  CHECK_OK(tapio_loop_advance(loop, -INFINITY)); /* negative: 0 */
  tapio_handle_cancel(h);
  tapio_handle_release(h);
  free_loop(loop);
}

static void stop_now(void *ud)
{
  tapio_loop_stop(ud);
}

/* A stop from a callback ends an advance there, the clock where it was. */
static void clock_stop_ends_an_advance(void)
{
  tapio_loop *loop = new_virtual();
  stamp s = { loop, {0}, {0}, 0 };
  mark m = { &s, 1 };
  CHECK_OK(tapio_call_later(loop, 2, stop_now, loop, NULL));
  CHECK_OK(tapio_call_later(loop, 3, stamp_call, &m, NULL));
  CHECK_OK(tapio_loop_advance(loop, 10));
  CHECK(tapio_loop_time(loop) == 2);
  CHECK_EQ(s.n, 0);
  CHECK_OK(tapio_loop_advance(loop, 8));
  CHECK_EQ(s.n, 1);
  CHECK(tapio_loop_time(loop) == 10);
  free_loop(loop);
}

/* call_soon runs at the clock's time; a run of an empty loop returns at
 * once; run_once is one step; the host's timeout never counts on time
 * passing. */
static void clock_runs_never_sleep(void)
{
  tapio_loop *loop = new_virtual();
  stamp s = { loop, {0}, {0}, 0 };
  mark m = { &s, 1 };
  CHECK_OK(tapio_loop_run(loop));
  CHECK_OK(tapio_loop_run_once(loop, 1));
  CHECK_OK(tapio_call_later(loop, 3, stamp_call, &m, NULL));
  CHECK_EQ(tapio_loop_backend_timeout(loop), -1);
  CHECK_OK(tapio_call_soon(loop, stamp_call, &m, NULL));
  CHECK_EQ(tapio_loop_backend_timeout(loop), 0);
  CHECK_OK(tapio_loop_run_once(loop, 1));
  CHECK_EQ(s.n, 1);
  CHECK(s.at[0] == 0);
  CHECK_EQ(tapio_loop_backend_timeout(loop), -1);
  CHECK_OK(tapio_call_idle(loop, 1, stamp_call, &m, NULL));
  CHECK_EQ(tapio_loop_backend_timeout(loop), 0); /* a step moves it */
  CHECK_OK(tapio_loop_run(loop));
  CHECK_EQ(s.n, 2);
  CHECK(tapio_loop_time(loop) == 1);
  CHECK_OK(tapio_loop_advance(loop, 2));
  CHECK_EQ(s.n, 3);
  free_loop(loop);
}

/* A call that schedules itself again, as often as `left` says (-1: for
 * ever): a busy loop at one virtual time. */
typedef struct spinner {
  tapio_loop *loop;
  long runs, left;
} spinner;

static void spin_again(void *ud)
{
  spinner *sp = ud;
  sp->runs++;
  if (sp->left < 0 || --sp->left > 0)
    CHECK_OK(tapio_call_soon(sp->loop, spin_again, sp, NULL));
}

/* A busy loop that never lets the clock move ends a run with
 * TAPIO_ESPIN after the step limit, its work still queued; steps count
 * again once the clock moves; 0 is no limit. */
static void clock_busy_loop_ends_a_run(void)
{
  tapio_loop *loop = new_virtual(), *real = new_loop();
  spinner sp = { loop, 0, -1 }, first = { loop, 0, 45 },
          second = { loop, 0, 45 };
  CHECK(tapio_loop_step_limit(loop) == TAPIO_STEP_LIMIT);
  CHECK_OK(tapio_loop_set_step_limit(loop, 50));
  CHECK(tapio_loop_step_limit(loop) == 50);
  CHECK_OK(tapio_call_soon(loop, spin_again, &sp, NULL));
  CHECK_ERR(tapio_loop_run(loop), TAPIO_ESPIN);
  CHECK_EQ(sp.runs, 50);
  CHECK_ERR(tapio_loop_advance(loop, 5), TAPIO_ESPIN); /* still queued */
  CHECK_EQ(sp.runs, 100);
  CHECK(tapio_loop_time(loop) == 0);
  sp.left = 1; /* the next run ends it */
  CHECK_OK(tapio_loop_run(loop));
  CHECK_EQ(sp.runs, 101);
  /* 45 steps at 0, 45 at 1: the clock moved, the count started again */
  CHECK_OK(tapio_call_soon(loop, spin_again, &first, NULL));
  CHECK_OK(tapio_call_later(loop, 1, spin_again, &second, NULL));
  CHECK_OK(tapio_loop_advance(loop, 1));
  CHECK_EQ(first.runs + second.runs, 90);
  CHECK_OK(tapio_loop_set_step_limit(loop, 0)); /* none */
  sp.left = 1000;
  CHECK_OK(tapio_call_soon(loop, spin_again, &sp, NULL));
  CHECK_OK(tapio_loop_run(loop));
  CHECK_EQ(sp.runs, 1101);
  CHECK_ERR(tapio_loop_set_step_limit(real, 5), TAPIO_ENOTSUP);
  CHECK_ERR(tapio_loop_set_step_limit(NULL, 5), TAPIO_EINVAL);
  CHECK(tapio_loop_step_limit(real) == 0);
  CHECK_STR(tapio_errname(TAPIO_ESPIN), "ESPIN");
  free_loop(loop);
  free_loop(real);
}

static void *post_from_thread(void *ud)
{
  mark *m = ud;
  CHECK_OK(tapio_call_soon_threadsafe(m->s->loop, stamp_call, m));
  return NULL;
}

/* A call from another thread runs at the next step, never waited for. */
static void clock_threadsafe_calls(void)
{
  tapio_loop *loop = new_virtual();
  stamp s = { loop, {0}, {0}, 0 };
  mark m = { &s, 1 };
  pthread_t th;
  CHECK_EQ(pthread_create(&th, NULL, post_from_thread, &m), 0);
  CHECK_EQ(pthread_join(th, NULL), 0);
  CHECK_OK(tapio_loop_run_until_idle(loop));
  CHECK_EQ(s.n, 1);
  free_loop(loop);
}

/* ---- Errors -------------------------------------------------------------- */

static void clock_bad_calls(void)
{
  tapio_loop *real = new_loop(), *loop = NULL;
  tapio_handle *h = (tapio_handle *)1;
  stamp s = { real, {0}, {0}, 0 };
  mark m = { &s, 1 };
  CHECK_ERR(tapio_loop_new_virtual(NULL, NULL, NULL), TAPIO_EINVAL);
  CHECK_EQ(tapio_loop_is_virtual(real), 0);
  CHECK_EQ(tapio_loop_is_virtual(NULL), 0);
  CHECK_ERR(tapio_loop_advance(real, 1), TAPIO_ENOTSUP);
  CHECK_ERR(tapio_loop_run_until_idle(real), TAPIO_ENOTSUP);
  CHECK_ERR(tapio_loop_advance(NULL, 1), TAPIO_EINVAL);
  CHECK_ERR(tapio_call_idle(real, 1, stamp_call, &m, &h), TAPIO_ENOTSUP);
  CHECK(h == NULL);
  loop = new_virtual();
  CHECK_ERR(tapio_loop_advance(loop, NAN), TAPIO_EINVAL);
  CHECK_ERR(tapio_call_idle(loop, NAN, stamp_call, &m, NULL), TAPIO_EINVAL);
  CHECK_ERR(tapio_call_idle(loop, 1, NULL, &m, NULL), TAPIO_EINVAL);
  CHECK_ERR(tapio_call_idle(NULL, 1, stamp_call, &m, NULL), TAPIO_EINVAL);
  CHECK(tapio_loop_next_timer(NULL) == -1);
  CHECK_EQ(tapio_loop_transport_count(NULL), 0);
  CHECK_OK(tapio_loop_advance(loop, -5)); /* negative: 0 */
  CHECK(tapio_loop_time(loop) == 0);
  CHECK_STR(tapio_errname(TAPIO_EVIRTUAL), "EVIRTUAL");
  CHECK_STR(tapio_strerror(TAPIO_EVIRTUAL),
            "real I/O is refused on a virtual-clock loop");
  free_loop(loop);
  free_loop(real);
}

static void never_named(void *ud, int status, const char *host,
                        const char *service)
{
  (void)ud;
  (void)status;
  (void)host;
  (void)service;
  FAIL("a refused call completed");
}

/* Every call that would do real I/O answers TAPIO_EVIRTUAL, closes a
 * descriptor given to it, and calls nobody (the virtual network's calls
 * are test_vnet.c's). */
static void clock_refuses_real_io(void)
{
  static const tapio_protocol p = { .size = sizeof p };
  static const tapio_datagram_protocol dp = { .size = sizeof dp };
  static const tapio_subprocess_protocol sp = { .size = sizeof sp };
  tapio_loop *loop = new_virtual();
  char addr[TAPIO_ADDR_MAX];
  size_t addrlen = sizeof addr;
  int sv[2], fds[2];
  CHECK_OK(tapio_addr_parse("127.0.0.1", 80, addr, &addrlen));
  CHECK_ERR(tapio_getnameinfo(loop, addr, addrlen, 0, never_named, NULL),
            TAPIO_EVIRTUAL);
  CHECK_ERR(tapio_subprocess_shell(loop, "true", &sp, NULL, NULL,
                                   never_connected, NULL), TAPIO_EVIRTUAL);
  { /* with IP addresses it makes a virtual endpoint (test_vdgram.c) */
    tapio_options *o = NULL;
    CHECK_OK(tapio_options_new(loop, &o));
    CHECK_OK(tapio_options_set_str(o, "local_path", "/tmp/x"));
    CHECK_ERR(tapio_create_datagram_endpoint(loop, &dp, NULL, o,
                                             never_connected, NULL),
              TAPIO_EVIRTUAL);
    tapio_options_free(o);
  }
  CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  CHECK_ERR(tapio_connect_accepted_socket(loop, sv[0], &p, NULL, NULL,
                                          never_connected, NULL),
            TAPIO_EVIRTUAL);
  CHECK(!fd_is_open(sv[0]));
  close(sv[1]);
  CHECK_EQ(pipe(fds), 0);
  CHECK_ERR(tapio_connect_read_pipe(loop, fds[0], &p, NULL, NULL,
                                    never_connected, NULL), TAPIO_EVIRTUAL);
  CHECK(!fd_is_open(fds[0]));
  close(fds[1]);
  /* watching a descriptor: its readiness comes on real time */
  CHECK_EQ(pipe(fds), 0);
  CHECK_ERR(tapio_add_reader(loop, fds[0], never_called, NULL),
            TAPIO_EVIRTUAL);
  CHECK_ERR(tapio_add_writer(loop, fds[1], never_called, NULL),
            TAPIO_EVIRTUAL);
  close(fds[0]);
  close(fds[1]);
  /* nor a signal, on real time too; none is watched, so none removed */
  CHECK_ERR(tapio_add_signal_handler(loop, SIGUSR1, never_called, NULL),
            TAPIO_EVIRTUAL);
  CHECK_EQ(tapio_remove_signal_handler(loop, SIGUSR1), 0);
  CHECK_OK(tapio_loop_run_until_idle(loop));
  CHECK_EQ(tapio_loop_transport_count(loop), 0);
  free_loop(loop);
}

static void *counting_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
  size_t *calls = ud;
  (void)osize;
  ++*calls;
  if (nsize == 0) {
    free(ptr);
    return NULL;
  }
  return realloc(ptr, nsize);
}

/* A virtual loop with an allocator of the test's: the kit's memory goes
 * through it too. */
static void clock_with_allocator(void)
{
  tapio_loop *loop = NULL;
  size_t calls = 0, before;
  CHECK_OK(tapio_loop_new_virtual(&loop, counting_alloc, &calls));
  before = calls;
  CHECK(before > 0);
  CHECK(tapio_loop_memory(loop) > 0);
  CHECK_OK(tapio_call_later(loop, 1, stop_now, loop, NULL));
  CHECK_OK(tapio_loop_advance(loop, 2));
  CHECK(calls > before);
  free_loop(loop);
}

TEST_MAIN(TEST(clock_moves_only_when_told), TEST(clock_fires_in_order),
          TEST(clock_fires_what_is_due_before_zero),
          TEST(clock_many_timers_in_order), TEST(clock_negative_time_is_due),
          TEST(clock_follows_chains), TEST(clock_idle_call_from_a_run),
          TEST(clock_idle_calls_wait_and_cancel),
          TEST(clock_never_reaches_infinity),
          TEST(clock_stop_ends_an_advance), TEST(clock_runs_never_sleep),
          TEST(clock_busy_loop_ends_a_run),
          TEST(clock_threadsafe_calls), TEST(clock_bad_calls),
          TEST(clock_refuses_real_io), TEST(clock_with_allocator))
