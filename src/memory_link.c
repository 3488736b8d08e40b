/* How bytes go from one side of a memory pair to the other. Each
 * direction is a link: the bytes one side wrote and the other has not
 * read, up to a capacity, each byte with the time it may be read (a
 * delay), read in chunks the test chooses, no read spanning a cut the test
 * set. The sides' streams read and write the links through an I/O layer
 * of memory (tapio__memory_io) where a socket's would read and write the
 * socket. */
#include "memory_int.h"

#include <string.h>

/* ---- Links --------------------------------------------------------------- */

/* Bytes the reader may have now: the segments due, in order. */
size_t tapio__mem_readable(const mlink *l, double now) {
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
void tapio__mem_take(tapio_loop *loop, mlink *l, char *buf, size_t n) {
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

void tapio__mem_link_free(tapio_loop *loop, mlink *l) {
  tapio__mem_take(loop, l, NULL, l->queued);
  tapio__free(loop, l->cuts, l->ncuts * sizeof *l->cuts);
  l->cuts = NULL;
  l->ncuts = 0;
}

/* The writer's end (eof, or error for a reset) has reached the reader:
 * a FIN or a RST takes the link's delay too, after the bytes before it. */
int tapio__mem_ended(const mlink *l, double now) {
  return (l->eof || l->error) && l->end_at <= now;
}

/* The writer's side ends the link (error 0: eof), at the time its
 * segment would arrive; the first end sets that time. */
void tapio__mem_link_end(tapio_loop *loop, mlink *l, int error) {
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
int tapio__mem_can_read(mem_end *e) {
  mlink *l = in_link(e);
  return tapio__mem_readable(l, now_of(e)) > 0 ||
         (l->queued == 0 && tapio__mem_ended(l, now_of(e)));
}

/* A write would do something: room, or an error to give. */
int tapio__mem_can_write(mem_end *e) {
  mlink *l = out_link(e);
  return l->queued < l->capacity || l->error || !peer_of(e);
}

/* ---- The I/O layer the sides' streams read and write through ------------- */

static ssize_t mem_read(tapio__stream *s, void *ctx, void *buf, size_t len) {
  mem_end *e = end_of(s);
  mlink *l = in_link(e);
  size_t n = tapio__mem_readable(l, now_of(e)), lim;
  (void)ctx;
  if (n == 0) {
    if (l->queued == 0 && tapio__mem_ended(l, now_of(e)))
      return l->error && !l->eof_first ? l->error : 0;
    tapio__mem_arm_due(e);
    return TAPIO_EAGAIN;
  }
  lim = read_limit(l);
  if (n > lim)
    n = lim;
  if (n > len)
    n = len;
  tapio__mem_take(s->head.loop, l, buf, n);
  l->taken += n;
  if (peer_of(e) && ev_is_active(&peer_of(e)->s.wio))
    tapio__mem_wake(peer_of(e)); /* room for what it holds back */
  if (tapio__mem_can_read(e))
    tapio__mem_wake(e); /* the next read on the next turn */
  else
    tapio__mem_arm_due(e);
  return (ssize_t)n;
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
  if (!peer_of(e) && tapio__base_kind(&s->head) == &tapio__mem_socket_kind)
    return tapio__mem_write_to_gone(e, iov, n);
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
    tapio__mem_wake(peer_of(e));
  else
    tapio__mem_arm_due(peer_of(e));
  return (ssize_t)len;
}

static int mem_shutdown(tapio__stream *s, void *ctx) {
  mem_end *e = end_of(s);
  (void)ctx;
  tapio__mem_link_end(s->head.loop, out_link(e), 0);
  tapio__mem_wake(peer_of(e));
  tapio__mem_arm_due(peer_of(e));
  return 0;
}

static int mem_pending(tapio__stream *s, void *ctx) {
  (void)ctx;
  return tapio__mem_can_read(end_of(s));
}

const tapio__io tapio__memory_io = {
  .read = mem_read,
  .writev = mem_writev,
  .shutdown = mem_shutdown,
  .pending = mem_pending,
};

/* ---- How a side's bytes reach the other ---------------------------------- */

int tapio_memory_set_chunks(tapio_transport *t, size_t min, size_t max,
                            uint64_t seed) {
  mem_end *e = tapio__mem_of(t);
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
  mem_end *e = tapio__mem_of(t);
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
  mem_end *e = tapio__mem_of(t);
  if (!e || !(delay >= 0)) /* NaN too */
    return TAPIO_EINVAL;
  out_link(e)->delay = delay;
  return 0;
}

int tapio_memory_set_capacity(tapio_transport *t, size_t bytes) {
  mem_end *e = tapio__mem_of(t);
  if (!e || bytes == 0)
    return TAPIO_EINVAL;
  out_link(e)->capacity = bytes;
  if (ev_is_active(&e->s.wio))
    tapio__mem_wake(e); /* more room for what it holds back */
  return 0;
}

size_t tapio_memory_in_flight(tapio_transport *t, void *buf, size_t len) {
  mem_end *e = tapio__mem_of(t);
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
