/* Datagrams held until their time: the faults of what a datagram
 * endpoint sends (tapio_datagram_faults: loss, duplication, reordering,
 * delay and jitter, a drop list), drawn per datagram from a seed
 * (splitmix64) so that a failing run replays from its seed, and the
 * datagrams they hold, in order of the time they are due.
 *
 * The virtual network holds every datagram in flight here, one flight
 * for the network (vdgram.c: landing is arriving); a real endpoint with
 * faults holds here what is delayed or held back, one flight of its own
 * (datagram.c: landing is the socket's send). One task delivers what is
 * due (what is sent meanwhile waits for the next turn, as on a real
 * loop); one timer wakes it for the next datagram due later. */
#include "tapio_int.h"

#include <math.h>
#include <string.h>

#define BATCH 256              /* datagrams landed per turn, at most */

/* ---- The list and its delivery ------------------------------------------ */

static void deliver_due(tapio__task *task);

static void on_timer(tapio__timer *tm) {
  tapio__flight *fl = TAPIO_CONTAINER(tm, tapio__flight, timer);
  tapio__task_post(fl->loop, &fl->task);
}

void tapio__flight_init(tapio__flight *fl, tapio_loop *loop,
                        void (*land)(tapio__flight *, tapio__fpkt *)) {
  memset(fl, 0, sizeof *fl);
  fl->loop = loop;
  fl->land = land;
  fl->task.run = deliver_due;
  tapio__timer_init(&fl->timer, loop, on_timer);
}

/* The delivery runs now when something is due, else the timer waits for
 * the first datagram. */
static void schedule(tapio__flight *fl) {
  double now = tapio__time(fl->loop);
  if (!fl->head)
    tapio__timer_stop(&fl->timer);
  else if (fl->head->due <= now)
    on_timer(&fl->timer);
  else if (!tapio__timer_active(&fl->timer) ||
           fl->timer.dl.when != fl->head->due)
    tapio__timer_start_at(&fl->timer, fl->head->due);
}

/* Puts p in the list, after every datagram due no later. */
static void insert(tapio__flight *fl, tapio__fpkt *p) {
  tapio__fpkt **at = &fl->head;
  while (*at && (*at)->due <= p->due)
    at = &(*at)->next;
  p->next = *at;
  *at = p;
}

static void pkt_free(tapio_loop *loop, tapio__fpkt *p) {
  tapio__free(loop, p, sizeof *p + p->len);
}

static void list_free(tapio_loop *loop, tapio__fpkt *p) {
  while (p) {
    tapio__fpkt *next = p->next;
    pkt_free(loop, p);
    p = next;
  }
}

void tapio__flight_free(tapio__flight *fl) {
  tapio__timer_stop(&fl->timer);
  tapio__task_unpost(fl->loop, &fl->task);
  list_free(fl->loop, fl->head);
  list_free(fl->loop, fl->batch);
  fl->head = fl->batch = NULL;
}

/* Takes the datagrams due now (up to BATCH) into fl->batch: those let
 * pass first, then those still holding back (nothing more of their
 * sender came before they were due). */
static void take_due(tapio__flight *fl, double now) {
  tapio__fpkt *go = NULL, **gt = &go, *held = NULL, **ht = &held;
  int k = 0;
  while (fl->head && fl->head->due <= now && k++ < BATCH) {
    tapio__fpkt *p = fl->head;
    fl->head = p->next;
    p->next = NULL;
    if (p->hold) {
      *ht = p;
      ht = &p->next;
    } else {
      *gt = p;
      gt = &p->next;
    }
  }
  *gt = held;
  fl->batch = go;
}

static void deliver_due(tapio__task *task) {
  tapio__flight *fl = TAPIO_CONTAINER(task, tapio__flight, task);
  tapio_loop *loop = fl->loop;
  if (loop->freeing)
    return; /* nothing more lands while the loop goes */
  take_due(fl, tapio__time(loop));
  while (fl->batch) {
    tapio__fpkt *p = fl->batch;
    tapio__fsender *from;
    fl->land(fl, p); /* p stays in the batch: a sender gone meanwhile is
                        forgotten there */
    fl->batch = p->next;
    from = p->from;
    if (from)
      from->inflight -= p->len;
    pkt_free(loop, p);
    if (from && from->left)
      from->left(from);
  }
  schedule(fl);
}

