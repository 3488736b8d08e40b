/* The plain I/O layers a stream transport reads and writes through: a
 * socket. (A TLS layer implements the same tapio__io.) */
#include "tapio_int.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

static ssize_t code_of(ssize_t r) {
  return r >= 0 ? r : tapio__from_errno(errno);
}

static ssize_t socket_read(tapio__stream *s, void *ctx, void *buf,
                           size_t len) {
  (void)ctx;
  ssize_t n;
  do
    n = read(s->rio.fd, buf, len);
  while (n < 0 && errno == EINTR);
  return code_of(n);
}

/* send() and sendmsg() with MSG_NOSIGNAL: a peer gone away is EPIPE, never
 * a SIGPIPE to the process. */
static ssize_t socket_writev(tapio__stream *s, void *ctx,
                             const struct iovec *iov, int n) {
  ssize_t r;
  (void)ctx;
  do {
    if (n == 1) { /* the common case: one buffer, no msghdr to fill */
      r = send(s->wio.fd, iov->iov_base, iov->iov_len, MSG_NOSIGNAL);
    } else {
      struct msghdr msg;
      memset(&msg, 0, sizeof msg);
      msg.msg_iov = (struct iovec *)iov;
      msg.msg_iovlen = (size_t)n;
      r = sendmsg(s->wio.fd, &msg, MSG_NOSIGNAL);
    }
  } while (r < 0 && errno == EINTR);
  return code_of(r);
}

static int socket_shutdown(tapio__stream *s, void *ctx) {
  (void)ctx;
  return shutdown(s->wio.fd, SHUT_WR) < 0 ? tapio__from_errno(errno) : 0;
}

const tapio__io tapio__socket_io = {.read = socket_read,
                                    .writev = socket_writev,
                                    .shutdown = socket_shutdown};
