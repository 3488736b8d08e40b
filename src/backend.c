/* The pollable loop: one descriptor a host waits on in its own poll,
 * select or epoll, and how long it may sleep (libuv's uv_backend_fd and
 * uv_backend_timeout, cqueues' pollfd and timeout); and the heap of due
 * times it takes the timeout from.
 *
 * The descriptor is an epoll instance of tapio's own holding two: libev's
 * epoll descriptor (readable when a watched descriptor is) and a timerfd
 * armed to the loop's next deadline, or to now while work is ready. So the
 * descriptor alone covers I/O and timers, for hosts that can only watch a
 * descriptor; tapio_loop_backend_timeout says the same as a number. */
#include "tapio_int.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

struct tapio__backend {
  int epfd;        /* what the host polls */
  int tfd;         /* the timerfd in it */
  int evfd;        /* libev's epoll descriptor, in it (not ours to close) */
  double armed;    /* the deadline tfd is armed to; 0: now; -1: disarmed */
  ev_fork remade;  /* libev is making its epoll descriptor anew */
  int stale;       /* so evfd is gone from epfd: find the new one */
};

/* ---- The heap of due times ---------------------------------------------- */

/* An array heap; when it cannot grow (no memory), a deadline waits in a
 * list beside it, so that setting one never fails: a host polling tapio
 * always knows when every timer is due. The list is empty but under
 * memory pressure, and searched only then. */

static tapio__deadline **slot(tapio_loop *loop, size_t i) {
  return &loop->deadlines[i - 1]; /* 1-based: a parent is i / 2 */
}

static void place(tapio_loop *loop, size_t i, tapio__deadline *d) {
  *slot(loop, i) = d;
  d->index = i;
}

static void sift_up(tapio_loop *loop, size_t i) {
  tapio__deadline *d = *slot(loop, i);
  while (i > 1 && (*slot(loop, i / 2))->when > d->when) {
    place(loop, i, *slot(loop, i / 2));
    i /= 2;
  }
  place(loop, i, d);
}

static void sift_down(tapio_loop *loop, size_t i) {
  tapio__deadline *d = *slot(loop, i);
  size_t n = loop->ndeadlines;
  for (;;) {
    size_t c = 2 * i;
    if (c > n)
      break;
    if (c < n && (*slot(loop, c + 1))->when < (*slot(loop, c))->when)
      c++;
    if ((*slot(loop, c))->when >= d->when)
      break;
    place(loop, i, *slot(loop, c));
    i = c;
  }
  place(loop, i, d);
}

static int grow(tapio_loop *loop) {
  size_t cap = loop->deadlines_cap ? 2 * loop->deadlines_cap : 16;
  tapio__deadline **a = tapio__alloc(loop, cap * sizeof *a);
  if (!a)
    return TAPIO_ENOMEM;
  if (loop->ndeadlines)
    memcpy(a, loop->deadlines, loop->ndeadlines * sizeof *a);
  tapio__free(loop, loop->deadlines, loop->deadlines_cap * sizeof *a);
  loop->deadlines = a;
  loop->deadlines_cap = cap;
  return 0;
}

static void spill(tapio_loop *loop, tapio__deadline *d) {
  d->next = loop->spilled;
  if (d->next)
    d->next->pprev = &d->next;
  d->pprev = &loop->spilled;
  loop->spilled = d;
  tapio__backend_poke(loop); /* it may be the next one */
}

void tapio__deadline_set(tapio_loop *loop, tapio__deadline *d, double when) {
  tapio__deadline_clear(loop, d);
  /* a time before the clock's start (call_at(-1)) is due at once all the
   * same; kept negative, it would read as tapio__deadline_next's "none" */
  d->when = when > 0 ? when : 0;
  if (loop->ndeadlines == loop->deadlines_cap && grow(loop) < 0) {
    spill(loop, d);
    return;
  }
  place(loop, ++loop->ndeadlines, d);
  sift_up(loop, d->index);
  if (d->index == 1) /* the next deadline now: the host's sleep changes */
    tapio__backend_poke(loop);
}

void tapio__deadline_clear(tapio_loop *loop, tapio__deadline *d) {
  size_t i = d->index;
  tapio__deadline *last;
  if (d->pprev) { /* in the list */
    *d->pprev = d->next;
    if (d->next)
      d->next->pprev = d->pprev;
    d->pprev = NULL;
    return;
  }
  if (!i)
    return;
  d->index = 0;
  last = *slot(loop, loop->ndeadlines);
  if (--loop->ndeadlines == 0) { /* a loop with no timer holds no heap */
    tapio__free(loop, loop->deadlines,
                loop->deadlines_cap * sizeof *loop->deadlines);
    loop->deadlines = NULL;
    loop->deadlines_cap = 0;
    return;
  }
  if (last == d)
    return;
  place(loop, i, last);
  sift_up(loop, i);
  sift_down(loop, last->index);
}

