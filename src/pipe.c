/* Pipe transports: asyncio's ReadTransport and WriteTransport on a pipe, a
 * FIFO, a character device or a socket. Both are stream bodies (stream.c
 * does their reading, writing, flow control and closing) that can only
 * read or only write, with I/O layers of their own: a pty master's EIO is
 * the end of the input, and a write to a pipe never raises SIGPIPE. A
 * write pipe also watches for its reader going away. */
#include "tapio_int.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kcmp.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

typedef struct tapio__pipe {
  tapio__stream s;
  int restore_blocking; /* O_NONBLOCK was not set when fd was given */
  int watch_reader;     /* write pipe: readiness means the reader left */
} tapio__pipe;

static tapio__pipe *to_pipe(tapio_transport *t) {
  return TAPIO_CONTAINER(tapio__to_stream(t), tapio__pipe, s);
}

/* ---- I/O layers -------------------------------------------------------- */

static ssize_t code_of(ssize_t r) {
  return r >= 0 ? r : tapio__from_errno(errno);
}

/* A pty master reads EIO once its slave is closed: that is end of file,
 * as uvloop and libuv take it (a pipe never reads EIO). */
static ssize_t pipe_read(tapio__stream *s, void *ctx, void *buf, size_t len) {
  ssize_t n;
  (void)ctx;
  do
    n = read(s->rio.fd, buf, len);
  while (n < 0 && errno == EINTR);
  return n < 0 && errno == EIO ? 0 : code_of(n);
}

static ssize_t write_fd(int fd, const struct iovec *iov, int n) {
  ssize_t r;
  do
    r = n == 1 ? write(fd, iov->iov_base, iov->iov_len) : writev(fd, iov, n);
  while (r < 0 && errno == EINTR);
  return r;
}

/* A character device (a terminal) never raises SIGPIPE. */
static ssize_t chr_writev(tapio__stream *s, void *ctx,
                          const struct iovec *iov, int n) {
  (void)ctx;
  return code_of(write_fd(s->wio.fd, iov, n));
}

/* A system call that can raise SIGPIPE and has no MSG_NOSIGNAL (write()
 * to a pipe, sendfile(2) to a socket): SIGPIPE is blocked in this thread
 * around it, and the one a call that failed with EPIPE raised (directed
 * at this thread, so pending here) is taken back before the mask is
 * restored. Two system calls around it; a SIGPIPE already blocked by the
 * caller is left alone. The disposition of SIGPIPE is never touched. */
void tapio__sigpipe_block(sigset_t *old) {
  sigset_t pipe_only;
  sigemptyset(&pipe_only);
  sigaddset(&pipe_only, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_only, old);
}

void tapio__sigpipe_restore(const sigset_t *old, int epipe) {
  static const struct timespec zero = {0, 0};
  sigset_t pipe_only;
  int err = errno;
  sigemptyset(&pipe_only);
  sigaddset(&pipe_only, SIGPIPE);
  if (epipe && !sigismember(old, SIGPIPE))
    while (sigtimedwait(&pipe_only, NULL, &zero) < 0 && errno == EINTR)
      ;
  pthread_sigmask(SIG_SETMASK, old, NULL);
  errno = err;
}

static ssize_t pipe_writev(tapio__stream *s, void *ctx,
                           const struct iovec *iov, int n) {
  sigset_t old;
  ssize_t r;
  (void)ctx;
  tapio__sigpipe_block(&old);
  r = write_fd(s->wio.fd, iov, n);
  tapio__sigpipe_restore(&old, r < 0 && errno == EPIPE);
  return code_of(r);
}

static const tapio__io pipe_io = {.read = pipe_read, .writev = pipe_writev};
static const tapio__io chr_io = {.read = pipe_read, .writev = chr_writev};

/* A character device whose driver cannot poll (/dev/zero: epoll refuses
 * it). libev takes its watcher all the same and calls it at every poll,
 * polling without waiting meanwhile; but nothing turns the loop's
 * descriptor readable for it, so a host asleep on that descriptor read it
 * in one step and never again. Read for, it always has more, as a layer
 * holding bytes: the stream reads on from the ready queue (stream.c's
 * read_held and read_more), until paused or at its end. */
