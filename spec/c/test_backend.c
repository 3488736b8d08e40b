/* The pollable loop: a host that waits in its own poll() on
 * tapio_loop_backend_fd for tapio_loop_backend_timeout, then steps with
 * tapio_loop_run_once(loop, 0). Each of the three traps of embedding libev
 * has its test: a watcher started inside a step, timers, the cached time. */
#include "test.h"

#include <math.h>
#include <pthread.h>
#include <sys/epoll.h>

/* 1 if fd is readable now. */
static int readable(int fd)
{
  struct pollfd p = { fd, POLLIN, 0 };
  return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

static void fd_is_an_epoll_of_its_own(void)
{
  tapio_loop *loop = new_loop();
  int fd = tapio_loop_backend_fd(loop);
  struct epoll_event ee;
  char path[64], link[64];
  ssize_t n;
  CHECK(fd >= 0);
  CHECK_EQ(tapio_loop_backend_fd(loop), fd); /* the same, every call */
  snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  n = readlink(path, link, sizeof link - 1);
  CHECK(n > 0);
  link[n] = '\0';
  CHECK_STR(link, "anon_inode:[eventpoll]");
  CHECK_EQ(epoll_wait(fd, &ee, 1, 0), 0); /* nothing to do: not readable */
  CHECK_ERR(tapio_loop_backend_fd(NULL), TAPIO_EINVAL);
  CHECK_ERR(tapio_loop_backend_timeout(NULL), TAPIO_EINVAL);
  CHECK_EQ(tapio_loop_backend_timeout(loop), -1); /* nothing scheduled */
  free_loop(loop);
}

/* What the descriptor rests on: libev's epoll descriptor, found through
 * ev_embed and confirmed by the kernel. Data for a connection wakes the
 * descriptor, and only then. */
static void io_makes_it_readable(void)
{
  tapio_loop *loop = new_loop();
  srv sv;
  rec c, *s;
  int fd;
  rec_init(&c);
  s = srv_start_pair(&sv, loop, &c);
  fd = tapio_loop_backend_fd(loop);
  spin(loop, 3);
  CHECK_EQ(tapio_loop_backend_timeout(loop), -1);
  CHECK(!readable(fd));
  CHECK_OK(tapio_transport_write(c.t, "ping", 4));
  HOST_WAIT(loop, s->nin == 4);
  CHECK(memcmp(s->in, "ping", 4) == 0);
  tapio_transport_close(c.t);
  HOST_WAIT(loop, c.lost && s->lost);
  rec_free(&c);
  srv_release_and_free(&sv, loop);
}

/* Trap 1: a watcher started inside a step (the accepted connection's read
 * watcher, started in the step that accepted it) is not in the kernel's
 * set until libev's next iteration. Data that arrives then would not wake
 * the descriptor: the timeout must be 0, and the descriptor readable, until
 * one more step has applied the change. */
static void change_inside_a_step_keeps_it_awake(void)
{
  tapio_loop *loop = new_loop();
  srv sv;
  int fd, peer;
  srv_start(&sv, loop);
  fd = tapio_loop_backend_fd(loop);
  peer = raw_connect(AF_INET, "127.0.0.1", sv.port);
  CHECK(peer >= 0);
  /* step only until the step that accepted: its watcher is pending */
  HOST_WAIT(loop, sv.n == 1);
  CHECK_EQ(tapio_loop_backend_timeout(loop), 0);
  CHECK(readable(fd));
  raw_send_str(NULL, peer, "hello");
  HOST_WAIT(loop, sv.conns[0]->nin == 5);
  CHECK(memcmp(sv.conns[0]->in, "hello", 5) == 0);
  close(peer);
  HOST_WAIT(loop, sv.conns[0]->lost);
  srv_release_and_free(&sv, loop);
}

/* The same from outside a step: a write the host makes between steps
 * that the socket does not take starts the write watcher. */
static void change_between_steps_keeps_it_awake(void)
{
  tapio_loop *loop = new_loop();
  rec c;
  size_t off = 0;
  int peer, fd;
  rec_init(&c);
  peer = pair_raw(loop, &c);
  fd = tapio_loop_backend_fd(loop);
  spin(loop, 2);
  CHECK_EQ(tapio_loop_backend_timeout(loop), -1);
  fill_until_buffered(c.t, &off); /* starts the write watcher */
  CHECK_EQ(tapio_loop_backend_timeout(loop), 0);
  CHECK(readable(fd));
  tapio_transport_abort(c.t);
  HOST_WAIT(loop, c.lost);
  end_pair(loop, &c, peer);
}

static void fired(void *ud) { ++*(int *)ud; }

static void stop_on_data(rec *r, rec_event ev)
{
  if (ev == EV_DATA)
    tapio_loop_stop(tapio_transport_get_loop(r->t));
}

/* A step whose first callback stops the loop: an event fed between steps
 * (a fault cleared: the reading it held resumes at once) runs before
 * libev's first poll, and a stop there ends the step before libev gives
 * the kernel the watcher changes made since the last step (here the read
 * watcher started again). They are still pending after it: the timeout
 * is 0 until a step applied them, or the next data would never wake the
 * host. */
static void stop_before_the_first_poll_keeps_changes(void)
{
  tapio_loop *loop = new_loop();
  rec c;
  int peer;
  rec_init(&c);
  peer = pair_raw(loop, &c);
  CHECK_OK(tapio_fault_set(c.t, TAPIO_FAULT_STOP_READING, 1, 0));
  raw_send_str(NULL, peer, "a");
  HOST_WAIT(loop, c.nin == 1); /* reading held from here */
  raw_send_str(NULL, peer, "b");
  spin(loop, 3); /* libev takes the unwanted descriptor out of epoll */
  CHECK_EQ(c.nin, 1);
  c.hook = stop_on_data;
  CHECK_OK(tapio_fault_clear(c.t)); /* the read watcher again, and a read */
  CHECK_OK(tapio_loop_run_once(loop, 0));
  CHECK_EQ(c.nin, 2); /* "b": its data_received stopped the step */
  c.hook = NULL;
  CHECK_EQ(tapio_loop_backend_timeout(loop), 0);
  raw_send_str(NULL, peer, "c");
  HOST_WAIT(loop, c.nin == 3);
  CHECK(memcmp(c.in, "abc", 3) == 0);
  tapio_transport_abort(c.t);
  HOST_WAIT(loop, c.lost);
  end_pair(loop, &c, peer);
}

/* Trap 2: timers never make libev's descriptor readable. The timeout comes
 * from the loop's own timers, and the descriptor's timerfd wakes a host
 * that polls with no timeout at all. */
static void timers_give_the_timeout(void)
{
  tapio_loop *loop = new_loop();
  int fd = tapio_loop_backend_fd(loop), n = 0, ms;
  tapio_handle *h;
  struct pollfd p = { fd, POLLIN, 0 };
  double t0 = now_sec();
  CHECK_OK(tapio_call_later(loop, 30, fired, &n, &h));
  CHECK_OK(tapio_call_later(loop, 0.3, fired, &n, NULL));
  ms = tapio_loop_backend_timeout(loop);
  CHECK(ms > 0 && ms <= 300);
  CHECK(!readable(fd));
  CHECK_EQ(poll(&p, 1, (int)(test_timeout() * 1000)), 1); /* no timeout */
  CHECK(now_sec() - t0 >= 0.299);
  CHECK_OK(tapio_loop_run_once(loop, 0));
  CHECK_EQ(n, 1);
  ms = tapio_loop_backend_timeout(loop);
  CHECK(ms > 20000 && ms <= 29700);
  tapio_handle_cancel(h); /* the earliest gone: the next one counts */
  CHECK_EQ(tapio_loop_backend_timeout(loop), -1);
  CHECK_OK(tapio_loop_run_once(loop, 0));
  CHECK(!readable(fd));
  tapio_handle_release(h);
  free_loop(loop);
}

/* A timer due before the clock's 0 (call_at(-1)) is due now: timeout 0,
 * not -1 ("nothing scheduled", which its due time read as). */
static void timer_before_zero_is_due(void)
{
  tapio_loop *loop = new_loop();
  int n = 0;
  CHECK_OK(tapio_call_at(loop, -1, fired, &n, NULL));
  CHECK_EQ(tapio_loop_backend_timeout(loop), 0);
  WAIT_FOR(loop, n == 1);
  CHECK_EQ(tapio_loop_backend_timeout(loop), -1);
  free_loop(loop);
}

/* A call_at before the clock's start (a negative time) is due at once,
 * also when a step's callback makes it: the host hears 0 and wakes (it
 * heard -1, for ever: the heap's "no timer"). */
typedef struct past {
  tapio_loop *loop;
  int n;
} past;

static void call_in_the_past(void *ud)
{
  past *p = ud;
  CHECK_OK(tapio_call_at(p->loop, -1, fired, &p->n, NULL));
}

static void call_at_a_negative_time(void)
{
  tapio_loop *loop = new_loop();
  past p = { loop, 0 };
  CHECK(tapio_loop_backend_fd(loop) >= 0);
  CHECK_OK(tapio_call_soon(loop, call_in_the_past, &p, NULL));
  CHECK_OK(tapio_loop_run_once(loop, 0));
  CHECK_EQ(p.n, 0);
  CHECK_EQ(tapio_loop_backend_timeout(loop), 0);
  HOST_WAIT(loop, p.n == 1);
  free_loop(loop);
}

/* A timer at infinity (call_later(inf), a sleep for ever) is never due:
 * with only it left, the host sleeps with no timeout, and the descriptor
 * stays quiet (its timer was left armed to a cancelled timer's time, as
 * the infinite time fitted no timerfd setting). */
static void infinite_timer_never_wakes(void)
{
  tapio_loop *loop = new_loop();
  int fd = tapio_loop_backend_fd(loop), n = 0;
  tapio_handle *h;
  struct pollfd p = { fd, POLLIN, 0 };
  CHECK_OK(tapio_call_later(loop, 0.1, fired, &n, &h));
  CHECK_OK(tapio_call_later(loop, INFINITY, fired, &n, NULL));
  CHECK_OK(tapio_loop_run_once(loop, 0)); /* armed to the first */
  tapio_handle_cancel(h);
  tapio_handle_release(h);
  CHECK_OK(tapio_loop_run_once(loop, 0));
  CHECK_EQ(tapio_loop_backend_timeout(loop), INT32_MAX);
  CHECK_EQ(poll(&p, 1, 300), 0);
  CHECK_EQ(n, 0);
  free_loop(loop);
}

/* Trap 3: libev's time is cached at its last step. A host that slept 150
 * ms past a 100 ms timer without stepping must hear 0, not 100. */
static void timeout_reads_the_clock_now(void)
{
  tapio_loop *loop = new_loop();
  int n = 0;
  CHECK_OK(tapio_call_later(loop, 0.1, fired, &n, NULL));
  CHECK(tapio_loop_backend_timeout(loop) > 0);
  poll(NULL, 0, 150); /* the host's own sleep: the scenario itself */
  CHECK_EQ(tapio_loop_backend_timeout(loop), 0);
  CHECK(readable(tapio_loop_backend_fd(loop)));
  CHECK_OK(tapio_loop_run_once(loop, 0));
  CHECK_EQ(n, 1);
  free_loop(loop);
}

/* Calls queued: timeout 0 and readable; after the step, asleep again. */
static void queued_calls_are_work(void)
{
  tapio_loop *loop = new_loop();
  int fd = tapio_loop_backend_fd(loop), n = 0;
  CHECK(!readable(fd));
  CHECK_OK(tapio_call_soon(loop, fired, &n, NULL));
  CHECK_EQ(tapio_loop_backend_timeout(loop), 0);
  CHECK(readable(fd));
  CHECK_OK(tapio_loop_run_once(loop, 0));
  CHECK_EQ(n, 1);
  CHECK_EQ(tapio_loop_backend_timeout(loop), -1);
  CHECK(!readable(fd));
  free_loop(loop);
}

/* Work a host adds between steps (from an asyncio task, a frame's own
 * code) turns the descriptor readable by itself: a host asleep on it
 * alone, that did not ask for the timeout again, still steps. */
static void work_between_steps_wakes_it_unasked(void)
{
  tapio_loop *loop = new_loop();
  int fd = tapio_loop_backend_fd(loop), n = 0, peer;
  struct pollfd p = { fd, POLLIN, 0 };
  size_t off = 0;
  rec c;
  CHECK(!readable(fd));
  CHECK_OK(tapio_call_soon(loop, fired, &n, NULL)); /* a call queued */
  CHECK(readable(fd));
  CHECK_OK(tapio_loop_run_once(loop, 0));
  CHECK_EQ(n, 1);
  CHECK(!readable(fd));
  CHECK_OK(tapio_call_later(loop, 0.05, fired, &n, NULL)); /* a timer */
  CHECK_EQ(poll(&p, 1, (int)(test_timeout() * 1000)), 1);
  HOST_WAIT(loop, n == 2);
  rec_init(&c);
  peer = pair_raw(loop, &c);
  spin(loop, 2);
  CHECK(!readable(fd));
  fill_until_buffered(c.t, &off); /* a watcher started */
  CHECK(readable(fd));
  tapio_transport_abort(c.t);
  HOST_WAIT(loop, c.lost);
  end_pair(loop, &c, peer);
}

/* One wait of a host whose own epoll instance ep holds tapio's
 * descriptor: epoll_wait (forever when forever, else for the timeout tapio
 * asks; the test's deadline bounds both), then a step. */
static void epoll_host_step(tapio_loop *loop, int ep, int forever, double end)
{
  struct epoll_event ee;
  int ms = forever ? -1 : tapio_loop_backend_timeout(loop);
  int left = (int)((end - now_sec()) * 1000) + 1;
  CHECK(left > 0);
  CHECK(epoll_wait(ep, &ee, 1, ms < 0 || ms > left ? left : ms) >= 0);
  CHECK_OK(tapio_loop_run_once(loop, 0));
}

/* libuv's poll_nested_epoll: a host that waits in an epoll instance of
 * its own holding tapio's descriptor (an epoll within an epoll) wakes
 * for a timer with no timeout of its own, and for a connection's data. */
static void nests_in_the_hosts_epoll(void)
{
  tapio_loop *loop = new_loop();
  int ep = epoll_create1(EPOLL_CLOEXEC), n = 0;
  double end = now_sec() + test_timeout();
  struct epoll_event ee = { EPOLLIN, { 0 } };
  srv sv;
  rec c, *s;
  CHECK(ep >= 0);
  CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, tapio_loop_backend_fd(loop), &ee) == 0);
  CHECK_OK(tapio_call_later(loop, 0.05, fired, &n, NULL));
  while (n == 0)
    epoll_host_step(loop, ep, 1, end);
  rec_init(&c);
  s = srv_start_pair(&sv, loop, &c);
  CHECK_OK(tapio_transport_write(c.t, "ping", 4));
  while (s->nin < 4)
    epoll_host_step(loop, ep, 0, end);
  CHECK(memcmp(s->in, "ping", 4) == 0);
  tapio_transport_close(c.t);
  HOST_WAIT(loop, c.lost && s->lost);
  rec_free(&c);
  srv_release_and_free(&sv, loop);
  CHECK(close(ep) == 0);
}

