/* Running a loop: what stop() applies to, loops that do not nest, the
 * thread-safe calls a freed loop drops, and a poll that fails. */
#include "test.h"

#include <dirent.h>

static void count_call(void *ud)
{
  ++*(int *)ud;
}

static void stop_call(void *ud)
{
  tapio_loop_stop(ud);
}

/* ---- stop() ------------------------------------------------------------ */

/* A stop asked for inside run_once applies to that run_once and is spent
 * with it: the next tapio_loop_run waits for its timer as usual. */
static void stop_inside_run_once_is_spent(void)
{
  tapio_loop *loop = new_loop();
  int late = 0;
  deadline d;
  CHECK_OK(tapio_call_soon(loop, stop_call, loop, NULL));
  CHECK_OK(tapio_loop_run_once(loop, 0));
  deadline_start(&d, loop, test_timeout());
  CHECK_OK(tapio_call_later(loop, 0.02, count_call, &late, NULL));
  CHECK_OK(tapio_call_later(loop, 0.03, stop_call, loop, NULL));
  CHECK_OK(tapio_loop_run(loop));
  CHECK_EQ(late, 1);
  CHECK(!d.expired);
  deadline_end(&d);
  free_loop(loop);
}

/* A stop asked for while the loop is not running applies to the next run,
 * as asyncio's stop() before run_forever(): it handles what is ready
 * without waiting, then returns; a call scheduled by a call waits. */
static void stop_before_run_one_iteration(void)
{
  tapio_loop *loop = new_loop();
  int ready = 0, waiting = 0;
  tapio_handle *far;
  CHECK_OK(tapio_call_later(loop, 30, count_call, &waiting, &far));
  CHECK_OK(tapio_call_soon(loop, count_call, &ready, NULL));
  tapio_loop_stop(loop);
  CHECK_OK(tapio_loop_run(loop));
  CHECK_EQ(ready, 1);
  CHECK_EQ(waiting, 0);
  /* spent: the next run_once(wait) waits for an event again */
  CHECK_OK(tapio_call_later(loop, 0.02, count_call, &ready, NULL));
  CHECK_OK(tapio_loop_run_once(loop, 1));
  CHECK_EQ(ready, 2);
  tapio_handle_cancel(far);
  tapio_handle_release(far);
  free_loop(loop);
}

/* The same for run_once: it does not wait, even when asked to. */
static void stop_before_run_once_does_not_wait(void)
{
  tapio_loop *loop = new_loop();
  int waiting = 0;
  tapio_handle *far;
  double t0;
  CHECK_OK(tapio_call_later(loop, 10, count_call, &waiting, &far));
  tapio_loop_stop(loop);
  t0 = now_sec();
  CHECK_OK(tapio_loop_run_once(loop, 1));
  CHECK(now_sec() - t0 < 5); /* waiting would take 10 s; valgrind is slow */
  CHECK_EQ(waiting, 0);
  tapio_handle_cancel(far);
  tapio_handle_release(far);
  free_loop(loop);
}

/* ---- Loops do not nest ---------------------------------------------- */

typedef struct nest {
  tapio_loop *outer, *inner;
  int run_rc, once_rc, once_wait_rc, inner_running, inner_calls, done;
} nest;

static void nest_call(void *ud)
{
  nest *n = ud;
  /* were the run allowed, this would end it */
  CHECK_OK(tapio_call_soon(n->inner, stop_call, n->inner, NULL));
  n->run_rc = tapio_loop_run(n->inner);
  n->once_rc = tapio_loop_run_once(n->inner, 0);
  n->once_wait_rc = tapio_loop_run_once(n->inner, 1);
  n->inner_running = tapio_loop_is_running(n->inner);
  n->done = 1;
}

/* Running loop B inside a callback of loop A, on A's thread, is refused
 * with TAPIO_ERUNNING, as asyncio refuses it: B's run would block A, and
 * B's callbacks would run in the middle of A's. B runs normally after. */
