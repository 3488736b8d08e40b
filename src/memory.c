/* In-memory pairs: two stream transports joined through memory. Each is
 * the stream body of stream.c with an I/O layer of memory instead of a
 * socket, so that writing, flow control, half-close, BufferedProtocol,
 * closing and aborting are the socket's own code. Each direction is a
 * link: the bytes one side wrote and the other has not read, up to a
 * capacity, each byte with the time it may be read (a delay), read in
 * chunks the test chooses.
 *
 * The stream starts and stops its watchers as it does for a socket; they
 * watch a descriptor that is never ready (an empty epoll instance, one
 * per loop), which libev accepts and never fires. What fires them is the
 * link: when bytes, room or an end arrive, the side's wake task runs the
 * stream's read or write step (ev_invoke) if that watcher is on, from the
 * loop's ready queue, one read per turn, as a socket's readiness would.
 *
 * A pair's sides may also be pipe transports (a read pipe and a write
 * pipe, the pipe kinds' own ids and abilities): the pipes between a
 * subprocess transport and a fake child (vchild.c). A write pipe whose
 * reader is gone closes with TAPIO_EPIPE, as pipe.c's does. */
#include "tapio_int.h"

#include <errno.h>
#include <string.h>
#include <sys/epoll.h>

#define DEFAULT_CAPACITY (64 * 1024)

typedef struct seg {
  struct seg *next;
  double at;           /* when the reader may have it (loop time) */
  size_t len, off;     /* data[off..len) is left */
  char data[];
} seg;

/* One direction: what one side wrote that the other has not read. */
typedef struct mlink {
  seg *head, *tail;
  size_t queued;       /* bytes in the segments */
  size_t capacity;
  uint64_t taken;      /* bytes read from it so far */
  int eof;             /* the writer ended: end of file after the bytes */
  int error;           /* reset: the reader fails with it after the bytes */
  double end_at;       /* when the end (eof, error) reaches the reader */
  int eof_first;       /* the eof came before the error: a FIN, then a RST
                          (in CLOSE_WAIT), which the reader reads as eof */
  size_t chunk_min, chunk_max; /* 0, 0: reads take all there is */
  uint64_t rng;        /* splitmix64 state for chunk sizes */
  uint64_t *cuts;      /* offsets no read spans, ascending */
  size_t ncuts;
  double delay;
} mlink;

typedef struct mem_end mem_end;

typedef struct pair {
  tapio_loop *loop;
  mlink links[2];       /* links[i]: what side i writes */
  mem_end *ends[2];    /* NULL once that side is gone */
  int refs;
} pair;

struct mem_end {
  tapio__stream s;
  pair *p;
  int side;            /* 0: a, 1: b */
  tapio__task made;    /* connection_made */
  tapio__task wake;    /* runs the stream's read or write step */
  tapio__timer due;    /* a delayed byte becomes readable */
  tapio__link link;    /* in the kit's list of sides, while the side is */
  tapio__addr names[2]; /* the virtual network's: [0] its own, [1] its
                           peer's; len 0 for a pair made by the test */
  void (*gone)(void *ud, tapio_transport *t); /* told when the side goes */
  void *gone_ud;
  int rst_set;         /* the peer's socket is closed and bytes of this
                          side's reach it: its kernel answers with a RST */
  double rst_at;       /* ... which is back here then: writes fail */
};

static const tapio__io memory_io;
static const tapio__kind memory_kind, read_pipe_kind, write_pipe_kind;

static mem_end *end_of(tapio__stream *s) {
  return TAPIO_CONTAINER(s, mem_end, s);
}

static mlink *in_link(mem_end *e) { return &e->p->links[!e->side]; }
static mlink *out_link(mem_end *e) { return &e->p->links[e->side]; }
static mem_end *peer_of(mem_end *e) { return e->p->ends[!e->side]; }
static double now_of(mem_end *e) { return tapio__time(e->s.head.loop); }

