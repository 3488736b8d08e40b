/* The loop: lifetime, running, time, scheduled calls, the exception
 * handler, the thread-safe wakeup, memory accounting, errors and
 * versions. */
#include "test.h"

#include <pthread.h>

/* ---- Lifetime and running ------------------------------------------------ */

static void loop_new_and_free(void)
{
  tapio_loop *loop = NULL;
  CHECK_OK(tapio_loop_new(&loop));
  CHECK(loop != NULL);
  CHECK_EQ(tapio_loop_is_running(loop), 0);
  CHECK_OK(tapio_loop_free(loop));
}

static void count_call(void *ud)
{
  ++*(int *)ud;
}

/* Loops are independent: each runs only its own calls. */
static void loop_many_loops(void)
{
  enum { N = 16 };
  tapio_loop *loops[N];
  int counts[N] = { 0 };
  int i;
  for (i = 0; i < N; i++) {
    loops[i] = new_loop();
    CHECK_OK(tapio_call_soon(loops[i], count_call, &counts[i], NULL));
  }
  for (i = 0; i < N; i += 2)
    CHECK_OK(tapio_loop_run_once(loops[i], 0));
  for (i = 0; i < N; i++)
    CHECK_EQ(counts[i], i % 2 == 0);
  for (i = 1; i < N; i += 2)
    CHECK_OK(tapio_loop_run_once(loops[i], 0));
  for (i = 0; i < N; i++)
    CHECK_EQ(counts[i], 1);
  for (i = N - 1; i >= 0; i -= 2) /* freed out of creation order */
    free_loop(loops[i]);
  for (i = 0; i < N; i += 2)
    free_loop(loops[i]);
}

typedef struct stopper {
  tapio_loop *loop;
  int calls, running_inside;
} stopper;

static void stop_call(void *ud)
{
  stopper *s = ud;
  s->calls++;
  s->running_inside = tapio_loop_is_running(s->loop);
  tapio_loop_stop(s->loop);
}

static void loop_run_until_stop(void)
{
  tapio_loop *loop = new_loop();
  stopper s = { loop, 0, 0 };
  deadline d;
  deadline_start(&d, loop, test_timeout());
  CHECK_OK(tapio_call_later(loop, 0.01, stop_call, &s, NULL));
  CHECK_OK(tapio_loop_run(loop));
  CHECK(!d.expired);
  CHECK_EQ(s.calls, 1);
  CHECK_EQ(s.running_inside, 1);
  CHECK_EQ(tapio_loop_is_running(loop), 0);
  deadline_end(&d);
  free_loop(loop);
}

/* A stopped loop runs again: the stop is spent by the run it ended. */
static void loop_run_again_after_stop(void)
{
  tapio_loop *loop = new_loop();
  stopper s = { loop, 0, 0 };
  int late = 0;
  deadline d;
  deadline_start(&d, loop, test_timeout());
  CHECK_OK(tapio_call_soon(loop, stop_call, &s, NULL));
  CHECK_OK(tapio_loop_run(loop));
  CHECK_EQ(s.calls, 1);
  /* the second run must wait for the timer, not return at once */
  CHECK_OK(tapio_call_later(loop, 0.02, count_call, &late, NULL));
  CHECK_OK(tapio_call_later(loop, 0.03, stop_call, &s, NULL));
  CHECK_OK(tapio_loop_run(loop));
  CHECK_EQ(late, 1);
  CHECK_EQ(s.calls, 2);
  CHECK(!d.expired);
  deadline_end(&d);
  free_loop(loop);
}

/* run_once(loop, 0) handles what is ready and returns without waiting for
 * a timer that is not due. */
static void loop_run_once_nowait(void)
{
  tapio_loop *loop = new_loop();
  int later = 0, soon = 0;
  tapio_handle *h;
  double t0 = now_sec();
  CHECK_OK(tapio_call_later(loop, 30, count_call, &later, &h));
  CHECK_OK(tapio_call_soon(loop, count_call, &soon, NULL));
  CHECK_OK(tapio_loop_run_once(loop, 0));
  CHECK_OK(tapio_loop_run_once(loop, 0));
  CHECK(now_sec() - t0 < 5);
  CHECK_EQ(soon, 1);
  CHECK_EQ(later, 0);
  tapio_handle_cancel(h);
  tapio_handle_release(h);
  free_loop(loop);
}

/* run_once(loop, 1) waits for the next event and handles it. */
static void loop_run_once_wait(void)
{
  tapio_loop *loop = new_loop();
  int fired = 0, unused = 0;
  tapio_handle *guard;
  double t0 = tapio_loop_time(loop);
  /* a second timer far in the future, which the wait must not wait for */
  CHECK_OK(tapio_call_later(loop, 60, count_call, &unused, &guard));
  CHECK_OK(tapio_call_later(loop, 0.02, count_call, &fired, NULL));
  CHECK_OK(tapio_loop_run_once(loop, 1));
  CHECK_EQ(fired, 1);
  CHECK(tapio_loop_time(loop) >= t0 + 0.019);
  tapio_handle_cancel(guard);
  tapio_handle_release(guard);
  free_loop(loop);
}