static void run_inside_another_loop_erunning(void)
{
  nest n;
  memset(&n, 0, sizeof n);
  n.outer = new_loop();
  n.inner = new_loop();
  CHECK_OK(tapio_call_soon(n.inner, count_call, &n.inner_calls, NULL));
  CHECK_OK(tapio_call_soon(n.outer, nest_call, &n, NULL));
  WAIT_FOR(n.outer, n.done);
  CHECK_ERR(n.run_rc, TAPIO_ERUNNING);
  CHECK_ERR(n.once_rc, TAPIO_ERUNNING);
  CHECK_ERR(n.once_wait_rc, TAPIO_ERUNNING);
  CHECK_EQ(n.inner_running, 0);
  CHECK_EQ(n.inner_calls, 0); /* nothing of B ran inside A */
  CHECK_OK(tapio_loop_run(n.inner));
  CHECK_EQ(n.inner_calls, 1);
  free_loop(n.inner);
  free_loop(n.outer);
}

/* A connection_lost that tapio_loop_free calls cannot run the loop being
 * freed: TAPIO_ECLOSED. */
static int run_rc_in_lost;

static void run_in_lost(rec *r, rec_event ev)
{
  if (ev == EV_LOST)
    run_rc_in_lost = tapio_loop_run(tapio_transport_get_loop(r->t));
}

static void run_inside_loop_free_eclosed(void)
{
  tapio_loop *loop = new_loop();
  rec r;
  int peer;
  rec_init(&r);
  r.hook = run_in_lost;
  peer = pair_raw(loop, &r);
  free_loop(loop);
  CHECK_STR(r.log, "made lost:ECANCELED");
  CHECK_ERR(run_rc_in_lost, TAPIO_ECLOSED);
  close(peer);
  rec_free(&r);
}

/* ---- call_soon_threadsafe when the loop is freed --------------------- */

/* Pending thread-safe calls are dropped unrun and their memory freed
 * (LeakSanitizer and valgrind check it). */
static void loop_free_drops_threadsafe_calls(void)
{
  tapio_loop *loop = new_loop();
  int calls = 0, i;
  for (i = 0; i < 10; i++)
    CHECK_OK(tapio_call_soon_threadsafe(loop, count_call, &calls));
  free_loop(loop);
  CHECK_EQ(calls, 0);
}

/* ---- A poll that fails ------------------------------------------------ */

/* The descriptor of this process's only epoll instance. */
static int find_epoll_fd(void)
{
  DIR *dir = opendir("/proc/self/fd");
  struct dirent *e;
  int found = -1;
  CHECK(dir != NULL);
  while ((e = readdir(dir)) != NULL) {
    char path[300], target[64];
    ssize_t n;
    snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
    n = readlink(path, target, sizeof target - 1);
    if (n <= 0)
      continue;
    target[n] = '\0';
    if (strcmp(target, "anon_inode:[eventpoll]") == 0)
      found = atoi(e->d_name);
  }
  closedir(dir);
  return found;
}

/* libev goes on after a failed poll; one that keeps failing (here the
 * backend descriptor is replaced by /dev/null) would spin. The error goes
 * to the exception handler once and the run ends with TAPIO_ESYSTEM. */
static void failed_poll_ends_the_run(void)
{
  tapio_loop *loop = new_loop();
  exc_rec e = { 0 };
  int epfd, null, late = 0;
  tapio_handle *h;
  tapio_loop_set_exception_handler(loop, exc_record, &e);
  CHECK_OK(tapio_loop_run_once(loop, 0)); /* the watchers are registered */
  epfd = find_epoll_fd();
  if (epfd < 0)
    SKIP("no epoll descriptor to break");
  null = open("/dev/null", O_RDONLY);
  CHECK(null >= 0);
  CHECK(dup2(null, epfd) == epfd);
  close(null);
  CHECK_OK(tapio_call_later(loop, 0.2, stop_call, loop, &h));
  CHECK_OK(tapio_call_later(loop, 0.1, count_call, &late, NULL));
  CHECK_ERR(tapio_loop_run(loop), TAPIO_ESYSTEM);
  CHECK_EQ(e.n, 1);
  CHECK_ERR(e.code, TAPIO_EINVAL);
  CHECK(strstr(e.message, "epoll_wait") != NULL);
  CHECK_EQ(late, 0); /* it ended at the first failure */
  CHECK_EQ(tapio_loop_is_running(loop), 0);
  tapio_handle_release(h);
  free_loop(loop);
}

TEST_MAIN(
  TEST(stop_inside_run_once_is_spent),
  TEST(stop_before_run_one_iteration),
  TEST(stop_before_run_once_does_not_wait),
  TEST(run_inside_another_loop_erunning),
  TEST(run_inside_loop_free_eclosed),
  TEST(loop_free_drops_threadsafe_calls),
  TEST(failed_poll_ends_the_run)
)