/* A memory pair's side, or NULL. */
static mem_end *mem_of(tapio_transport *t) {
  const tapio__kind *k;
  if (!t || !tapio__is_stream(t))
    return NULL;
  k = tapio__base_kind(t);
  return k == &memory_kind || k == &read_pipe_kind || k == &write_pipe_kind
             ? end_of(tapio__to_stream(t))
             : NULL;
}

/* A write pipe whose reader went: closed with EPIPE, as pipe.c's that
 * watches for it; a closing one meets EPIPE in its flush. */
static int reader_left(mem_end *e) {
  tapio_transport *t = &e->s.head;
  if (peer_of(e) || tapio__base_kind(t) != &write_pipe_kind ||
      (t->flags & (TAPIO__T_MADE | TAPIO__T_CLOSING)) != TAPIO__T_MADE)
    return 0;
  tapio__transport_force_close(t, TAPIO_EPIPE, NULL);
  return 1;
}

/* ---- Links --------------------------------------------------------------- */

/* Bytes the reader may have now: the segments due, in order. */
static size_t readable(const mlink *l, double now) {
  const seg *g;
  size_t n = 0;
  if (!l->tail || l->tail->at <= now)
    return l->queued; /* no delay, or all of it due */
  for (g = l->head; g && g->at <= now; g = g->next)
    n += g->len - g->off;
  return n;
}

/* The most one read takes: the chunk size drawn, up to the next cut. */
static size_t read_limit(mlink *l) {
  size_t lim = SIZE_MAX, i, span = l->chunk_max - l->chunk_min;
  if (l->chunk_max)
    lim = l->chunk_min +
          (span ? (size_t)(tapio__splitmix64(&l->rng) % (span + 1)) : 0);
  for (i = 0; i < l->ncuts; i++)
    if (l->cuts[i] > l->taken) {
      if (l->cuts[i] - l->taken < lim)
        lim = (size_t)(l->cuts[i] - l->taken);
      break;
    }
  return lim;
}

/* Copies the first n bytes out (buf may be NULL: dropped), freeing what
 * is read. */
static void take(tapio_loop *loop, mlink *l, char *buf, size_t n) {
  while (n > 0) {
    seg *g = l->head;
    size_t k = g->len - g->off < n ? g->len - g->off : n;
    if (buf) {
      memcpy(buf, g->data + g->off, k);
      buf += k;
    }
    g->off += k;
    l->queued -= k;
    n -= k;
    if (g->off == g->len) {
      l->head = g->next;
      if (!l->head)
        l->tail = NULL;
      tapio__free(loop, g, sizeof *g + g->len);
    }
  }
}

static void link_free(tapio_loop *loop, mlink *l) {
  take(loop, l, NULL, l->queued);
  tapio__free(loop, l->cuts, l->ncuts * sizeof *l->cuts);
  l->cuts = NULL;
  l->ncuts = 0;
}

/* The writer's end (eof, or error for a reset) has reached the reader:
 * a FIN or a RST takes the link's delay too, after the bytes before it. */
static int ended(const mlink *l, double now) {
  return (l->eof || l->error) && l->end_at <= now;
}

/* The writer's side ends the link (error 0: eof), at the time its
 * segment would arrive; the first end sets that time. */
static void link_end(tapio_loop *loop, mlink *l, int error) {
  if (!l->eof && !l->error) {
    double at = tapio__vround(tapio__time(loop) + l->delay); /* as timers */
    l->end_at = l->tail && l->tail->at > at ? l->tail->at : at;
  }
  if (error && !l->error) {
    l->error = error;
  } else if (!error) {
    l->eof_first = l->eof_first || !l->error;
    l->eof = 1;
  }
}

/* The reader has something to do: bytes due, or the end after them. */
static int can_read(mem_end *e) {
  mlink *l = in_link(e);
  return readable(l, now_of(e)) > 0 ||
         (l->queued == 0 && ended(l, now_of(e)));
}

/* A write would do something: room, or an error to give. */
static int can_write(mem_end *e) {
  mlink *l = out_link(e);
  return l->queued < l->capacity || l->error || !peer_of(e);
}