static int always_more(tapio__stream *s, void *ctx) {
  (void)s;
  (void)ctx;
  return 1;
}

static const tapio__io unpolled_io = {
  .read = pipe_read, .writev = chr_writev, .pending = always_more};

/* ---- The kinds' steps -------------------------------------------------- */

static void on_reader_gone(struct ev_loop *ev, ev_io *w, int revents) {
  tapio__stream *s = TAPIO_CONTAINER(w, tapio__stream, rio);
  (void)ev;
  (void)revents;
  tapio__transport_force_close(&s->head, TAPIO_EPIPE, NULL);
}

/* The write end of a pipe reports an error (EPOLLERR) once the last reader
 * is gone: watched for reading, it wakes then, also while nothing is
 * written. stream.c's close stops the watcher (the transport is no longer
 * reading) and a flush meets EPIPE itself. */
static void write_pipe_start(tapio_transport *t) {
  tapio__pipe *p = to_pipe(t);
  if (p->watch_reader && !(t->flags & TAPIO__T_CLOSING))
    ev_io_start(t->loop->ev, &p->s.rio);
}

static int is_pipe(const tapio_transport *t);

/* Whether descriptors a and b share one open file description (one is a
 * dup of the other), and so its O_NONBLOCK. Where kcmp is refused (a
 * seccomp filter), the same file is taken for the same description. */
static int same_description(int a, int b) {
  struct stat sa, sb;
  long r = syscall(SYS_kcmp, (long)getpid(), (long)getpid(), KCMP_FILE,
                   (long)a, (long)b);
  if (r >= 0)
    return r == 0;
  return fstat(a, &sa) == 0 && fstat(b, &sb) == 0 &&
         sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/* Another pipe transport of the loop on fd's description, or NULL. */
static tapio__pipe *sharing(tapio_transport *t, int fd) {
  tapio__link *l;
  for (l = t->loop->transports.next; l != &t->loop->transports;
       l = l->next) {
    tapio_transport *o = TAPIO_CONTAINER(l, tapio_transport, link);
    int ofd = o != t && is_pipe(o) ? to_pipe(o)->s.rio.fd : -1;
    if (ofd >= 0 && same_description(fd, ofd))
      return to_pipe(o);
  }
  return NULL;
}

/* Stops, gives the descriptor its blocking mode back and closes it. A
 * description another pipe transport of the loop still reads or writes
 * through (a socket and its dup as a read and a write pipe) stays
 * non-blocking: that one puts the mode back when it goes (made blocking
 * under it, its writes would block the loop). */
static void pipe_release_fd(tapio_transport *t) {
  tapio__pipe *p = to_pipe(t), *other;
  int fd = p->s.rio.fd;
  tapio__stream_halt(t);
  if (fd < 0)
    return; /* shed already */
  if (p->restore_blocking && (other = sharing(t, fd)) != NULL) {
    other->restore_blocking = 1;
  } else if (p->restore_blocking) {
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0)
      fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
  }
  close(fd);
  p->s.rio.fd = p->s.wio.fd = -1;
}

static void pipe_destroy(tapio_transport *t) {
  pipe_release_fd(t);
  tapio__free(t->loop, to_pipe(t), sizeof(tapio__pipe));
}

static const tapio__kind read_pipe_kind = {
  TAPIO_TRANSPORT_READ_PIPE,
  TAPIO__READ_PIPE_CAPS,
  sizeof(tapio_protocol),
  tapio__stream_start, tapio__stream_close, tapio__stream_halt,
  pipe_destroy, tapio__stream_fd, pipe_release_fd, tapio__stream_reading
};

static const tapio__kind write_pipe_kind = {
  TAPIO_TRANSPORT_WRITE_PIPE,
  TAPIO__WRITE_PIPE_CAPS,
  sizeof(tapio_protocol),
  write_pipe_start, tapio__stream_close, tapio__stream_halt,
  pipe_destroy, tapio__stream_fd, pipe_release_fd, NULL
};

static int is_pipe(const tapio_transport *t) {
  return t->kind == &read_pipe_kind || t->kind == &write_pipe_kind;
}

