/* Datagrams kept in memory by an endpoint, real (datagram.c) or virtual
 * (vdgram.c): its write buffer (what the socket, or the virtual one's
 * capacity, refused for now), and the datagrams it received but holds
 * because reading is paused (the rest of a batch read at once when the
 * pause came inside it; a virtual endpoint's arrivals), delivered in
 * order from a task after resume_reading, never from inside it. */
#include "tapio_int.h"

#include <string.h>

#define HEADER 8 /* asyncio 3.13 counts each queued datagram as its bytes
                    plus 8 */

size_t tapio__dgram_cost(size_t len, socklen_t alen) {
  return sizeof(tapio__dgram_out) + alen + len;
}

static size_t out_size(const tapio__dgram_out *o) {
  return tapio__dgram_cost(o->len, o->alen);
}

/* A copy of the datagram (or, code set, of an error's message) at the
 * end of q; NULL when out of memory. */
static tapio__dgram_out *append(tapio_loop *loop, tapio__dgram_queue *q,
                                int code, const void *data, size_t len,
                                const struct sockaddr *sa, socklen_t alen) {
  tapio__dgram_out *o = tapio__alloc(loop, tapio__dgram_cost(len, alen));
  if (!o)
    return NULL;
  o->next = NULL;
  o->len = len;
  o->alen = alen;
  o->code = code;
  if (alen)
    memcpy(o->bytes, sa, alen);
  if (len)
    memcpy(o->bytes + alen, data, len);
  if (q->tail)
    q->tail->next = o;
  else
    q->head = o;
  q->tail = o;
  return o;
}

/* Takes q's first entry off (the caller frees it). */
static tapio__dgram_out *unlink_first(tapio__dgram_queue *q) {
  tapio__dgram_out *o = q->head;
  q->head = o->next;
  if (!q->head)
    q->tail = NULL;
  return o;
}

/* ---- The write buffer ---------------------------------------------------- */

int tapio__dgram_push(tapio_transport *t, tapio__dgram_queue *q,
                      const void *data, size_t len, const struct sockaddr *sa,
                      socklen_t alen) {
  if (tapio__flow_figs(t) < 0 || !append(t->loop, q, 0, data, len, sa, alen))
    return TAPIO_ENOMEM;
  t->wsize += len + HEADER;
  return 0;
}

void tapio__dgram_pop(tapio_transport *t, tapio__dgram_queue *q) {
  tapio__dgram_out *o = unlink_first(q);
  t->wsize -= o->len + HEADER;
  tapio__free(t->loop, o, out_size(o));
}

/* ---- Held while reading is paused ---------------------------------------- */

static void run_held(tapio__task *task);

void tapio__held_init(tapio__dgram_held *h, tapio_transport *t,
                      void (*emptied)(tapio_transport *t)) {
  memset(h, 0, sizeof *h);
  h->t = t;
  h->emptied = emptied;
  h->task.run = run_held;
}

int tapio__held_add(tapio__dgram_held *h, int code, const void *data,
                    size_t len, const struct sockaddr *sa, socklen_t alen) {
  tapio__dgram_out *o = append(h->t->loop, &h->q, code, data, len, sa, alen);
  if (!o)
    return TAPIO_ENOMEM;
  h->bytes += out_size(o);
  return 0;
}

static int reading(const tapio_transport *t) {
  return !(t->flags & (TAPIO__T_CLOSING | TAPIO__T_RPAUSED));
}

/* One held entry to the protocol: a datagram, or the error that took
 * its place (one too large to receive). */
static void hand(tapio_transport *t, const tapio__dgram_out *o) {
  const tapio_datagram_protocol *p = (const tapio_datagram_protocol *)t->proto;
  if (o->code) {
    if (p->error_received)
      p->error_received(t->ud, t, o->code, o->bytes + o->alen);
    return;
  }
  t->nrecv += o->len;
  if (p->datagram_received)
    p->datagram_received(t->ud, t, o->bytes + o->alen, o->len,
                         o->alen ? o->bytes : NULL, o->alen);
}

/* In order, until the protocol pauses or closes; each is taken off the
 * queue before its call, so a close inside it (which frees the queue)
 * leaves it to this function to free. */
static void run_held(tapio__task *task) {
  tapio__dgram_held *h = TAPIO_CONTAINER(task, tapio__dgram_held, task);
  tapio_transport *t = h->t;
  while (h->q.head && reading(t)) {
    tapio__dgram_out *o = unlink_first(&h->q);
    h->bytes -= out_size(o);
    hand(t, o);
    tapio__free(t->loop, o, out_size(o));
  }
  if (!h->q.head && reading(t) && h->emptied)
    h->emptied(t);
}

void tapio__held_resume(tapio__dgram_held *h) {
  if (h->q.head)
    tapio__task_post(h->t->loop, &h->task);
  else if (h->emptied)
    h->emptied(h->t);
}

void tapio__held_clear(tapio__dgram_held *h) {
  tapio__task_unpost(h->t->loop, &h->task);
  while (h->q.head) {
    tapio__dgram_out *o = unlink_first(&h->q);
    tapio__free(h->t->loop, o, out_size(o));
  }
  h->bytes = 0;
}
