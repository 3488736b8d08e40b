/* The loop's worker pool: blocking work run off the loop (libuv's
 * uv_queue_work, asyncio's run_in_executor). Each loop has its own pool,
 * made at the first job, whose threads start as jobs need them, up to the
 * pool's size, and are joined when the loop is freed. A finished job goes
 * to the pool's finished list and the loop's wakeup (the eventfd of
 * call_soon_threadsafe) is written; the loop's thread calls its done.
 *
 * Threads: the pool's lock guards its queue, its finished list, its counts
 * and each job's stage. A job's work, done and ud are written before it is
 * queued and only read afterwards; its refs, cancelled and released flags
 * are the loop thread's alone. Jobs are allocated and freed on the loop's
 * thread, through the loop's allocator, which need not be thread-safe. */
#include "tapio_int.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

enum { POOL_DEFAULT = 4, POOL_MAX = 128, SPARE_MAX = 64 };

/* Where a job is: only the loop's thread moves it to W_OVER. */
enum { W_QUEUED, W_RUNNING, W_FINISHED, W_OVER };

struct tapio_work {
  tapio__link link;        /* pool->queue, pool->finished, or a list of
                              the loop's thread while it ends them */
  tapio__link all;         /* pool->jobs: every job not yet freed */
  tapio_loop *loop;
  tapio_work_fn work;
  tapio_work_done_fn done;
  void *ud;
  uint8_t stage;           /* W_*, under the lock */
  uint8_t refs;            /* the loop's until done, the caller's */
  uint8_t released;        /* the caller gave its reference back */
  uint8_t cancelled;       /* done gets TAPIO_ECANCELED */
};

struct tapio__pool {
  tapio_loop *loop;
  pthread_mutex_t lock;
  pthread_cond_t cond;     /* a job was queued, or the pool stops */
  tapio__link queue;       /* jobs not started, first in first out */
  tapio__link finished;    /* jobs whose work returned, for the loop */
  tapio__link jobs;        /* the loop thread's: every job of the pool */
  tapio__link spare;       /* the loop thread's: freed jobs kept for the
                              next ones, at most SPARE_MAX */
  int nspare;
  pthread_t *threads;
  int size, nthreads, idle, nqueued, stopping;
};

/* ---- Size ---------------------------------------------------------------- */

/* TAPIO_THREADPOOL_SIZE when it is a number, brought within 1..POOL_MAX
 * (libuv treats UV_THREADPOOL_SIZE so), else POOL_DEFAULT. */
static int size_from_env(void) {
  const char *env = getenv("TAPIO_THREADPOOL_SIZE");
  char *end;
  long n;
  if (!env || !*env)
    return POOL_DEFAULT;
  n = strtol(env, &end, 10);
  if (*end)
    return POOL_DEFAULT;
  return n < 1 ? 1 : n > POOL_MAX ? POOL_MAX : (int)n;
}

int tapio_loop_set_threadpool_size(tapio_loop *loop, int size) {
  if (!loop || size < 1 || size > POOL_MAX)
    return TAPIO_EINVAL;
  if (loop->pool)
    return TAPIO_EBUSY;
  loop->pool_size = size;
  return 0;
}

/* ---- The pool's threads -------------------------------------------------- */

/* Takes the next job, or NULL once the pool stops; called locked. */
static tapio_work *next_job(tapio__pool *p) {
  tapio_work *w;
  while (tapio__list_empty(&p->queue) && !p->stopping) {
    p->idle++;
    pthread_cond_wait(&p->cond, &p->lock);
    p->idle--;
  }
  if (p->stopping)
    return NULL;
  w = TAPIO_CONTAINER(p->queue.next, tapio_work, link);
  tapio__list_remove(&w->link);
  p->nqueued--;
  w->stage = W_RUNNING;
  return w;
}

/* Only the job that finds the finished list empty writes to the wakeup:
 * the loop takes the whole list after reading it. */
static void *worker(void *arg) {
  tapio__pool *p = arg;
  tapio_work *w;
  pthread_mutex_lock(&p->lock);
  while ((w = next_job(p)) != NULL) {
    pthread_mutex_unlock(&p->lock);
    w->work(w->ud);
    pthread_mutex_lock(&p->lock);
    w->stage = W_FINISHED;
    if (tapio__list_empty(&p->finished))
      tapio__wake(p->loop);
    tapio__list_push(&p->finished, &w->link);
  }
  pthread_mutex_unlock(&p->lock);
  return NULL;
}

