/* The virtual network's datagram half: on a virtual loop,
 * create_datagram_endpoint makes an endpoint with no socket, bound at a
 * virtual address, and datagrams travel in memory, delivered by the loop
 * at times it knows (never by real time), with faults on demand.
 *
 * The network (one per loop, in the kit) holds what is bound and what is
 * in flight: each datagram sent, with the time it arrives, in order of
 * that time, in a flight (flight.c: the faults' draws and the list, the
 * task and the timer that deliver what is due, what is sent meanwhile
 * going in the next turn, as on a real loop). Arriving, a datagram finds
 * the endpoint bound at its address (or the wildcard of its family at
 * its port): that one's datagram_received, with the sender's address;
 * none, and the sender hears error_received(ECONNREFUSED), as tapio's
 * sockets hear the ICMP error on loopback (IP_RECVERR), and it keeps
 * receiving. A broadcast
 * (255.255.255.255) reaches every endpoint at its port's wildcard,
 * reuse_port's all, and none is no error (no host answers a broadcast
 * with ICMP: RFC 1122), as the kernel delivers it. Once the last
 * endpoint is gone, what is still in flight goes too: a test that closed
 * everything leaves no timer of the network behind.
 *
 * What an endpoint has in flight is held to a capacity (its socket's send
 * buffer); what does not fit waits in the transport's write buffer, as a
 * real endpoint's does when its socket refuses, with pause_writing and
 * resume_writing at the watermarks, and goes out as datagrams arrive.
 * Faults are the sender's: loss, duplication, reordering, delay and
 * jitter, drawn per datagram from a seed (splitmix64), so that a failing
 * run replays from its seed.
 *
 * An endpoint whose reading is paused holds what arrives (dgram_queue.c)
 * up to its receive buffer (Linux's default, counted as the memory held):
 * what does not fit is dropped and counted, as the kernel's receive queue
 * drops (TAPIO_STAT_DATAGRAMS_DROPPED); after resume_reading the held ones
 * come first, in order. */
#include "tapio_int.h"

#include <string.h>

#define MAX_IPV4 65507         /* 65535 less the IP and UDP headers */
#define MAX_IPV6 65527         /* 65535 less the UDP header */
#define DEFAULT_CAPACITY 212992 /* Linux's default send buffer */
#define RECEIVE_BUFFER 212992   /* and receive buffer */

typedef struct vdg vdg;
typedef tapio__fpkt vpkt;   /* a datagram in flight (flight.c) */

struct tapio__dnet {
  tapio_loop *loop;
  tapio__link ends;     /* the bound endpoints, in the order they bound */
  tapio__flight flight; /* what is in flight: landing is arriving */
  unsigned next_port;
};

struct vdg {
  tapio_transport head;
  tapio__link link;     /* in the network's ends, while bound */
  tapio__addr self;
  int af, connected, reuse_port;
  int unbound;          /* port 0 until its first send (Linux's autobind) */
  int due;              /* a broadcast being delivered has yet to reach it */
  tapio__addr dflt;     /* allow_broadcast's remote: the default */
  tapio__dgram_queue q; /* the write buffer: what waits for room */
  size_t capacity;      /* the most it may have in flight (fs.inflight) */
  unsigned lost_sends;
  tapio__fsender fs;    /* its faults, what it has in flight */
  tapio__dgram_held held; /* arrived while reading was paused */
  uint64_t drops;       /* arrived with the held ones at RECEIVE_BUFFER */
};

static const tapio__kind vdg_kind;

static vdg *to_vdg(tapio_transport *t) {
  return TAPIO_CONTAINER(t, vdg, head);
}

static const tapio_datagram_protocol *proto_of(const vdg *d) {
  return (const tapio_datagram_protocol *)d->head.proto;
}

static tapio__dnet *net_of(tapio_loop *loop) { return loop->kit->dnet; }

/* ---- The network -------------------------------------------------------- */

static void arrive(tapio__flight *fl, vpkt *p);
static void left(tapio__fsender *s);

static tapio__dnet *net_get(tapio_loop *loop) {
  tapio__dnet *n = loop->kit->dnet;
  if (n)
    return n;
  n = tapio__calloc(loop, sizeof *n);
  if (!n)
    return NULL;
  n->loop = loop;
  tapio__list_init(&n->ends);
  tapio__flight_init(&n->flight, loop, arrive);
  n->next_port = TAPIO__PORT_FIRST;
  loop->kit->dnet = n;
  return n;
}

void tapio__dnet_free(tapio_loop *loop) {
  tapio__dnet *n = loop->kit ? loop->kit->dnet : NULL;
  if (!n)
    return;
  tapio__flight_free(&n->flight);
  tapio__free(loop, n, sizeof *n);
  loop->kit->dnet = NULL;
}