void tapio__flight_clear(tapio__flight *fl) {
  while (fl->head) {
    tapio__fpkt *p = fl->head;
    fl->head = p->next;
    if (p->from)
      p->from->inflight -= p->len;
    pkt_free(fl->loop, p);
  }
  schedule(fl);
}

void tapio__flight_forget(tapio__flight *fl, tapio__fsender *s) {
  tapio__fpkt *p;
  for (p = fl->head; p; p = p->next)
    if (p->from == s)
      p->from = NULL;
  for (p = fl->batch; p; p = p->next)
    if (p->from == s)
      p->from = NULL;
}

void tapio__flight_drop(tapio__flight *fl, tapio__fsender *s) {
  tapio__fpkt **at = &fl->head;
  while (*at) {
    tapio__fpkt *p = *at;
    if (p->from != s) {
      at = &p->next;
      continue;
    }
    *at = p->next;
    s->inflight -= p->len;
    pkt_free(fl->loop, p);
  }
  tapio__flight_forget(fl, s);
  schedule(fl);
}

/* ---- The draws ------------------------------------------------------------ */

static double uniform(uint64_t *state) {
  return (double)(tapio__splitmix64(state) >> 11) * (1.0 / 9007199254740992.0);
}

/* The held datagrams a later one passed (marked with a negative due
 * time) go right after it: due no earlier than it, due. */
static void release_held(tapio__flight *fl, double due) {
  for (;;) {
    tapio__fpkt **at = &fl->head, *p;
    while (*at && (*at)->due >= 0)
      at = &(*at)->next;
    if (!*at)
      return;
    p = *at;
    *at = p->next;
    p->due = -p->due - 1;
    if (p->due < due)
      p->due = due;
    insert(fl, p);
  }
}

static tapio__fpkt *held_copy(tapio__fsender *s, const void *data,
                              size_t len, const tapio__addr *dst,
                              const tapio__addr *src) {
  tapio__fpkt *p = tapio__alloc(s->flight->loop, sizeof *p + len);
  if (!p)
    return NULL;
  p->from = s;
  p->dst = *dst;
  if (src)
    p->src = *src;
  p->len = len;
  if (len)
    memcpy(p->data, data, len);
  s->inflight += len;
  return p;
}

/* Whether the datagram numbered nth is on the drop list. */
static int listed(const tapio_datagram_faults *f, uint64_t nth) {
  size_t k;
  for (k = 0; k < f->ndrop; k++)
    if (f->drop[k] == nth)
      return 1;
  return 0;
}

int tapio__flight_launch(tapio__fsender *s, const void *data, size_t len,
                         const tapio__addr *dst, const tapio__addr *src) {
  tapio__flight *fl = s->flight;
  const tapio_datagram_faults *f = &s->faults;
  double now = tapio__time(fl->loop);
  double u_loss = uniform(&s->rng), u_dup = uniform(&s->rng);
  double u_jit = uniform(&s->rng);
  unsigned hold = f->reorder ? (unsigned)(tapio__splitmix64(&s->rng) %
                                          (f->reorder + 1)) : 0;
  uint64_t nth = ++s->sent;
  int copies = u_dup < f->duplicate ? 2 : 1, i;
  double wait = f->delay + f->jitter * u_jit, due;
  tapio__fpkt *p;
  s->counts.sent++;
  if (listed(f, nth) || u_loss < f->loss) {
    if (listed(f, nth))
      s->counts.dropped++;
    else
      s->counts.lost++;
    return 0;
  }
  s->counts.duplicated += copies == 2;
  s->counts.reordered += hold > 0;
  s->counts.delayed += wait > 0;
  if (fl->at_once && !tapio__flight_busy(fl) && !hold && wait <= 0)
    return copies;
  due = tapio__vround(now + wait);
  for (p = fl->head; p; p = p->next) /* it passes the held ones */
    if (p->from == s && p->hold && --p->hold == 0)
      p->due = -p->due - 1; /* marked: it goes after this one */
  for (i = 0; i < copies; i++) {
    if (!(p = held_copy(s, data, len, dst, src)))
      break; /* lost, as a full socket drops */
    p->hold = i ? 0 : hold;
    p->due = due;
    insert(fl, p);
  }
  release_held(fl, due);
  schedule(fl);
  return i < copies ? TAPIO_ENOMEM : 0;
}

