/* Faults on demand: an I/O layer that goes between a stream transport
 * (a socket's, a pipe's, a memory pair's) and its own layer, and breaks
 * the bytes where the test says: an error or end of file after so many
 * bytes received, an error after so many sent, input or output that
 * stops being taken, a slow drip.
 *
 * Readiness stays the descriptor's: a layer that answers "nothing now"
 * while the socket is ready would have libev wake it again at once, so a
 * held direction stops its watcher, and lifting the hold starts it again
 * and feeds it one event (what is waiting is read or written at once).
 * The layer's state lives as long as the transport: the transport's kind
 * is wrapped in a copy whose destroy frees it first.
 *
 * On a TLS transport the layer goes on top of the TLS layer, between it
 * and the stream, never under it: the counts a test gives are the bytes
 * the protocol sees (plaintext), as on a plain socket, and the faults
 * break what the TLS layer hands up and takes down. So a read error is
 * the transport's failure with no close_notify sent (a reset also closes
 * the socket with a RST: the peer sees a truncation or a reset after the
 * bytes let through); an end of file is what the protocol gets when the
 * peer's close_notify comes (asyncio reports eof so), after which the
 * protocol's close sends ours; a drip hands plaintext up in pieces of at
 * most n bytes. A held direction stops the TLS layer's socket I/O too, so
 * that the peer's writes back up for real (and a close while reading is
 * held waits for the peer's close_notify until the shutdown timeout):
 * TLS tells the stream what it waits for through tapio__layer_want, which
 * takes a held direction out.
 *
 * start_tls on a transport with faults puts the new TLS layer under this
 * one (tapio__layer_push): the faults carry over, still counting what the
 * protocol sees, across the upgrade. */
#include "tapio_int.h"

#include <sys/socket.h>

/* A count of bytes after which a fault takes effect. */
typedef struct countdown {
  int on;
  uint64_t left;
  int64_t value;       /* the error, for the error faults */
} countdown;

typedef struct fault {
  tapio__kind kind;    /* the transport's, wrapped: destroy frees this */
  const tapio__kind *orig;
  const tapio__io *lower;
  void *lower_ctx;
  tapio__stream *s;
  countdown read_error, eof, stop_reading, write_error, stop_writing;
  int read_held, write_held;
  uint32_t want;       /* a TLS layer's wants, before the holds */
  size_t drip;         /* bytes per read, 0: any */
  double drip_interval;
  tapio__timer drip_timer;
  tapio__task drip_start; /* starts drip_timer once the piece is up */
} fault;

static const tapio__io fault_io, fault_io_noshut, fault_io_layered;

static int reached(const countdown *c) { return c->on && c->left == 0; }

/* Counts n bytes off c; 1 when that made it reach 0. */
static int count(countdown *c, uint64_t n) {
  if (!c->on || c->left == 0)
    return 0;
  c->left = n < c->left ? c->left - n : 0;
  return c->left == 0;
}

static void limit(const countdown *c, size_t *len) {
  if (c->on && c->left < *len)
    *len = (size_t)c->left;
}

static int reading(tapio_transport *t) {
  return (t->flags & TAPIO__T_MADE) && tapio_transport_is_reading(t);
}

/* ---- Holding a direction --------------------------------------------------- */

/* Over a layer with a session of its own (TLS), which tells the stream
 * what it waits for. */
static int layered(const fault *f) { return f->lower->ready != NULL; }

/* The layer's wants with the held directions taken out: neither the
 * protocol nor the layer below reads (or writes) while held. */
static uint32_t held_want(const fault *f, uint32_t want) {
  if (f->read_held)
    want = (want & ~(uint32_t)TAPIO__WANT_READ) | TAPIO__HOLD_READ;
  if (f->write_held)
    want = (want & ~(uint32_t)TAPIO__WANT_WRITE) | TAPIO__HOLD_WRITE;
  return want;
}

static void apply_want(fault *f) {
  tapio__stream_want(f->s, held_want(f, f->want));
}

/* Holds a direction (held: its flag, w: its watcher). */
static void hold(fault *f, int *held, ev_io *w) {
  *held = 1;
  if (layered(f))
    apply_want(f);
  else
    ev_io_stop(f->s->head.loop->ev, w);
}

static void hold_reading(fault *f) { hold(f, &f->read_held, &f->s->rio); }

static void hold_writing(fault *f) { hold(f, &f->write_held, &f->s->wio); }

/* Feeds w's event. Fed from outside a run (a test's call between runs) or
 * from a prepare callback, libev runs it before the poll, and the poll
 * would then wait with the work done: run_once(loop, 1) would sleep after
 * it. The idle watcher of queued work keeps that poll from waiting (as
 * for work queued in a prepare callback, see tapio__check_wanted), and a
 * host polling the descriptor is woken. */
