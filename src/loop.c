/* The loop: a libev loop, tapio's ready queue, thread-safe calls, the
 * exception handler, creating, freeing and running. */
#include "tapio_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

/* ---- Time and reporting ------------------------------------------------ */

double tapio__now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

double tapio_loop_time(tapio_loop *loop) {
  return loop ? tapio__time(loop) : 0;
}

static void default_exception(void *ud, tapio_loop *loop, int code,
                              const char *message, tapio_transport *t) {
  (void)ud;
  (void)loop;
  fprintf(stderr, "tapio: %s%s%s%s\n", message ? message : "error",
          code ? " (" : "", code ? tapio_errname(code) : "", code ? ")" : "");
  if (t)
    fprintf(stderr, "tapio:   transport fd %d\n", tapio_transport_get_fd(t));
}

void tapio_loop_set_exception_handler(tapio_loop *loop, tapio_exception_fn fn,
                                      void *ud) {
  if (!loop)
    return;
  loop->exc_fn = fn ? fn : default_exception;
  loop->exc_ud = fn ? ud : NULL;
}

void tapio__report(tapio_loop *loop, int code, const char *message,
                   tapio_transport *t) {
  loop->exc_fn(loop->exc_ud, loop, code, message, t);
}

void tapio_loop_call_exception_handler(tapio_loop *loop, int code,
                                       const char *message,
                                       tapio_transport *t) {
  if (loop)
    tapio__report(loop, code, message, t);
}

/* The loop whose run is on this thread's stack (loops do not nest). */
static _Thread_local tapio_loop *running_loop;

/* libev calls this on a system error instead of aborting, and goes on
 * where it called it. In libev 4.33 that is:
 * - epoll_wait (or poll, select) failing in ev_run: that poll is skipped,
 *   and a failure that lasts (a broken backend descriptor) would spin the
 *   loop. The running loop reports it after the poll (libev resets a
 *   break made inside its poll) and its run ends with TAPIO_ESYSTEM.
 * - pipe() for libev's signal/async pipe, retried forever. tapio starts no
 *   ev_async, ev_signal or ev_child watcher, so this cannot happen; if it
 *   ever did, aborting beats spinning at full speed.
 * - epoll_create, retried forever, when libev makes its epoll set anew:
 *   tapio never calls ev_loop_fork, but libev does the same by itself,
 *   inside a run, for an event of a descriptor it no longer knows
 *   (backend.c). It closes the old descriptor just before, so one is free
 *   (unless another thread takes it meanwhile: then this spins until one
 *   is). And the io_uring, linuxaio, kqueue and port backends, which
 *   tapio never picks (EVFLAG_NOENV keeps LIBEV_FLAGS from choosing
 *   them).
 * Only a loop's run calls the poll, so a system error outside any run is
 * the second case. */
static void on_syserr(const char *msg) {
  int code = tapio__from_errno(errno);
  tapio_loop *loop = running_loop;
  if (!loop) {
    fprintf(stderr, "tapio: %s: %s\n", msg, tapio_strerror(code));
    abort();
  }
  loop->syserr = code;
  loop->syserr_msg = msg; /* libev's messages are literals */
  tapio__check_wanted(loop); /* which reports it after the poll */
}

static pthread_once_t syserr_once = PTHREAD_ONCE_INIT;
static void install_syserr(void) { ev_set_syserr_cb(on_syserr); }

/* ---- Ready queue ------------------------------------------------------- */

/* The check watcher runs the ready queue and the due timers after each
 * poll; it is active only while there is such work, so that an iteration
 * with nothing queued (every request of a busy server) costs libev no check
 * and tapio no call. It is unreferenced while active: it never keeps a run
 * alive by itself. */
static void check_stop(tapio_loop *loop) {
  ev_ref(loop->ev);
  ev_check_stop(loop->ev, &loop->check);
}

/* Work was queued: the check runs it at the end of this iteration, or of
 * the next run's first one, as if it had been active all along. Inside a
 * run, libev queued the active checks before it called the callbacks that
 * queue work: the event fed here joins them. Outside, or in a prepare
 * callback (before the poll), a fed event would run before the poll
 * (libev calls what is pending first), and the poll would then wait with
 * the work done: run_once(loop, 1) would sleep after running it; so none
 * is fed. The idle watcher keeps the next poll from waiting. */