/* ---- Setting faults --------------------------------------------------------- */

static int bad_faults(const tapio_datagram_faults *f) {
  size_t i;
  if (!(f->loss >= 0 && f->loss <= 1) ||
      !(f->duplicate >= 0 && f->duplicate <= 1) ||
      !(f->delay >= 0 && f->delay < INFINITY) ||
      !(f->jitter >= 0 && f->jitter < INFINITY) || (f->ndrop && !f->drop) ||
      f->ndrop > SIZE_MAX / sizeof *f->drop)
    return 1;
  for (i = 0; i < f->ndrop; i++)
    if (f->drop[i] == 0 || (i && f->drop[i] <= f->drop[i - 1]))
      return 1;
  return 0;
}

void tapio__fsender_free(tapio_loop *loop, tapio__fsender *s) {
  tapio__free(loop, (void *)s->faults.drop,
              s->faults.ndrop * sizeof *s->faults.drop);
  memset(&s->faults, 0, sizeof s->faults);
}

int tapio__fsender_set(tapio_loop *loop, tapio__fsender *s,
                       const tapio_datagram_faults *f) {
  uint64_t *drop = NULL;
  if (f && bad_faults(f))
    return TAPIO_EINVAL;
  if (f && f->ndrop && !(drop = tapio__alloc(loop, f->ndrop * sizeof *drop)))
    return TAPIO_ENOMEM;
  tapio__fsender_free(loop, s); /* the counts are the endpoint's life's */
  if (!f)
    return 0;
  s->faults = *f;
  if (drop)
    memcpy(drop, f->drop, f->ndrop * sizeof *drop);
  s->faults.drop = drop;
  s->rng = f->seed;
  s->sent = 0;
  return 0;
}

/* ---- The testing kit's calls -------------------------------------------- */

/* t's sender (see tapio_int.h), virtual or real. */
static int sender_of(tapio_transport *t, int make, tapio__fsender **s) {
  *s = t ? tapio__vdgram_sender(t) : NULL;
  if (*s || !t)
    return *s ? 0 : TAPIO_EINVAL;
  return tapio__dgram_sender(t, make, s);
}

int tapio_datagram_set_faults(tapio_transport *t,
                              const tapio_datagram_faults *f) {
  tapio__fsender *s;
  if (sender_of(t, 0, &s) < 0 || (f && bad_faults(f)))
    return TAPIO_EINVAL;
  if (t->flags & TAPIO__T_LOST)
    return TAPIO_ECLOSED;
  if (!s && !f)
    return 0; /* a real endpoint that never had faults */
  if (!s) {
    int rc = sender_of(t, 1, &s);
    if (rc < 0)
      return rc;
  }
  return tapio__fsender_set(t->loop, s, f);
}

int tapio_datagram_get_fault_counts(tapio_transport *t,
                                    tapio_datagram_fault_counts *out) {
  tapio__fsender *s;
  if (!out || sender_of(t, 0, &s) < 0)
    return TAPIO_EINVAL;
  if (s)
    *out = s->counts;
  else
    memset(out, 0, sizeof *out);
  return 0;
}

size_t tapio_datagram_in_flight(tapio_transport *t) {
  tapio__fsender *s;
  return sender_of(t, 0, &s) == 0 && s ? s->inflight : 0;
}