/* A descriptor closed while its file lives on (a dup here; a child that
 * inherited it, elsewhere) stays in libev's epoll set, which libev never
 * tells of a close. The file's next event makes libev throw the set away
 * and make a new one: the host's descriptor must hold the new one, or a
 * host asleep on it hears of no I/O again. */
static void libev_making_its_set_anew_keeps_it_awake(void)
{
  tapio_loop *loop = new_loop();
  rec c, d, *s;
  srv sv;
  int peer, kept, fd = tapio_loop_backend_fd(loop);
  rec_init(&c);
  peer = pair_raw(loop, &c);
  spin(loop, 3); /* its reading is in the kernel's set */
  kept = dup(tapio_transport_get_fd(c.t));
  CHECK(kept >= 0);
  tapio_transport_close(c.t);
  HOST_WAIT(loop, c.lost);
  raw_send_str(NULL, peer, "x"); /* the closed number's file turns readable */
  HOST_WAIT(loop, !readable(fd)); /* libev saw it and made its set anew */
  rec_init(&d);
  s = srv_start_pair(&sv, loop, &d);
  CHECK_OK(tapio_transport_write(d.t, "ping", 4));
  HOST_WAIT(loop, s->nin == 4);
  CHECK(memcmp(s->in, "ping", 4) == 0);
  tapio_transport_close(d.t);
  HOST_WAIT(loop, d.lost && s->lost);
  rec_free(&c);
  rec_free(&d);
  srv_release_and_free(&sv, loop);
  CHECK(close(kept) == 0);
  CHECK(close(peer) == 0);
}