void tapio__check_wanted(tapio_loop *loop) {
  if (!ev_is_active(&loop->check)) {
    ev_check_start(loop->ev, &loop->check);
    ev_unref(loop->ev);
    if (loop->running && !loop->preparing)
      ev_feed_event(loop->ev, &loop->check, EV_CHECK);
  }
  if (!ev_is_active(&loop->idle))
    ev_idle_start(loop->ev, &loop->idle);
}

void tapio__task_post(tapio_loop *loop, tapio__task *task) {
  if (task->posted)
    return;
  task->posted = 1;
  task->next = NULL;
  if (loop->ready_tail)
    loop->ready_tail->next = task;
  else
    loop->ready_head = task;
  loop->ready_tail = task;
  tapio__check_wanted(loop);
  tapio__backend_poke(loop);
}

/* Runs the tasks queued before this call; tasks they queue wait for the
 * next iteration, so a call that re-schedules itself cannot starve I/O.
 * The batch leaves the queue first and waits in loop->batch, where
 * tapio__task_unpost finds a task whose owner is freed meanwhile. */
static void run_queued(tapio_loop *loop) {
  tapio__task *task;
  loop->batch = loop->ready_head;
  loop->ready_head = loop->ready_tail = NULL;
  while ((task = loop->batch) != NULL) {
    loop->batch = task->next;
    task->posted = 0;
    task->run(task);
  }
}

/* Unlinks task from the list at *p; 1 if it was there. */
static int unlink_task(tapio__task **p, tapio__task *task,
                       tapio__task **tail) {
  tapio__task *prev = NULL;
  for (; *p; prev = *p, p = &(*p)->next) {
    if (*p != task)
      continue;
    *p = task->next;
    if (tail && *tail == task)
      *tail = prev;
    return 1;
  }
  return 0;
}

void tapio__task_unpost(tapio_loop *loop, tapio__task *task) {
  if (!task->posted)
    return; /* in neither list: no walk */
  if (!unlink_task(&loop->batch, task, NULL))
    unlink_task(&loop->ready_head, task, &loop->ready_tail);
  task->posted = 0;
}

static void on_check(struct ev_loop *ev, ev_check *w, int revents) {
  tapio_loop *loop = TAPIO_CONTAINER(w, tapio_loop, check);
  (void)ev;
  (void)revents;
  if (loop->syserr_msg) {
    tapio__report(loop, loop->syserr, loop->syserr_msg, NULL);
    loop->syserr_msg = NULL;
    ev_break(loop->ev, EVBREAK_ALL);
  }
  if (!tapio__list_empty(&loop->due))
    tapio__queue_due(loop);
  if (loop->jobs_woken) {
    loop->jobs_woken = 0;
    tapio__task_post(loop, &loop->jobs_done);
  }
  if (loop->ready_head)
    run_queued(loop);
  /* Nothing left (also after a cancel emptied the due list): both rest
   * until tapio__check_wanted. */
  if (!loop->ready_head && tapio__list_empty(&loop->due) &&
      !loop->syserr_msg) {
    check_stop(loop);
    ev_idle_stop(loop->ev, &loop->idle);
  }
}
/* Only keeps the poll from waiting while work is queued. */
static void on_idle(struct ev_loop *ev, ev_idle *w, int revents) {
  (void)ev;
  (void)w;
  (void)revents;
}

/* ---- Thread-safe calls ------------------------------------------------- */

/* The wakeup is an eventfd of tapio's own rather than libev's ev_async:
 * libev makes the async descriptor while starting the watcher and retries
 * forever when that fails (see on_syserr); tapio makes it in
 * tapio_loop_new, where running out of descriptors is an error code. The
 * signal handler of signal.c and the worker pool's threads (work.c) write
 * to it too: it is in libev's epoll set, so a pollable loop's descriptor
 * turns readable for a signal or a finished job as for a call. */