/* ---- Waking a side ------------------------------------------------------- */

static void wake(mem_end *e) {
  if (e)
    tapio__task_post(e->s.head.loop, &e->wake);
}

static void run_wake(tapio__task *task) {
  mem_end *e = TAPIO_CONTAINER(task, mem_end, wake);
  tapio__stream *s = &e->s;
  struct ev_loop *ev = s->head.loop->ev;
  if (s->head.loop->freeing || reader_left(e))
    return; /* nothing more is read or written while the loop goes */
  if (ev_is_active(&s->rio) && can_read(e))
    ev_invoke(ev, &s->rio, EV_READ);
  if (ev_is_active(&s->wio) && can_write(e))
    ev_invoke(ev, &s->wio, EV_WRITE);
}

/* A watcher of e's stream is on and the link can serve it now. */
static int wants_wake(mem_end *e) {
  tapio__stream *s = &e->s;
  return (ev_is_active(&s->rio) && can_read(e)) ||
         (ev_is_active(&s->wio) && can_write(e));
}

/* The stream starts its watchers after an EAGAIN, when the link wakes it
 * anyway; a layer with a session of its own (TLS on a memory pair) starts
 * them whenever it wants, as a socket's readiness would answer at once.
 * This answers it: before each poll (the kit's prepare watcher, which
 * keeps no run alive), and whenever a virtual run looks for work. */
int tapio__memory_poll(tapio_loop *loop) {
  tapio__link *l;
  int n = 0;
  if (!loop->kit || loop->freeing)
    return 0;
  for (l = loop->kit->ends.next; l != &loop->kit->ends; l = l->next) {
    mem_end *e = TAPIO_CONTAINER(l, mem_end, link);
    if (!e->wake.posted && wants_wake(e)) {
      wake(e);
      n++;
    }
  }
  return n;
}

static void on_poll(struct ev_loop *ev, ev_prepare *w, int revents) {
  tapio_loop *loop = w->data;
  (void)ev;
  (void)revents;
  loop->preparing = 1;
  tapio__memory_poll(loop);
  loop->preparing = 0;
}

/* e joins the kit's sides (or leaves them); the prepare watcher runs
 * while there are any. */
static void poll_join(tapio_loop *loop, mem_end *e) {
  tapio__kit *kit = loop->kit;
  tapio__list_push(&kit->ends, &e->link);
  if (!ev_is_active(&kit->poll)) {
    ev_prepare_init(&kit->poll, on_poll);
    kit->poll.data = loop;
    ev_prepare_start(loop->ev, &kit->poll);
    ev_unref(loop->ev);
  }
}

static void poll_leave(tapio_loop *loop, mem_end *e) {
  tapio__kit *kit = loop->kit;
  tapio__list_remove(&e->link);
  if (tapio__list_empty(&kit->ends) && ev_is_active(&kit->poll)) {
    ev_ref(loop->ev);
    ev_prepare_stop(loop->ev, &kit->poll);
  }
}

static void on_due(tapio__timer *tm) {
  wake(TAPIO_CONTAINER(tm, mem_end, due));
}

/* The next delayed byte of e's input, or its end: its timer, when it is
 * not due yet. */
static void arm_due(mem_end *e) {
  mlink *l;
  double at;
  if (!e)
    return;
  l = in_link(e);
  if (l->head)
    at = l->head->at;
  else if (l->eof || l->error)
    at = l->end_at;
  else
    return;
  if (at <= now_of(e))
    return;
  if (!tapio__timer_active(&e->due) || e->due.dl.when != at)
    tapio__timer_start_at(&e->due, at);
}

/* ---- The I/O layer ------------------------------------------------------- */