static void loop_time_monotonic(void)
{
  tapio_loop *loop = new_loop();
  double t0 = tapio_loop_time(loop), t1, t2;
  t1 = tapio_loop_time(loop);
  CHECK(t1 >= t0);
  run_for(loop, 0.05);
  t2 = tapio_loop_time(loop);
  CHECK(t2 >= t0 + 0.049);
  CHECK(t2 < t0 + 60); /* seconds, not milliseconds */
  free_loop(loop);
}

/* ---- Scheduled calls ----------------------------------------------------- */

typedef struct order {
  tapio_loop *loop;
  char log[64];
} order;

typedef struct order_call {
  order *o;
  char c;
  char schedule; /* if set: call_soon a call with this letter when run */
} order_call;

static void order_run(void *ud)
{
  order_call *oc = ud;
  size_t n = strlen(oc->o->log);
  oc->o->log[n] = oc->c;
  oc->o->log[n + 1] = '\0';
  if (oc->schedule) {
    static order_call next;
    next.o = oc->o;
    next.c = oc->schedule;
    next.schedule = 0;
    CHECK_OK(tapio_call_soon(oc->o->loop, order_run, &next, NULL));
  }
}

static void call_soon_fifo(void)
{
  tapio_loop *loop = new_loop();
  order o = { loop, "" };
  order_call calls[5];
  int i;
  for (i = 0; i < 5; i++) {
    calls[i].o = &o;
    calls[i].c = (char)('a' + i);
    calls[i].schedule = 0;
    CHECK_OK(tapio_call_soon(loop, order_run, &calls[i], NULL));
  }
  CHECK_STR(o.log, ""); /* never from inside call_soon */
  WAIT_FOR(loop, strlen(o.log) == 5);
  CHECK_STR(o.log, "abcde");
  free_loop(loop);
}

/* A call scheduled by a running call waits for the next iteration. */
static void call_soon_from_call_next_iteration(void)
{
  tapio_loop *loop = new_loop();
  order o = { loop, "" };
  order_call a = { &o, 'a', 'x' }, b = { &o, 'b', 0 };
  CHECK_OK(tapio_call_soon(loop, order_run, &a, NULL));
  CHECK_OK(tapio_call_soon(loop, order_run, &b, NULL));
  CHECK_OK(tapio_loop_run_once(loop, 0));
  CHECK_STR(o.log, "ab");
  CHECK_OK(tapio_loop_run_once(loop, 0));
  CHECK_STR(o.log, "abx");
  free_loop(loop);
}

/* A call scheduled from an I/O callback (a reader's) runs at the end of
 * that same iteration. */
typedef struct reader_call {
  order_call call;
  int fd;
} reader_call;

static void read_and_order(void *ud)
{
  reader_call *r = ud;
  char c;
  CHECK(read(r->fd, &c, 1) == 1);
  CHECK_EQ(tapio_remove_reader(r->call.o->loop, r->fd), 1);
  order_run(&r->call);
}

static void call_soon_from_io_same_iteration(void)
{
  tapio_loop *loop = new_loop();
  order o = { loop, "" };
  reader_call r = { { &o, 'a', 'x' }, -1 };
  int sv[2];
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  r.fd = sv[0];
  CHECK_OK(tapio_add_reader(loop, sv[0], read_and_order, &r));
  CHECK(write(sv[1], "r", 1) == 1);
  CHECK_OK(tapio_loop_run_once(loop, 1));
  CHECK_STR(o.log, "ax");
  free_loop(loop);
  close(sv[0]);
  close(sv[1]);
}

/* A thread-safe call and a timer due in the same iteration: the call runs
 * first and what it schedules after the timer, as asyncio's (its
 * call_soon_threadsafe appends to the ready queue, and the timers due
 * join it behind). The wakeup's calls ran in the I/O phase, so a call_soon
 * of theirs (a task awaiting a thread's job resumed so) went before the
 * timer: "axt". */
static void call_soon_threadsafe_then_due_timer(void)
{
  tapio_loop *loop = new_loop();
  order o = { loop, "" };
  order_call a = { &o, 'a', 'x' }, t = { &o, 't', 0 };
  CHECK_OK(tapio_call_later(loop, 0, order_run, &t, NULL));
  CHECK_OK(tapio_call_soon_threadsafe(loop, order_run, &a));
  WAIT_FOR(loop, strlen(o.log) == 3);
  CHECK_STR(o.log, "atx");
  free_loop(loop);
}

/* From a running call, call_soon_threadsafe keeps its place among the
 * call_soon's made around it, as asyncio's does (it ran before them, in
 * the next iteration's I/O phase, through the wakeup). */
typedef struct mixed {
  order *o;
  order_call d, e, f;
} mixed;

static void schedule_mixed(void *ud)
{
  mixed *m = ud;
  CHECK_OK(tapio_call_soon(m->o->loop, order_run, &m->d, NULL));
  CHECK_OK(tapio_call_soon_threadsafe(m->o->loop, order_run, &m->e));
  CHECK_OK(tapio_call_soon(m->o->loop, order_run, &m->f, NULL));
}