static void feed(tapio_loop *loop, void *w, int revents) {
  ev_feed_event(loop->ev, w, revents);
  if (!loop->running || loop->preparing) {
    tapio__check_wanted(loop);
    tapio__backend_poke(loop);
  }
}

/* The stream reads now (from the loop, or at the next run's start).
 * Feeding the watcher runs it before the other pending ones, unlike
 * tapio__stream_read_soon, but only once: every feed of this layer comes
 * from a timer (a drip), a test's call, or a countdown that ends the
 * reading or writing, never from the fed callback itself, so none can
 * repeat and keep the loop. */
static void kick_reading(fault *f) {
  tapio_transport *t = &f->s->head;
  if (!reading(t))
    return;
  if (layered(f))
    apply_want(f);
  else if (!ev_is_active(&f->s->rio))
    ev_io_start(t->loop->ev, &f->s->rio);
  feed(t->loop, &f->s->rio, EV_READ);
}

static void release_reading(fault *f) {
  if (!f->read_held)
    return;
  f->read_held = 0;
  kick_reading(f);
}

static void release_writing(fault *f) {
  tapio_transport *t = &f->s->head;
  if (!f->write_held)
    return;
  f->write_held = 0;
  if (layered(f))
    apply_want(f);
  if (t->wsize == 0 || (t->flags & TAPIO__T_LOST))
    return;
  if (!ev_is_active(&f->s->wio))
    ev_io_start(t->loop->ev, &f->s->wio);
  feed(t->loop, &f->s->wio, EV_WRITE);
}

static void on_drip(tapio__timer *tm) {
  release_reading(TAPIO_CONTAINER(tm, fault, drip_timer));
}

/* The interval counts from the loop's check after the read, when the
 * piece has reached data_received: counted from the read itself, a piece
 * delivered late (a loaded machine, valgrind) came less than the interval
 * before the next. */
static void on_drip_start(tapio__task *task) {
  fault *f = TAPIO_CONTAINER(task, fault, drip_start);
  tapio__timer_start(&f->drip_timer, f->drip_interval);
}

static void drip_stop(fault *f) {
  tapio__timer_stop(&f->drip_timer);
  tapio__task_unpost(f->s->head.loop, &f->drip_start);
}

/* ---- The layer ----------------------------------------------------------- */

/* A reset is seen from both sides: a memory peer reads it after what it
 * has; a socket closes with a RST (SO_LINGER 0) instead of a FIN. */
static void reset_peer(fault *f) {
  tapio_transport *t = &f->s->head;
  struct linger lg = {1, 0};
  int fd;
  if (tapio__memory_reset(t, TAPIO_ECONNRESET) == 0)
    return;
  fd = f->orig->fd(t);
  if (fd >= 0)
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
}

static ssize_t read_fails(fault *f) {
  int code = (int)f->read_error.value;
  if (code == TAPIO_ECONNRESET)
    reset_peer(f);
  return code;
}

static ssize_t f_read(tapio__stream *s, void *ctx, void *buf, size_t len) {
  fault *f = ctx;
  ssize_t n;
  if (reached(&f->read_error))
    return read_fails(f);
  if (reached(&f->eof))
    return 0;
  if (reached(&f->stop_reading) || f->read_held) {
    hold_reading(f);
    return TAPIO_EAGAIN;
  }
  limit(&f->read_error, &len);
  limit(&f->eof, &len);
  limit(&f->stop_reading, &len);
  if (f->drip && f->drip < len)
    len = f->drip;
  n = f->lower->read(s, f->lower_ctx, buf, len);
  if (n <= 0)
    return n;
  if (count(&f->read_error, (uint64_t)n) | count(&f->eof, (uint64_t)n))
    feed(s->head.loop, &s->rio, EV_READ); /* takes effect now */
  count(&f->stop_reading, (uint64_t)n);
  if (f->drip_interval > 0) {
    hold_reading(f);
    tapio__task_unpost(s->head.loop, &f->drip_start);
    tapio__task_post(s->head.loop, &f->drip_start);
  }
  return n;
}

