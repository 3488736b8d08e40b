/* The worker pool's round trip: empty jobs (tapio_queue_work) run one at
 * a time (each queued from the last one's done: the latency of a job,
 * two thread switches and a loop wakeup) and 64 in flight (the pool's
 * throughput), with 1 and 4 threads.
 * Usage: bench_work [jobs]   (200000 by default) */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "tapio.h"

typedef struct run {
  tapio_loop *loop;
  long left, done, total;
} run;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void empty(void *ud) { (void)ud; }

static void done(void *ud, int status) {
  run *r = ud;
  if (status != 0) {
    fprintf(stderr, "bench_work: job failed: %s\n", tapio_strerror(status));
    exit(1);
  }
  if (++r->done == r->total)
    tapio_loop_stop(r->loop);
  if (r->left > 0) {
    r->left--;
    if (tapio_queue_work(r->loop, empty, done, r, NULL) < 0)
      exit(1);
  }
}

/* jobs empty jobs, inflight at a time, on a pool of threads. */
static void measure(long jobs, int inflight, int threads) {
  run r;
  double t0, secs;
  int i;
  if (tapio_loop_new(&r.loop) < 0 ||
      tapio_loop_set_threadpool_size(r.loop, threads) < 0)
    exit(1);
  r.left = jobs - inflight;
  r.done = 0;
  r.total = jobs;
  t0 = now();
  for (i = 0; i < inflight; i++)
    if (tapio_queue_work(r.loop, empty, done, &r, NULL) < 0)
      exit(1);
  tapio_loop_run(r.loop);
  secs = now() - t0;
  printf("%d thread%s, %2d in flight: %8.0f jobs/s  %6.2f us a job\n",
         threads, threads > 1 ? "s" : " ", inflight, r.done / secs,
         secs / r.done * 1e6);
  tapio_loop_free(r.loop);
}

int main(int argc, char **argv) {
  long jobs = argc > 1 ? atol(argv[1]) : 200000;
  measure(jobs, 1, 1);
  measure(jobs, 1, 4);
  measure(jobs, 64, 1);
  measure(jobs, 64, 4);
  return 0;
}
