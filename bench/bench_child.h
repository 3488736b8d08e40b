/* What the pipe and spawn benchmarks' programs share: reading their
 * arguments and printing one line of key=value figures. */
#ifndef BENCH_CHILD_H
#define BENCH_CHILD_H

#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

static inline double bench_now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* This process's own CPU time (user + system), in seconds. */
static inline double bench_cpu(void)
{
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
         (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* The pipe row's line: MB/s (10^6 bytes) and the reader's CPU per MB. */
static inline void bench_pipe_report(long long bytes, double secs,
                                     double cpu)
{
  double mb = (double)bytes / 1e6;
  printf("bytes=%lld seconds=%.4f MBps=%.1f cpu_us_per_MB=%.1f\n", bytes,
         secs, mb / secs, cpu * 1e6 / mb);
}

/* The spawn row's line: children started and reaped per second, and the
 * parent's CPU per child. */
static inline void bench_spawn_report(int children, double secs, double cpu)
{
  printf("children=%d seconds=%.4f spawns_per_s=%.1f cpu_us_per_spawn=%.1f"
         "\n", children, secs, children / secs, cpu * 1e6 / children);
}

#endif