static void call_soon_threadsafe_in_order_from_a_call(void)
{
  tapio_loop *loop = new_loop();
  order o = { loop, "" };
  mixed m = { &o, { &o, 'd', 0 }, { &o, 'e', 0 }, { &o, 'f', 0 } };
  CHECK_OK(tapio_call_soon(loop, schedule_mixed, &m, NULL));
  WAIT_FOR(loop, strlen(o.log) == 3);
  CHECK_STR(o.log, "def");
  free_loop(loop);
}

/* Calls run in the order of the times they are due, whatever the order
 * they were made in. The expected order comes from the handles' due times,
 * not from the delays, so a slow machine (valgrind under load) that lets
 * time pass between the three calls cannot make the test wrong. */
static void call_later_by_time(void)
{
  tapio_loop *loop = new_loop();
  order o = { loop, "" };
  order_call a = { &o, 'a', 0 }, b = { &o, 'b', 0 }, c = { &o, 'c', 0 };
  tapio_handle *h[3];
  char want[4];
  int i, j;
  CHECK_OK(tapio_call_later(loop, 0.06, order_run, &c, &h[2]));
  CHECK_OK(tapio_call_later(loop, 0.02, order_run, &a, &h[0]));
  CHECK_OK(tapio_call_later(loop, 0.04, order_run, &b, &h[1]));
  for (i = 0; i < 3; i++) { /* a, b, c sorted by their due times */
    int before = 0;
    for (j = 0; j < 3; j++)
      before += tapio_handle_when(h[j]) < tapio_handle_when(h[i]);
    want[before] = (char)('a' + i);
  }
  want[3] = 0;
  WAIT_FOR(loop, strlen(o.log) == 3);
  CHECK_STR(o.log, want);
  for (i = 0; i < 3; i++)
    tapio_handle_release(h[i]);
  free_loop(loop);
}

/* Calls due at the same time run in the order they were scheduled. */
static void call_at_equal_times_fifo(void)
{
  tapio_loop *loop = new_loop();
  order o = { loop, "" };
  order_call calls[4];
  double when = tapio_loop_time(loop) + 0.02;
  int i;
  for (i = 0; i < 4; i++) {
    calls[i].o = &o;
    calls[i].c = (char)('w' + i);
    calls[i].schedule = 0;
    CHECK_OK(tapio_call_at(loop, when, order_run, &calls[i], NULL));
  }
  WAIT_FOR(loop, strlen(o.log) == 4);
  CHECK_STR(o.log, "wxyz");
  free_loop(loop);
}

static void call_later_zero_delay_fifo(void)
{
  tapio_loop *loop = new_loop();
  order o = { loop, "" };
  order_call a = { &o, 'a', 0 }, b = { &o, 'b', 0 }, c = { &o, 'c', 0 };
  CHECK_OK(tapio_call_later(loop, 0, order_run, &a, NULL));
  CHECK_OK(tapio_call_later(loop, -1, order_run, &b, NULL)); /* as 0 */
  CHECK_OK(tapio_call_later(loop, 0, order_run, &c, NULL));
  WAIT_FOR(loop, strlen(o.log) == 3);
  CHECK_STR(o.log, "abc");
  free_loop(loop);
}

static void handle_cancel_before_run(void)
{
  tapio_loop *loop = new_loop();
  int soon = 0, later = 0, marker = 0;
  tapio_handle *hs, *hl;
  CHECK_OK(tapio_call_soon(loop, count_call, &soon, &hs));
  CHECK_OK(tapio_call_later(loop, 0.01, count_call, &later, &hl));
  CHECK_EQ(tapio_handle_cancelled(hs), 0);
  tapio_handle_cancel(hs);
  tapio_handle_cancel(hl);
  CHECK_EQ(tapio_handle_cancelled(hs), 1);
  CHECK_EQ(tapio_handle_cancelled(hl), 1);
  /* a later timer proves the loop went past the cancelled ones */
  CHECK_OK(tapio_call_later(loop, 0.05, count_call, &marker, NULL));
  WAIT_FOR(loop, marker == 1);
  CHECK_EQ(soon, 0);
  CHECK_EQ(later, 0);
  tapio_handle_release(hs);
  tapio_handle_release(hl);
  free_loop(loop);
}

/* A call cancelled by an earlier call of the same iteration does not run. */
typedef struct canceller {
  tapio_handle *victim;
  int ran;
} canceller;

static void cancel_victim(void *ud)
{
  tapio_handle_cancel(((canceller *)ud)->victim);
}

static void handle_cancel_from_earlier_call(void)
{
  tapio_loop *loop = new_loop();
  canceller c = { NULL, 0 };
  int after = 0;
  CHECK_OK(tapio_call_soon(loop, cancel_victim, &c, NULL));
  CHECK_OK(tapio_call_soon(loop, count_call, &c.ran, &c.victim));
  CHECK_OK(tapio_call_soon(loop, count_call, &after, NULL));
  WAIT_FOR(loop, after == 1);
  CHECK_EQ(c.ran, 0);
  tapio_handle_release(c.victim);
  free_loop(loop);
}

