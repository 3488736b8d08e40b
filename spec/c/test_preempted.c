/* A loop preempted while it starts a timer: a timer never fires before
 * its time, however far the clock moves between the readings the loop
 * takes as it starts the timer (a loaded machine deschedules the thread
 * there; under valgrind each reading is a system call, a likely place).
 *
 * The test's clock_gettime stands in for the C library's, for tapio and
 * libev alike: the monotonic clock, plus an offset that grows by JUMP at
 * every reading while `jumping` is set; the clock stays monotonic, it only
 * runs fast while the loop starts the timer. */
#include "test.h"

#include <sys/syscall.h>

#define JUMP 0.05
#define DELAY 0.5 /* more than JUMP times the readings call_at takes */

static int jumping, readings;
static int64_t offset_ns;

int clock_gettime(clockid_t id, struct timespec *ts)
{
  int64_t ns;
  if (syscall(SYS_clock_gettime, id, ts) != 0)
    return -1;
  if (id != CLOCK_MONOTONIC)
    return 0;
  if (jumping) {
    offset_ns += (int64_t)(JUMP * 1e9);
    readings++;
  }
  ns = (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec + offset_ns;
  ts->tv_sec = (time_t)(ns / 1000000000);
  ts->tv_nsec = (long)(ns % 1000000000);
  return 0;
}

/* When a call ran, on its loop's clock. */
typedef struct ran {
  tapio_loop *loop;
  double at;
} ran;

static void note_time(void *ud)
{
  ran *r = ud;
  r->at = tapio_loop_time(r->loop);
}

/* The loop's clock is the test's: it jumps at each reading while
 * jumping (else this test would prove nothing). */
static void preempted_clock_reaches_tapio(void)
{
  tapio_loop *loop = new_loop();
  double t0 = tapio_loop_time(loop), t1;
  jumping = 1;
  t1 = tapio_loop_time(loop);
  jumping = 0;
  CHECK(t1 - t0 >= JUMP);
  free_loop(loop);
}

/* call_at(when) with the clock moving at each reading inside it: the call
 * runs at `when` or later on the loop's clock, never before. */
static void preempted_call_at_not_early(void)
{
  tapio_loop *loop = new_loop();
  ran r = { loop, -1 };
  double when = tapio_loop_time(loop) + DELAY;
  jumping = 1;
  CHECK_OK(tapio_call_at(loop, when, note_time, &r, NULL));
  jumping = 0;
  /* the clock has not passed `when` by itself: a call JUMP early shows */
  CHECK((readings + 1) * JUMP < DELAY);
  WAIT_FOR(loop, r.at >= 0);
  if (r.at < when)
    FAIL("the call ran %.4f s before its time", when - r.at);
  free_loop(loop);
}

TEST_MAIN(TEST(preempted_clock_reaches_tapio),
          TEST(preempted_call_at_not_early))
