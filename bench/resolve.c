/* The resolver benchmark's tapio side: COUNT lookups of distinct names,
 * INFLIGHT of them at a time, through tapio_getaddrinfo (c-ares on the
 * loop, no thread), as the system's resolver configuration says
 * (resolv.conf; run.sh gives it one that names the tests' DNS server).
 *
 *   resolve COUNT INFLIGHT
 *
 * Names are n<i>.bench.tapio.test, which the tests' DNS server answers
 * with 127.0.0.1. Prints one line of key=value pairs: lookups, secs,
 * lps (lookups per second), failed. */
#include "tapio.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

typedef struct bench {
  tapio_loop *loop;
  int count, started, done, failed;
} bench;

static void start_one(bench *b);

static void on_answer(void *ud, int status, const tapio_addrinfo *res)
{
  bench *b = ud;
  (void)res;
  b->done++;
  b->failed += status != 0;
  if (b->started < b->count)
    start_one(b);
  else if (b->done == b->count)
    tapio_loop_stop(b->loop);
}

static void start_one(bench *b)
{
  char name[64];
  snprintf(name, sizeof name, "n%d.bench.tapio.test", b->started++);
  if (tapio_getaddrinfo(b->loop, name, "80", TAPIO_AF_INET,
                        TAPIO_SOCK_STREAM, 0, on_answer, b) < 0) {
    fprintf(stderr, "resolve: getaddrinfo refused\n");
    exit(1);
  }
}

static double now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
  bench b = { 0 };
  int inflight = argc > 2 ? atoi(argv[2]) : 0, i;
  double t0, secs;
  b.count = argc > 1 ? atoi(argv[1]) : 0;
  if (b.count <= 0 || inflight <= 0) {
    fprintf(stderr, "usage: resolve COUNT INFLIGHT\n");
    return 2;
  }
  if (tapio_loop_new(&b.loop) < 0)
    return 1;
  t0 = now();
  for (i = 0; i < inflight && b.started < b.count; i++)
    start_one(&b);
  tapio_loop_run(b.loop);
  secs = now() - t0;
  printf("mode=resolve lookups=%d secs=%.3f lps=%.1f failed=%d\n", b.done,
         secs, b.done / secs, b.failed);
  tapio_loop_free(b.loop);
  return b.failed != 0;
}
