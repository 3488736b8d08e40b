/* The stream transport: reading into the loop's buffer (or the protocol's),
 * writing straight through the I/O layer and queueing only leftovers,
 * half-close, and the stream's steps of the head's lifetime. TCP and Unix
 * sockets through tapio__socket_io; a layer with a session of its own
 * (TLS) goes between them and is driven by the "layered" callbacks at the
 * end, so that the plain path stays as it is. */
#include "tapio_int.h"

#include <stddef.h>
#include <stdint.h>
#include <unistd.h>

static void on_readable(struct ev_loop *ev, ev_io *w, int revents);
static void on_writable(struct ev_loop *ev, ev_io *w, int revents);
static void on_layer_readable(struct ev_loop *ev, ev_io *w, int revents);
static void on_layer_writable(struct ev_loop *ev, ev_io *w, int revents);
static const tapio__kind stream_kind;

tapio_transport *tapio__stream_new(tapio_loop *loop, int fd,
                                   const tapio_protocol *proto, void *ud) {
  tapio__stream *s = tapio__calloc(loop, sizeof *s);
  if (!s)
    return NULL;
  tapio__transport_init(&s->head, &stream_kind, loop, proto, ud);
  s->io = &tapio__socket_io;
  ev_io_init(&s->rio, on_readable, fd, EV_READ);
  ev_io_init(&s->wio, on_writable, fd, EV_WRITE);
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
 * read on the next iteration, as the descriptor will not announce them. */
static void read_held(tapio__stream *s) {
  if (s->io->pending && reads_more(s) && s->io->pending(s, s->io_ctx))
    ev_feed_event(s->head.loop->ev, &s->rio, EV_READ);
}

static void on_eof(tapio__stream *s) {
  tapio_transport *t = &s->head;
  int keep_open = 0;
  t->flags |= TAPIO__T_EOF_RECEIVED;
  update_reading(s);
  if (proto_of(s)->eof_received)
    keep_open = proto_of(s)->eof_received(t->ud, t);
  if (!keep_open || !s->io->shutdown) /* half-open needs a half-close */
    tapio_transport_close(t);
}

/* Returns 1 when n bytes arrived for the protocol to see. */
static int read_result(tapio__stream *s, ssize_t n) {
  if (n > 0) {
    s->head.nrecv += (uint64_t)n;
    return 1;
  }
  if (n == 0)
    on_eof(s);
  else if (n != TAPIO_EAGAIN)
    tapio__transport_force_close(&s->head, (int)n, NULL);
  return 0;
}

static void read_buffered(tapio__stream *s) {
  tapio_transport *t = &s->head;
  const tapio_protocol *p = proto_of(s);
  size_t len = 0;
  void *buf = p->get_buffer(t->ud, t, -1, &len);
  ssize_t n;
  if (t->flags & TAPIO__T_CLOSING)
    return; /* closed from inside get_buffer */
  if (!buf || len == 0) {
    tapio__report(t->loop, TAPIO_EBUFFER,
                  "protocol get_buffer returned an empty buffer", t);
    tapio__transport_force_close(t, TAPIO_EBUFFER, NULL);
    return;
  }
  n = s->io->read(s, s->io_ctx, buf, len);
  if (read_result(s, n) && proto_of(s)->buffer_updated)
    proto_of(s)->buffer_updated(t->ud, t, (size_t)n);
}

static void read_plain(tapio__stream *s) {
  tapio_transport *t = &s->head;
  char *buf = tapio__read_buffer(t->loop);
  ssize_t n;
  if (!buf) {
    tapio__transport_force_close(t, TAPIO_ENOMEM, NULL);
    return;
  }
  n = s->io->read(s, s->io_ctx, buf, TAPIO__RBUF_SIZE);
  if (read_result(s, n) && proto_of(s)->data_received)
    proto_of(s)->data_received(t->ud, t, buf, (size_t)n);
}

static void read_once(tapio__stream *s) {
  if (proto_of(s)->get_buffer)
    read_buffered(s);
  else
    read_plain(s);
}

static void on_readable(struct ev_loop *ev, ev_io *w, int revents) {
  (void)ev;
  (void)revents;
  read_once(TAPIO_CONTAINER(w, tapio__stream, rio));
}

static int readable_kind(tapio_transport *t) {
  return t && (t->kind->caps & TAPIO__CAN_READ);
}

int tapio_transport_is_reading(tapio_transport *t) {
  return readable_kind(t) &&
         !(t->flags & (TAPIO__T_RPAUSED | TAPIO__T_CLOSING |
                       TAPIO__T_EOF_RECEIVED));
}

int tapio_transport_pause_reading(tapio_transport *t) {
  if (!readable_kind(t))
    return t ? TAPIO_ENOTSUP : TAPIO_EINVAL;
  if (t->flags & (TAPIO__T_CLOSING | TAPIO__T_RPAUSED))
    return 0;
  t->flags |= TAPIO__T_RPAUSED;
  t->rpause_since = tapio__now();
  update_reading(tapio__to_stream(t));
  return 0;
}

int tapio_transport_resume_reading(tapio_transport *t) {
  if (!readable_kind(t))
    return t ? TAPIO_ENOTSUP : TAPIO_EINVAL;
  if ((t->flags & TAPIO__T_CLOSING) || !(t->flags & TAPIO__T_RPAUSED))
    return 0;
  t->flags &= ~(uint32_t)TAPIO__T_RPAUSED;
  t->rpaused += tapio__now() - t->rpause_since;
  update_reading(tapio__to_stream(t));
  read_held(tapio__to_stream(t));
  return 0;
}

/* ---- Writing ----------------------------------------------------------- */

/* Sends what the layer takes now. Returns the bytes sent, or -1 after
 * failing the transport. */
static ssize_t send_now(tapio__stream *s, const struct iovec *iov, int n) {
  ssize_t r = s->io->writev(s, s->io_ctx, iov, n);
  if (r >= 0) {
    s->head.nsent += (uint64_t)r;
    return r;
  }
  if (r == TAPIO_EAGAIN)
    return 0;
  tapio__transport_force_close(&s->head, (int)r, NULL);
  return -1;
}

static int push(tapio__stream *s, const char *p, size_t len) {
  int rc = tapio__wq_push(s->head.loop, &s->wq, p, len);
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

static int write_check(tapio_transport *t) {
  if (!t)
    return TAPIO_EINVAL;
  if (!(t->kind->caps & TAPIO__CAN_WRITE))
    return TAPIO_ENOTSUP;
  if (t->flags & TAPIO__T_EOF_WANTED)
    return TAPIO_ESHUTDOWN;
  if (t->flags & TAPIO__T_CLOSING)
    return TAPIO_ECLOSED;
  return 0;
}

int tapio_transport_write(tapio_transport *t, const void *data, size_t len) {
  int rc = write_check(t);
  tapio__stream *s;
  const char *p = data;
  if (rc < 0 || len == 0)
    return rc;
  if (!data || len > PTRDIFF_MAX) /* no object is larger */
    return TAPIO_EINVAL;
  s = tapio__to_stream(t);
  if (t->wsize == 0) {
    struct iovec iov = {(void *)p, len};
    ssize_t n = send_now(s, &iov, 1);
    if (n < 0 || (size_t)n == len)
      return 0; /* a failure arrives through connection_lost */
    p += n;
    len -= (size_t)n;
  }
  return buffered(s, push(s, p, len));
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

/* close() with the buffer flushed: the layer may have its own ending. */
static void closed(tapio__stream *s) {
  if (!s->io->close || s->io->close(s, s->io_ctx) == 0)
    tapio__transport_lost(&s->head, 0, NULL);
}

/* The buffer is empty: finish a pending close or write_eof. */
static void drained(tapio__stream *s) {
  tapio_transport *t = &s->head;
  if (!(s->head.flags & TAPIO__WANT_WRITE))
    ev_io_stop(t->loop->ev, &s->wio);
  if (t->flags & TAPIO__T_CLOSING) {
    closed(s);
  } else if ((t->flags & TAPIO__T_EOF_WANTED) &&
             !(t->flags & TAPIO__T_SHUT)) {
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

int tapio_transport_can_write_eof(tapio_transport *t) {
  return t && (t->kind->caps & TAPIO__CAN_WRITE) &&
         tapio__to_stream(t)->io->shutdown != NULL;
}

int tapio_transport_write_eof(tapio_transport *t) {
  if (!t)
    return TAPIO_EINVAL;
  if (!tapio_transport_can_write_eof(t))
    return TAPIO_ENOTSUP;
  if (t->flags & (TAPIO__T_CLOSING | TAPIO__T_EOF_WANTED))
    return 0;
  t->flags |= TAPIO__T_EOF_WANTED;
  if (t->wsize == 0)
    drained(tapio__to_stream(t));
  return 0;
}

/* ---- The stream's steps of the lifetime -------------------------------- */

static void stream_start(tapio_transport *t) {
  update_reading(tapio__to_stream(t));
  read_held(tapio__to_stream(t));
}

static void stream_close(tapio_transport *t) {
  update_reading(tapio__to_stream(t));
  if (t->wsize == 0)
    closed(tapio__to_stream(t));
}

static void stream_halt(tapio_transport *t) {
  tapio__stream *s = tapio__to_stream(t);
  t->flags &= ~(uint32_t)TAPIO__WANTS;
  if (s->io->halt)
    s->io->halt(s, s->io_ctx);
  ev_io_stop(t->loop->ev, &s->rio);
  ev_io_stop(t->loop->ev, &s->wio);
  tapio__wq_clear(t->loop, &s->wq);
  t->wsize = 0;
}

static void stream_destroy(tapio_transport *t) {
  tapio__stream *s = tapio__to_stream(t);
  stream_halt(t);
  if (s->io->free)
    s->io->free(s, s->io_ctx);
  close(s->rio.fd);
  tapio__free(t->loop, s, sizeof *s);
}

static int stream_fd(tapio_transport *t) {
  return tapio__to_stream(t)->rio.fd;
}

static const tapio__kind stream_kind = {
  TAPIO_TRANSPORT_STREAM,
  TAPIO__CAN_READ | TAPIO__CAN_WRITE | TAPIO__CAN_FLOW,
  sizeof(tapio_protocol),
  stream_start, stream_close, stream_halt, stream_destroy, stream_fd
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

/* The layer may hold more than one read takes (a small BufferedProtocol
 * buffer): read again while it does. What it holds is bounded (TLS: one
 * record buffer), so this ends soon; the descriptor would not announce
 * those bytes again. */
static void read_layered(tapio__stream *s) {
  do
    read_once(s);
  while (reads_more(s) && s->io->pending(s, s->io_ctx));
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