/* A child the host forks and that does not use the loop holds every
 * descriptor of the parent, libev's epoll instance among them. When libev
 * makes its set anew (a descriptor the parent closed, whose file the child
 * holds, turned readable), the old instance lives on in the child with
 * its registrations, that file's among them: the host's descriptor, which
 * held the old instance, stayed readable until the child exited, and a
 * host asleep on it spun. */
static void forked_child_keeps_the_old_set(void)
{
  tapio_loop *loop = new_loop();
  rec c, d, *s;
  srv sv;
  int peer, go[2], fd = tapio_loop_backend_fd(loop);
  pid_t pid;
  rec_init(&c);
  peer = pair_raw(loop, &c);
  spin(loop, 3); /* its reading is in the kernel's set */
  CHECK(pipe(go) == 0);
  pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) { /* holds the parent's descriptors until go is closed */
    char b;
    close(go[1]);
    while (read(go[0], &b, 1) < 0 && errno == EINTR)
      ;
    _exit(0);
  }
  close(go[0]);
  tapio_transport_close(c.t);
  HOST_WAIT(loop, c.lost);
  raw_send_str(NULL, peer, "x"); /* the closed number's file turns readable */
  HOST_WAIT(loop, !readable(fd)); /* libev made its set anew: asleep again */
  rec_init(&d);
  s = srv_start_pair(&sv, loop, &d);
  CHECK_OK(tapio_transport_write(d.t, "ping", 4));
  HOST_WAIT(loop, s->nin == 4);
  CHECK(close(go[1]) == 0); /* the child exits */
  while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
    ;
  CHECK_OK(tapio_transport_write(d.t, "pong", 4));
  HOST_WAIT(loop, s->nin == 8);
  CHECK(memcmp(s->in, "pingpong", 8) == 0);
  tapio_transport_close(d.t);
  HOST_WAIT(loop, d.lost && s->lost);
  rec_free(&c);
  rec_free(&d);
  srv_release_and_free(&sv, loop);
  CHECK(close(peer) == 0);
}