tapio__deadline *tapio__deadline_first(tapio_loop *loop) {
  tapio__deadline *first = loop->ndeadlines ? *slot(loop, 1) : NULL, *d;
  for (d = loop->spilled; d; d = d->next)
    if (!first || d->when < first->when)
      first = d;
  return first;
}

size_t tapio__deadline_count(tapio_loop *loop) {
  size_t n = loop->ndeadlines;
  tapio__deadline *d;
  for (d = loop->spilled; d; d = d->next)
    n++;
  return n;
}

double tapio__deadline_next(tapio_loop *loop) {
  tapio__deadline *first = tapio__deadline_first(loop);
  return first ? first->when : -1;
}

/* ---- The core's timers ----------------------------------------------------- */

/* Fires tm, then every other timer due no later than tm (at most those in
 * the heap before: one restarting itself at once waits). Each timer's
 * libev expiry is its due time plus the moment lost between the two clock
 * readings that started it, so two timers due at the same time may fire
 * in different iterations: here they fire together, and calls due
 * together keep the order they were scheduled in (sched.c sorts them). */
static void timer_fired(struct ev_loop *ev, ev_timer *w, int revents) {
  tapio__timer *tm = TAPIO_CONTAINER(w, tapio__timer, ev);
  tapio_loop *loop = tm->loop;
  double when = tapio__deadline_queued(&tm->dl) ? tm->dl.when : -1;
  size_t others = tapio__deadline_count(loop);
  tapio__deadline *d;
  (void)revents;
  tapio__deadline_clear(loop, &tm->dl);
  tm->fn(tm);
  while (others-- > 1 && (d = tapio__deadline_first(loop)) != NULL &&
         d->when <= when) {
    tapio__timer *next = TAPIO_CONTAINER(d, tapio__timer, dl);
    ev_timer_stop(ev, &next->ev);
    tapio__deadline_clear(loop, &next->dl);
    next->fn(next);
  }
}

void tapio__timer_init(tapio__timer *tm, tapio_loop *loop,
                       tapio__timer_fn fn) {
  ev_init(&tm->ev, timer_fired);
  tm->dl.index = 0;
  tm->dl.pprev = NULL;
  tm->loop = loop;
  tm->fn = fn;
}

void tapio__timer_start_at(tapio__timer *tm, double when) {
  double now, after;
  if (ev_is_active(&tm->ev))
    ev_timer_stop(tm->loop->ev, &tm->ev);
  if (tapio__virtual(tm->loop)) { /* the heap alone: the clock fires it */
    tapio__deadline_set(tm->loop, &tm->dl, tapio__vround(when));
    return;
  }
  /* libev counts `after` from its cached time: refresh it, after reading
   * tapio's clock, so that libev's reading is the later one and the timer
   * never fires before `when`. Read the other way round, the time the
   * thread lost between the two readings (a preemption: under valgrind
   * each reading is a system call) made the timer fire that much early. */
  now = tapio__now();
  ev_now_update(tm->loop->ev);
  after = when - now;
  ev_timer_set(&tm->ev, after > 0 ? after : 0, 0);
  ev_timer_start(tm->loop->ev, &tm->ev);
  tapio__deadline_set(tm->loop, &tm->dl, when);
}

void tapio__timer_start(tapio__timer *tm, double after) {
  tapio__timer_start_at(tm, tapio__time(tm->loop) + (after > 0 ? after : 0));
}

void tapio__timer_stop(tapio__timer *tm) {
  if (ev_is_active(&tm->ev))
    ev_timer_stop(tm->loop->ev, &tm->ev);
  tapio__deadline_clear(tm->loop, &tm->dl);
}

/* ---- The timeout --------------------------------------------------------- */

/* Work a step would do at once: the ready queue, timers already fired
 * (the due list), a watcher change libev has not given the kernel yet,
 * events libev took and has not dispatched. */
static int work_ready(tapio_loop *loop) {
  return loop->ready_head || !tapio__list_empty(&loop->due) ||
         loop->io_changed || ev_pending_count(loop->ev) > 0 ||
         tapio__vclock_busy(loop);
}

/* The next deadline a host's sleep can reach: none on a virtual clock,
 * whose time moves only when a test moves it. */