struct tapio__ts_call {
  tapio__ts_call *next;
  tapio_call_fn fn;
  void *ud;
};

void tapio__wake(tapio_loop *loop) {
  uint64_t one = 1;
  ssize_t n;
  int saved = errno; /* a signal handler calls it too */
  do
    n = write(loop->wakeup_fd, &one, sizeof one);
  while (n < 0 && errno == EINTR);
  /* EAGAIN: the counter is full, so the loop wakes anyway */
  errno = saved;
}

/* Nodes come from malloc: the loop's allocator need not be thread-safe.
 * Only a call that finds the queue empty writes to the eventfd: the loop
 * takes the whole queue after each wakeup. */
int tapio_call_soon_threadsafe(tapio_loop *loop, tapio_call_fn fn, void *ud) {
  tapio__ts_call *c;
  int was_empty;
  if (!loop || !fn)
    return TAPIO_EINVAL;
  /* from a callback of the loop (its own thread, running): a call_soon,
   * so that it keeps its place among them, as asyncio's does (through
   * the wakeup it joined the queue after the next poll, behind call_soon's
   * made after it) */
  if (running_loop == loop)
    return tapio_call_soon(loop, fn, ud, NULL);
  c = malloc(sizeof *c);
  if (!c)
    return TAPIO_ENOMEM;
  c->next = NULL;
  c->fn = fn;
  c->ud = ud;
  pthread_mutex_lock(&loop->ts_lock);
  was_empty = loop->ts_head == NULL;
  if (loop->ts_tail)
    loop->ts_tail->next = c;
  else
    loop->ts_head = c;
  loop->ts_tail = c;
  pthread_mutex_unlock(&loop->ts_lock);
  if (was_empty)
    tapio__wake(loop);
  return 0;
}

static tapio__ts_call *take_ts_calls(tapio_loop *loop) {
  tapio__ts_call *c;
  pthread_mutex_lock(&loop->ts_lock);
  c = loop->ts_head;
  loop->ts_head = loop->ts_tail = NULL;
  pthread_mutex_unlock(&loop->ts_lock);
  return c;
}

/* Runs each call of the list (or only frees it: the loop is going). */
static void run_ts_calls(tapio__ts_call *c, int run) {
  while (c) {
    tapio__ts_call *next = c->next;
    if (run)
      c->fn(c->ud);
    free(c);
    c = next;
  }
}

/* What the wakeup brought runs as tasks of the ready queue, as asyncio's
 * call_soon_threadsafe appends to its ready queue: the thread-safe calls
 * and the signals caught ahead of the timers due in this iteration, the
 * jobs finished behind them (posted by on_check after it queued those
 * timers). A job's end in asyncio sets its future from such a call, and
 * the future's callbacks (the step of a task awaiting it) are scheduled:
 * they run after those timers, and so does a job's completion here, which
 * may resume its task there and then. Run in the I/O phase, all of it went
 * before the timers: a call_later(0) made before a job that ended
 * meanwhile had not run when its task resumed. tapio_loop_free ends them
 * its own way. */
static void run_woken(tapio__task *task) {
  tapio_loop *loop = TAPIO_CONTAINER(task, tapio_loop, woken);
  if (loop->freeing)
    return;
  run_ts_calls(take_ts_calls(loop), 1);
  tapio__signals_dispatch(loop);
}

static void run_jobs_done(tapio__task *task) {
  tapio_loop *loop = TAPIO_CONTAINER(task, tapio_loop, jobs_done);
  if (!loop->freeing)
    tapio__work_dispatch(loop);
}

static void on_wakeup(struct ev_loop *ev, ev_io *w, int revents) {
  tapio_loop *loop = TAPIO_CONTAINER(w, tapio_loop, wakeup);
  uint64_t count;
  (void)ev;
  (void)revents;
  /* reset the counter first: a call queued after it wakes us again */
  while (read(w->fd, &count, sizeof count) < 0 && errno == EINTR)
    ;
  tapio__task_post(loop, &loop->woken);
  loop->jobs_woken = 1; /* on_check posts jobs_done behind the due timers */
}

