/* The worker pool (tapio_queue_work): work on a pool thread, done on the
 * loop's thread from the loop, the order jobs start in, the pool's size,
 * cancelling before and during the work, freeing the loop with jobs
 * queued and running, and done callbacks that free and release. Jobs that
 * must stay running wait on a real pipe the test writes to. The many-jobs
 * test is also built with ThreadSanitizer (spec/embed). */
#include "pipes.h"
#include "test.h"

#include <pthread.h>
#include <stdatomic.h>

/* ---- A job that records where and when it ran -------------------------- */

typedef struct job {
  tapio_loop *loop;
  int index;
  int block_fd;          /* >= 0: work reads one byte from it first */
  int started_fd;        /* >= 0: work writes one byte to it first */
  atomic_int worked;     /* work ran (to its end) */
  pthread_t worker;      /* the thread work ran on */
  int done_calls, status;
  int worked_at_done;    /* work had ended when done ran */
  pthread_t done_thread;
  int *order;            /* done appends index here */
  int *norder;
  int stop_at;           /* done stops the loop when *norder reaches it */
} job;

static atomic_int running, most_running;

static void note_running(int delta)
{
  int now = atomic_fetch_add(&running, delta) + delta;
  int most = atomic_load(&most_running);
  while (now > most && !atomic_compare_exchange_weak(&most_running, &most,
                                                      now))
    ;
}

static void job_work(void *ud)
{
  job *j = ud;
  char c;
  note_running(1);
  j->worker = pthread_self();
  if (j->started_fd >= 0)
    CHECK(write(j->started_fd, "s", 1) == 1);
  if (j->block_fd >= 0)
    (void)read(j->block_fd, &c, 1); /* a byte, or the end of the pipe */
  note_running(-1);
  atomic_store(&j->worked, 1);
}

static void job_done(void *ud, int status)
{
  job *j = ud;
  j->done_calls++;
  j->status = status;
  j->worked_at_done = atomic_load(&j->worked);
  j->done_thread = pthread_self();
  if (j->order)
    j->order[(*j->norder)++] = j->index;
  if (j->order && *j->norder == j->stop_at)
    tapio_loop_stop(j->loop);
}

static void job_init(job *j, tapio_loop *loop, int index)
{
  memset(j, 0, sizeof *j);
  j->loop = loop;
  j->index = index;
  j->block_fd = j->started_fd = -1;
}

static void wait_started(int fd)
{
  char c;
  CHECK(read(fd, &c, 1) == 1);
}

/* Runs the loop until a done stops it; fails the test when secs pass
 * first (the timer stops the loop then). */
typedef struct expiry {
  tapio_loop *loop;
  int expired;
} expiry;

static void expire(void *ud)
{
  expiry *e = ud;
  e->expired = 1;
  tapio_loop_stop(e->loop);
}

static void run_until_stopped(tapio_loop *loop, double secs)
{
  expiry e = { loop, 0 };
  tapio_handle *h = NULL;
  CHECK_OK(tapio_call_later(loop, secs, expire, &e, &h));
  CHECK_OK(tapio_loop_run(loop));
  tapio_handle_cancel(h);
  tapio_handle_release(h);
  if (e.expired)
    FAIL("timed out after %.1fs: no done stopped the loop", secs);
}

/* ---- Tests ------------------------------------------------------------- */

static void write_byte(void *ud)
{
  CHECK(write(*(int *)ud, "x", 1) == 1);
}

/* The job blocks on a pipe a timer of the loop writes to: the loop, asleep
 * in tapio_loop_run with nothing else due before the deadline, wakes when
 * the work ends, and done runs on its thread. */
static void work_done_on_loop_thread(void)
{
  tapio_loop *loop = new_loop();
  int fds[2], order[1], n = 0;
  tapio_work *w = NULL;
  job j;
  make_pipe(fds);
  job_init(&j, loop, 0);
  j.block_fd = fds[0];
  j.order = order;
  j.norder = &n;
  j.stop_at = 1;
  CHECK_OK(tapio_queue_work(loop, job_work, job_done, &j, &w));
  CHECK(w != NULL);
  CHECK_EQ(j.done_calls, 0); /* never from inside the call */
  CHECK_OK(tapio_call_later(loop, 0.02, write_byte, &fds[1], NULL));
  run_until_stopped(loop, test_timeout());
  CHECK_EQ(j.done_calls, 1);
  CHECK_EQ(j.status, 0);
  CHECK(j.worked_at_done);
  CHECK(!pthread_equal(j.worker, pthread_self()));
  CHECK(pthread_equal(j.done_thread, pthread_self()));
  CHECK_ERR(tapio_work_cancel(w), TAPIO_EALREADY);
  tapio_work_release(w);
  close(fds[0]);
  close(fds[1]);
  free_loop(loop);
}

