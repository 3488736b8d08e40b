/* The pipe benchmark's reference: a plain C reader on libev, written the
 * way a careful C programmer would. Starts SOURCE (pipe_source) with its
 * stdout on a pipe (posix_spawn, as tapio starts children), reads it with
 * one ev_io into a 256 KiB page-aligned buffer until EOF, reaps it.
 *
 *   pipe_libev SOURCE BYTES
 *
 * Prints bytes, seconds, MB/s and this process's CPU per MB. */
#define _GNU_SOURCE
#include "bench_child.h"

#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static _Alignas(4096) char buf[256 * 1024];
static long long received;

static void on_read(struct ev_loop *loop, ev_io *w, int revents)
{
  ssize_t n = read(w->fd, buf, sizeof buf);
  (void)revents;
  if (n > 0) {
    received += n;
    return;
  }
  if (n < 0 && (errno == EAGAIN || errno == EINTR))
    return;
  ev_io_stop(loop, w);
}

int main(int argc, char **argv)
{
  struct ev_loop *loop = ev_loop_new(EVBACKEND_EPOLL);
  posix_spawn_file_actions_t fa;
  char *args[3];
  int fds[2], status;
  double t0, c0;
  pid_t pid;
  ev_io io;
  if (argc < 3) {
    fprintf(stderr, "usage: pipe_libev SOURCE BYTES\n");
    return 2;
  }
  args[0] = argv[1];
  args[1] = argv[2];
  args[2] = NULL;
  t0 = bench_now();
  c0 = bench_cpu();
  if (pipe2(fds, O_CLOEXEC) < 0)
    return 1;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
  if (posix_spawn(&pid, argv[1], &fa, NULL, args, environ) != 0)
    return 1;
  close(fds[1]);
  fcntl(fds[0], F_SETFL, O_NONBLOCK);
  ev_io_init(&io, on_read, fds[0], EV_READ);
  ev_io_start(loop, &io);
  ev_run(loop, 0);
  waitpid(pid, &status, 0);
  bench_pipe_report(received, bench_now() - t0, bench_cpu() - c0);
  return received == atoll(argv[2]) ? 0 : 1;
}