/* ---- Making them ------------------------------------------------------- */

/* What fd is decides the I/O layer: sockets send with MSG_NOSIGNAL, pipes
 * block SIGPIPE, terminals need neither, a device that cannot poll is read
 * on and on. Anything else (a regular file or a directory, always "ready")
 * is refused, as asyncio refuses it. */
static int classify(int fd, int writing, const tapio__io **io,
                    int *watch) {
  struct stat st;
  int rc;
  if (fstat(fd, &st) < 0)
    return tapio__from_errno(errno);
  *watch = !S_ISCHR(st.st_mode);
  if (S_ISSOCK(st.st_mode))
    *io = &tapio__socket_io;
  else if (S_ISFIFO(st.st_mode))
    *io = &pipe_io;
  else if (!S_ISCHR(st.st_mode))
    return TAPIO_EINVAL;
  else if (writing || (rc = tapio__fd_pollable(fd, &st)) == 0)
    *io = &chr_io;
  else if (rc == TAPIO_EPERM)
    *io = &unpolled_io;
  else
    return rc; /* no descriptor left to ask with */
  return 0;
}

int tapio__pipe_new(tapio_loop *loop, int fd, int writing, const void *proto,
                    void *ud, tapio_transport **out) {
  const tapio__io *io = NULL;
  tapio__pipe *p;
  int watch = 0, fl, rc = classify(fd, writing, &io, &watch);
  *out = NULL;
  if (rc < 0)
    return rc;
  fl = fcntl(fd, F_GETFL);
  if (fl < 0 || (!(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0))
    return tapio__from_errno(errno);
  p = tapio__calloc(loop, sizeof *p);
  if (!p) {
    if (!(fl & O_NONBLOCK))
      fcntl(fd, F_SETFL, fl);
    return TAPIO_ENOMEM;
  }
  p->restore_blocking = !(fl & O_NONBLOCK);
  p->watch_reader = writing && watch;
  tapio__stream_init(&p->s, writing ? &write_pipe_kind : &read_pipe_kind,
                     loop, fd, io, proto, ud);
  if (writing)
    ev_set_cb(&p->s.rio, on_reader_gone);
  *out = &p->s.head;
  return 0;
}

/* connect_read_pipe and connect_write_pipe: tapio owns fd from here on. */
static int connect_pipe(tapio_loop *loop, int fd, int writing,
                        const tapio_protocol *proto, void *proto_ud,
                        const tapio_options *opts, tapio_connect_fn cb,
                        void *cb_ud) {
  tapio_transport *t = NULL;
  int rc = 0;
  tapio__refuse_none(loop);
  if (!loop || !cb || tapio__proto_check(proto, sizeof *proto) < 0)
    rc = TAPIO_EINVAL;
  else if (fd < 0)
    rc = TAPIO_EBADF;
  else
    rc = tapio__io_refused(loop);
  if (rc == 0)
    rc = tapio__opts_check(loop, opts,
                           writing ? TAPIO_CALL_CONNECT_WRITE_PIPE
                                   : TAPIO_CALL_CONNECT_READ_PIPE);
  if (rc == 0)
    rc = tapio__pipe_new(loop, fd, writing, proto, proto_ud, &t);
  if (rc < 0) {
    if (fd >= 0)
      close(fd);
    return rc;
  }
  rc = tapio__request_transport(loop, t, cb, cb_ud);
  if (rc < 0)
    tapio__transport_discard(t); /* closes fd */
  return rc;
}

int tapio_connect_read_pipe(tapio_loop *loop, int fd,
                            const tapio_protocol *proto, void *proto_ud,
                            const tapio_options *opts, tapio_connect_fn cb,
                            void *cb_ud) {
  return connect_pipe(loop, fd, 0, proto, proto_ud, opts, cb, cb_ud);
}

int tapio_connect_write_pipe(tapio_loop *loop, int fd,
                             const tapio_protocol *proto, void *proto_ud,
                             const tapio_options *opts, tapio_connect_fn cb,
                             void *cb_ud) {
  return connect_pipe(loop, fd, 1, proto, proto_ud, opts, cb, cb_ud);
}