/* ---- Create and free --------------------------------------------------- */

/* epoll where libev recommends it: when epoll_create fails (no descriptor
 * left), libev would quietly fall back to poll; asked for epoll alone, it
 * fails, and errno says why. */
static unsigned backend_flags(void) {
  unsigned flags = EVFLAG_NOENV | EVFLAG_NOSIGMASK;
  if (ev_recommended_backends() & EVBACKEND_EPOLL)
    flags |= EVBACKEND_EPOLL;
  return flags;
}

static int make_ev(tapio_loop *loop) {
  loop->wakeup_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (loop->wakeup_fd < 0)
    return tapio__from_errno(errno);
  errno = 0;
  loop->ev = ev_loop_new(backend_flags());
  if (!loop->ev) {
    int rc = errno ? tapio__from_errno(errno) : TAPIO_ENOMEM;
    close(loop->wakeup_fd);
    return rc;
  }
  return 0;
}

static int loop_init(tapio_loop *loop) {
  int rc;
  pthread_once(&syserr_once, install_syserr);
  rc = make_ev(loop);
  if (rc < 0)
    return rc;
  if (pthread_mutex_init(&loop->ts_lock, NULL) != 0) {
    ev_loop_destroy(loop->ev);
    close(loop->wakeup_fd);
    return TAPIO_ENOMEM;
  }
  loop->exc_fn = default_exception;
  tapio__list_init(&loop->handles);
  tapio__list_init(&loop->transports);
  tapio__list_init(&loop->shells);
  tapio__list_init(&loop->servers);
  tapio__list_init(&loop->requests);
  tapio__list_init(&loop->fdwatches);
  tapio__list_init(&loop->sockops);
  tapio__list_init(&loop->due);
  ev_set_userdata(loop->ev, loop); /* before any ev_io_start */
  ev_check_init(&loop->check, on_check);
  ev_set_priority(&loop->check, EV_MINPRI);
  ev_idle_init(&loop->idle, on_idle);
  loop->woken.run = run_woken;
  loop->jobs_done.run = run_jobs_done;
  ev_io_init(&loop->wakeup, on_wakeup, loop->wakeup_fd, EV_READ);
  ev_io_start(loop->ev, &loop->wakeup);
  /* One iteration with nothing queued puts the wakeup in the kernel's
   * set now: tapio_loop_backend_fd recognises libev's descriptor by it. */
  ev_run(loop->ev, EVRUN_NOWAIT);
  loop->io_changed = 0;
  return 0;
}

int tapio_loop_new_with_allocator(tapio_loop **out, tapio_alloc_fn alloc,
                                  void *ud) {
  tapio_loop *loop;
  int rc;
  if (!out || !alloc)
    return TAPIO_EINVAL;
  *out = NULL;
  loop = alloc(ud, NULL, 0, sizeof *loop);
  if (!loop)
    return TAPIO_ENOMEM;
  memset(loop, 0, sizeof *loop);
  loop->alloc = alloc;
  loop->alloc_ud = ud;
  loop->memory = sizeof *loop;
  rc = loop_init(loop);
  if (rc < 0) {
    alloc(ud, loop, sizeof *loop, 0);
    return rc;
  }
  *out = loop;
  return 0;
}

int tapio_loop_new(tapio_loop **out) {
  return tapio_loop_new_with_allocator(out, tapio__default_alloc, NULL);
}

/* Drains the ready queue: connection_lost of aborted transports, request
 * completions with ECANCELED and server waiters still run; user calls were
 * cancelled first and are skipped. */
static void drain(tapio_loop *loop) {
  int guard = 0;
  do {
    tapio__handles_cancel_all(loop);
    tapio__queue_due(loop);
    while (loop->ready_head)
      run_queued(loop);
  } while ((loop->ready_head || !tapio__list_empty(&loop->due)) &&
           ++guard < 1000);
}

