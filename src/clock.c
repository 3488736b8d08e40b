/* The testing kit's clock: a loop whose time moves only when a test moves
 * it. Every timer of the core is a tapio__timer; on such a loop it lives
 * in the loop's heap of deadlines alone (backend.c), and the runs below
 * fire it when the clock reaches its due time, earliest first, with the
 * clock set to that time. A run never sleeps: it handles what is ready,
 * moves the clock to the next due timer only while a tapio_call_idle or
 * tapio_loop_advance wants it further, and returns once nothing is left
 * at the time it may reach. Twisted's task.Clock and trio's MockClock
 * are the anchors; unlike the first, the loop itself runs, so the
 * protocol code under test is the same as on a real loop. */
#include "tapio_int.h"

#include <math.h>
#include <unistd.h>

tapio__kit *tapio__kit_get(tapio_loop *loop) {
  tapio__kit *kit = loop->kit;
  if (kit)
    return kit;
  kit = tapio__calloc(loop, sizeof *kit);
  if (!kit)
    return NULL;
  tapio__list_init(&kit->idle);
  tapio__list_init(&kit->ends);
  tapio__list_init(&kit->vnet);
  kit->inert_fd = -1;
  kit->horizon = -1;
  kit->step_limit = TAPIO_STEP_LIMIT;
  loop->kit = kit;
  return kit;
}

void tapio__kit_free(tapio_loop *loop) {
  if (!loop->kit)
    return;
  if (loop->kit->inert_fd >= 0)
    close(loop->kit->inert_fd);
  tapio__fakes_free(loop);
  tapio__free(loop, loop->kit, sizeof *loop->kit);
  loop->kit = NULL;
}

int tapio_loop_new_virtual(tapio_loop **out, tapio_alloc_fn alloc,
                           void *ud) {
  int rc = tapio_loop_new_with_allocator(out, alloc ? alloc
                                                    : tapio__default_alloc,
                                         ud);
  tapio__kit *kit;
  if (rc < 0)
    return rc;
  kit = tapio__kit_get(*out);
  if (!kit) {
    tapio_loop_free(*out);
    *out = NULL;
    return TAPIO_ENOMEM;
  }
  kit->virtual = 1;
  return 0;
}

int tapio_loop_is_virtual(tapio_loop *loop) {
  return loop ? tapio__virtual(loop) : 0;
}

double tapio_loop_next_timer(tapio_loop *loop) {
  return loop ? tapio__deadline_next(loop) : -1;
}

size_t tapio_loop_transport_count(tapio_loop *loop) {
  size_t n = 0;
  tapio__link *l;
  if (!loop)
    return 0;
  for (l = loop->transports.next; l != &loop->transports; l = l->next)
    n++;
  return n;
}

/* ---- Runs ---------------------------------------------------------------- */

/* How far the clock may move: tapio_loop_advance's target; else, while
 * a tapio_call_idle is pending, up to it (next_move never passes the
 * first one); else nowhere (-1). */
static double horizon(tapio_loop *loop) {
  if (loop->kit->horizon >= 0)
    return loop->kit->horizon;
  return tapio__idle_next(loop) >= 0 ? INFINITY : -1;
}

static int timer_due(tapio_loop *loop) {
  double next = tapio__deadline_next(loop);
  return next >= 0 && next <= loop->kit->now;
}

/* Something to run at the clock's time (a memory pair's side woken for
 * what its link holds is: libev's prepare phase would wake it only in
 * the next iteration). */
static int ready(tapio_loop *loop) {
  return loop->ready_head || !tapio__list_empty(&loop->due) ||
         timer_due(loop) || tapio__memory_poll(loop) > 0;
}

/* The next thing that moves the clock, within the horizon: a timer (first
 * at the same time) or a tapio_call_idle; -1 when none. Sets *idle when
 * it is the call. A timer at infinity (call_later(inf), a sleep for
 * ever) is never due, as on a real loop: the clock never gets there. */
static double next_move(tapio_loop *loop, int *idle) {
  double h = horizon(loop), timer = tapio__deadline_next(loop),
         call = tapio__idle_next(loop);
  *idle = 0;
  if (timer >= 0 && timer <= h && isfinite(timer) &&
      (call < 0 || timer <= call))
    return timer;
  if (call >= 0 && call <= h) {
    *idle = 1;
    return call;
  }
  return -1;
}

