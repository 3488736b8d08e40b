/* The stream transport: reading into the loop's buffer (or the protocol's),
 * writing straight through the I/O layer and queueing only leftovers,
 * half-close, and the stream's steps of the head's lifetime. TCP and Unix
 * sockets through the socket layer below; the pipe kinds (pipe.c) are
 * stream bodies that can only read or only write. A layer with a session
 * of its own (TLS, tls.c) goes between the stream and the socket and is
 * driven by the "layered" callbacks at the end, so that the plain path
 * stays as it is. */
#include "tapio_int.h"

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

static void on_readable(struct ev_loop *ev, ev_io *w, int revents);
static void on_writable(struct ev_loop *ev, ev_io *w, int revents);
static void on_layer_readable(struct ev_loop *ev, ev_io *w, int revents);
static void on_layer_writable(struct ev_loop *ev, ev_io *w, int revents);
static void read_more(tapio__task *task);
static void read_again(tapio__task *task);
static const tapio__kind stream_kind;

/* ---- The socket layer -------------------------------------------------- */

static ssize_t code_of(ssize_t r) {
  return r >= 0 ? r : tapio__from_errno(errno);
}

static inline ssize_t socket_read(tapio__stream *s, void *ctx, void *buf,
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
static inline ssize_t socket_writev(tapio__stream *s, void *ctx,
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

/* Every read and write goes through the stream's layer; the socket layer,
 * the common one, is called directly so that it costs a comparison rather
 * than an indirect call (which the benchmark counts per request). */
static inline ssize_t io_read(tapio__stream *s, void *buf, size_t len) {
  if (s->io == &tapio__socket_io)
    return socket_read(s, NULL, buf, len);
  return s->io->read(s, s->io_ctx, buf, len);
}

static ssize_t io_writev(tapio__stream *s, const struct iovec *iov, int n) {
  if (s->io == &tapio__socket_io)
    return socket_writev(s, NULL, iov, n);
  return s->io->writev(s, s->io_ctx, iov, n);
}

/* Out of line: its iovec would give write's fast path a stack frame (3
 * instructions a request, counted). */
static __attribute__((noinline)) ssize_t layer_send(tapio__stream *s,
                                                  const void *p, size_t len) {
  struct iovec iov = {(void *)p, len};
  return s->io->writev(s, s->io_ctx, &iov, 1);
}

/* One buffer: what write sends. */
static inline ssize_t io_send(tapio__stream *s, const void *p, size_t len) {
  ssize_t r;
  if (s->io != &tapio__socket_io)
    return layer_send(s, p, len);
  do
    r = send(s->wio.fd, p, len, MSG_NOSIGNAL);
  while (r < 0 && errno == EINTR);
  return code_of(r);
}

void tapio__stream_init(tapio__stream *s, const tapio__kind *kind,
                        tapio_loop *loop, int fd, const tapio__io *io,
                        const void *proto, void *ud) {
  tapio__transport_init(&s->head, kind, loop, proto, ud);
  s->io = io;
  ev_io_init(&s->rio, on_readable, fd, EV_READ);
  ev_io_init(&s->wio, on_writable, fd, EV_WRITE);
  s->more.run = read_more;
  s->again.run = read_again;
}

tapio_transport *tapio__stream_new(tapio_loop *loop, int fd,
                                   const tapio_protocol *proto, void *ud) {
  tapio__stream *s = tapio__calloc(loop, sizeof *s);
  if (!s)
    return NULL;
  tapio__stream_init(s, &stream_kind, loop, fd, &tapio__socket_io, proto,
                     ud);
  return &s->head;
}

static const tapio_protocol *proto_of(const tapio__stream *s) {
  return (const tapio_protocol *)s->head.proto;
}

/* ---- Reading ----------------------------------------------------------- */

static int wants_reading(const tapio_transport *t) {
  return (t->flags & (TAPIO__T_MADE | TAPIO__T_RPAUSED | TAPIO__T_CLOSING |
                      TAPIO__T_EOF_RECEIVED)) == TAPIO__T_MADE;
}

static int reads_more(tapio__stream *s) {
  return wants_reading(&s->head) && !(s->head.flags & TAPIO__HOLD_READ);
}

/* Reading is watched for the protocol (unless the layer holds it) or for
 * the layer itself. */
static void update_reading(tapio__stream *s) {
  if (reads_more(s) || (s->head.flags & TAPIO__WANT_READ)) {
    if (!ev_is_active(&s->rio))
      ev_io_start(s->head.loop->ev, &s->rio);
  } else if (ev_is_active(&s->rio)) {
    ev_io_stop(s->head.loop->ev, &s->rio);
  }
}

/* Reading (re)starts for the protocol: bytes the layer already holds are
 * read soon, from the ready queue, as the descriptor will not announce
 * them. Not by feeding the read watcher: fed from inside a callback,
 * libev runs it next, before the other pending watchers, so a protocol
 * that resumes reading in every data_received was read on and on while
 * the layer held bytes, the rest of the loop waiting
 * (spec/c/test_tls_io.c resumed_reading_leaves_room). */
static void read_held(tapio__stream *s) {
  if (s->io->pending && reads_more(s) && s->io->pending(s, s->io_ctx))
    tapio__task_post(s->head.loop, &s->more);
}

/* The stream kinds' reading step (see tapio__kind). */
void tapio__stream_reading(tapio_transport *t) {
  tapio__stream *s = tapio__to_stream(t);
  update_reading(s);
  if (!(t->flags & TAPIO__T_RPAUSED))
    read_held(s);
}

static void on_eof(tapio__stream *s) {
  tapio_transport *t = &s->head;
  int keep_open = 0;
  t->flags |= TAPIO__T_EOF_RECEIVED;
  update_reading(s);
  if (proto_of(s)->eof_received)
    keep_open = proto_of(s)->eof_received(t->ud, t);
  /* a read pipe has no other half to keep; a layer that cannot half-close
   * (TLS) cannot keep it either */
  if (!keep_open || !(t->kind->caps & TAPIO__CAN_WRITE) || !s->io->shutdown)
    tapio_transport_close(t);
}

static void read_failed(tapio__stream *s, ssize_t n) {
  if (n == 0)
    on_eof(s);
  else if (n != TAPIO_EAGAIN)
    tapio__transport_force_close(&s->head, (int)n, NULL);
}

/* Returns 1 when n bytes arrived for the protocol to see. */
static inline int read_result(tapio__stream *s, ssize_t n) {
  if (n > 0) {
    s->head.nrecv += (uint64_t)n;
    return 1;
  }
  read_failed(s, n);
  return 0;
}

/* Each returns what the I/O layer's read returned. A protocol set from
 * inside get_buffer reads nothing this time: the buffer is the replaced
 * one's, and the bytes are read again (the descriptor is level-triggered,
 * a layer reads on while it holds some) for the protocol now set. */
static ssize_t read_buffered(tapio__stream *s) {
  tapio_transport *t = &s->head;
  const tapio_protocol *p = proto_of(s);
  size_t len = 0;
  void *buf;
  ssize_t n;
  t->flags &= ~(uint32_t)TAPIO__T_NEWPROTO;
  buf = p->get_buffer(t->ud, t, -1, &len);
  if (t->flags & TAPIO__T_CLOSING)
    return 0; /* closed from inside get_buffer */
  if (t->flags & TAPIO__T_NEWPROTO)
    return TAPIO_EAGAIN;
  if (!buf || len == 0) {
    tapio__report(t->loop, TAPIO_EBUFFER,
                  "protocol get_buffer returned an empty buffer", t);
    tapio__transport_force_close(t, TAPIO_EBUFFER, NULL);
    return 0;
  }
  n = io_read(s, buf, len);
  if (read_result(s, n) && proto_of(s)->buffer_updated)
    proto_of(s)->buffer_updated(t->ud, t, (size_t)n);
  return n;
}

/* A plain protocol's read into the loop's buffer; data_received is
 * called last, so that inlined below it is a tail call. */
static inline ssize_t read_plain(tapio__stream *s) {
  tapio_transport *t = &s->head;
  char *buf = tapio__read_buffer(t->loop);
  ssize_t n;
  if (!buf) {
    tapio__transport_force_close(t, TAPIO_ENOMEM, NULL);
    return 0;
  }
  n = io_read(s, buf, TAPIO__RBUF_SIZE);
  if (read_result(s, n) && proto_of(s)->data_received)
    proto_of(s)->data_received(t->ud, t, buf, (size_t)n);
  return n;
}

/* A kind that reads bulk (TAPIO__BULK: pipes) reads again at once after a
 * read of a whole pipe's worth (64 KiB): its writer was waiting on a full
 * pipe and has refilled it meanwhile, so the poll (and a loop iteration)
 * per 64 KiB is spared; bounded, so one stream cannot starve the rest. */
#define BULK_READ (64 * 1024)
#define BULK_PASSES 8

static ssize_t read_once(tapio__stream *s) {
  return proto_of(s)->get_buffer ? read_buffered(s) : read_plain(s);
}

/* Not inlined: its loop would make on_readable save registers on every
 * socket read (about 8 instructions per request in the echo bench). */
static __attribute__((noinline)) void read_bulk(tapio__stream *s) {
  int passes = BULK_PASSES;
  ssize_t n;
  do
    n = read_once(s);
  while (--passes > 0 && n >= BULK_READ && wants_reading(&s->head));
}

static void on_readable(struct ev_loop *ev, ev_io *w, int revents) {
  tapio__stream *s = TAPIO_CONTAINER(w, tapio__stream, rio);
  (void)ev;
  (void)revents;
  if (s->head.kind->caps & TAPIO__BULK)
    read_bulk(s);
  else if (proto_of(s)->get_buffer)
    read_buffered(s);
  else
    read_plain(s);
}

static int readable_kind(tapio_transport *t) {
  return t && (t->kind->caps & TAPIO__CAN_READ);
}

int tapio_transport_is_reading(tapio_transport *t) {
  return readable_kind(t) &&
         !(t->flags & (TAPIO__T_RPAUSED | TAPIO__T_CLOSING |
                       TAPIO__T_EOF_RECEIVED));
}

/* The pauses' bookkeeping is the head's, the same for every kind that
 * reads; what they do is the kind's reading step. */
int tapio_transport_pause_reading(tapio_transport *t) {
  if (!readable_kind(t))
    return t ? TAPIO_ENOTSUP : TAPIO_EINVAL;
  if (t->flags & (TAPIO__T_CLOSING | TAPIO__T_RPAUSED))
    return 0;
  t->flags |= TAPIO__T_RPAUSED;
  t->rpause_since = tapio__time(t->loop);
  t->kind->reading(t);
  return 0;
}

int tapio_transport_resume_reading(tapio_transport *t) {
  if (!readable_kind(t))
    return t ? TAPIO_ENOTSUP : TAPIO_EINVAL;
  if ((t->flags & TAPIO__T_CLOSING) || !(t->flags & TAPIO__T_RPAUSED))
    return 0;
  t->flags &= ~(uint32_t)TAPIO__T_RPAUSED;
  t->rpaused += tapio__time(t->loop) - t->rpause_since;
  t->kind->reading(t);
  return 0;
}

/* ---- Writing ----------------------------------------------------------- */

/* What a send returned (a count or a code): the bytes sent, or -1 after
 * failing the transport. */
static ssize_t sent(tapio__stream *s, ssize_t r) {
  if (r >= 0) {
    s->head.nsent += (uint64_t)r;
    return r;
  }
  if (r == TAPIO_EAGAIN)
    return 0;
  tapio__transport_force_close(&s->head, (int)r, NULL);
  return -1;
}

/* Sends what the layer takes now: as sent(). */
static ssize_t send_now(tapio__stream *s, const struct iovec *iov, int n) {
  return sent(s, io_writev(s, iov, n));
}

static int push(tapio__stream *s, const char *p, size_t len) {
  int rc = tapio__flow_figs(&s->head);
  if (rc == 0)
    rc = tapio__wq_push(s->head.loop, &s->wq, p, len);
  if (rc == 0)
    s->head.wsize += len;
  return rc;
}

/* After pushing leftovers: wait for writability, then flow control. */
static int buffered(tapio__stream *s, int rc) {
  if (rc < 0) {
    tapio__transport_force_close(&s->head, rc, NULL);
    return rc;
  }
  if (!ev_is_active(&s->wio) && !(s->head.flags & TAPIO__HOLD_WRITE))
    ev_io_start(s->head.loop->ev, &s->wio);
  tapio__flow_grew(&s->head);
  return 0;
}

static inline int write_check(tapio_transport *t) {
  if (!t)
    return TAPIO_EINVAL;
  if (!(t->flags & (TAPIO__T_NOWRITE | TAPIO__T_EOF_WANTED |
                    TAPIO__T_CLOSING | TAPIO__T_SENDFILE)))
    return 0; /* the common case, in one test */
  if (t->flags & TAPIO__T_NOWRITE)
    return TAPIO_ENOTSUP;
  if (t->flags & TAPIO__T_EOF_WANTED)
    return TAPIO_ESHUTDOWN;
  if (t->flags & TAPIO__T_CLOSING)
    return TAPIO_ECLOSED;
  return TAPIO_EBUSY; /* a sendfile is in progress */
}

/* write's rest: the socket took r of the len bytes at p (or r is a code);
 * the rest is queued. */
static int write_rest(tapio__stream *s, const char *p, size_t len,
                      ssize_t r) {
  r = sent(s, r);
  if (r < 0)
    return 0; /* a failure arrives through connection_lost */
  return buffered(s, push(s, p + r, len - (size_t)r));
}

int tapio_transport_write(tapio_transport *t, const void *data, size_t len) {
  int rc = write_check(t);
  tapio__stream *s;
  ssize_t n;
  if (rc < 0 || len == 0)
    return rc;
  if (!data || len > PTRDIFF_MAX) /* no object is larger */
    return TAPIO_EINVAL;
  s = tapio__to_stream(t);
  if (t->wsize)
    return buffered(s, push(s, data, len));
  n = io_send(s, data, len);
  if (n != (ssize_t)len)
    return write_rest(s, data, len, n);
  t->nsent += (uint64_t)len; /* the common case: all of it, at once */
  return 0;
}

/* Fills iov from bufs[*i..n) (skipping empty ones); returns the count and
 * the total in *total. */
static int gather(const void *const *bufs, const size_t *lens, size_t n,
                  size_t *i, struct iovec *iov, size_t *total) {
  int cnt = 0;
  *total = 0;
  for (; *i < n && cnt < TAPIO__MAX_IOV; (*i)++) {
    if (!lens[*i])
      continue;
    iov[cnt].iov_base = (void *)bufs[*i];
    iov[cnt].iov_len = lens[*i];
    *total += lens[*i];
    cnt++;
  }
  return cnt;
}

/* Before anything is sent: a NULL buffer with a length, or lengths that
 * add up past what any object can hold, are TAPIO_EINVAL, as for write. */
static int check_lines(const void *const *bufs, const size_t *lens,
                       size_t n) {
  size_t i, total = 0;
  if (!bufs || !lens)
    return TAPIO_EINVAL;
  for (i = 0; i < n; i++) {
    if ((lens[i] && !bufs[i]) || lens[i] > (size_t)PTRDIFF_MAX - total)
      return TAPIO_EINVAL;
    total += lens[i];
  }
  return 0;
}

int tapio_transport_writelines(tapio_transport *t, const void *const *bufs,
                               const size_t *lens, size_t n) {
  struct iovec iov[TAPIO__MAX_IOV];
  size_t i = 0, skip = 0;
  int rc = write_check(t);
  tapio__stream *s;
  if (rc < 0 || n == 0)
    return rc;
  rc = check_lines(bufs, lens, n);
  if (rc < 0)
    return rc;
  s = tapio__to_stream(t);
  while (t->wsize == 0 && i < n) {
    size_t first = i, total;
    int cnt = gather(bufs, lens, n, &i, iov, &total);
    ssize_t sent = cnt ? send_now(s, iov, cnt) : 0;
    if (sent < 0)
      return 0;
    if ((size_t)sent == total)
      continue;
    for (i = first; (size_t)sent >= lens[i]; i++)
      sent -= (ssize_t)lens[i]; /* whole buffers sent */
    skip = (size_t)sent;
    break;
  }
  for (rc = 0; i < n && rc == 0; i++, skip = 0)
    rc = push(s, (const char *)bufs[i] + skip, lens[i] - skip);
  return (t->wsize || rc) ? buffered(s, rc) : 0;
}

/* close() with the buffer flushed: the layer may have its own ending.
 * Once: a close from a callback of the flush that emptied the buffer
 * (resume_writing) comes here, then the flush's own drained() would
 * again, and TLS would take that for the end of its close_notify
 * exchange, dropping the ciphertext still to send. */
static void closed(tapio__stream *s) {
  if (s->head.flags & TAPIO__T_ENDING)
    return;
  s->head.flags |= TAPIO__T_ENDING;
  if (!s->io->close || s->io->close(s, s->io_ctx) == 0)
    tapio__transport_lost(&s->head, 0, NULL);
}

/* The buffer is empty: finish a pending close or write_eof (a write_eof
 * after the file a sendfile is sending: see tapio__stream_sendfile_ended). */
static void drained(tapio__stream *s) {
  tapio_transport *t = &s->head;
  if (!(t->flags & TAPIO__WANT_WRITE))
    ev_io_stop(t->loop->ev, &s->wio);
  if (t->flags & TAPIO__T_CLOSING) {
    closed(s);
  } else if ((t->flags & (TAPIO__T_EOF_WANTED | TAPIO__T_SHUT |
                          TAPIO__T_SENDFILE)) == TAPIO__T_EOF_WANTED) {
    t->flags |= TAPIO__T_SHUT;
    s->io->shutdown(s, s->io_ctx);
  }
}

static void flush(tapio__stream *s) {
  tapio_transport *t = &s->head;
  struct iovec iov[TAPIO__MAX_IOV];
  ssize_t n;
  n = send_now(s, iov, tapio__wq_iov(&s->wq, iov, TAPIO__MAX_IOV));
  if (n <= 0)
    return;
  tapio__wq_consume(t->loop, &s->wq, (size_t)n);
  t->wsize -= (size_t)n;
  tapio__flow_shrank(t);
  if (!(t->flags & TAPIO__T_LOST) && t->wsize == 0)
    drained(s);
}

static void on_writable(struct ev_loop *ev, ev_io *w, int revents) {
  (void)ev;
  (void)revents;
  flush(TAPIO_CONTAINER(w, tapio__stream, wio));
}

/* A stream that cannot read (a write pipe) has no half to keep open: its
 * end of file is its close, as asyncio's write pipe does it. */
static int write_only(const tapio_transport *t) {
  return (t->kind->caps & (TAPIO__CAN_READ | TAPIO__CAN_WRITE)) ==
         TAPIO__CAN_WRITE;
}

int tapio_transport_can_write_eof(tapio_transport *t) {
  return t && (t->kind->caps & TAPIO__CAN_WRITE) &&
         (tapio__to_stream(t)->io->shutdown != NULL || write_only(t));
}

int tapio_transport_write_eof(tapio_transport *t) {
  if (!t)
    return TAPIO_EINVAL;
  if (!tapio_transport_can_write_eof(t))
    return TAPIO_ENOTSUP;
  if (write_only(t))
    return tapio_transport_close(t);
  if (t->flags & (TAPIO__T_CLOSING | TAPIO__T_EOF_WANTED))
    return 0;
  t->flags |= TAPIO__T_EOF_WANTED;
  if (t->wsize == 0)
    drained(tapio__to_stream(t));
  return 0;
}

void tapio__stream_sendfile_ended(tapio_transport *t) {
  if ((t->flags & TAPIO__T_EOF_WANTED) && t->wsize == 0)
    drained(tapio__to_stream(t));
}

/* ---- The stream's steps of the lifetime -------------------------------- */

void tapio__stream_start(tapio_transport *t) {
  update_reading(tapio__to_stream(t));
  read_held(tapio__to_stream(t));
}

void tapio__stream_close(tapio_transport *t) {
  tapio__stream *s = tapio__to_stream(t);
  update_reading(s);
  if (t->wsize == 0)
    closed(s);
  else if (s->io->closing)
    s->io->closing(s, s->io_ctx);
}

void tapio__stream_halt(tapio_transport *t) {
  tapio__stream *s = tapio__to_stream(t);
  t->flags &= ~(uint32_t)TAPIO__WANTS;
  if (s->io->halt)
    s->io->halt(s, s->io_ctx);
  ev_io_stop(t->loop->ev, &s->rio);
  ev_io_stop(t->loop->ev, &s->wio);
  tapio__task_unpost(t->loop, &s->more);
  tapio__task_unpost(t->loop, &s->again);
  tapio__wq_clear(t->loop, &s->wq);
  t->wsize = 0;
}

static void stream_destroy(tapio_transport *t) {
  tapio__stream *s = tapio__to_stream(t);
  tapio__stream_halt(t);
  if (s->io->free)
    s->io->free(s, s->io_ctx);
  if (s->rio.fd >= 0) /* a shed shell's is closed */
    close(s->rio.fd);
  tapio__free(t->loop, s, sizeof *s);
}

/* A retained transport past connection_lost: the socket goes now (the
 * peer sees the close), the memory at the last release. */
static void stream_shed(tapio_transport *t) {
  tapio__stream *s = tapio__to_stream(t);
  tapio__stream_halt(t);
  close(s->rio.fd);
  s->rio.fd = s->wio.fd = -1;
}

int tapio__stream_fd(tapio_transport *t) {
  return tapio__to_stream(t)->rio.fd;
}

static const tapio__kind stream_kind = {
  TAPIO_TRANSPORT_STREAM,
  TAPIO__CAN_READ | TAPIO__CAN_WRITE | TAPIO__CAN_FLOW,
  sizeof(tapio_protocol),
  tapio__stream_start, tapio__stream_close, tapio__stream_halt,
  stream_destroy, tapio__stream_fd, stream_shed, tapio__stream_reading
};

/* ---- Streams whose layer has a session of its own (TLS) ---------------- */

void tapio__stream_set_io(tapio__stream *s, const tapio__io *io, void *ctx) {
  s->io = io;
  s->io_ctx = ctx;
  ev_set_cb(&s->rio, io->ready ? on_layer_readable : on_readable);
  ev_set_cb(&s->wio, io->ready ? on_layer_writable : on_writable);
}

void tapio__stream_want(tapio__stream *s, uint32_t want) {
  tapio_transport *t = &s->head;
  int w = (want & TAPIO__WANT_WRITE) ||
          (t->wsize && !(want & TAPIO__HOLD_WRITE));
  uint32_t held = t->flags & ~want & TAPIO__HOLD_READ;
  t->flags = (t->flags & ~(uint32_t)TAPIO__WANTS) | want;
  if (t->flags & TAPIO__T_LOST)
    return; /* halted for good */
  update_reading(s);
  if (held)
    read_held(s);
  if (w && !ev_is_active(&s->wio))
    ev_io_start(t->loop->ev, &s->wio);
  else if (!w && ev_is_active(&s->wio))
    ev_io_stop(t->loop->ev, &s->wio);
}

#define LAYER_PASSES 32 /* reads per wake-up, as libuv bounds them */

/* The layer may hold more than one read takes (a small BufferedProtocol
 * buffer): read again while it does, LAYER_PASSES times at most. The
 * descriptor would not announce those bytes again, so the rest is read
 * from the ready queue, after the other callbacks of this iteration: a
 * protocol that takes nothing (one that sets another in every
 * get_buffer) would leave the layer holding them for ever. */
static void read_layered(tapio__stream *s) {
  int passes = LAYER_PASSES;
  do
    read_once(s);
  while (reads_more(s) && s->io->pending(s, s->io_ctx) && --passes > 0);
  if (passes == 0)
    tapio__task_post(s->head.loop, &s->more);
}

static void read_more(tapio__task *task) {
  tapio__stream *s = TAPIO_CONTAINER(task, tapio__stream, more);
  if (reads_more(s) && s->io->pending(s, s->io_ctx))
    read_layered(s);
}

void tapio__stream_read_soon(tapio__stream *s) {
  tapio__task_post(s->head.loop, &s->again);
}

static void read_again(tapio__task *task) {
  tapio__stream *s = TAPIO_CONTAINER(task, tapio__stream, again);
  if (!(s->head.flags & TAPIO__T_LOST))
    ev_invoke(s->head.loop->ev, &s->rio, EV_READ);
}

static void on_layer_readable(struct ev_loop *ev, ev_io *w, int revents) {
  tapio__stream *s = TAPIO_CONTAINER(w, tapio__stream, rio);
  (void)ev;
  (void)revents;
  s->io->ready(s, s->io_ctx, EV_READ);
  if (!(s->head.flags & TAPIO__T_LOST) && reads_more(s))
    read_layered(s);
}

static void on_layer_writable(struct ev_loop *ev, ev_io *w, int revents) {
  tapio__stream *s = TAPIO_CONTAINER(w, tapio__stream, wio);
  (void)ev;
  (void)revents;
  s->io->ready(s, s->io_ctx, EV_WRITE);
  if (!(s->head.flags & TAPIO__T_LOST) && s->head.wsize &&
      !(s->head.flags & TAPIO__HOLD_WRITE))
    flush(s);
}