/* A host that sleeps in poll() on the loop's descriptor is woken too. */
static void work_wakes_polling_host(void)
{
  tapio_loop *loop = new_loop();
  int fds[2];
  job j;
  make_pipe(fds);
  job_init(&j, loop, 0);
  j.block_fd = fds[0];
  CHECK(tapio_loop_backend_fd(loop) >= 0);
  CHECK_OK(tapio_queue_work(loop, job_work, job_done, &j, NULL));
  spin(loop, 2);
  CHECK_EQ(tapio_loop_backend_timeout(loop), -1); /* nothing scheduled */
  CHECK(write(fds[1], "x", 1) == 1);
  HOST_WAIT(loop, j.done_calls == 1);
  CHECK_EQ(j.status, 0);
  close(fds[0]);
  close(fds[1]);
  free_loop(loop);
}

/* A job's done runs after the timers due when the loop sees its end, as
 * the callbacks of asyncio's run_in_executor future run after them: the
 * job ends (the loop's descriptor turns readable for it alone), then a
 * call_later(0) is made, and one iteration sees both. */
typedef struct marks {
  int seen[2], n;
} marks;

static void mark_timer(void *ud)
{
  marks *m = ud;
  m->seen[m->n++] = 't';
}

static void work_done_after_due_timers(void)
{
  tapio_loop *loop = new_loop();
  int fds[2], fd = tapio_loop_backend_fd(loop);
  struct pollfd p = { fd, POLLIN, 0 };
  marks m = { { 0, 0 }, 0 };
  job j;
  make_pipe(fds);
  job_init(&j, loop, 'j');
  j.block_fd = fds[0];
  j.order = m.seen;
  j.norder = &m.n;
  j.stop_at = -1;
  CHECK(fd >= 0);
  CHECK_OK(tapio_queue_work(loop, job_work, job_done, &j, NULL));
  spin(loop, 2);
  CHECK_EQ(tapio_loop_backend_timeout(loop), -1); /* nothing ready */
  CHECK(write(fds[1], "x", 1) == 1);
  CHECK_EQ(poll(&p, 1, (int)(test_timeout() * 1000)), 1); /* its end */
  CHECK_OK(tapio_call_later(loop, 0, mark_timer, &m, NULL));
  WAIT_FOR(loop, m.n == 2);
  CHECK_EQ(m.seen[0], 't');
  CHECK_EQ(m.seen[1], 'j');
  close(fds[0]);
  close(fds[1]);
  free_loop(loop);
}

/* With one thread, jobs run one at a time in the order queued, and their
 * done callbacks come in that order. */
enum { ORDER_JOBS = 100 };

static void work_order_one_thread(void)
{
  static job jobs[ORDER_JOBS];
  tapio_loop *loop = new_loop();
  int order[ORDER_JOBS], n = 0, i;
  atomic_store(&most_running, 0);
  CHECK_OK(tapio_loop_set_threadpool_size(loop, 1));
  for (i = 0; i < ORDER_JOBS; i++) {
    job_init(&jobs[i], loop, i);
    jobs[i].order = order;
    jobs[i].norder = &n;
    jobs[i].stop_at = ORDER_JOBS;
    CHECK_OK(tapio_queue_work(loop, job_work, job_done, &jobs[i], NULL));
  }
  run_until_stopped(loop, test_timeout());
  CHECK_EQ(n, ORDER_JOBS);
  for (i = 0; i < ORDER_JOBS; i++) {
    CHECK_EQ(order[i], i);
    CHECK_EQ(jobs[i].done_calls, 1);
    CHECK(pthread_equal(jobs[i].worker, jobs[0].worker));
  }
  CHECK_EQ(atomic_load(&most_running), 1);
  free_loop(loop);
}

/* Many jobs on four threads: each done exactly once, status 0, on the
 * loop's thread, after its work; never more than four at work at once.
 * Also built with ThreadSanitizer. */
enum { MANY_JOBS = 2000 };

