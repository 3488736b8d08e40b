/* What tapio's SIGPIPE guard costs a write to a pipe: N small writes
 * (each read back at once, so the pipe never fills) plain, and inside the
 * pthread_sigmask block/restore pair tapio's pipe writes use (pipe.c).
 *
 *   sigpipe_cost [N] [SIZE]
 *
 * Prints nanoseconds per write for both and the difference. */
#define _GNU_SOURCE
#include "bench_child.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

static double run(int fds[2], int n, size_t size, int guarded)
{
  char buf[4096];
  sigset_t pipe_only, old;
  double t0 = bench_now();
  int i;
  sigemptyset(&pipe_only);
  sigaddset(&pipe_only, SIGPIPE);
  memset(buf, 'x', sizeof buf);
  for (i = 0; i < n; i++) {
    if (guarded)
      pthread_sigmask(SIG_BLOCK, &pipe_only, &old);
    if (write(fds[1], buf, size) != (ssize_t)size)
      exit(1);
    if (guarded)
      pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (read(fds[0], buf, size) != (ssize_t)size)
      exit(1);
  }
  return (bench_now() - t0) * 1e9 / n;
}

int main(int argc, char **argv)
{
  int n = argc > 1 ? atoi(argv[1]) : 1000000;
  size_t size = argc > 2 ? (size_t)atoi(argv[2]) : 64;
  double plain = 1e300, guarded = 1e300;
  int fds[2], round;
  if (size > 4096 || pipe2(fds, O_CLOEXEC) < 0)
    return 1;
  for (round = 0; round < 5; round++) { /* best of 5, alternating */
    double p = run(fds, n, size, 0), g = run(fds, n, size, 1);
    plain = p < plain ? p : plain;
    guarded = g < guarded ? g : guarded;
  }
  printf("size=%zu plain_ns_per_write=%.0f guarded_ns_per_write=%.0f "
         "guard_ns=%.0f\n", size, plain, guarded, guarded - plain);
  return 0;
}
