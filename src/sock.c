/* asyncio's loop.sock_recv, sock_recvfrom, sock_sendall, sock_sendto,
 * sock_connect and sock_accept: one operation on a socket the caller
 * owns, completed once through its callback. Each is a request (so that
 * tapio_cancel_pending and tapio_loop_free find it) and sits in the
 * loop's list of operations in the order made; of those on one
 * descriptor and direction, only the first tries its system call and
 * waits, with a libev watcher of its own, and when it ends the next one
 * is posted to try. So two receivers on one socket each get their turn
 * (asyncio's add_reader would replace the first's callback), and a send
 * never overtakes an earlier one's leftovers.
 *
 * Receives and accepts try from the loop (the request's task), where the
 * completion follows at once: nothing is ever taken from the socket for
 * an operation that could still be cancelled. Sends and connects try
 * inside the call, as asyncio's first attempt does, so that the data
 * need not be copied unless the socket refuses some of it. */
#include "tapio_int.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

enum kind { RECV, RECVFROM, ACCEPT, SENDALL, SENDTO, CONNECT, SENDFILE };

typedef struct sockop {
  tapio__request req;
  tapio__link link;        /* loop->sockops */
  ev_io io;                /* started while it waits */
  int kind, fd;
  dev_t dev;               /* the file fd was when it began: closed, its */
  ino_t ino;               /* number may be another's (a transport's) */
  int fresh;               /* started since the last poll */
  int done, status;        /* the outcome, once known */
  int connecting;          /* connect(2) is under way: SO_ERROR tells */
  char *buf;               /* a receive's (the caller's) */
  const char *data;        /* a send's: the caller's during the call */
  char *copy;              /* then ours, for what had to wait */
  size_t len, n;           /* asked for; received or sent */
  size_t base;             /* n when the copy was taken */
  int newfd;               /* accept's */
  struct sockaddr_storage addr; /* sendto's, connect's; recvfrom's, accept's */
  socklen_t alen;
  int file, native, fallback;   /* sendfile's */
  uint64_t offset, count, sent;
  tapio_sock_fn cb;
  tapio_sock_accept_fn acb;
  tapio_sendfile_fn fcb;
} sockop;

static int reading(const sockop *o) {
  return o->kind <= ACCEPT;
}

/* ---- One try of the system call ----------------------------------------- */

/* Done with code (a tapio code). */
static int ended_with(sockop *o, int code) {
  o->done = 1;
  o->status = code;
  return 0;
}

/* errno after a call that failed: 1 to wait for readiness, 0 done with
 * the error in o. */
static int failed(sockop *o, int err) {
  if (err == EAGAIN || err == EWOULDBLOCK)
    return 1;
  return ended_with(o, tapio__from_errno(err));
}

static int ended(sockop *o, ssize_t n) {
  o->done = 1;
  o->n += (size_t)n;
  return 0;
}

static int try_recv(sockop *o) {
  ssize_t n;
  o->alen = sizeof o->addr;
  do
    n = o->kind == RECV
            ? recv(o->fd, o->buf, o->len, MSG_DONTWAIT)
            : recvfrom(o->fd, o->buf, o->len, MSG_DONTWAIT,
                       (struct sockaddr *)&o->addr, &o->alen);
  while (n < 0 && errno == EINTR);
  return n < 0 ? failed(o, errno) : ended(o, n);
}