/* call_at with a time already past runs at the next iteration. */
static void call_at_in_the_past_runs(void)
{
  tapio_loop *loop = new_loop();
  int n = 0;
  CHECK_OK(tapio_call_at(loop, tapio_loop_time(loop) - 100, count_call, &n,
                         NULL));
  CHECK_EQ(n, 0);
  WAIT_FOR(loop, n == 1);
  free_loop(loop);
}

static void handle_cancel_after_run_harmless(void)
{
  tapio_loop *loop = new_loop();
  int n = 0;
  tapio_handle *h;
  CHECK_OK(tapio_call_later(loop, 0, count_call, &n, &h));
  WAIT_FOR(loop, n == 1);
  tapio_handle_cancel(h);
  tapio_handle_cancel(h);
  spin(loop, 3);
  CHECK_EQ(n, 1);
  tapio_handle_release(h);
  free_loop(loop);
}

static void handle_when(void)
{
  tapio_loop *loop = new_loop();
  int n = 0;
  tapio_handle *ha, *hl, *hs;
  double t0 = tapio_loop_time(loop), when = t0 + 12.5, w;
  CHECK_OK(tapio_call_at(loop, when, count_call, &n, &ha));
  CHECK_OK(tapio_call_later(loop, 7, count_call, &n, &hl));
  CHECK_OK(tapio_call_soon(loop, count_call, &n, &hs));
  CHECK(tapio_handle_when(ha) == when);
  w = tapio_handle_when(hl);
  CHECK(w >= t0 + 7 - 0.001 && w <= tapio_loop_time(loop) + 7 + 0.001);
  CHECK(tapio_handle_when(hs) == -1);
  tapio_handle_cancel(ha);
  tapio_handle_cancel(hl);
  tapio_handle_release(ha);
  tapio_handle_release(hl);
  tapio_handle_release(hs);
  free_loop(loop);
}

/* Releases a call_soon and a call_later handle `times` times while their
 * calls are pending; both calls still run. */
static void release_pending(int times)
{
  tapio_loop *loop = new_loop();
  int soon = 0, later = 0, i;
  tapio_handle *hs, *hl;
  CHECK_OK(tapio_call_soon(loop, count_call, &soon, &hs));
  CHECK_OK(tapio_call_later(loop, 0.01, count_call, &later, &hl));
  for (i = 0; i < times; i++) {
    tapio_handle_release(hs);
    tapio_handle_release(hl);
  }
  WAIT_FOR(loop, soon == 1 && later == 1);
  free_loop(loop);
}

/* Giving a handle back is not cancelling it: the call still runs. */
static void handle_release_keeps_call(void)
{
  release_pending(1);
}

/* A second release while the call is pending gives back nothing more: the
 * loop's own reference is never the caller's to drop (ASan and valgrind
 * see any memory freed under the loop). */
static void handle_release_twice_while_pending(void)
{
  release_pending(2);
}

/* Pending calls and handles still held when the loop goes: nothing runs,
 * nothing leaks (valgrind and LeakSanitizer check). */
static void loop_free_drops_pending_calls(void)
{
  tapio_loop *loop = new_loop();
  int n = 0;
  CHECK_OK(tapio_call_soon(loop, count_call, &n, NULL));
  CHECK_OK(tapio_call_later(loop, 10, count_call, &n, NULL));
  CHECK_OK(tapio_call_at(loop, tapio_loop_time(loop), count_call, &n, NULL));
  free_loop(loop);
  CHECK_EQ(n, 0);
}

typedef struct chain {
  tapio_loop *loop;
  int runs, stop, runs_at_data;
} chain;

static void chain_call(void *ud)
{
  chain *c = ud;
  c->runs++;
  /* a loop that starves I/O never gets back to the deadline: end anyway */
  if (!c->stop && c->runs < 100000)
    CHECK_OK(tapio_call_soon(c->loop, chain_call, c, NULL));
}

static void chain_hook(rec *r, rec_event ev)
{
  chain *c = r->user;
  if (ev == EV_DATA && c->runs_at_data < 0)
    c->runs_at_data = c->runs;
}

/* A call that keeps rescheduling itself does not keep a ready socket from
 * being read. */
static void call_soon_chain_does_not_starve_io(void)
{
  tapio_loop *loop = new_loop();
  chain c = { loop, 0, 0, -1 };
  rec r;
  int peer, stop_at;
  rec_init(&r);
  r.hook = chain_hook;
  r.user = &c;
  peer = pair_raw(loop, &r);
  raw_send_str(loop, peer, "ready");
  /* the bytes are in tapio's socket before the chain starts */
  CHECK(raw_wait(NULL, tapio_transport_get_fd(r.t), POLLIN));
  CHECK_OK(tapio_call_soon(loop, chain_call, &c, NULL));
  WAIT_FOR(loop, r.nin == 5);
  CHECK(c.runs_at_data >= 0 && c.runs_at_data <= 3);
  /* the chain is still live: one more run, then it stops */
  c.stop = 1;
  stop_at = c.runs;
  WAIT_FOR(loop, c.runs == stop_at + 1);
  spin(loop, 3);
  CHECK_EQ(c.runs, stop_at + 1);
  CHECK_STR(r.log, "made data:5");
  end_pair(loop, &r, peer);
}