/* One more thread, every signal blocked in it: a signal meant for the
 * loops (tapio's handlers, a host's) never lands on a pool thread, and a
 * job's write to a closed pipe fails with EPIPE instead of killing the
 * process. Called locked. */
static int add_thread(tapio__pool *p) {
  sigset_t all, old;
  int rc;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  rc = pthread_create(&p->threads[p->nthreads], NULL, worker, p);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (rc != 0)
    return rc == EAGAIN ? TAPIO_EAGAIN : TAPIO_ENOMEM;
  p->nthreads++;
  return 0;
}

static int pool_new(tapio_loop *loop) {
  tapio__pool *p = tapio__calloc(loop, sizeof *p);
  int size = loop->pool_size ? loop->pool_size : size_from_env();
  if (!p)
    return TAPIO_ENOMEM;
  p->threads = tapio__calloc(loop, size * sizeof *p->threads);
  if (!p->threads) {
    tapio__free(loop, p, sizeof *p);
    return TAPIO_ENOMEM;
  }
  if (pthread_mutex_init(&p->lock, NULL) != 0) {
    tapio__free(loop, p->threads, size * sizeof *p->threads);
    tapio__free(loop, p, sizeof *p);
    return TAPIO_ENOMEM;
  }
  pthread_cond_init(&p->cond, NULL);
  p->loop = loop;
  p->size = size;
  tapio__list_init(&p->queue);
  tapio__list_init(&p->finished);
  tapio__list_init(&p->jobs);
  tapio__list_init(&p->spare);
  loop->pool = p;
  return 0;
}

/* ---- Jobs ---------------------------------------------------------------- */

/* A job's memory goes to the pool's spare list, up to SPARE_MAX, for
 * the next job: with many in flight, no allocation per job. */
static void job_unref(tapio_work *w) {
  tapio__pool *p = w->loop->pool;
  if (--w->refs > 0)
    return;
  tapio__list_remove(&w->all);
  if (p->nspare < SPARE_MAX) {
    tapio__list_push(&p->spare, &w->all);
    p->nspare++;
  } else {
    tapio__free(w->loop, w, sizeof *w);
  }
}

static tapio_work *job_new(tapio__pool *p) {
  tapio_work *w;
  if (tapio__list_empty(&p->spare))
    return tapio__calloc(p->loop, sizeof *w);
  w = TAPIO_CONTAINER(p->spare.next, tapio_work, all);
  tapio__list_remove(&w->all);
  p->nspare--;
  memset(w, 0, sizeof *w);
  return w;
}

/* Queues w; a thread is started when the jobs waiting outnumber the idle
 * threads and the pool has room. Without any thread the job cannot run:
 * the call fails. */
static int enqueue(tapio__pool *p, tapio_work *w) {
  int rc = 0;
  pthread_mutex_lock(&p->lock);
  tapio__list_push(&p->queue, &w->link);
  p->nqueued++;
  if (p->nqueued > p->idle && p->nthreads < p->size)
    rc = add_thread(p);
  if (rc < 0 && p->nthreads > 0)
    rc = 0; /* the threads there will come to it */
  if (rc < 0) {
    tapio__list_remove(&w->link);
    p->nqueued--;
  } else if (p->idle > 0) {
    pthread_cond_signal(&p->cond);
  }
  pthread_mutex_unlock(&p->lock);
  return rc;
}

int tapio_queue_work(tapio_loop *loop, tapio_work_fn work,
                     tapio_work_done_fn done, void *ud, tapio_work **out) {
  tapio_work *w;
  int rc;
  if (out)
    *out = NULL;
  if (!loop || !work || !done)
    return TAPIO_EINVAL;
  if ((rc = tapio__io_refused(loop)) < 0)
    return rc;
  if (!loop->pool && (rc = pool_new(loop)) < 0)
    return rc;
  w = job_new(loop->pool);
  if (!w)
    return TAPIO_ENOMEM;
  w->loop = loop;
  w->work = work;
  w->done = done;
  w->ud = ud;
  w->refs = out ? 2 : 1;
  tapio__list_push(&loop->pool->jobs, &w->all);
  if ((rc = enqueue(loop->pool, w)) < 0) {
    w->refs = 1;
    job_unref(w);
    return rc;
  }
  if (out)
    *out = w;
  return 0;
}