static ssize_t mem_read(tapio__stream *s, void *ctx, void *buf, size_t len) {
  mem_end *e = end_of(s);
  mlink *l = in_link(e);
  size_t n = readable(l, now_of(e)), lim;
  (void)ctx;
  if (n == 0) {
    if (l->queued == 0 && ended(l, now_of(e)))
      return l->error && !l->eof_first ? l->error : 0;
    arm_due(e);
    return TAPIO_EAGAIN;
  }
  lim = read_limit(l);
  if (n > lim)
    n = lim;
  if (n > len)
    n = len;
  take(s->head.loop, l, buf, n);
  l->taken += n;
  if (peer_of(e) && ev_is_active(&peer_of(e)->s.wio))
    wake(peer_of(e)); /* room for what it holds back */
  if (can_read(e))
    wake(e); /* the next read on the next turn */
  else
    arm_due(e);
  return (ssize_t)n;
}

/* The peer's socket is closed and bytes of e's reach it at `at`: its
 * kernel's RST is back a delay later (once: the first such bytes). */
static void rst_coming(mem_end *e, double at) {
  if (!e || e->rst_set)
    return;
  e->rst_set = 1;
  e->rst_at = tapio__vround(at + in_link(e)->delay);
}

/* A write to a side whose peer has gone, as TCP answers it: a reset that
 * has arrived fails it; else it is taken (its bytes are lost: the peer's
 * kernel answers them with a RST, which on loopback is back before the
 * call returns) until that RST is back, then writes fail with EPIPE. So
 * a last answer written in eof_received after the peer's close ends as
 * on a socket, with connection_lost(nil). */
static ssize_t write_to_gone(mem_end *e, const struct iovec *iov, int n) {
  double now = now_of(e);
  size_t len = 0;
  int i;
  if (in_link(e)->error && ended(in_link(e), now)) /* after a FIN: EPIPE */
    return in_link(e)->eof_first ? TAPIO_EPIPE : in_link(e)->error;
  if (e->rst_set && e->rst_at <= now)
    return TAPIO_EPIPE;
  rst_coming(e, tapio__vround(now + out_link(e)->delay));
  for (i = 0; i < n; i++)
    len += iov[i].iov_len;
  return (ssize_t)len;
}

static ssize_t mem_writev(tapio__stream *s, void *ctx,
                          const struct iovec *iov, int n) {
  mem_end *e = end_of(s);
  mlink *l = out_link(e);
  tapio_loop *loop = s->head.loop;
  size_t room, len = 0, at = 0;
  seg *g;
  int i;
  (void)ctx;
  if (!peer_of(e) && tapio__base_kind(&s->head) == &memory_kind)
    return write_to_gone(e, iov, n);
  if (!peer_of(e) || l->error || l->eof)
    return TAPIO_EPIPE; /* the other side is gone, or this one reset */
  room = l->queued < l->capacity ? l->capacity - l->queued : 0;
  for (i = 0; i < n && len < room; i++)
    len += iov[i].iov_len < room - len ? iov[i].iov_len : room - len;
  if (len == 0)
    return TAPIO_EAGAIN;
  g = tapio__alloc(loop, sizeof *g + len);
  if (!g)
    return TAPIO_ENOMEM;
  for (i = 0; at < len; i++) {
    size_t k = iov[i].iov_len < len - at ? iov[i].iov_len : len - at;
    memcpy(g->data + at, iov[i].iov_base, k);
    at += k;
  }
  g->next = NULL;
  g->len = len;
  g->off = 0;
  g->at = tapio__vround(tapio__time(loop) + l->delay); /* as timers */
  if (l->tail && g->at < l->tail->at)
    g->at = l->tail->at; /* bytes keep their order */
  if (l->tail)
    l->tail->next = g;
  else
    l->head = g;
  l->tail = g;
  l->queued += len;
  if (g->at <= tapio__time(loop))
    wake(peer_of(e));
  else
    arm_due(peer_of(e));
  return (ssize_t)len;
}

static int mem_shutdown(tapio__stream *s, void *ctx) {
  mem_end *e = end_of(s);
  (void)ctx;
  link_end(s->head.loop, out_link(e), 0);
  wake(peer_of(e));
  arm_due(peer_of(e));
  return 0;
}

static int mem_pending(tapio__stream *s, void *ctx) {
  (void)ctx;
  return can_read(end_of(s));
}