typedef struct reentry {
  tapio_loop *loop;
  int done, run_rc, once_rc, once_wait_rc, running, free_rc;
} reentry;

static void reenter_call(void *ud)
{
  reentry *e = ud;
  e->running = tapio_loop_is_running(e->loop);
  e->run_rc = tapio_loop_run(e->loop);
  e->once_rc = tapio_loop_run_once(e->loop, 0);
  e->once_wait_rc = tapio_loop_run_once(e->loop, 1);
  e->done = 1;
}

static void loop_run_inside_callback_erunning(void)
{
  tapio_loop *loop = new_loop();
  reentry e = { loop, 0, 0, 0, 0, 0, 0 };
  CHECK_OK(tapio_call_soon(loop, reenter_call, &e, NULL));
  WAIT_FOR(loop, e.done);
  CHECK_EQ(e.running, 1);
  CHECK_ERR(e.run_rc, TAPIO_ERUNNING);
  CHECK_ERR(e.once_rc, TAPIO_ERUNNING);
  CHECK_ERR(e.once_wait_rc, TAPIO_ERUNNING);
  CHECK_EQ(tapio_loop_is_running(loop), 0);
  free_loop(loop);
}

static void free_inside_call(void *ud)
{
  reentry *e = ud;
  e->free_rc = tapio_loop_free(e->loop);
  e->done = 1;
}

static void loop_free_inside_callback_erunning(void)
{
  tapio_loop *loop = new_loop();
  reentry e = { loop, 0, 0, 0, 0, 0, 0 };
  CHECK_OK(tapio_call_soon(loop, free_inside_call, &e, NULL));
  WAIT_FOR(loop, e.done);
  CHECK_ERR(e.free_rc, TAPIO_ERUNNING);
  free_loop(loop);
}

/* ---- Exception handler --------------------------------------------------- */

/* What the default handler prints to stderr while fn(loop) runs. */
static void capture_stderr(tapio_loop *loop, void (*fn)(tapio_loop *),
                           char *out, size_t cap)
{
  char path[] = "/tmp/tapio-stderr-XXXXXX";
  int fd = mkstemp(path), saved = dup(2);
  ssize_t n;
  CHECK(fd >= 0 && saved >= 0);
  unlink(path);
  fflush(stderr);
  CHECK(dup2(fd, 2) == 2);
  fn(loop);
  fflush(stderr);
  CHECK(dup2(saved, 2) == 2);
  close(saved);
  n = pread(fd, out, cap - 1, 0);
  close(fd);
  out[n > 0 ? n : 0] = '\0';
}

static void send_boom(tapio_loop *loop)
{
  tapio_loop_call_exception_handler(loop, TAPIO_ECONNRESET, "boom-4711",
                                    NULL);
}

static void exception_handler_default_prints(void)
{
  tapio_loop *loop = new_loop();
  char out[4096];
  capture_stderr(loop, send_boom, out, sizeof out);
  if (!strstr(out, "boom-4711"))
    FAIL("default handler printed \"%s\"", out);
  free_loop(loop);
}

static void exception_handler_replaced(void)
{
  tapio_loop *loop = new_loop();
  exc_rec e = { 0 };
  char out[4096];
  tapio_loop_set_exception_handler(loop, exc_record, &e);
  capture_stderr(loop, send_boom, out, sizeof out);
  CHECK_EQ(e.n, 1);
  CHECK_ERR(e.code, TAPIO_ECONNRESET);
  CHECK_STR(e.message, "boom-4711");
  CHECK(e.transport == NULL);
  CHECK(strstr(out, "boom-4711") == NULL); /* not printed as well */
  /* NULL restores the default */
  tapio_loop_set_exception_handler(loop, NULL, NULL);
  capture_stderr(loop, send_boom, out, sizeof out);
  CHECK_EQ(e.n, 1);
  CHECK(strstr(out, "boom-4711") != NULL);
  free_loop(loop);
}

/* ---- Thread-safe wakeup -------------------------------------------------- */

typedef struct waker {
  tapio_loop *loop;
  int pipe[2];     /* the loop tells the thread it is running */
  int called;
  pthread_t thread, caller;
} waker;

static void woken(void *ud)
{
  waker *w = ud;
  w->called++;
  w->caller = pthread_self();
  tapio_loop_stop(w->loop);
}

static void *waker_thread(void *ud)
{
  waker *w = ud;
  char c;
  CHECK(read(w->pipe[0], &c, 1) == 1);
  CHECK_OK(tapio_call_soon_threadsafe(w->loop, woken, w));
  return NULL;
}

static void tell_thread(void *ud)
{
  waker *w = ud;
  CHECK(write(w->pipe[1], "x", 1) == 1);
}

/* Another thread's call wakes a loop blocked in tapio_loop_run, which has
 * nothing else to do before the deadline. */