/* Whether d, bound at dst's port and host or their wildcard, takes a
 * datagram from src: a connected endpoint takes only its peer's (Linux's
 * lookup passes it by). */
static int takes(const vdg *d, const tapio__addr *dst,
                 const tapio__addr *src) {
  const tapio_transport *t = &d->head;
  return !d->unbound && tapio__addr_clash(&d->self, dst) &&
         (!d->connected ||
          tapio__addr_equal((const struct sockaddr *)&src->ss, src->len,
                            &t->peer.sa, t->peerlen));
}

/* The endpoint a datagram to dst from src reaches: bound at dst, else at
 * its family's wildcard at that port; reuse_port's first. */
static vdg *receiver(tapio__dnet *n, const tapio__addr *dst,
                     const tapio__addr *src) {
  vdg *wild = NULL;
  tapio__link *l;
  for (l = n->ends.next; l != &n->ends; l = l->next) {
    vdg *d = TAPIO_CONTAINER(l, vdg, link);
    if (!takes(d, dst, src))
      continue;
    if (!tapio__addr_is_any(&d->self))
      return d; /* bound at dst itself */
    if (!wild)
      wild = d;
  }
  return wild;
}

/* ---- Delivery ----------------------------------------------------------- */

static void refused(vdg *from, const vpkt *p) {
  char msg[256];
  const tapio_datagram_protocol *proto = proto_of(from);
  if ((from->head.flags & TAPIO__T_CLOSING) || !proto->error_received)
    return;
  tapio__describe(msg, sizeof msg, "sendto",
                  (const struct sockaddr *)&p->dst.ss, p->dst.len,
                  TAPIO_ECONNREFUSED);
  proto->error_received(from->head.ud, &from->head, TAPIO_ECONNREFUSED, msg);
}

/* Reading is paused, or what was held waits for its task: held, or
 * dropped when the receive buffer is full. */
static void hold(vdg *to, const vpkt *p) {
  size_t cost = tapio__dgram_cost(p->len, p->src.len);
  if (to->held.bytes + cost > RECEIVE_BUFFER ||
      tapio__held_add(&to->held, 0, p->data, p->len,
                      (const struct sockaddr *)&p->src.ss, p->src.len) < 0)
    to->drops++;
}

static void hand_over(vdg *to, const vpkt *p) {
  if (to->head.flags & TAPIO__T_CLOSING)
    return; /* no longer read: the socket drops it */
  if ((to->head.flags & TAPIO__T_RPAUSED) || to->held.q.head) {
    hold(to, p);
    return;
  }
  to->head.nrecv += p->len;
  if (proto_of(to)->datagram_received)
    proto_of(to)->datagram_received(to->head.ud, &to->head, p->data, p->len,
                                    (const struct sockaddr *)&p->src.ss,
                                    p->src.len);
}

/* The endpoints a broadcast reaches are marked first, then each is
 * found again before its call: a callback may close endpoints (unbound
 * at once) or make new ones (not reached: they came after). */
static void broadcast(tapio__dnet *n, const vpkt *p) {
  tapio__link *l;
  for (l = n->ends.next; l != &n->ends; l = l->next) {
    vdg *d = TAPIO_CONTAINER(l, vdg, link);
    d->due = takes(d, &p->dst, &p->src);
  }
  for (l = n->ends.next; l != &n->ends;) {
    vdg *d = TAPIO_CONTAINER(l, vdg, link);
    if (!d->due) {
      l = l->next;
      continue;
    }
    d->due = 0;
    hand_over(d, p);
    l = n->ends.next; /* the list may have changed */
  }
}

static vdg *sender_vdg(tapio__fsender *s) {
  return TAPIO_CONTAINER(s, vdg, fs);
}

static void arrive(tapio__flight *fl, vpkt *p) {
  tapio__dnet *n = TAPIO_CONTAINER(fl, tapio__dnet, flight);
  vdg *to;
  if (tapio__addr_is_broadcast(&p->dst)) {
    broadcast(n, p);
    return;
  }
  to = receiver(n, &p->dst, &p->src);
  if (!to) {
    if (p->from)
      refused(sender_vdg(p->from), p);
    return;
  }
  hand_over(to, p);
}

static void flush(vdg *d);
static int ephemeral(tapio__dnet *n, tapio__addr *a);

/* One of d's datagrams arrived: what waits for room may go. */
static void left(tapio__fsender *s) {
  vdg *d = sender_vdg(s);
  if (d->q.head)
    flush(d);
}

/* ---- Sending ------------------------------------------------------------ */

/* The address the receiver sees: the sender's, or, bound at a wildcard,
 * the source Linux picks for the one it sent to. */