static const tapio__io memory_io = {
  .read = mem_read,
  .writev = mem_writev,
  .shutdown = mem_shutdown,
  .pending = mem_pending,
};

/* ---- The kind: a stream whose other end is a memory pair's --------------- */

static void mem_start(tapio_transport *t) {
  mem_end *e = end_of(tapio__to_stream(t));
  tapio__stream_start(t);
  if (can_read(e) || !peer_of(e))
    wake(e); /* what the peer wrote before connection_made, or its end */
}

static void run_made(tapio__task *task) {
  mem_end *e = TAPIO_CONTAINER(task, mem_end, made);
  tapio__transport_made(&e->s.head);
}

/* The side goes (its connection_lost ran): end of file to the peer after
 * what it sent, or, when it leaves bytes unread (arrived: due), a reset,
 * as the kernel sends RST; what the peer sent it is dropped, and bytes
 * still on their way reach a closed socket, whose RST goes back to the
 * peer. Once. */
static void end_gone(mem_end *e) {
  pair *p = e->p;
  tapio_loop *loop = p->loop;
  mem_end *peer = p->ends[!e->side];
  mlink *in = in_link(e);
  if (p->ends[e->side] != e)
    return;
  p->ends[e->side] = NULL;
  poll_leave(loop, e);
  tapio__task_unpost(loop, &e->made);
  tapio__task_unpost(loop, &e->wake);
  tapio__timer_stop(&e->due);
  if (readable(in, now_of(e)) > 0)
    link_end(loop, out_link(e), TAPIO_ECONNRESET);
  else if (in->head && peer)
    rst_coming(peer, in->head->at);
  link_end(loop, out_link(e), 0);
  take(loop, in, NULL, in->queued);
  wake(peer);
  arm_due(peer);
  if (e->gone)
    e->gone(e->gone_ud, &e->s.head);
}

static void pair_unref(pair *p) {
  tapio_loop *loop = p->loop;
  if (--p->refs > 0)
    return;
  link_free(loop, &p->links[0]);
  link_free(loop, &p->links[1]);
  tapio__free(loop, p, sizeof *p);
}

static void mem_destroy(tapio_transport *t) {
  tapio__stream *s = tapio__to_stream(t);
  mem_end *e = end_of(s);
  pair *p = e->p;
  tapio__stream_halt(t);
  if (s->io->free) /* a layer put on it (TLS), as stream.c's destroy */
    s->io->free(s, s->io_ctx);
  end_gone(e);
  tapio__free(p->loop, e, sizeof *e);
  pair_unref(p);
}

/* Retained past connection_lost: the peer sees the end now. */
static void mem_shed(tapio_transport *t) {
  tapio__stream_halt(t);
  end_gone(end_of(tapio__to_stream(t)));
}

static int mem_fd(tapio_transport *t) {
  (void)t;
  return TAPIO_ENOTSUP;
}

static const tapio__kind memory_kind = {
  TAPIO_TRANSPORT_STREAM,
  TAPIO__CAN_READ | TAPIO__CAN_WRITE | TAPIO__CAN_FLOW,
  sizeof(tapio_protocol),
  mem_start, tapio__stream_close, tapio__stream_halt,
  mem_destroy, mem_fd, mem_shed, tapio__stream_reading
};

/* The pipe kinds, able to do what pipe.c's do. */
static const tapio__kind read_pipe_kind = {
  TAPIO_TRANSPORT_READ_PIPE,
  TAPIO__READ_PIPE_CAPS,
  sizeof(tapio_protocol),
  mem_start, tapio__stream_close, tapio__stream_halt,
  mem_destroy, mem_fd, mem_shed, tapio__stream_reading
};

static const tapio__kind write_pipe_kind = {
  TAPIO_TRANSPORT_WRITE_PIPE,
  TAPIO__WRITE_PIPE_CAPS,
  sizeof(tapio_protocol),
  mem_start, tapio__stream_close, tapio__stream_halt,
  mem_destroy, mem_fd, mem_shed, NULL
};