int tapio_work_cancel(tapio_work *w) {
  int stage;
  tapio__pool *p;
  if (!w)
    return TAPIO_EINVAL;
  if (w->cancelled)
    return TAPIO_EALREADY;
  p = w->loop->pool;
  pthread_mutex_lock(&p->lock);
  stage = w->stage;
  if (stage == W_QUEUED) {
    tapio__list_remove(&w->link);
    p->nqueued--;
    w->stage = W_OVER;
  }
  pthread_mutex_unlock(&p->lock);
  if (stage == W_OVER)
    return TAPIO_EALREADY;
  w->cancelled = 1;
  if (stage == W_QUEUED) {
    job_unref(w); /* the loop's reference: nobody is called */
    return 1;
  }
  return 0;
}

void tapio_work_release(tapio_work *w) {
  if (!w || w->released)
    return;
  w->released = 1;
  job_unref(w);
}

/* Calls the done of each job of the list, which is the caller's. */
static void end_jobs(tapio__link *list, int status) {
  while (!tapio__list_empty(list)) {
    tapio_work *w = TAPIO_CONTAINER(list->next, tapio_work, link);
    tapio__list_remove(&w->link);
    w->stage = W_OVER;
    w->done(w->ud, w->cancelled ? TAPIO_ECANCELED : status);
    job_unref(w);
  }
}

/* Moves the whole list at from to the empty head to. */
static void take_list(tapio__link *from, tapio__link *to) {
  if (tapio__list_empty(from))
    return;
  to->next = from->next;
  to->prev = from->prev;
  to->next->prev = to;
  to->prev->next = to;
  tapio__list_init(from);
}

/* The loop's wakeup: the done of each job finished since. A done that
 * cancels or releases another job of the batch is safe: the loop holds a
 * reference to each until its done has run. */
void tapio__work_dispatch(tapio_loop *loop) {
  tapio__pool *p = loop->pool;
  tapio__link batch;
  if (!p)
    return;
  tapio__list_init(&batch);
  pthread_mutex_lock(&p->lock);
  take_list(&p->finished, &batch);
  pthread_mutex_unlock(&p->lock);
  end_jobs(&batch, 0);
}

/* tapio_loop_free, first: no thread starts another job. Before the
 * transports close: the close of a pipe a job blocks on ends that job,
 * and its thread took the next queued one before tapio__work_free said
 * stop (spec/c/test_work.c work_loop_free_with_jobs, now and then). */
void tapio__work_stop(tapio_loop *loop) {
  tapio__pool *p = loop->pool;
  if (!p)
    return;
  pthread_mutex_lock(&p->lock);
  p->stopping = 1;
  pthread_cond_broadcast(&p->cond);
  pthread_mutex_unlock(&p->lock);
}

/* Frees the jobs of a list linked by their all. */
static void free_list(tapio_loop *loop, tapio__link *list) {
  while (!tapio__list_empty(list)) {
    tapio_work *w = TAPIO_CONTAINER(list->next, tapio_work, all);
    tapio__list_remove(&w->all);
    tapio__free(loop, w, sizeof *w);
  }
}

/* tapio_loop_free: jobs not started are dropped, the threads finish the
 * jobs they run and are joined, then each job's done gets ECANCELED (its
 * work ran or not), and the caller's references die with the loop. */
void tapio__work_free(tapio_loop *loop) {
  tapio__pool *p = loop->pool;
  tapio__link dropped;
  int i;
  if (!p)
    return;
  tapio__list_init(&dropped);
  tapio__work_stop(loop); /* done already: a no-op but for its lock */
  pthread_mutex_lock(&p->lock);
  take_list(&p->queue, &dropped);
  pthread_mutex_unlock(&p->lock);
  for (i = 0; i < p->nthreads; i++)
    pthread_join(p->threads[i], NULL);
  end_jobs(&p->finished, TAPIO_ECANCELED);
  end_jobs(&dropped, TAPIO_ECANCELED);
  free_list(loop, &p->jobs);
  free_list(loop, &p->spare);
  pthread_cond_destroy(&p->cond);
  pthread_mutex_destroy(&p->lock);
  tapio__free(loop, p->threads, p->size * sizeof *p->threads);
  tapio__free(loop, p, sizeof *p);
  loop->pool = NULL;
}