static void source_of(const vdg *d, const tapio__addr *dst, tapio__addr *src) {
  if (!tapio__addr_is_any(&d->self)) {
    *src = d->self;
    return;
  }
  *src = *dst;
  tapio__addr_source(src, tapio__addr_port(&d->self));
}

/* One datagram into flight, as the faults say (flight.c). */
static int launch(vdg *d, const void *data, size_t len,
                  const struct sockaddr *sa, socklen_t alen) {
  tapio__addr dst, src;
  memcpy(&dst.ss, sa, alen);
  dst.len = alen;
  source_of(d, &dst, &src);
  d->head.nsent += len;
  return tapio__flight_launch(&d->fs, data, len, &dst, &src);
}

/* Room in flight for len more (one datagram always goes alone). */
static int has_room(const vdg *d, size_t len) {
  return d->fs.inflight == 0 || d->fs.inflight + len <= d->capacity;
}

/* Room came: what waits goes, in order; a pending close finishes. */
static void flush(vdg *d) {
  tapio__dgram_out *o;
  while ((o = d->q.head) && has_room(d, o->len) &&
         !(d->head.flags & TAPIO__T_LOST)) {
    launch(d, o->bytes + o->alen, o->len, (struct sockaddr *)o->bytes,
           o->alen);
    tapio__dgram_pop(&d->head, &d->q);
  }
  tapio__flow_shrank(&d->head);
  if (!d->q.head && (d->head.flags & (TAPIO__T_CLOSING | TAPIO__T_LOST)) ==
                       TAPIO__T_CLOSING)
    tapio__transport_lost(&d->head, 0, NULL);
}

/* An unbound endpoint's first send binds it at a free port of its
 * family's wildcard (Linux's autobind); until then its sockname says
 * port 0, and nothing reaches it. */
static int autobind(vdg *d) {
  tapio__addr a = d->self; /* its own port 0 clashes with no candidate */
  int rc = ephemeral(net_of(d->head.loop), &a);
  if (rc < 0)
    return rc;
  d->self = a;
  d->unbound = 0;
  return 0;
}

int tapio__vdgram_sendto(tapio_transport *t, const void *data, size_t len,
                         const void *addr, size_t addrlen) {
  vdg *d = to_vdg(t);
  const struct sockaddr *sa;
  socklen_t alen;
  int rc = tapio__dgram_destination(d->af, d->connected, &d->dflt, t, addr,
                                    addrlen, &sa, &alen);
  if (rc < 0)
    return rc;
  if (t->flags & TAPIO__T_CLOSING)
    return tapio__dgram_lost_send(t, &d->lost_sends);
  if (len > (size_t)(d->af == AF_INET ? MAX_IPV4 : MAX_IPV6))
    return TAPIO_EMSGSIZE;
  if (d->unbound && (rc = autobind(d)) < 0)
    return rc;
  if (!sa) { /* the connected peer */
    sa = &t->peer.sa;
    alen = t->peerlen;
  }
  if (d->q.head || !has_room(d, len)) {
    rc = tapio__dgram_push(t, &d->q, data, len, sa, alen);
    if (rc == 0)
      tapio__flow_grew(t);
    return rc;
  }
  return launch(d, data, len, sa, alen);
}

/* ---- Binding ------------------------------------------------------------ */

/* An endpoint bound where a bind at a clashes (Linux's EADDRINUSE),
 * unless both set reuse_port. */
static int in_use(tapio__dnet *n, const tapio__addr *a, int reuse_port) {
  tapio__link *l;
  for (l = n->ends.next; l != &n->ends; l = l->next) {
    vdg *d = TAPIO_CONTAINER(l, vdg, link);
    if (tapio__addr_clash(&d->self, a) && !(reuse_port && d->reuse_port))
      return 1;
  }
  return 0;
}

/* A free port for a: the next one from where the last search ended. */
static int ephemeral(tapio__dnet *n, tapio__addr *a) {
  unsigned i, span = TAPIO__PORT_LAST - TAPIO__PORT_FIRST + 1;
  for (i = 0; i < span; i++) {
    unsigned port = n->next_port++;
    if (n->next_port > TAPIO__PORT_LAST)
      n->next_port = TAPIO__PORT_FIRST;
    tapio__addr_set_port(a, (int)port);
    if (!in_use(n, a, 0))
      return 0;
  }
  return TAPIO_EADDRINUSE;
}

/* The last endpoint gone, what is in flight is dropped (see the top). */
static void unbind(vdg *d) {
  tapio__dnet *n = net_of(d->head.loop);
  tapio__list_remove(&d->link);
  if (tapio__list_empty(&n->ends))
    tapio__flight_clear(&n->flight);
}

/* ---- The kind ----------------------------------------------------------- */

static void vdg_start(tapio_transport *t) { (void)t; }

static void vdg_close(tapio_transport *t) {
  vdg *d = to_vdg(t);
  if (!d->q.head)
    tapio__transport_lost(t, 0, NULL);
}