int tapio__memory_reset(tapio_transport *t, int code) {
  mem_end *e = mem_of(t);
  if (!e)
    return TAPIO_ENOTSUP;
  link_end(t->loop, out_link(e), code);
  wake(peer_of(e));
  arm_due(peer_of(e));
  return 0;
}

/* ---- Making a pair ------------------------------------------------------- */

static const tapio__kind *const streams[2] = {&memory_kind, &memory_kind};

/* The loop's descriptor that is never ready: an epoll instance with
 * nothing in it (never readable, and never writable at all). */
static int inert_fd(tapio_loop *loop) {
  tapio__kit *kit = tapio__kit_get(loop);
  if (!kit)
    return TAPIO_ENOMEM;
  if (kit->inert_fd < 0) {
    kit->inert_fd = epoll_create1(EPOLL_CLOEXEC);
    if (kit->inert_fd < 0)
      return tapio__from_errno(errno);
  }
  return kit->inert_fd;
}

static void end_init(mem_end *e, pair *p, int side, int fd,
                     const tapio__kind *kind, const void *proto, void *ud) {
  tapio_loop *loop = p->loop;
  tapio__stream_init(&e->s, kind, loop, fd, &memory_io, proto, ud);
  e->p = p;
  e->side = side;
  e->made.run = run_made;
  e->wake.run = run_wake;
  tapio__timer_init(&e->due, loop, on_due);
  poll_join(loop, e);
  p->ends[side] = e;
  p->links[side].capacity = DEFAULT_CAPACITY;
}

/* A pair of sides of kinds k[0] and k[1], its connection_made posted
 * (made) or left to the caller. */
static int pair_new(tapio_loop *loop, const tapio__kind *const k[2],
                    const void *pa, void *ua, const void *pb, void *ub,
                    int made, tapio_transport **a, tapio_transport **b) {
  pair *p;
  mem_end *ea, *eb;
  int fd, i;
  if (loop->freeing)
    return TAPIO_ECLOSED;
  if ((fd = inert_fd(loop)) < 0)
    return fd;
  p = tapio__calloc(loop, sizeof *p);
  ea = p ? tapio__calloc(loop, sizeof *ea) : NULL;
  eb = ea ? tapio__calloc(loop, sizeof *eb) : NULL;
  if (!eb) {
    tapio__free(loop, ea, sizeof *ea);
    tapio__free(loop, p, sizeof *p);
    return TAPIO_ENOMEM;
  }
  p->loop = loop;
  p->refs = 2;
  end_init(ea, p, 0, fd, k[0], pa, ua);
  end_init(eb, p, 1, fd, k[1], pb, ub);
  for (i = 0; made && i < 2; i++)
    tapio__task_post(loop, &p->ends[i]->made);
  *a = &ea->s.head;
  *b = &eb->s.head;
  return 0;
}

int tapio_memory_pair(tapio_loop *loop, const tapio_protocol *pa, void *ua,
                      const tapio_protocol *pb, void *ub,
                      tapio_transport **a, tapio_transport **b) {
  if (a)
    *a = NULL;
  if (b)
    *b = NULL;
  if (!loop || !a || !b || tapio__proto_check(pa, sizeof *pa) < 0 ||
      tapio__proto_check(pb, sizeof *pb) < 0)
    return TAPIO_EINVAL;
  return pair_new(loop, streams, pa, ua, pb, ub, 1, a, b);
}

int tapio__memory_pipe(tapio_loop *loop, int to_child, const void *proto,
                       void *ud, tapio_transport **parent,
                       tapio_transport **child) {
  static const tapio__kind *const down[2] = {&write_pipe_kind,
                                             &read_pipe_kind};
  static const tapio__kind *const up[2] = {&read_pipe_kind,
                                           &write_pipe_kind};
  return pair_new(loop, to_child ? down : up, proto, ud, &tapio__no_protocol,
                  NULL, 0, parent, child);
}

void tapio__memory_on_gone(tapio_transport *t,
                           void (*fn)(void *ud, tapio_transport *t),
                           void *ud) {
  mem_end *e = mem_of(t);
  if (e) {
    e->gone = fn;
    e->gone_ud = ud;
  }
}