static double next_deadline(tapio_loop *loop) {
  return tapio__virtual(loop) ? -1 : tapio__deadline_next(loop);
}

int tapio_loop_backend_timeout(tapio_loop *loop) {
  double next, ms;
  if (!loop)
    return TAPIO_EINVAL;
  if (loop->backend)
    tapio__backend_sync(loop);
  if (work_ready(loop))
    return 0;
  next = next_deadline(loop);
  if (next < 0)
    return -1;
  /* the clock now, not libev's time of the last step; rounded up, so a
   * host that sleeps that long finds the timer due */
  ms = ceil((next - tapio__now()) * 1e3);
  if (ms <= 0)
    return 0;
  return ms < INT32_MAX ? (int)ms : INT32_MAX;
}

/* ---- The descriptor ------------------------------------------------------ */

/* libev's epoll descriptor. libev has no call that returns it. ev_embed,
 * its documented way to have another loop wait on a loop's backend, watches
 * it with an ev_io it starts in ev_embed_start; that watcher is a member
 * ev.h marks private, so what it holds is not trusted: adding tapio's own
 * wakeup eventfd to it must fail with EEXIST, which only the epoll instance
 * already holding tapio's watchers answers (the kernel's rule, not
 * libev's). The throwaway outer loop uses select or poll: no descriptor. */
static int find_ev_fd(tapio_loop *loop) {
  unsigned outer = ev_supported_backends() &
                   (EVBACKEND_SELECT | EVBACKEND_POLL);
  struct epoll_event ee;
  struct ev_loop *tmp;
  ev_embed e;
  int fd;
  if (!(ev_backend(loop->ev) & EVBACKEND_EPOLL) ||
      !(ev_embeddable_backends() & EVBACKEND_EPOLL) || !outer)
    return TAPIO_ENOTSUP;
  tmp = ev_loop_new(outer | EVFLAG_NOENV | EVFLAG_NOSIGMASK);
  if (!tmp)
    return TAPIO_ENOMEM;
  ev_embed_init(&e, NULL, loop->ev);
  ev_embed_start(tmp, &e);
  fd = e.io.fd;
  ev_embed_stop(tmp, &e);
  ev_loop_destroy(tmp);
  memset(&ee, 0, sizeof ee);
  ee.events = EPOLLIN;
  if (fd < 0)
    return TAPIO_ENOTSUP;
  if (epoll_ctl(fd, EPOLL_CTL_ADD, loop->wakeup_fd, &ee) == 0) {
    epoll_ctl(fd, EPOLL_CTL_DEL, loop->wakeup_fd, &ee); /* not libev's */
    return TAPIO_ENOTSUP;
  }
  return errno == EEXIST ? fd : TAPIO_ENOTSUP;
}

static int add_in(int epfd, int fd) {
  struct epoll_event ee;
  memset(&ee, 0, sizeof ee);
  ee.events = EPOLLIN;
  ee.data.fd = fd;
  return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ee) == 0
             ? 0
             : tapio__from_errno(errno);
}

/* libev throws its epoll set away and makes a new one when an event
 * comes for a descriptor it no longer knows: one closed while its file
 * lives on (a dup, a child holding it), which epoll keeps reporting; a
 * fork, too. The old descriptor's close takes it out of epfd, so a host
 * asleep on epfd would hear of no I/O again. libev calls its fork watchers
 * just before, the old descriptor still open; the step's end adds the new
 * one. The old one leaves epfd here: a child the host forked holds it too,
 * so its close alone would leave the old set in epfd, and that set's file
 * of the closed descriptor, still readable, would wake the host for ever
 * (until the child exits). */
static void on_remade(struct ev_loop *ev, ev_fork *w, int revents) {
  struct tapio__backend *b = TAPIO_CONTAINER(w, struct tapio__backend,
                                             remade);
  struct epoll_event ee;
  (void)ev;
  (void)revents;
  memset(&ee, 0, sizeof ee);
  epoll_ctl(b->epfd, EPOLL_CTL_DEL, b->evfd, &ee); /* ENOENT: not in */
  b->stale = 1;
}

/* Tried at each step's end until it works (it needs memory: a
 * throwaway loop), the host woken every 50 ms meanwhile; the first
 * failure is reported. */
static void follow_ev_fd(tapio_loop *loop, struct tapio__backend *b) {
  int fd = find_ev_fd(loop), rc = fd < 0 ? fd : add_in(b->epfd, fd);
  if (rc < 0) {
    if (b->stale++ == 1)
      tapio__report(loop, rc,
                    "tapio_loop_backend_fd: libev made its epoll descriptor "
                    "anew and it could not be added: tried again every 50 ms",
                    NULL);
    return;
  }
  b->stale = 0;
  b->evfd = fd;
}