static void *call_from_thread(void *ud)
{
  static int n;
  tapio_call_soon_threadsafe(ud, fired, &n);
  return NULL;
}

/* Another thread's call wakes a host asleep on the descriptor. */
static void threadsafe_call_wakes_it(void)
{
  tapio_loop *loop = new_loop();
  int fd = tapio_loop_backend_fd(loop);
  struct pollfd p = { fd, POLLIN, 0 };
  pthread_t th;
  CHECK(!readable(fd));
  CHECK_EQ(pthread_create(&th, NULL, call_from_thread, loop), 0);
  CHECK_EQ(poll(&p, 1, (int)(test_timeout() * 1000)), 1);
  CHECK_EQ(pthread_join(th, NULL), 0);
  free_loop(loop);
}

TEST_MAIN(TEST(fd_is_an_epoll_of_its_own), TEST(io_makes_it_readable),
          TEST(call_at_a_negative_time), TEST(infinite_timer_never_wakes),
          TEST(change_inside_a_step_keeps_it_awake),
          TEST(change_between_steps_keeps_it_awake),
          TEST(stop_before_the_first_poll_keeps_changes),
          TEST(timers_give_the_timeout), TEST(timer_before_zero_is_due),
          TEST(timeout_reads_the_clock_now),
          TEST(queued_calls_are_work), TEST(threadsafe_call_wakes_it),
          TEST(work_between_steps_wakes_it_unasked),
          TEST(nests_in_the_hosts_epoll),
          TEST(libev_making_its_set_anew_keeps_it_awake),
          TEST(forked_child_keeps_the_old_set))