static void call_soon_threadsafe_wakes_loop(void)
{
  tapio_loop *loop = new_loop();
  waker w;
  deadline d;
  memset(&w, 0, sizeof w);
  w.loop = loop;
  CHECK(pipe(w.pipe) == 0);
  CHECK(pthread_create(&w.thread, NULL, waker_thread, &w) == 0);
  CHECK_OK(tapio_call_soon(loop, tell_thread, &w, NULL));
  deadline_start(&d, loop, test_timeout());
  CHECK_OK(tapio_loop_run(loop));
  CHECK(pthread_join(w.thread, NULL) == 0);
  CHECK(!d.expired);
  CHECK_EQ(w.called, 1);
  CHECK(pthread_equal(w.caller, pthread_self()));
  deadline_end(&d);
  close(w.pipe[0]);
  close(w.pipe[1]);
  free_loop(loop);
}

/* Four threads at once, started from inside the running loop: every call
 * runs exactly once, on the loop's thread, the calls of each thread in the
 * order it made them, and the loop, asleep in tapio_loop_run whenever the
 * queue runs dry, wakes for the next. Also built with ThreadSanitizer. */
enum { TS_THREADS = 4, TS_CALLS = 2000 };

typedef struct ts_many {
  tapio_loop *loop;
  int go[2];                /* the loop runs: the threads may start */
  int next[TS_THREADS];     /* the sequence number each thread is due */
  int total, out_of_order;
  pthread_t loop_thread;
  int other_thread;         /* a call ran on another thread */
} ts_many;

typedef struct ts_arg {
  ts_many *m;
  int index, seq;
} ts_arg;

static void ts_count(void *ud)
{
  ts_arg *a = ud;
  ts_many *m = a->m; /* the loop's thread only: no race */
  if (a->seq != m->next[a->index])
    m->out_of_order++;
  m->next[a->index] = a->seq + 1;
  if (!pthread_equal(pthread_self(), m->loop_thread))
    m->other_thread++;
  if (++m->total == TS_THREADS * TS_CALLS)
    tapio_loop_stop(m->loop);
}

static void *ts_thread(void *ud)
{
  ts_arg *a = ud; /* this thread's TS_CALLS arguments */
  char c;
  int i;
  CHECK(read(a->m->go[0], &c, 1) == 1);
  for (i = 0; i < TS_CALLS; i++)
    CHECK_OK(tapio_call_soon_threadsafe(a->m->loop, ts_count, &a[i]));
  return NULL;
}

static void ts_go(void *ud)
{
  ts_many *m = ud;
  CHECK(write(m->go[1], "gggg", TS_THREADS) == TS_THREADS);
}

static void call_soon_threadsafe_many_threads(void)
{
  static ts_arg args[TS_THREADS][TS_CALLS];
  tapio_loop *loop = new_loop();
  ts_many m;
  pthread_t th[TS_THREADS];
  deadline d;
  int i, k;
  memset(&m, 0, sizeof m);
  m.loop = loop;
  m.loop_thread = pthread_self();
  CHECK(pipe(m.go) == 0);
  for (i = 0; i < TS_THREADS; i++) {
    for (k = 0; k < TS_CALLS; k++) {
      args[i][k].m = &m;
      args[i][k].index = i;
      args[i][k].seq = k;
    }
    CHECK(pthread_create(&th[i], NULL, ts_thread, args[i]) == 0);
  }
  CHECK_OK(tapio_call_soon(loop, ts_go, &m, NULL));
  deadline_start(&d, loop, test_timeout());
  CHECK_OK(tapio_loop_run(loop));
  CHECK(!d.expired);
  deadline_end(&d);
  for (i = 0; i < TS_THREADS; i++) {
    CHECK(pthread_join(th[i], NULL) == 0);
    CHECK_EQ(m.next[i], TS_CALLS);
  }
  spin(loop, 3); /* nothing runs twice */
  CHECK_EQ(m.total, TS_THREADS * TS_CALLS);
  CHECK_EQ(m.out_of_order, 0);
  CHECK_EQ(m.other_thread, 0);
  close(m.go[0]);
  close(m.go[1]);
  free_loop(loop);
}

/* ---- Freeing with live handles ------------------------------------------- */

/* Transports still open when the loop goes get connection_lost with
 * ECANCELED; the server still held is closed and freed with the loop. */
static void loop_free_with_open_transports(void)
{
  tapio_loop *loop = new_loop();
  srv sv;
  rec client, *server_side;
  int n = 0;
  rec_init(&client);
  srv_start(&sv, loop);
  CHECK_OK(connect_tcp(loop, "127.0.0.1", sv.port, &client, NULL));
  server_side = srv_wait_conn(&sv, 0);
  CHECK_OK(tapio_call_soon(loop, count_call, &n, NULL));
  free_loop(loop);
  CHECK_EQ(n, 0);
  CHECK_STR(client.log, "made lost:ECANCELED");
  CHECK_STR(server_side->log, "made lost:ECANCELED");
  srv_free(&sv);
  rec_free(&client);
}

/* A transport still flushing a close, and one whose connection_lost is
 * already due, when the loop goes: each gets exactly one connection_lost
 * and the buffered bytes are freed (valgrind and LeakSanitizer check). */