static ssize_t f_writev(tapio__stream *s, void *ctx, const struct iovec *iov,
                        int n) {
  fault *f = ctx;
  struct iovec cut[TAPIO__MAX_IOV];
  size_t len = SIZE_MAX, total = 0;
  ssize_t r;
  int i;
  if (reached(&f->write_error))
    return (ssize_t)f->write_error.value;
  if (reached(&f->stop_writing) || f->write_held) {
    hold_writing(f);
    return TAPIO_EAGAIN;
  }
  limit(&f->write_error, &len);
  limit(&f->stop_writing, &len);
  for (i = 0; i < n && i < TAPIO__MAX_IOV && total < len; i++) {
    cut[i] = iov[i];
    if (cut[i].iov_len > len - total)
      cut[i].iov_len = len - total;
    total += cut[i].iov_len;
  }
  r = f->lower->writev(s, f->lower_ctx, cut, i);
  if (r > 0) {
    count(&f->write_error, (uint64_t)r);
    count(&f->stop_writing, (uint64_t)r);
  }
  return r;
}

static int f_shutdown(tapio__stream *s, void *ctx) {
  fault *f = ctx;
  return f->lower->shutdown(s, f->lower_ctx);
}

static int f_pending(tapio__stream *s, void *ctx) {
  fault *f = ctx;
  if (reached(&f->read_error) || reached(&f->eof))
    return 1;
  if (f->read_held || reached(&f->stop_reading))
    return 0;
  return f->lower->pending && f->lower->pending(s, f->lower_ctx);
}

static const tapio__io fault_io = {
  .read = f_read,
  .writev = f_writev,
  .shutdown = f_shutdown,
  .pending = f_pending,
};

/* For a layer that cannot end its sending side (a pipe's). */
static const tapio__io fault_io_noshut = {
  .read = f_read,
  .writev = f_writev,
  .pending = f_pending,
};

/* Over TLS: its session's work goes straight to it. */
static void f_ready(tapio__stream *s, void *ctx, int revents) {
  fault *f = ctx;
  f->lower->ready(s, f->lower_ctx, revents);
}

static int f_close(tapio__stream *s, void *ctx) {
  fault *f = ctx;
  return f->lower->close ? f->lower->close(s, f->lower_ctx) : 0;
}

static void f_closing(tapio__stream *s, void *ctx) {
  fault *f = ctx;
  if (f->lower->closing)
    f->lower->closing(s, f->lower_ctx);
}

static void f_halt(tapio__stream *s, void *ctx) {
  fault *f = ctx;
  drip_stop(f);
  if (f->lower->halt)
    f->lower->halt(s, f->lower_ctx);
}

/* No free: the wrapped kind's destroy takes this layer off first. */
static const tapio__io fault_io_layered = {
  .read = f_read,
  .writev = f_writev,
  .ready = f_ready,
  .pending = f_pending,
  .close = f_close,
  .closing = f_closing,
  .halt = f_halt,
};

static int is_fault_io(const tapio__io *io) {
  return io == &fault_io || io == &fault_io_noshut || io == &fault_io_layered;
}

const tapio__io *tapio__base_io(const tapio__stream *s, void **ctx) {
  const fault *f = is_fault_io(s->io) ? s->io_ctx : NULL;
  if (ctx)
    *ctx = f ? f->lower_ctx : s->io_ctx;
  return f ? f->lower : s->io;
}

const tapio__kind *tapio__base_kind(const tapio_transport *t) {
  const tapio__stream *s = tapio__to_stream((tapio_transport *)t);
  return is_fault_io(s->io) ? ((const fault *)s->io_ctx)->orig : t->kind;
}

void tapio__layer_want(tapio__stream *s, uint32_t want) {
  if (is_fault_io(s->io)) {
    fault *f = s->io_ctx;
    f->want = want;
    want = held_want(f, want);
  }
  tapio__stream_want(s, want);
}

void tapio__layer_push(tapio__stream *s, const tapio__io *io, void *ctx,
                       const tapio__io **lower, void **lower_ctx) {
  fault *f = is_fault_io(s->io) ? s->io_ctx : NULL;
  *lower = tapio__base_io(s, lower_ctx);
  if (!f) {
    tapio__stream_set_io(s, io, ctx);
    return;
  }
  f->lower = io;
  f->lower_ctx = ctx;
  f->want = s->head.flags & TAPIO__WANTS;
  tapio__stream_set_io(s, &fault_io_layered, f);
}

/* ---- The wrapped kind ---------------------------------------------------- */

static fault *fault_of(tapio_transport *t) {
  tapio__stream *s = tapio__to_stream(t);
  return is_fault_io(s->io) ? s->io_ctx : NULL;
}

/* Takes the layer off: the stream is as it was before the first fault
 * (with any TLS layer put under it since). */