/* The port is free from here on; what is in flight still arrives. */
static void vdg_halt(tapio_transport *t) {
  vdg *d = to_vdg(t);
  unbind(d);
  while (d->q.head)
    tapio__dgram_pop(t, &d->q);
  tapio__held_clear(&d->held);
}

static void vdg_destroy(tapio_transport *t) {
  vdg *d = to_vdg(t);
  vdg_halt(t);
  tapio__flight_forget(&net_of(t->loop)->flight, &d->fs);
  tapio__fsender_free(t->loop, &d->fs);
  tapio__free(t->loop, d, sizeof *d);
}

static int vdg_fd(tapio_transport *t) {
  (void)t;
  return TAPIO_ENOTSUP;
}

/* The kind's reading step: a resume delivers what was held first. */
static void vdg_reading(tapio_transport *t) {
  if (!(t->flags & TAPIO__T_RPAUSED))
    tapio__held_resume(&to_vdg(t)->held);
}

static void vdg_shed(tapio_transport *t) {
  vdg *d = to_vdg(t);
  vdg_halt(t);
  tapio__fsender_free(t->loop, &d->fs);
}

static const tapio__kind vdg_kind = {
  TAPIO_TRANSPORT_DATAGRAM,
  TAPIO__CAN_READ | TAPIO__CAN_FLOW,
  sizeof(tapio_datagram_protocol),
  vdg_start, vdg_close, vdg_halt, vdg_destroy, vdg_fd, vdg_shed,
  vdg_reading
};

/* The wildcard address of af. */
static void any_of(int af, tapio__addr *out) {
  memset(out, 0, sizeof *out);
  out->ss.ss_family = (sa_family_t)af;
  out->len = af == AF_INET ? sizeof(struct sockaddr_in)
                           : sizeof(struct sockaddr_in6);
}

int tapio__vdgram_new(tapio_loop *loop, const tapio_datagram_protocol *proto,
                      void *ud, int af, const tapio__addr *local,
                      const tapio__addr *remote, int broadcast,
                      int reuse_port, tapio_transport **out) {
  tapio__dnet *n = net_get(loop);
  tapio__addr self;
  vdg *d;
  int rc = 0, unbound = !local && !(remote && !broadcast);
  *out = NULL;
  if (!n)
    return TAPIO_ENOMEM;
  if (local) {
    self = *local;
  } else if (remote && !broadcast) {
    self = *remote; /* Linux binds a connected socket at its source */
    tapio__addr_source(&self, 0);
  } else {
    any_of(af, &self); /* unbound: a port at its first send, as Linux */
  }
  if (!unbound && tapio__addr_port(&self) == 0)
    rc = ephemeral(n, &self);
  else if (!unbound && in_use(n, &self, reuse_port))
    rc = TAPIO_EADDRINUSE;
  if (rc < 0)
    return rc;
  d = tapio__calloc(loop, sizeof *d);
  if (!d)
    return TAPIO_ENOMEM;
  tapio__transport_init(&d->head, &vdg_kind, loop, proto, ud);
  d->self = self;
  d->unbound = unbound;
  d->af = self.ss.ss_family;
  d->reuse_port = reuse_port;
  d->capacity = DEFAULT_CAPACITY;
  d->fs.flight = &n->flight;
  d->fs.left = left;
  tapio__held_init(&d->held, &d->head, NULL);
  if (remote && broadcast)
    d->dflt = *remote;
  if (remote && !broadcast) {
    d->connected = 1;
    tapio__transport_set_peer(&d->head, (const struct sockaddr *)&remote->ss,
                              remote->len);
  }
  tapio__list_push(&n->ends, &d->link);
  *out = &d->head;
  return 0;
}

/* ---- The testing kit's calls -------------------------------------------- */

static vdg *vdg_of(tapio_transport *t) {
  return t && t->kind == &vdg_kind ? to_vdg(t) : NULL;
}

int tapio__vdgram_sockname(tapio_transport *t, tapio__addr *out) {
  vdg *d = vdg_of(t);
  if (!d)
    return TAPIO_ENOTSUP;
  *out = d->self;
  return 0;
}

uint64_t tapio__vdgram_drops(tapio_transport *t) {
  vdg *d = vdg_of(t);
  return d ? d->drops : UINT64_MAX;
}

tapio__fsender *tapio__vdgram_sender(tapio_transport *t) {
  vdg *d = vdg_of(t);
  return d ? &d->fs : NULL;
}

int tapio_datagram_set_capacity(tapio_transport *t, size_t bytes) {
  vdg *d = vdg_of(t);
  if (!d || bytes == 0)
    return TAPIO_EINVAL;
  d->capacity = bytes;
  if (d->q.head)
    flush(d);
  return 0;
}