static void loop_free_with_closing_transports(void)
{
  tapio_loop *loop = new_loop();
  rec a, b;
  size_t offset = 0;
  int pa, pb;
  rec_init(&a);
  rec_init(&b);
  pa = pair_raw(loop, &a);
  pb = pair_raw(loop, &b);
  CHECK_OK(tapio_transport_set_write_buffer_limits(a.t, 1 << 30, -1));
  fill_until_buffered(a.t, &offset);
  CHECK_OK(tapio_transport_close(a.t)); /* the peer does not read */
  CHECK_OK(tapio_transport_abort(b.t));
  free_loop(loop);
  if (strcmp(a.log, "made lost:0") != 0)
    CHECK_STR(a.log, "made lost:ECANCELED");
  CHECK_STR(b.log, "made lost:0");
  close(pa);
  close(pb);
  rec_free(&a);
  rec_free(&b);
}

/* A released server whose connections are still open when the loop goes:
 * the connections are lost with ECANCELED, the server's memory goes. */
static void loop_free_after_server_release(void)
{
  tapio_loop *loop = new_loop();
  srv sv;
  rec c;
  srv_start_pair(&sv, loop, &c);
  tapio_server_release(sv.s);
  sv.s = NULL;
  spin(loop, 2);
  free_loop(loop);
  CHECK_STR(c.log, "made lost:ECANCELED");
  CHECK_STR(sv.conns[0]->log, "made lost:ECANCELED");
  srv_free(&sv);
  rec_free(&c);
}

/* A connect that cannot complete yet (the listener's accept queue is full,
 * so the kernel drops the SYN) is completed with ECANCELED by loop_free,
 * and no protocol callback runs. */
static void loop_free_completes_pending_connect(void)
{
  tapio_loop *loop = new_loop();
  conn_wait w = { 0 };
  rec r;
  int port, i, fillers[4];
  int lfd = raw_bind(AF_INET, &port);
  CHECK(listen(lfd, 0) == 0);
  for (i = 0; i < 4; i++) { /* more than the queue holds */
    struct sockaddr_storage ss;
    socklen_t len = raw_addr(AF_INET, NULL, port, &ss);
    fillers[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    CHECK(fillers[i] >= 0);
    connect(fillers[i], (struct sockaddr *)&ss, len);
  }
  rec_init(&r);
  w.r = &r;
  CHECK_OK(tapio_create_connection(loop, "127.0.0.1", port, &rec_proto, &r,
                                   NULL, on_connected, &w));
  spin(loop, 3);
  if (w.done)
    SKIP("the kernel completed the connect; cannot hold it pending");
  free_loop(loop);
  CHECK_EQ(w.done, 1);
  CHECK_ERR(w.status, TAPIO_ECANCELED);
  CHECK_STR(r.log, "");
  for (i = 0; i < 4; i++)
    close(fillers[i]);
  close(lfd);
  rec_free(&r);
}

/* ---- Memory -------------------------------------------------------------- */

/* One connection through the server: a round trip, then both ends close. */
static void one_connection(tapio_loop *loop, srv *sv)
{
  rec client, *sside;
  size_t first = sv->n;
  rec_init(&client);
  CHECK_OK(connect_tcp(loop, "127.0.0.1", sv->port, &client, NULL));
  sside = srv_wait_conn(sv, first);
  CHECK_OK(tapio_transport_write(client.t, "ping", 4));
  WAIT_FOR(loop, sside->nin == 4);
  CHECK_OK(tapio_transport_write(sside->t, "pong", 4));
  WAIT_FOR(loop, client.nin == 4);
  CHECK_OK(tapio_transport_close(client.t));
  WAIT_FOR(loop, client.lost && sside->lost);
  WAIT_FOR(loop, tapio_server_client_count(sv->s) == 0);
  rec_free(&client);
}

/* The loop's figure comes back to where it was once connections are gone
 * (after a first connection, which may leave the loop's shared read buffer
 * allocated). */
static void loop_memory_returns_after_close(void)
{
  tapio_loop *loop = new_loop();
  srv sv;
  uint64_t base;
  int i;
  srv_start(&sv, loop);
  one_connection(loop, &sv);
  /* memory goes after connection_lost returns, maybe a turn later; no
   * deadline handle is live while measuring (it counts too) */
  spin(loop, 3);
  base = tapio_loop_memory(loop);
  for (i = 0; i < 3; i++) {
    one_connection(loop, &sv);
    spin(loop, 3);
    CHECK_EQ(tapio_loop_memory(loop), base);
  }
  srv_release_and_free(&sv, loop);
}

/* Counts what goes through the allocator; every block carries its size so
 * that the osize tapio passes back can be checked. */
typedef struct counting {
  uint64_t live, allocs, frees, reallocs, bad_osize;
} counting;

static void *counting_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
  counting *c = ud;
  size_t *blk = ptr ? (size_t *)ptr - 2 : NULL;
  size_t old = blk ? blk[0] : 0;
  if (blk && old != osize)
    c->bad_osize++;
  if (nsize == 0) {
    if (blk) {
      c->live -= blk[0];
      c->frees++;
      free(blk);
    }
    return NULL;
  }
  /* two words keep the user block 16-byte aligned */
  blk = realloc(blk, nsize + 2 * sizeof(size_t));
  if (!blk)
    return NULL;
  if (ptr) {
    c->live -= old;
    c->reallocs++;
  } else {
    c->allocs++;
  }
  c->live += nsize;
  blk[0] = nsize;
  return blk + 2;
}