int tapio__vclock_busy(tapio_loop *loop) {
  int idle;
  if (!tapio__virtual(loop))
    return 0;
  return ready(loop) || next_move(loop, &idle) >= 0;
}

/* Nothing is ready: the clock moves to the next due time; the calls
 * waiting for the loop to be idle there are queued. */
static void move_clock(tapio_loop *loop) {
  int idle;
  double to = next_move(loop, &idle);
  if (to < 0)
    return;
  if (to > loop->kit->now)
    loop->kit->now = to;
  if (idle)
    tapio__idle_post(loop);
}

/* The timers due at the clock's time, earliest first, as libev's timer
 * phase fires them: only those in the heap when it begins, so that one
 * restarting itself at once waits for the next step. */
static void fire_due(tapio_loop *loop) {
  size_t n = tapio__deadline_count(loop);
  while (n-- > 0 && timer_due(loop)) {
    tapio__deadline *d = tapio__deadline_first(loop);
    tapio__timer *tm = TAPIO_CONTAINER(d, tapio__timer, dl);
    tapio__deadline_clear(loop, d);
    tm->fn(tm);
  }
}

/* One step: the clock moves if nothing is ready, timers due fire, then
 * one iteration of libev that does not wait (the wakeup of
 * call_soon_threadsafe, the queued calls). */
static void step(tapio_loop *loop) {
  if (!ready(loop))
    move_clock(loop);
  fire_due(loop);
  ev_run(loop->ev, EVRUN_NOWAIT);
}

/* Steps are counted while the clock stays where it is: code that makes
 * itself ready again and again (a call_soon that calls call_soon, a task
 * sleeping 0 in a loop) would hold a run at one time for ever, where a
 * real loop's time would move on; the run ends with TAPIO_ESPIN instead.
 * A real loop never comes here. */
int tapio__vclock_run(tapio_loop *loop, int once) {
  tapio__kit *kit = loop->kit;
  double at = kit->now;
  uint64_t steps = 0;
  for (;;) {
    step(loop);
    if (once || loop->stop_requested || loop->syserr ||
        !tapio__vclock_busy(loop))
      return 0;
    if (kit->now != at) {
      at = kit->now;
      steps = 0;
    }
    if (++steps == kit->step_limit)
      return TAPIO_ESPIN;
  }
}

static int check_virtual(tapio_loop *loop) {
  if (!loop)
    return TAPIO_EINVAL;
  if (!tapio__virtual(loop))
    return TAPIO_ENOTSUP;
  if (loop->freeing)
    return TAPIO_ECLOSED;
  return loop->running ? TAPIO_ERUNNING : 0;
}

int tapio_loop_set_step_limit(tapio_loop *loop, uint64_t steps) {
  if (!loop || !tapio__virtual(loop))
    return loop ? TAPIO_ENOTSUP : TAPIO_EINVAL;
  loop->kit->step_limit = steps;
  return 0;
}

uint64_t tapio_loop_step_limit(tapio_loop *loop) {
  return loop && tapio__virtual(loop) ? loop->kit->step_limit : 0;
}

int tapio_loop_advance(tapio_loop *loop, double seconds) {
  tapio__kit *kit;
  int rc = check_virtual(loop);
  if (rc == 0 && (isnan(seconds) ||
                  (seconds > 0 && !isfinite(loop->kit->now + seconds))))
    rc = TAPIO_EINVAL; /* the clock stays finite: see next_move */
  if (rc < 0)
    return rc;
  kit = loop->kit;
  kit->horizon = tapio__vround(kit->now + (seconds > 0 ? seconds : 0));
  rc = tapio_loop_run(loop);
  /* a stop from a callback leaves the clock where it was then */
  if (rc == 0 && !tapio__vclock_busy(loop) && kit->now < kit->horizon)
    kit->now = kit->horizon;
  kit->horizon = -1;
  return rc;
}

int tapio_loop_run_until_idle(tapio_loop *loop) {
  return tapio_loop_advance(loop, 0);
}