static void close_backend(tapio_loop *loop, struct tapio__backend *b) {
  if (ev_is_active(&b->remade)) {
    ev_ref(loop->ev);
    ev_fork_stop(loop->ev, &b->remade);
  }
  if (b->epfd >= 0)
    close(b->epfd);
  if (b->tfd >= 0)
    close(b->tfd);
  tapio__free(loop, b, sizeof *b);
}

static int make_backend(tapio_loop *loop) {
  struct tapio__backend *b = tapio__alloc(loop, sizeof *b);
  int rc;
  if (!b)
    return TAPIO_ENOMEM;
  b->armed = -1;
  b->stale = 0;
  ev_fork_init(&b->remade, on_remade);
  b->evfd = find_ev_fd(loop);
  b->epfd = epoll_create1(EPOLL_CLOEXEC);
  b->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (b->evfd < 0)
    rc = b->evfd;
  else if (b->epfd < 0 || b->tfd < 0)
    rc = tapio__from_errno(errno);
  else if ((rc = add_in(b->epfd, b->evfd)) == 0)
    rc = add_in(b->epfd, b->tfd);
  if (rc < 0) {
    close_backend(loop, b);
    return rc;
  }
  ev_fork_start(loop->ev, &b->remade);
  ev_unref(loop->ev); /* it keeps no loop running */
  loop->backend = b;
  tapio__backend_sync(loop);
  return 0;
}

int tapio_loop_backend_fd(tapio_loop *loop) {
  int rc;
  if (!loop)
    return TAPIO_EINVAL;
  if (loop->freeing)
    return TAPIO_ECLOSED;
  if (!loop->backend && (rc = make_backend(loop)) < 0)
    return rc;
  return loop->backend->epfd;
}

static void arm_now(struct tapio__backend *b) {
  struct itimerspec its;
  memset(&its, 0, sizeof its);
  its.it_value.tv_nsec = 1; /* relative: fires at once */
  timerfd_settime(b->tfd, 0, &its, NULL);
  b->armed = 0;
}

/* Work came between steps: a call queued, a watcher changed, a timer
 * started, by the host's own code (an asyncio task, a frame) rather than
 * a callback of a step, whose end syncs. The descriptor turns readable at
 * once, so a host asleep on it alone steps, and that step's sync arms it
 * to what is due. One system call until the next step. */
void tapio__backend_wake(tapio_loop *loop) {
  if (!loop->freeing && loop->backend->armed != 0)
    arm_now(loop->backend);
}

/* Arms the timerfd: at once while work is ready, else at the next
 * deadline (absolute, so the time spent until the host polls counts), or
 * never. Re-arming also clears a fired timerfd. */
void tapio__backend_sync(tapio_loop *loop) {
  struct tapio__backend *b = loop->backend;
  struct itimerspec its;
  double at = work_ready(loop) ? 0 : next_deadline(loop);
  uint64_t ticks;
  if (b->stale)
    follow_ev_fd(loop, b);
  if (b->stale) { /* still: a step soon tries again */
    double soon = tapio__now() + 0.05;
    if (at < 0 || at > soon)
      at = soon;
  }
  if (at > 1e15) /* never (infinity): no time_t holds it, so no timerfd
                    setting; one failed would leave the last one armed */
    at = -1;
  if (at == b->armed && at != 0 &&
      read(b->tfd, &ticks, sizeof ticks) < 0) /* armed, not fired */
    return;
  if (at == 0) {
    arm_now(b);
    return;
  }
  memset(&its, 0, sizeof its); /* at -1: all zero, disarmed */
  if (at > 0) {
    its.it_value.tv_sec = (time_t)at;
    its.it_value.tv_nsec = (long)((at - (double)(time_t)at) * 1e9);
    if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0)
      its.it_value.tv_nsec = 1; /* zero would disarm */
  }
  timerfd_settime(b->tfd, TFD_TIMER_ABSTIME, &its, NULL);
  b->armed = at;
}

void tapio__backend_free(tapio_loop *loop) {
  if (loop->backend)
    close_backend(loop, loop->backend);
  loop->backend = NULL;
  tapio__free(loop, loop->deadlines,
              loop->deadlines_cap * sizeof *loop->deadlines);
  loop->deadlines = NULL;
  loop->ndeadlines = loop->deadlines_cap = 0;
}