int tapio_loop_free(tapio_loop *loop) {
  tapio__link *l;
  if (!loop)
    return TAPIO_EINVAL;
  if (loop->running)
    return TAPIO_ERUNNING;
  if (loop->freeing)
    return TAPIO_EBUSY;
  loop->freeing = 1;
  tapio__work_stop(loop); /* queued jobs stay queued: dropped below */
  tapio__fdwatches_free_all(loop); /* their callbacks must not run now */
  tapio__signals_free(loop);
  drain(loop); /* queued requests see `freeing` and complete: ECANCELED */
  tapio__requests_cancel_all(loop);
  tapio__vnet_drop_backlogs(loop);
  for (l = loop->transports.next; l != &loop->transports; l = l->next) {
    tapio_transport *t = TAPIO_CONTAINER(l, tapio_transport, link);
    tapio__transport_force_close(t, TAPIO_ECANCELED, NULL);
  }
  tapio__servers_close_all(loop);
  drain(loop);
  /* Waits for the jobs running: after the transports, whose descriptors
   * are closed by now, so that a job reading a pipe the loop wrote to
   * sees its end rather than hanging the free. */
  tapio__work_free(loop);
  drain(loop);
  tapio__servers_free_all(loop);
  tapio__shells_free_all(loop);
  tapio__handles_free_all(loop);
  tapio__resolver_free(loop); /* lookups left are cancelled ones */
  tapio__strfree(loop, loop->dns_servers);
  tapio__datagram_area_free(loop);
  tapio__dnet_free(loop); /* before the heap of timers goes */
  run_ts_calls(take_ts_calls(loop), 0); /* dropped unrun, as call_soon's */
  tapio__free(loop, loop->rbuf_block, TAPIO__RBUF_SIZE + TAPIO__RBUF_ALIGN);
  tapio__backend_free(loop);
  tapio__kit_free(loop);
  ev_io_stop(loop->ev, &loop->wakeup);
  ev_loop_destroy(loop->ev);
  close(loop->wakeup_fd);
  pthread_mutex_destroy(&loop->ts_lock);
  loop->alloc(loop->alloc_ud, loop, sizeof *loop, 0);
  return 0;
}

/* ---- Running ----------------------------------------------------------- */

/* One run of the loop: tapio_loop_run (flags 0) or run_once. A stop asked
 * for while it runs ends it and is spent with it; one asked for before
 * makes it handle what is ready without waiting, then return, as asyncio's
 * run_forever does after an early stop(). */
static int run(tapio_loop *loop, int flags) {
  int rc = 0, changed;
  unsigned polls;
  if (!loop)
    return TAPIO_EINVAL;
  if (running_loop) /* this loop, or another one on this thread */
    return TAPIO_ERUNNING;
  if (loop->freeing)
    return TAPIO_ECLOSED;
  if (loop->stop_requested)
    flags = EVRUN_NOWAIT;
  loop->running = 1;
  loop->syserr = 0;
  loop->syserr_msg = NULL;
  running_loop = loop;
  changed = loop->io_changed;
  loop->io_changed = 0; /* libev applies what is pending before its poll */
  polls = ev_iteration(loop->ev);
  if (tapio__virtual(loop)) /* never sleeps: see clock.c */
    rc = tapio__vclock_run(loop, flags != 0);
  else
    ev_run(loop->ev, flags);
  /* Ended before any poll: a stop from a callback libev ran first (an
   * event fed between runs) breaks ev_run before it applies the changes,
   * which are still pending. */
  if (ev_iteration(loop->ev) == polls)
    loop->io_changed |= changed;
  running_loop = NULL;
  loop->running = 0;
  loop->stop_requested = 0;
  if (loop->backend)
    tapio__backend_sync(loop);
  return loop->syserr ? TAPIO_ESYSTEM : rc;
}

int tapio_loop_run(tapio_loop *loop) { return run(loop, 0); }

int tapio_loop_run_once(tapio_loop *loop, int wait) {
  return run(loop, wait ? EVRUN_ONCE : EVRUN_NOWAIT);
}

void tapio_loop_stop(tapio_loop *loop) {
  if (!loop)
    return;
  loop->stop_requested = 1;
  if (loop->running)
    ev_break(loop->ev, EVBREAK_ALL);
}

int tapio_loop_is_running(tapio_loop *loop) {
  return loop ? loop->running : 0;
}