static void loop_custom_allocator(void)
{
  counting c = { 0, 0, 0, 0, 0 };
  tapio_loop *loop = NULL;
  srv sv;
  int never = 0;
  CHECK_OK(tapio_loop_new_with_allocator(&loop, counting_alloc, &c));
  CHECK(loop != NULL);
  CHECK(c.allocs >= 1); /* the loop itself */
  CHECK_EQ(tapio_loop_memory(loop), c.live);
  srv_start(&sv, loop);
  one_connection(loop, &sv);
  CHECK_OK(tapio_call_later(loop, 10, count_call, &never, NULL));
  CHECK_EQ(tapio_loop_memory(loop), c.live);
  srv_release_and_free(&sv, loop);
  CHECK(c.allocs >= 4); /* loop, server, transports, call */
  CHECK_EQ(c.live, 0);
  CHECK_EQ(c.allocs, c.frees);
  CHECK_EQ(c.bad_osize, 0);
  CHECK_EQ(never, 0);
}

/* ---- Errors, versions, options ------------------------------------------- */

static void error_names_and_messages(void)
{
  static const struct { int code; const char *name; } codes[] = {
    { TAPIO_ECONNREFUSED, "ECONNREFUSED" }, { TAPIO_EADDRINUSE, "EADDRINUSE" },
    { TAPIO_ECANCELED, "ECANCELED" }, { TAPIO_EMFILE, "EMFILE" },
    { TAPIO_EINVAL, "EINVAL" }, { TAPIO_EPIPE, "EPIPE" },
    { TAPIO_EOF, "EOF" }, { TAPIO_EBUFFER, "EBUFFER" },
    { TAPIO_ERUNNING, "ERUNNING" }, { TAPIO_EAI_NONAME, "EAI_NONAME" },
  };
  size_t i;
  for (i = 0; i < sizeof codes / sizeof *codes; i++) {
    const char *msg = tapio_strerror(codes[i].code);
    CHECK_STR(tapio_errname(codes[i].code), codes[i].name);
    CHECK(msg != NULL && msg[0] != '\0');
    CHECK(strcmp(msg, codes[i].name) != 0); /* a sentence, not the name */
  }
  CHECK(strcmp(tapio_strerror(TAPIO_ECONNREFUSED),
               tapio_strerror(TAPIO_ECONNRESET)) != 0);
  /* codes tapio does not know still get a string */
  CHECK(tapio_strerror(-9999) != NULL);
  CHECK(tapio_errname(-9999) != NULL);
  CHECK(tapio_strerror(5) != NULL);
}

static void version_matches_string(void)
{
  unsigned major, minor, patch;
  const char *s = tapio_version_string();
  CHECK(s != NULL);
  CHECK_EQ(sscanf(s, "%u.%u.%u", &major, &minor, &patch), 3);
  CHECK_EQ(tapio_version(), (major << 16) | (minor << 8) | patch);
  CHECK(tapio_version() > 0);
}

TEST_MAIN(
  TEST(loop_new_and_free),
  TEST(loop_many_loops),
  TEST(loop_run_until_stop),
  TEST(loop_run_again_after_stop),
  TEST(loop_run_once_nowait),
  TEST(loop_run_once_wait),
  TEST(loop_time_monotonic),
  TEST(call_soon_fifo),
  TEST(call_soon_from_call_next_iteration),
  TEST(call_soon_from_io_same_iteration),
  TEST(call_later_by_time),
  TEST(call_at_equal_times_fifo),
  TEST(call_later_zero_delay_fifo),
  TEST(handle_cancel_before_run),
  TEST(handle_cancel_from_earlier_call),
  TEST(call_at_in_the_past_runs),
  TEST(handle_cancel_after_run_harmless),
  TEST(handle_when),
  TEST(handle_release_keeps_call),
  TEST(handle_release_twice_while_pending),
  TEST(loop_free_drops_pending_calls),
  TEST(call_soon_chain_does_not_starve_io),
  TEST(loop_run_inside_callback_erunning),
  TEST(loop_free_inside_callback_erunning),
  TEST(exception_handler_default_prints),
  TEST(exception_handler_replaced),
  TEST(call_soon_threadsafe_wakes_loop),
  TEST(call_soon_threadsafe_in_order_from_a_call),
  TEST(call_soon_threadsafe_then_due_timer),
  TEST(call_soon_threadsafe_many_threads),
  TEST(loop_free_with_open_transports),
  TEST(loop_free_with_closing_transports),
  TEST(loop_free_after_server_release),
  TEST(loop_free_completes_pending_connect),
  TEST(loop_memory_returns_after_close),
  TEST(loop_custom_allocator),
  TEST(error_names_and_messages),
  TEST(version_matches_string)
)