static void work_many_jobs(void)
{
  static job jobs[MANY_JOBS];
  tapio_loop *loop = new_loop();
  int order[MANY_JOBS], n = 0, i;
  atomic_store(&most_running, 0);
  CHECK_OK(tapio_loop_set_threadpool_size(loop, 4));
  for (i = 0; i < MANY_JOBS; i++) {
    job_init(&jobs[i], loop, i);
    jobs[i].order = order;
    jobs[i].norder = &n;
    jobs[i].stop_at = MANY_JOBS;
    CHECK_OK(tapio_queue_work(loop, job_work, job_done, &jobs[i], NULL));
  }
  run_until_stopped(loop, test_timeout() * 4);
  spin(loop, 3); /* nothing runs twice */
  CHECK_EQ(n, MANY_JOBS);
  for (i = 0; i < MANY_JOBS; i++) {
    CHECK_EQ(jobs[i].done_calls, 1);
    CHECK_EQ(jobs[i].status, 0);
    CHECK(jobs[i].worked_at_done);
    CHECK(pthread_equal(jobs[i].done_thread, pthread_self()));
    CHECK(!pthread_equal(jobs[i].worker, pthread_self()));
  }
  CHECK_CMP(atomic_load(&most_running), <=, 4);
  free_loop(loop);
}

/* TAPIO_THREADPOOL_SIZE=2: two jobs that block are at work, the third
 * waits until one of them ends. */
static void work_pool_size_from_env(void)
{
  tapio_loop *loop;
  int block[2], started[2], i;
  job jobs[3];
  struct pollfd p;
  setenv("TAPIO_THREADPOOL_SIZE", "2", 1);
  loop = new_loop();
  make_pipe(block);
  make_pipe(started);
  for (i = 0; i < 3; i++) {
    job_init(&jobs[i], loop, i);
    jobs[i].block_fd = block[0];
    jobs[i].started_fd = started[1];
    CHECK_OK(tapio_queue_work(loop, job_work, job_done, &jobs[i], NULL));
  }
  wait_started(started[0]);
  wait_started(started[0]);
  p.fd = started[0];
  p.events = POLLIN;
  CHECK_EQ(poll(&p, 1, 100), 0); /* a third would have started by now */
  CHECK(write(block[1], "x", 1) == 1);
  wait_started(started[0]);
  CHECK(write(block[1], "xx", 2) == 2);
  WAIT_FOR(loop, jobs[0].done_calls + jobs[1].done_calls +
                     jobs[2].done_calls == 3);
  unsetenv("TAPIO_THREADPOOL_SIZE");
  for (i = 0; i < 3; i++)
    CHECK_EQ(jobs[i].status, 0);
  close(block[0]);
  close(block[1]);
  close(started[0]);
  close(started[1]);
  free_loop(loop);
}

/* A job queued behind a running one is dropped by its cancel: neither its
 * work nor its done is called; the running one goes on. */
static void work_cancel_before_start(void)
{
  tapio_loop *loop = new_loop();
  int block[2], started[2];
  tapio_work *wa = NULL, *wb = NULL;
  job a, b;
  make_pipe(block);
  make_pipe(started);
  CHECK_OK(tapio_loop_set_threadpool_size(loop, 1));
  job_init(&a, loop, 0);
  a.block_fd = block[0];
  a.started_fd = started[1];
  job_init(&b, loop, 1);
  CHECK_OK(tapio_queue_work(loop, job_work, job_done, &a, &wa));
  CHECK_OK(tapio_queue_work(loop, job_work, job_done, &b, &wb));
  wait_started(started[0]);
  CHECK_EQ(tapio_work_cancel(wb), 1);
  CHECK_ERR(tapio_work_cancel(wb), TAPIO_EALREADY);
  CHECK(write(block[1], "x", 1) == 1);
  WAIT_FOR(loop, a.done_calls == 1);
  spin(loop, 3);
  CHECK_EQ(a.status, 0);
  CHECK_EQ(b.done_calls, 0);
  CHECK(!atomic_load(&b.worked));
  tapio_work_release(wb);
  tapio_work_release(wa);
  close(block[0]);
  close(block[1]);
  close(started[0]);
  close(started[1]);
  free_loop(loop);
}

/* A running job's cancel cannot stop it: its work ends, then its done
 * comes once, with ECANCELED. */