int tapio__memory_connect(tapio_loop *loop, const tapio_protocol *proto,
                          void *ud, const tapio__addr *from,
                          const tapio__addr *to, tapio_transport **client,
                          tapio_transport **server) {
  mem_end *c, *s;
  int rc = pair_new(loop, streams, proto, ud, &tapio__no_protocol, NULL, 0,
                    client, server);
  if (rc < 0)
    return rc;
  c = mem_of(*client);
  s = mem_of(*server);
  c->names[0] = s->names[1] = *from;
  c->names[1] = s->names[0] = *to;
  tapio__transport_set_peer(*client, (const struct sockaddr *)&to->ss,
                            to->len);
  tapio__transport_set_peer(*server, (const struct sockaddr *)&from->ss,
                            from->len);
  return 0;
}

int tapio__memory_name(tapio_transport *t, int peer, char *host,
                       size_t hostlen, int *port, int *family) {
  mem_end *e = mem_of(t);
  const tapio__addr *a = e ? &e->names[peer ? 1 : 0] : NULL;
  if (!a || a->len == 0)
    return TAPIO_ENOTSUP;
  return tapio__format_addr((const struct sockaddr *)&a->ss, a->len, host,
                            hostlen, port, family);
}

/* ---- How a side's bytes reach the other ---------------------------------- */

int tapio_memory_set_chunks(tapio_transport *t, size_t min, size_t max,
                            uint64_t seed) {
  mem_end *e = mem_of(t);
  mlink *l;
  if (!e || min > max || (max && !min))
    return TAPIO_EINVAL;
  l = out_link(e);
  l->chunk_min = min;
  l->chunk_max = max;
  l->rng = seed;
  return 0;
}

int tapio_memory_set_splits(tapio_transport *t, const uint64_t *at,
                            size_t n) {
  mem_end *e = mem_of(t);
  tapio_loop *loop;
  uint64_t *cuts = NULL;
  size_t i;
  if (!e || (n && !at) || n > SIZE_MAX / sizeof *at)
    return TAPIO_EINVAL;
  for (i = 1; i < n; i++)
    if (at[i] <= at[i - 1])
      return TAPIO_EINVAL;
  loop = t->loop;
  if (n && !(cuts = tapio__alloc(loop, n * sizeof *cuts)))
    return TAPIO_ENOMEM;
  if (n)
    memcpy(cuts, at, n * sizeof *cuts);
  tapio__free(loop, out_link(e)->cuts, out_link(e)->ncuts * sizeof *cuts);
  out_link(e)->cuts = cuts;
  out_link(e)->ncuts = n;
  return 0;
}

int tapio_memory_set_delay(tapio_transport *t, double delay) {
  mem_end *e = mem_of(t);
  if (!e || !(delay >= 0)) /* NaN too */
    return TAPIO_EINVAL;
  out_link(e)->delay = delay;
  return 0;
}

int tapio_memory_set_capacity(tapio_transport *t, size_t bytes) {
  mem_end *e = mem_of(t);
  if (!e || bytes == 0)
    return TAPIO_EINVAL;
  out_link(e)->capacity = bytes;
  if (ev_is_active(&e->s.wio))
    wake(e); /* more room for what it holds back */
  return 0;
}

size_t tapio_memory_in_flight(tapio_transport *t, void *buf, size_t len) {
  mem_end *e = mem_of(t);
  const seg *g;
  size_t at = 0;
  if (!e)
    return 0;
  for (g = out_link(e)->head; g && buf && at < len; g = g->next) {
    size_t k = g->len - g->off;
    if (k > len - at)
      k = len - at;
    memcpy((char *)buf + at, g->data + g->off, k);
    at += k;
  }
  return out_link(e)->queued;
}

tapio_transport *tapio_memory_peer(tapio_transport *t) {
  mem_end *e = mem_of(t);
  return e && peer_of(e) ? &peer_of(e)->s.head : NULL;
}
