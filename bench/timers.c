/* Timers: how fast tapio schedules timers and runs them when many fall
 * due together.
 *
 *   timers [N...]        (default: 10000 100000 1000000)
 *
 * For each N, a fresh loop schedules N timers with tapio_call_at, due at
 * times spread over one millisecond in a shuffled order and half of them
 * at one same time, all already in the past: as after a stall, every one
 * is due when the loop next looks. Then the loop runs until all have run.
 * One line per N:
 *
 *   timers <N> <scheduled_per_s> <fired_per_s>
 *
 * Both rates should stay about flat as N grows (they fall slowly, as
 * libev's heap and tapio's sort are N log N); a rate that falls with N is
 * a quadratic cost. Written only against capi/tapio.h. */
#include "tapio.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void count(void *ud)
{
  ++*(long *)ud;
}

static int run(long n)
{
  tapio_loop *loop;
  double base, t0, scheduled, fired;
  unsigned rnd = 12345;
  long i, ran = 0;
  int rc = tapio_loop_new(&loop);
  if (rc < 0) {
    fprintf(stderr, "timers: %s\n", tapio_strerror(rc));
    return 1;
  }
  base = tapio_loop_time(loop) - 1;
  t0 = now();
  for (i = 0; i < n && rc == 0; i++) {
    rnd = rnd * 1103515245u + 12345u;
    rc = tapio_call_at(loop, i % 2 ? base : base + (rnd % 1000) * 1e-6,
                       count, &ran, NULL);
  }
  scheduled = now() - t0;
  t0 = now();
  while (rc == 0 && ran < n)
    rc = tapio_loop_run_once(loop, 0);
  fired = now() - t0;
  tapio_loop_free(loop);
  if (rc < 0) {
    fprintf(stderr, "timers: %s\n", tapio_strerror(rc));
    return 1;
  }
  printf("timers %ld %.0f %.0f\n", n, n / scheduled, n / fired);
  fflush(stdout);
  return 0;
}

int main(int argc, char **argv)
{
  static const long defaults[] = { 10000, 100000, 1000000 };
  int i;
  if (argc > 1) {
    for (i = 1; i < argc; i++)
      if (atol(argv[i]) <= 0 || run(atol(argv[i])) != 0)
        return 1;
    return 0;
  }
  for (i = 0; i < 3; i++)
    if (run(defaults[i]) != 0)
      return 1;
  return 0;
}