static void work_cancel_while_running(void)
{
  tapio_loop *loop = new_loop();
  int block[2], started[2];
  tapio_work *w = NULL;
  job a;
  make_pipe(block);
  make_pipe(started);
  job_init(&a, loop, 0);
  a.block_fd = block[0];
  a.started_fd = started[1];
  CHECK_OK(tapio_queue_work(loop, job_work, job_done, &a, &w));
  wait_started(started[0]);
  CHECK_EQ(tapio_work_cancel(w), 0);
  CHECK_ERR(tapio_work_cancel(w), TAPIO_EALREADY);
  spin(loop, 2);
  CHECK_EQ(a.done_calls, 0);
  CHECK(write(block[1], "x", 1) == 1);
  WAIT_FOR(loop, a.done_calls == 1);
  spin(loop, 3);
  CHECK_EQ(a.done_calls, 1);
  CHECK_ERR(a.status, TAPIO_ECANCELED);
  CHECK(a.worked_at_done);
  tapio_work_release(w);
  close(block[0]);
  close(block[1]);
  close(started[0]);
  close(started[1]);
  free_loop(loop);
}

/* Freeing the loop with one job running and two queued: the running one
 * waits on a pipe whose write end is the loop's (a write pipe transport),
 * which the free closes; the free waits for it to end, the queued ones
 * never run, and each done gets ECANCELED. The caller's handles die with
 * the loop (valgrind and LeakSanitizer check nothing stays). */
static void work_loop_free_with_jobs(void)
{
  tapio_loop *loop = new_loop();
  int block[2], started[2], i;
  tapio_work *w[3];
  job jobs[3];
  rec r;
  make_pipe(block);
  make_pipe(started);
  rec_init(&r);
  CHECK_OK(connect_pipe(loop, block[1], 1, &r));
  CHECK_OK(tapio_loop_set_threadpool_size(loop, 1));
  for (i = 0; i < 3; i++) {
    job_init(&jobs[i], loop, i);
    jobs[i].block_fd = block[0];
    jobs[i].started_fd = started[1];
    CHECK_OK(tapio_queue_work(loop, job_work, job_done, &jobs[i], &w[i]));
  }
  wait_started(started[0]);
  CHECK_OK(tapio_loop_free(loop));
  CHECK(atomic_load(&jobs[0].worked));
  for (i = 0; i < 3; i++) {
    CHECK_EQ(jobs[i].done_calls, 1);
    CHECK_ERR(jobs[i].status, TAPIO_ECANCELED);
  }
  CHECK(jobs[0].worked_at_done);
  CHECK(!atomic_load(&jobs[1].worked));
  CHECK(!atomic_load(&jobs[2].worked));
  rec_free(&r);
  close(block[0]);
  close(started[0]);
  close(started[1]);
}

/* done callbacks that free their ud, release their handle, cancel
 * another job and queue new ones: each job ends once (its done, or the
 * cancel that dropped it, whose caller frees it), and nothing leaks
 * (valgrind and LeakSanitizer). */
typedef struct chain {
  tapio_loop *loop;
  tapio_work *self;
  struct chain *victim;  /* a job this one's done cancels */
  struct tally *t;
  int refs;              /* its done's; a victim's canceller's too */
} chain;

typedef struct tally {
  int made, dones, cancelled, dropped, left;
} tally;

static void chain_work(void *ud) { (void)ud; }

static void chain_done(void *ud, int status);

static chain *chain_queue(tapio_loop *loop, tally *t, chain *victim)
{
  chain *c = malloc(sizeof *c);
  CHECK(c != NULL);
  c->loop = loop;
  c->victim = victim;
  c->t = t;
  c->refs = 1;
  if (victim)
    victim->refs++;
  CHECK_OK(tapio_queue_work(loop, chain_work, chain_done, c, &c->self));
  t->made++;
  t->left--;
  return c;
}

static void chain_unref(chain *c, int n)
{
  if ((c->refs -= n) == 0) {
    tapio_work_release(c->self);
    free(c);
  }
}

static void chain_done(void *ud, int status)
{
  chain *c = ud;
  c->t->dones++;
  if (status == TAPIO_ECANCELED)
    c->t->cancelled++;
  if (c->victim) {
    int rc = tapio_work_cancel(c->victim->self);
    CHECK(rc == 0 || rc == 1 || rc == TAPIO_EALREADY);
    if (rc == 1)
      c->t->dropped++; /* its done never comes: its reference goes too */
    chain_unref(c->victim, rc == 1 ? 2 : 1);
  }
  if (c->t->left > 0) /* a victim, then the job that cancels it */
    chain_queue(c->loop, c->t, chain_queue(c->loop, c->t, NULL));
  chain_unref(c, 1);
}