static const tapio__kind *detach(tapio_transport *t) {
  fault *f = TAPIO_CONTAINER((tapio__kind *)(uintptr_t)t->kind, fault, kind);
  const tapio__kind *orig = f->orig;
  drip_stop(f);
  if (fault_of(t) == f) {
    f->s->io = f->lower;
    f->s->io_ctx = f->lower_ctx;
  }
  t->kind = orig;
  tapio__free(t->loop, f, sizeof *f);
  return orig;
}

static void f_destroy(tapio_transport *t) { detach(t)->destroy(t); }

static void f_shed(tapio_transport *t) { detach(t)->shed(t); }

/* t's fault layer, put on at the first fault. */
static int attach(tapio_transport *t, fault **out) {
  tapio__stream *s;
  fault *f;
  *out = NULL;
  if (!t)
    return TAPIO_EINVAL;
  if (!tapio__is_stream(t))
    return TAPIO_ENOTSUP;
  if (t->flags & (TAPIO__T_LOST | TAPIO__T_ENDED))
    return TAPIO_ECLOSED;
  if ((*out = fault_of(t)) != NULL)
    return 0;
  s = tapio__to_stream(t);
  f = tapio__calloc(t->loop, sizeof *f);
  if (!f)
    return TAPIO_ENOMEM;
  f->orig = t->kind;
  f->kind = *t->kind;
  f->kind.destroy = f_destroy;
  f->kind.shed = t->kind->shed ? f_shed : NULL;
  f->lower = s->io;
  f->lower_ctx = s->io_ctx;
  f->s = s;
  f->want = t->flags & TAPIO__WANTS;
  tapio__timer_init(&f->drip_timer, t->loop, on_drip);
  f->drip_start.run = on_drip_start;
  s->io = s->io->ready      ? &fault_io_layered
          : s->io->shutdown ? &fault_io
                            : &fault_io_noshut;
  s->io_ctx = f;
  t->kind = &f->kind;
  *out = f;
  return 0;
}

/* ---- Setting faults ------------------------------------------------------ */

static countdown *countdown_of(fault *f, int which) {
  switch (which) {
  case TAPIO_FAULT_READ_ERROR:
    return &f->read_error;
  case TAPIO_FAULT_EOF:
    return &f->eof;
  case TAPIO_FAULT_WRITE_ERROR:
    return &f->write_error;
  case TAPIO_FAULT_STOP_READING:
    return &f->stop_reading;
  case TAPIO_FAULT_STOP_WRITING:
    return &f->stop_writing;
  default:
    return NULL;
  }
}

static int is_error_fault(int which) {
  return which == TAPIO_FAULT_READ_ERROR || which == TAPIO_FAULT_WRITE_ERROR;
}

int tapio_fault_set(tapio_transport *t, int which, uint64_t after,
                    int64_t value) {
  fault *f;
  countdown *c;
  int rc;
  if (which < TAPIO_FAULT_READ_ERROR || which > TAPIO_FAULT_STOP_WRITING ||
      (is_error_fault(which) && (value >= 0 || value < INT32_MIN)))
    return TAPIO_EINVAL;
  if ((rc = attach(t, &f)) < 0)
    return rc;
  c = countdown_of(f, which);
  c->on = 1;
  c->left = after;
  c->value = value;
  if (after > 0)
    return 0;
  if (which == TAPIO_FAULT_STOP_READING)
    hold_reading(f);
  else if (which == TAPIO_FAULT_STOP_WRITING)
    hold_writing(f);
  else if (which == TAPIO_FAULT_WRITE_ERROR && t->wsize)
    feed(t->loop, &f->s->wio, EV_WRITE); /* what waits fails */
  else if (which != TAPIO_FAULT_WRITE_ERROR && ev_is_active(&f->s->rio))
    kick_reading(f); /* the error or end is read now */
  return 0;
}

int tapio_fault_drip(tapio_transport *t, size_t bytes, double interval) {
  fault *f;
  int rc;
  if (!(interval >= 0) || (bytes == 0 && interval > 0))
    return TAPIO_EINVAL;
  if ((rc = attach(t, &f)) < 0)
    return rc;
  f->drip = bytes;
  f->drip_interval = interval;
  if (interval == 0) {
    drip_stop(f);
    release_reading(f);
  }
  return 0;
}

int tapio_fault_clear(tapio_transport *t) {
  fault *f;
  if (!t)
    return TAPIO_EINVAL;
  if (!tapio__is_stream(t))
    return TAPIO_ENOTSUP;
  if ((f = fault_of(t)) == NULL)
    return 0;
  f->read_error.on = f->eof.on = f->stop_reading.on = 0;
  f->write_error.on = f->stop_writing.on = 0;
  f->drip = 0;
  f->drip_interval = 0;
  drip_stop(f);
  release_reading(f);
  release_writing(f);
  return 0;
}