/* A connection reset before it was taken is gone: the next is tried. */
static int try_accept(sockop *o) {
  for (;;) {
    o->alen = sizeof o->addr;
    o->newfd = accept4(o->fd, (struct sockaddr *)&o->addr, &o->alen,
                       SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (o->newfd >= 0)
      return ended(o, 0);
    if (errno != EINTR && errno != ECONNABORTED)
      return failed(o, errno);
  }
}

/* The bytes of a send not yet sent: the caller's during the call, then
 * the copy of what was left (taken when n was `base`). */
static const char *unsent(const sockop *o) {
  return o->copy ? o->copy + (o->n - o->base) : o->data + o->n;
}

static int try_sendall(sockop *o) {
  while (o->n < o->len) {
    ssize_t n = send(o->fd, unsent(o), o->len - o->n,
                     MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return failed(o, errno);
    o->n += (size_t)n;
  }
  return ended(o, 0);
}

static int try_sendto(sockop *o) {
  ssize_t n;
  do
    n = sendto(o->fd, unsent(o), o->len, MSG_DONTWAIT | MSG_NOSIGNAL,
               (struct sockaddr *)&o->addr, o->alen);
  while (n < 0 && errno == EINTR);
  return n < 0 ? failed(o, errno) : ended(o, n);
}

/* 1 while a connect is under way: SO_ERROR is 0 then too, and the
 * request's first try comes from the loop before any readiness. */
static int still_connecting(int fd) {
  struct sockaddr_storage peer;
  socklen_t len = sizeof peer;
  return getpeername(fd, (struct sockaddr *)&peer, &len) < 0 &&
         errno == ENOTCONN;
}

/* connect(2) once; then SO_ERROR says how it went, once it has. A Unix
 * listener with a full backlog answers EAGAIN: an error here, as no
 * readiness would tell when to try again. */
static int try_connect(sockop *o) {
  int err = 0;
  socklen_t len = sizeof err;
  if (!o->connecting) {
    o->connecting = 1;
    if (connect(o->fd, (struct sockaddr *)&o->addr, o->alen) == 0)
      return ended(o, 0);
    err = errno;
    if (err == EINPROGRESS || err == EINTR) /* interrupted, it goes on */
      return 1;
  } else if (getsockopt(o->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) {
    err = errno;
  } else if (err == 0 && still_connecting(o->fd)) {
    return 1;
  }
  return err ? ended_with(o, tapio__from_errno(err)) : ended(o, 0);
}

/* sock_sendfile's fallback: the file read at offset + sent and sent, a
 * turn's worth at most. Nothing read is kept: what the socket did not
 * take is read again once it has room (the loop's read buffer is free
 * again then), as a file's pages are at hand. */
static int copy_file(sockop *o) {
  char *buf = tapio__read_buffer(o->req.loop);
  size_t turn = 0;
  if (!buf)
    return ended_with(o, TAPIO_ENOMEM);
  while (turn < TAPIO__SENDFILE_TURN) {
    ssize_t n = tapio__sendfile_read(o->file, o->offset, o->count,
                                     o->sent, buf);
    if (n <= 0)
      return n < 0 ? ended_with(o, (int)n) : ended(o, 0);
    do
      n = send(o->fd, buf, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n < 0)
      return failed(o, errno);
    o->sent += (uint64_t)n;
    turn += (size_t)n;
  }
  return 1; /* writable: the next turn */
}

/* sendfile(2) while it can; a file it cannot send from goes to the
 * fallback when allowed (asyncio's SendfileNotAvailableError). */
static int try_sendfile(sockop *o) {
  if (o->native) {
    int rc = tapio__sendfile_native(o->fd, o->file, o->offset, o->count,
                                    &o->sent);
    if (rc == 0 || rc == 1)
      return rc ? 1 : ended(o, 0);
    if (!tapio__sendfile_no_native(-rc, o->sent))
      return failed(o, -rc);
    if (!o->fallback)
      return ended_with(o, TAPIO_ENOTSUP);
    o->native = 0;
  }
  return copy_file(o);
}

/* 1: the socket has nothing (or no room) for now. */
static int attempt(sockop *o) {
  switch (o->kind) {
  case RECV:
  case RECVFROM:
    return try_recv(o);
  case ACCEPT:
    return try_accept(o);
  case SENDALL:
    return try_sendall(o);
  case SENDTO:
    return try_sendto(o);
  case SENDFILE:
    return try_sendfile(o);
  default:
    return try_connect(o);
  }
}

/* ---- Order and ending --------------------------------------------------- */

static int same_lane(const sockop *a, const sockop *b) {
  return a->fd == b->fd && reading(a) == reading(b);
}

/* o is the first of its descriptor and direction: it may try. */
static int first(const sockop *o) {
  const tapio__link *l;
  for (l = o->req.loop->sockops.next; l != &o->link; l = l->next)
    if (same_lane(TAPIO_CONTAINER(l, sockop, link), o))
      return 0;
  return 1;
}

/* The one after o in its lane tries now (from the loop). */
static void next_try(sockop *o) {
  tapio__link *l;
  for (l = o->link.next; l != &o->req.loop->sockops; l = l->next) {
    sockop *n = TAPIO_CONTAINER(l, sockop, link);
    if (same_lane(n, o)) {
      tapio__task_post(o->req.loop, &n->req.task);
      return;
    }
  }
}

static void op_free(sockop *o) {
  tapio_loop *loop = o->req.loop;
  if (o->copy)
    tapio__free(loop, o->copy, o->len - o->base);
  tapio__free(loop, o, sizeof *o);
}

/* Ends o with status: the next of its lane is posted first, so that what
 * the completion starts on fd comes after it. The completion may free
 * the loop's other operations, never o (it is unlinked). */
static void end(sockop *o, int status) {
  tapio_loop *loop = o->req.loop;
  const void *addr = NULL;
  size_t alen = 0;
  ev_io_stop(loop->ev, &o->io);
  if (first(o) && !loop->freeing)
    next_try(o);
  tapio__list_remove(&o->link);
  if (status == 0 && (o->kind == RECVFROM || o->kind == ACCEPT) &&
      o->alen > sizeof(sa_family_t)) {
    addr = &o->addr;
    alen = o->alen;
  }
  if (o->kind == SENDFILE) /* also cancelled: asyncio's does */
    tapio__sendfile_seek(o->file, o->offset, o->sent);
  if (tapio__request_done(&o->req)) {
    if (o->kind == SENDFILE)
      o->fcb(o->req.ud, status, o->sent);
    else if (o->kind == ACCEPT)
      o->acb(o->req.ud, status, status == 0 ? o->newfd : -1, addr, alen);
    else
      o->cb(o->req.ud, status, o->n, addr, alen);
  } else if (o->kind == ACCEPT && status == 0) {
    close(o->newfd); /* not reached: an accept ends as it takes one */
  }
  op_free(o);
}

/* ---- Waiting ------------------------------------------------------------- */

/* 1 if o waits on the file st is (its descriptor's number may since be
 * another file's). */
static int same_file(const sockop *o, const struct stat *st) {
  return o->dev == st->st_dev && o->ino == st->st_ino;
}

/* fd is still the file the operation began on; else it ends with EBADF,
 * never reading or writing the file that took the number since. */
static int still_ours(sockop *o) {
  struct stat st;
  if (fstat(o->fd, &st) == 0 && same_file(o, &st))
    return 1;
  o->done = 1;
  o->status = TAPIO_EBADF;
  return 0;
}

static void on_ready(struct ev_loop *ev, ev_io *w, int revents) {
  sockop *o = TAPIO_CONTAINER(w, sockop, io);
  (void)ev;
  if (revents & EV_ERROR) { /* libev gave up on fd: closed under it */
    o->done = 1;
    o->status = TAPIO_EBADF;
  }
  if (!o->done)
    still_ours(o);
  if (o->done || !attempt(o))
    end(o, o->status);
}

static void wait_ready(sockop *o) {
  tapio_loop *loop = o->req.loop;
  if (ev_is_active(&o->io))
    return;
  ev_io_set(&o->io, o->fd, reading(o) ? EV_READ : EV_WRITE);
  ev_io_start(loop->ev, &o->io);
  o->fresh = 1;
  tapio__fdcheck_arm(loop);
}

/* Ends o with EBADF from the loop: its descriptor was closed under it. */
static void end_closed(tapio_loop *loop, sockop *o) {
  ev_io_stop(loop->ev, &o->io);
  o->done = 1;
  o->status = TAPIO_EBADF;
  tapio__task_post(loop, &o->req.task);
}

/* Before the poll: a waiting operation whose descriptor was closed since
 * it started would make libev abort; it ends with EBADF instead. */
void tapio__sock_fdcheck(tapio_loop *loop) {
  tapio__link *l;
  for (l = loop->sockops.next; l != &loop->sockops; l = l->next) {
    sockop *o = TAPIO_CONTAINER(l, sockop, link);
    if (!o->fresh)
      continue;
    o->fresh = 0;
    if (ev_is_active(&o->io) && tapio__fd_closed(o->fd))
      end_closed(loop, o);
  }
}

/* The request's task: its turn (made first, or posted by the one before
 * it), or its outcome known already. */
static void run(tapio__task *task) {
  sockop *o = TAPIO_CONTAINER(task, sockop, req.task);
  if (o->req.loop->freeing)
    return end(o, TAPIO_ECANCELED);
  if (o->done)
    return end(o, o->status);
  if (!first(o))
    return; /* the one before it posts it again when it ends */
  if (!still_ours(o) || !attempt(o))
    return end(o, o->status);
  wait_ready(o);
}

static void cancel(tapio__request *req) {
  sockop *o = TAPIO_CONTAINER(req, sockop, req);
  tapio__task_unpost(req->loop, &req->task);
  end(o, TAPIO_ECANCELED);
}

/* An operation whose file was closed under it does not count: the
 * number is another file's now, which that operation never touches (it
 * ends with EBADF: still_ours). */
int tapio__sock_pending(tapio_loop *loop, int fd) {
  const tapio__link *l;
  struct stat st;
  if (fstat(fd, &st) < 0)
    return 0;
  for (l = loop->sockops.next; l != &loop->sockops; l = l->next) {
    const sockop *o = TAPIO_CONTAINER(l, sockop, link);
    if (o->fd == fd && same_file(o, &st))
      return 1;
  }
  return 0;
}

/* ---- The calls ----------------------------------------------------------- */

static const char *const names[] = {"sock_recv",    "sock_recvfrom",
                                    "sock_accept",  "sock_sendall",
                                    "sock_sendto",  "sock_connect",
                                    "sock_sendfile"};

/* connect, accept and sendfile(2) (no MSG_DONTWAIT for it) would block
 * the loop on a blocking socket. */
static int blocking_refused(tapio_loop *loop, int kind, int fd) {
  int fl;
  if (kind != CONNECT && kind != ACCEPT && kind != SENDFILE)
    return 0;
  fl = fcntl(fd, F_GETFL);
  if (fl >= 0 && (fl & O_NONBLOCK))
    return 0;
  tapio__refuse(loop, "%s: fd %d is a blocking socket (asyncio requires a "
                "non-blocking one: set O_NONBLOCK)", names[kind], fd);
  return TAPIO_EINVAL;
}

/* Operations left on fd's number by a file closed under them wait on a
 * registration epoll dropped with that file, and a new operation of the
 * file that got the number would queue behind them for ever: they end
 * with EBADF (as still_ours ends them), from the loop. */
static void end_stale(tapio_loop *loop, int fd, const struct stat *st) {
  tapio__link *l;
  for (l = loop->sockops.next; l != &loop->sockops; l = l->next) {
    sockop *o = TAPIO_CONTAINER(l, sockop, link);
    if (o->fd == fd && !o->done && !same_file(o, st))
      end_closed(loop, o);
  }
}

/* A new operation of kind on fd, checked and linked, or NULL with *rc. */
static sockop *make(tapio_loop *loop, int kind, int fd, int *rc) {
  struct stat st;
  sockop *o;
  if (!loop)
    return *rc = TAPIO_EINVAL, NULL;
  tapio__refuse_none(loop);
  if ((*rc = tapio__io_refused(loop)) < 0 ||
      (*rc = tapio__fd_usable(loop, fd)) < 0 ||
      (*rc = blocking_refused(loop, kind, fd)) < 0)
    return NULL;
  o = tapio__calloc(loop, sizeof *o);
  if (!o)
    return *rc = TAPIO_ENOMEM, NULL;
  o->req.loop = loop;
  o->kind = kind;
  o->fd = fd;
  o->newfd = -1;
  if (fstat(fd, &st) == 0) { /* fd_usable found it open */
    o->dev = st.st_dev;
    o->ino = st.st_ino;
    end_stale(loop, fd, &st);
  }
  ev_init(&o->io, on_ready);
  tapio__list_push(&loop->sockops, &o->link);
  return o;
}

static int start(sockop *o, void *cb_ud) {
  o->req.ud = cb_ud;
  tapio__request_start(o->req.loop, &o->req, run, cancel);
  return 0;
}

static int start_recv(tapio_loop *loop, int kind, int fd, void *buf,
                      size_t len, tapio_sock_fn cb, void *cb_ud) {
  sockop *o;
  int rc;
  if (!cb || (!buf && len) || len > PTRDIFF_MAX)
    return TAPIO_EINVAL;
  if (!(o = make(loop, kind, fd, &rc)))
    return rc;
  o->buf = buf;
  o->len = len;
  o->cb = cb;
  /* No byte asked: none taken, at once (Python's recv(0), so asyncio's
   * sock_recv); recv(2) would wait for data and answer 0, the end's
   * answer. A recvfrom waits for a datagram and drops it, as asyncio's. */
  if (kind == RECV && len == 0)
    o->done = 1;
  return start(o, cb_ud);
}

int tapio_sock_recv(tapio_loop *loop, int fd, void *buf, size_t len,
                    tapio_sock_fn cb, void *cb_ud) {
  return start_recv(loop, RECV, fd, buf, len, cb, cb_ud);
}

int tapio_sock_recvfrom(tapio_loop *loop, int fd, void *buf, size_t len,
                        tapio_sock_fn cb, void *cb_ud) {
  return start_recv(loop, RECVFROM, fd, buf, len, cb, cb_ud);
}

int tapio_sock_accept(tapio_loop *loop, int fd, tapio_sock_accept_fn cb,
                      void *cb_ud) {
  sockop *o;
  int rc;
  if (!cb)
    return TAPIO_EINVAL;
  if (!(o = make(loop, ACCEPT, fd, &rc)))
    return rc;
  o->acb = cb;
  return start(o, cb_ud);
}

static void drop(sockop *o) {
  tapio__list_remove(&o->link);
  op_free(o);
}

/* A send (or connect) tries in the call when it is first of its lane;
 * what must wait is copied, data being the caller's for the call only. */
static int start_send(sockop *o, const void *data, size_t len,
                      void *cb_ud) {
  tapio_loop *loop = o->req.loop;
  o->data = data;
  o->len = len;
  if (first(o) && !attempt(o))
    return start(o, cb_ud);
  if (o->n < len) {
    o->copy = tapio__alloc(loop, len - o->n);
    if (!o->copy && o->n == 0) {
      drop(o);
      return TAPIO_ENOMEM;
    }
    if (!o->copy) { /* a sendall sent some: its completion tells how many */
      ended_with(o, TAPIO_ENOMEM);
      o->data = NULL;
      return start(o, cb_ud);
    }
    memcpy(o->copy, (const char *)data + o->n, len - o->n);
    o->base = o->n;
  }
  o->data = NULL;
  return start(o, cb_ud);
}

static int set_addr(sockop *o, const void *addr, size_t addrlen) {
  if (!addr || addrlen < sizeof(sa_family_t) || addrlen > sizeof o->addr)
    return TAPIO_EINVAL;
  memcpy(&o->addr, addr, addrlen);
  o->alen = (socklen_t)addrlen;
  return 0;
}

int tapio_sock_sendall(tapio_loop *loop, int fd, const void *data,
                       size_t len, tapio_sock_fn cb, void *cb_ud) {
  sockop *o;
  int rc;
  if (!cb || (!data && len) || len > PTRDIFF_MAX)
    return TAPIO_EINVAL;
  if (!(o = make(loop, SENDALL, fd, &rc)))
    return rc;
  o->cb = cb;
  return start_send(o, data, len, cb_ud);
}

int tapio_sock_sendto(tapio_loop *loop, int fd, const void *data,
                      size_t len, const void *addr, size_t addrlen,
                      tapio_sock_fn cb, void *cb_ud) {
  sockop *o;
  int rc;
  if (!cb || (!data && len) || len > PTRDIFF_MAX)
    return TAPIO_EINVAL;
  if (!(o = make(loop, SENDTO, fd, &rc)))
    return rc;
  if ((rc = set_addr(o, addr, addrlen)) < 0)
    return drop(o), rc;
  o->cb = cb;
  return start_send(o, data, len, cb_ud);
}

int tapio_sock_connect(tapio_loop *loop, int fd, const void *addr,
                       size_t addrlen, tapio_sock_fn cb, void *cb_ud) {
  sockop *o;
  int rc;
  if (!cb)
    return TAPIO_EINVAL;
  if (!(o = make(loop, CONNECT, fd, &rc)))
    return rc;
  if ((rc = set_addr(o, addr, addrlen)) < 0)
    return drop(o), rc;
  o->cb = cb;
  return start_send(o, NULL, 0, cb_ud);
}

/* A stream socket: asyncio's "only SOCK_STREAM type sockets are
 * supported"; a file sendfile(2) and pread can read. */
static int sendfile_refused(tapio_loop *loop, int fd, int file) {
  struct stat st;
  int type = 0;
  socklen_t len = sizeof type;
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0 ||
      type != SOCK_STREAM) {
    tapio__refuse(loop, "sock_sendfile: fd %d is not a stream socket "
                  "(asyncio's: only SOCK_STREAM type sockets are "
                  "supported)", fd);
    return TAPIO_EINVAL;
  }
  if (fstat(file, &st) < 0) {
    tapio__refuse(loop, "sock_sendfile: file %d is not an open "
                  "descriptor", file);
    return TAPIO_EBADF;
  }
  return 0;
}

int tapio_sock_sendfile(tapio_loop *loop, int fd, int file, uint64_t offset,
                        uint64_t count, int fallback, tapio_sendfile_fn cb,
                        void *cb_ud) {
  sockop *o;
  int rc;
  if (!cb || file < 0 || offset > INT64_MAX || count > INT64_MAX)
    return TAPIO_EINVAL;
  if (!(o = make(loop, SENDFILE, fd, &rc)))
    return rc;
  if ((rc = sendfile_refused(loop, fd, file)) < 0)
    return drop(o), rc;
  o->file = file;
  o->offset = offset;
  o->count = count;
  o->native = 1;
  o->fallback = fallback != 0;
  o->fcb = cb;
  return start(o, cb_ud); /* tries from the loop: the read buffer is free */
}