static void work_done_frees_and_queues(void)
{
  tapio_loop *loop = new_loop();
  tally t = {0, 0, 0, 0, 40};
  CHECK_OK(tapio_loop_set_threadpool_size(loop, 2));
  chain_queue(loop, &t, chain_queue(loop, &t, NULL));
  WAIT_FOR(loop, t.left <= 0 && t.dones + t.dropped == t.made);
  spin(loop, 3);
  CHECK_EQ(t.dones + t.dropped, t.made);
  CHECK_CMP(t.made, >=, 40);
  free_loop(loop);
}

/* A done that closes the write pipe its job read from: the transport
 * flushes what it holds and ends (connection_lost after the done
 * returns), the loop goes on. */
typedef struct closer {
  rec *r;
  int fd;          /* the pipe's read end: the job reads one byte */
  int done_calls;
} closer;

static void close_in_done(void *ud, int status)
{
  closer *c = ud;
  CHECK_EQ(status, 0);
  c->done_calls++;
  CHECK_OK(tapio_transport_write(c->r->t, "bye", 3));
  CHECK_OK(tapio_transport_close(c->r->t));
  CHECK(c->r->lost == 0); /* never from inside the call */
}

static void read_one(void *ud)
{
  char ch;
  CHECK(read(((closer *)ud)->fd, &ch, 1) == 1);
}

static void work_done_closes_transport(void)
{
  tapio_loop *loop = new_loop();
  int fds[2];
  char buf[8];
  closer c;
  rec r;
  make_pipe(fds);
  rec_init(&r);
  CHECK_OK(connect_pipe(loop, fds[1], 1, &r));
  c.r = &r;
  c.fd = fds[0];
  c.done_calls = 0;
  CHECK_OK(tapio_transport_write(r.t, "x", 1));
  CHECK_OK(tapio_queue_work(loop, read_one, close_in_done, &c, NULL));
  WAIT_FOR(loop, r.lost);
  CHECK_EQ(c.done_calls, 1);
  CHECK_EQ(r.lost_code, 0);
  CHECK_EQ(read(fds[0], buf, sizeof buf), 3); /* flushed, then closed */
  CHECK_EQ(read(fds[0], buf, sizeof buf), 0);
  close(fds[0]);
  rec_free(&r);
  free_loop(loop);
}

static void nop_work(void *ud) { (void)ud; }
static void nop_done(void *ud, int status) { (void)ud; (void)status; }

static void work_bad_arguments(void)
{
  tapio_loop *loop = new_loop(), *virt = new_virtual();
  tapio_work *w = (tapio_work *)&w;
  CHECK_ERR(tapio_queue_work(NULL, nop_work, nop_done, NULL, &w),
            TAPIO_EINVAL);
  CHECK(w == NULL);
  CHECK_ERR(tapio_queue_work(loop, NULL, nop_done, NULL, NULL),
            TAPIO_EINVAL);
  CHECK_ERR(tapio_queue_work(loop, nop_work, NULL, NULL, NULL),
            TAPIO_EINVAL);
  CHECK_ERR(tapio_queue_work(virt, nop_work, nop_done, NULL, &w),
            TAPIO_EVIRTUAL);
  CHECK(w == NULL);
  CHECK_ERR(tapio_loop_set_threadpool_size(NULL, 2), TAPIO_EINVAL);
  CHECK_ERR(tapio_loop_set_threadpool_size(loop, 0), TAPIO_EINVAL);
  CHECK_ERR(tapio_loop_set_threadpool_size(loop, 129), TAPIO_EINVAL);
  CHECK_OK(tapio_loop_set_threadpool_size(loop, 128));
  CHECK_OK(tapio_queue_work(loop, nop_work, nop_done, NULL, NULL));
  CHECK_ERR(tapio_loop_set_threadpool_size(loop, 2), TAPIO_EBUSY);
  CHECK_ERR(tapio_work_cancel(NULL), TAPIO_EINVAL);
  tapio_work_release(NULL);
  free_loop(virt);
  free_loop(loop);
}

TEST_MAIN(
  TEST(work_done_on_loop_thread),
  TEST(work_wakes_polling_host),
  TEST(work_done_after_due_timers),
  TEST(work_order_one_thread),
  TEST(work_many_jobs),
  TEST(work_pool_size_from_env),
  TEST(work_cancel_before_start),
  TEST(work_cancel_while_running),
  TEST(work_loop_free_with_jobs),
  TEST(work_done_frees_and_queues),
  TEST(work_done_closes_transport),
  TEST(work_bad_arguments)
)
