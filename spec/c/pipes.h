/* What the pipe and subprocess tests share: making pipe transports and
 * waiting for them, ptys, FIFOs, descriptor checks. */
#ifndef TAPIO_TEST_PIPES_H
#define TAPIO_TEST_PIPES_H

#include "test.h"

#include <signal.h>
#include <sys/stat.h>
#include <termios.h>

/* r made on fd as a read pipe (writing 0) or a write pipe; waits for the
 * completion and returns its status. */
static inline int connect_pipe(tapio_loop *loop, int fd, int writing, rec *r)
{
  conn_wait w = { 0 };
  w.r = r;
  if (writing)
    CHECK_OK(tapio_connect_write_pipe(loop, fd, &rec_proto, r, NULL,
                                      on_connected, &w));
  else
    CHECK_OK(tapio_connect_read_pipe(loop, fd, &rec_proto, r, NULL,
                                     on_connected, &w));
  return connect_wait(loop, &w);
}

/* pipe2 with close-on-exec; blocking ends. */
static inline void make_pipe(int fds[2])
{
  CHECK(pipe2(fds, O_CLOEXEC) == 0);
}

static inline int is_nonblocking(int fd)
{
  int fl = fcntl(fd, F_GETFL);
  CHECK(fl >= 0);
  return (fl & O_NONBLOCK) != 0;
}

static inline int fd_is_open(int fd)
{
  return fcntl(fd, F_GETFD) >= 0;
}

/* A pty in raw mode (bytes pass unchanged, no echo): *master, *slave. */
static inline void make_pty(int *master, int *slave)
{
  struct termios tio;
  int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC), s;
  CHECK(m >= 0);
  CHECK(grantpt(m) == 0 && unlockpt(m) == 0);
  s = open(ptsname(m), O_RDWR | O_NOCTTY | O_CLOEXEC);
  CHECK(s >= 0);
  CHECK(tcgetattr(s, &tio) == 0);
  cfmakeraw(&tio);
  CHECK(tcsetattr(s, TCSANOW, &tio) == 0);
  *master = m;
  *slave = s;
}

/* A FIFO in a fresh directory; path gets its name (remove with
 * fifo_remove). */
static inline void make_fifo(char *path, size_t size)
{
  char dir[] = "/tmp/tapio-fifo-XXXXXX";
  CHECK(mkdtemp(dir) != NULL);
  snprintf(path, size, "%s/fifo", dir);
  CHECK(mkfifo(path, 0600) == 0);
}

static inline void fifo_remove(const char *path)
{
  char dir[256];
  snprintf(dir, sizeof dir, "%s", path);
  *strrchr(dir, '/') = '\0';
  CHECK(unlink(path) == 0);
  CHECK(rmdir(dir) == 0);
}

/* Whether SIGPIPE is pending for this thread. */
static inline int sigpipe_pending(void)
{
  sigset_t set;
  CHECK(sigpending(&set) == 0);
  return sigismember(&set, SIGPIPE);
}

/* Reads what fd has until EOF (or cap bytes), running the loop while it
 * waits; fd is non-blocking. Returns the count; *eof tells if EOF came. */
static inline size_t read_fd_all(tapio_loop *loop, int fd, char *buf,
                                 size_t cap, int *eof)
{
  size_t got = 0;
  *eof = 0;
  while (got < cap) {
    ssize_t k = read(fd, buf + got, cap - got);
    if (k == 0) {
      *eof = 1;
      break;
    }
    if (k < 0 && errno == EAGAIN) {
      if (!raw_wait(loop, fd, POLLIN))
        FAIL("read timed out after %zu bytes", got);
      continue;
    }
    if (k < 0 && errno == EIO) { /* a pty master once the slave closed */
      *eof = 1;
      break;
    }
    CHECK(k > 0);
    got += (size_t)k;
  }
  return got;
}

/* Writes all of data to a non-blocking fd, running the loop meanwhile. */
static inline void write_fd_all(tapio_loop *loop, int fd, const void *data,
                                size_t n)
{
  const char *p = data;
  while (n > 0) {
    ssize_t k = write(fd, p, n);
    if (k < 0 && errno == EAGAIN) {
      if (!raw_wait(loop, fd, POLLOUT))
        FAIL("write timed out");
      continue;
    }
    CHECK(k > 0);
    p += k;
    n -= (size_t)k;
  }
}

#endif
