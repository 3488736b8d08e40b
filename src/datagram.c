/* The datagram transport: UDP and Unix datagram endpoints, asyncio's
 * DatagramTransport. Reading goes on until the socket is empty (a
 * bounded number of datagrams per wake-up), one recvfrom per datagram
 * while they come one at a time, recvmmsg into the loop's datagram slots
 * when several wait; what the protocol sends while a batch of several is
 * delivered is gathered and goes out in one sendmmsg after it; sendto
 * otherwise tries the socket first and queues (copied) only what it
 * refuses, flushed with sendmmsg on writability. ICMP errors
 * (IP_RECVERR) reach error_received, naming the address they concern,
 * and the endpoint keeps receiving. pause_reading stops the reading and
 * the delivery at once, also inside a batch: its rest is held and goes
 * first after resume_reading (dgram_queue.c). The figure of datagrams the
 * kernel dropped is the socket's SO_MEMINFO. The testing kit's faults,
 * once set, take sendto aside (flight.c): what they hold goes to the
 * socket at its time, and a close waits for it. The lifetime is the
 * head's (transport.c). */
#include "tapio_int.h"

#include <errno.h>
#include <linux/errqueue.h>
#include <linux/sock_diag.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define SLOT (64 * 1024)       /* any UDP datagram fits (65527 at most) */
#define NSLOTS 16              /* datagrams per recvmmsg */
#define UNIX_SLOT (256 * 1024) /* Unix datagrams may be larger */
#define BUDGET 64              /* datagrams read per wake-up, at most */
#define GROW 8                 /* datagrams read one by one in a wake-up
                                  before reads take several */
#define ERRS 4                 /* failed reads per wake-up, at most */
#define CORK_N 16              /* sends gathered during a batch */
#define CORK_MAX 2048          /* larger ones go out at once */
#define LOST_WARN 5            /* sends after close before a warning */

/* The loop's datagram area, made at the first datagram read: the slots
 * (untouched pages cost no memory), their headers, and the sends
 * gathered while one endpoint's batch is delivered. */
typedef struct dgram_area {
  char slots[NSLOTS * SLOT];
  struct mmsghdr msgs[NSLOTS];
  struct iovec iov[NSLOTS];
  tapio__addr names[NSLOTS];
  tapio__dgram *owner;          /* the endpoint delivering a batch */
  int ncork;
  struct mmsghdr cmsgs[CORK_N];
  struct iovec ciov[CORK_N];
  tapio__addr caddr[CORK_N];
  char cdata[CORK_N][CORK_MAX];
} dgram_area;

/* The testing kit's faults of what an endpoint sends (flight.c): made at
 * the first tapio_datagram_set_faults, kept until the end. */
typedef struct dgram_faults {
  tapio__flight fl;           /* what they hold; landing is sending */
  tapio__fsender s;
  tapio__dgram *d;
} dgram_faults;

/* An error of a send, for error_received from the loop. */
typedef struct dgram_err {
  struct dgram_err *next;
  int code;
  char msg[];
} dgram_err;

struct tapio__dgram {
  tapio_transport head;
  ev_io rio, wio;
  int af;                     /* the socket's family */
  int connected;              /* send() needs no address */
  tapio__addr dflt;           /* allow_broadcast's remote: the default */
  tapio__dgram_queue q;       /* what the socket refused for now */
  dgram_err *ehead, *etail;
  tapio__task etask;          /* delivers the errors */
  unsigned lost_sends;
  int vlen;                   /* datagrams asked of the next read */
  dgram_faults *fx;           /* NULL until faults are set */
  tapio__dgram_held rest;     /* a batch's rest, read before a pause */
  uint64_t drops_at_end;      /* the figure as the descriptor closed */
};

static const tapio__kind dgram_kind;

static tapio__dgram *to_dgram(tapio_transport *t) {
  return TAPIO_CONTAINER(t, tapio__dgram, head);
}

static const tapio_datagram_protocol *proto_of(const tapio__dgram *d) {
  return (const tapio_datagram_protocol *)d->head.proto;
}

/* Whether faults hold datagrams of d's still to send. */
static int held(const tapio__dgram *d) {
  return d->fx && tapio__flight_busy(&d->fx->fl);
}

/* A close in progress ends once nothing is queued or held and every
 * error of a send has reached error_received: asyncio reports those
 * before connection_lost (inside sendto, or as it flushes). */
static void end_if_flushed(tapio__dgram *d) {
  if ((d->head.flags & (TAPIO__T_CLOSING | TAPIO__T_LOST)) ==
          TAPIO__T_CLOSING && !d->q.head && !held(d) && !d->ehead)
    tapio__transport_lost(&d->head, 0, NULL);
}

void tapio__datagram_area_free(tapio_loop *loop) {
  tapio__free(loop, loop->dbuf, sizeof(dgram_area));
  loop->dbuf = NULL;
}

/* Not zeroed: the slots' pages stay untouched until a datagram needs
 * them; every other field is set before it is read. */
static dgram_area *area_of(tapio_loop *loop) {
  dgram_area *a = (dgram_area *)loop->dbuf;
  if (a)
    return a;
  a = tapio__alloc(loop, sizeof *a);
  if (a) {
    a->owner = NULL;
    a->ncork = 0;
    loop->dbuf = (char *)a;
  }
  return a;
}

/* ---- Errors of sends: error_received from the loop ---------------------- */

static void run_errors(tapio__task *task) {
  tapio__dgram *d = TAPIO_CONTAINER(task, tapio__dgram, etask);
  tapio_transport *t = &d->head;
  while (d->ehead && !(t->flags & TAPIO__T_LOST)) {
    dgram_err *e = d->ehead;
    d->ehead = e->next;
    if (!d->ehead)
      d->etail = NULL;
    if (proto_of(d)->error_received)
      proto_of(d)->error_received(t->ud, t, e->code, e->msg);
    tapio__free(t->loop, e, sizeof *e + strlen(e->msg) + 1);
  }
  end_if_flushed(d);
}

static void clear_errors(tapio__dgram *d) {
  tapio__task_unpost(d->head.loop, &d->etask);
  while (d->ehead) {
    dgram_err *e = d->ehead;
    d->ehead = e->next;
    tapio__free(d->head.loop, e, sizeof *e + strlen(e->msg) + 1);
  }
  d->etail = NULL;
}

/* A send failed for a reason of the network: error_received, later. */
static void send_error(tapio__dgram *d, int code, const struct sockaddr *sa,
                       socklen_t len) {
  char msg[256];
  dgram_err *e;
  tapio__describe(msg, sizeof msg, "sendto", sa, len, code);
  e = tapio__alloc(d->head.loop, sizeof *e + strlen(msg) + 1);
  if (!e)
    return; /* out of memory: the report is lost, the endpoint is not */
  e->next = NULL;
  e->code = code;
  memcpy(e->msg, msg, strlen(msg) + 1);
  if (d->etail)
    d->etail->next = e;
  else
    d->ehead = e;
  d->etail = e;
  tapio__task_post(d->head.loop, &d->etask);
}

/* ---- The write queue ------------------------------------------------------ */

static int enqueue(tapio__dgram *d, const void *data, size_t len,
                   const struct sockaddr *sa, socklen_t alen) {
  if (tapio__dgram_push(&d->head, &d->q, data, len, sa, alen) < 0)
    return TAPIO_ENOMEM;
  if (!ev_is_active(&d->wio))
    ev_io_start(d->head.loop->ev, &d->wio);
  tapio__flow_grew(&d->head);
  return 0;
}

static void dequeue(tapio__dgram *d) {
  tapio__dgram_pop(&d->head, &d->q);
}

static void clear_queue(tapio__dgram *d) {
  while (d->q.head)
    dequeue(d);
  d->head.wsize = 0;
}

/* An errno of a send: 1 to wait for writability, 0 when it was reported
 * (the datagram is dropped, as asyncio drops it). */
static int send_failed(tapio__dgram *d, int err, const struct sockaddr *sa,
                       socklen_t len) {
  if (err == EAGAIN || err == EWOULDBLOCK || err == ENOBUFS)
    return 1;
  send_error(d, tapio__from_errno(err), sa, len);
  return 0;
}

/* Sends what the socket takes of msgs[0..n); returns how many went (a
 * failed one counts, reported) or -1 when the socket is full. */
static int send_many(tapio__dgram *d, struct mmsghdr *msgs, int n) {
  int done = 0;
  while (done < n) {
    int k = n - done == 1
                ? (sendmsg(d->rio.fd, &msgs[done].msg_hdr, MSG_NOSIGNAL) < 0
                       ? -1 : 1)
                : sendmmsg(d->rio.fd, msgs + done, (unsigned)(n - done),
                           MSG_NOSIGNAL);
    struct msghdr *m = &msgs[done].msg_hdr;
    if (k < 0 && errno == EINTR)
      continue;
    if (k < 0 && send_failed(d, errno, m->msg_name, m->msg_namelen))
      return done ? done : -1;
    if (k < 0)
      k = 1; /* that one failed and was reported: go past it */
    done += k;
  }
  return done;
}

/* The queue is empty: a pending close finishes (when nothing is held). */
static void drained(tapio__dgram *d) {
  ev_io_stop(d->head.loop->ev, &d->wio);
  end_if_flushed(d);
}

#define FLUSH_N 32

static void flush_queue(tapio__dgram *d) {
  struct mmsghdr msgs[FLUSH_N];
  struct iovec iov[FLUSH_N];
  while (d->q.head) {
    tapio__dgram_out *o = d->q.head;
    int n = 0, sent, i;
    memset(msgs, 0, sizeof msgs);
    for (; o && n < FLUSH_N; o = o->next, n++) {
      iov[n].iov_base = o->bytes + o->alen;
      iov[n].iov_len = o->len;
      msgs[n].msg_hdr.msg_iov = &iov[n];
      msgs[n].msg_hdr.msg_iovlen = 1;
      msgs[n].msg_hdr.msg_name = o->alen ? o->bytes : NULL;
      msgs[n].msg_hdr.msg_namelen = o->alen;
    }
    sent = send_many(d, msgs, n);
    if (sent < 0)
      break;
    for (i = 0; i < sent; i++) {
      d->head.nsent += d->q.head->len;
      dequeue(d);
    }
    tapio__flow_shrank(&d->head);
    if ((d->head.flags & TAPIO__T_LOST) || sent < n)
      break;
  }
  if (!d->q.head && !(d->head.flags & TAPIO__T_LOST))
    drained(d);
}

static int drain_errqueue(tapio__dgram *d);

/* While reading is paused, the ICMP errors of what is sent are read here:
 * the error queue keeps the socket in EPOLLERR, which libev hands to the
 * write watcher, and the queue would be flushed again and again. */
static void on_writable(struct ev_loop *ev, ev_io *w, int revents) {
  tapio__dgram *d = TAPIO_CONTAINER(w, tapio__dgram, wio);
  (void)ev;
  (void)revents;
  if (d->head.flags & TAPIO__T_RPAUSED)
    drain_errqueue(d);
  if (!(d->head.flags & TAPIO__T_LOST))
    flush_queue(d);
}

/* ---- Gathered sends: what a batch's callbacks send ------------------------ */

static void flush_cork(dgram_area *a) {
  tapio__dgram *d = a->owner;
  int n = a->ncork, sent, i;
  if (!d || n == 0)
    return;
  a->ncork = 0;
  sent = send_many(d, a->cmsgs, n);
  for (i = sent < 0 ? 0 : sent; i < n; i++) {
    struct msghdr *m = &a->cmsgs[i].msg_hdr;
    if (enqueue(d, a->cdata[i], a->ciov[i].iov_len, m->msg_name,
                m->msg_namelen) < 0)
      break; /* out of memory: these are lost, as a full socket drops */
  }
  for (i = 0; i < (sent < 0 ? 0 : sent); i++)
    d->head.nsent += a->ciov[i].iov_len;
}

static void cork(dgram_area *a, const void *data, size_t len,
                 const struct sockaddr *sa, socklen_t alen) {
  int i = a->ncork++;
  struct msghdr *m = &a->cmsgs[i].msg_hdr;
  memcpy(a->cdata[i], data, len);
  a->ciov[i].iov_base = a->cdata[i];
  a->ciov[i].iov_len = len;
  memset(m, 0, sizeof *m);
  m->msg_iov = &a->ciov[i];
  m->msg_iovlen = 1;
  if (alen) {
    memcpy(&a->caddr[i].ss, sa, alen);
    m->msg_name = &a->caddr[i].ss;
    m->msg_namelen = alen;
  }
}

/* ---- sendto ------------------------------------------------------------- */

/* A send after close: dropped, and the exception handler hears of it
 * once, at the LOST_WARN-th, as asyncio logs its warning. */
int tapio__dgram_lost_send(tapio_transport *t, unsigned *count) {
  if (++*count == LOST_WARN)
    tapio__report(t->loop, TAPIO_ECLOSED,
                  "sendto on a closed datagram transport: datagrams are "
                  "dropped", t);
  return TAPIO_ECLOSED;
}

/* Inlined into sendto's common case (a call more costs its datagram
 * about 24 instructions, counted); the faults' paths take it through
 * send_held, out of line. */
static inline __attribute__((always_inline)) int
send_now(tapio__dgram *d, const void *data, size_t len,
         const struct sockaddr *sa, socklen_t alen) {
  ssize_t n;
  do
    n = sa ? sendto(d->rio.fd, data, len, MSG_NOSIGNAL, sa, alen)
           : send(d->rio.fd, data, len, MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  if (n >= 0) {
    d->head.nsent += len;
    return 0;
  }
  if (errno == EMSGSIZE)
    return TAPIO_EMSGSIZE; /* the caller's mistake: nothing is sent */
  if (send_failed(d, errno, sa, alen))
    return enqueue(d, data, len, sa, alen);
  return 0;
}

/* Behind what waits, never before it. */
static inline __attribute__((always_inline)) int
send_or_queue(tapio__dgram *d, const void *data, size_t len,
              const struct sockaddr *sa, socklen_t alen) {
  return d->q.head ? enqueue(d, data, len, sa, alen)
                   : send_now(d, data, len, sa, alen);
}

/* The same for the faults' paths, out of line. */
static __attribute__((noinline)) int
send_held(tapio__dgram *d, const void *data, size_t len,
          const struct sockaddr *sa, socklen_t alen) {
  return send_or_queue(d, data, len, sa, alen);
}

/* ---- Faults: datagrams held until their time (flight.c) ----------------- */

/* A held datagram is due: it goes as sendto would have sent it; what the
 * socket refuses now (EMSGSIZE too) is error_received's, as any late
 * failure. Its endpoint aborted meanwhile: dropped. */
static void land(tapio__flight *fl, tapio__fpkt *p) {
  tapio__dgram *d = TAPIO_CONTAINER(fl, dgram_faults, fl)->d;
  const struct sockaddr *sa =
      p->dst.len ? (const struct sockaddr *)&p->dst.ss : NULL;
  if (p->from &&
      send_held(d, p->data, p->len, sa, p->dst.len) == TAPIO_EMSGSIZE)
    send_error(d, TAPIO_EMSGSIZE, sa, p->dst.len);
}

/* One held datagram went: a close waiting for the last finishes. */
static void left(tapio__fsender *s) {
  end_if_flushed(TAPIO_CONTAINER(s, dgram_faults, s)->d);
}

/* sendto as the faults say: lost, held, or sent now (once or twice). */
static int faulty_sendto(tapio__dgram *d, const void *data, size_t len,
                         const struct sockaddr *sa, socklen_t alen) {
  tapio__addr dst;
  int n, i, rc = 0;
  dst.len = alen;
  if (alen)
    memcpy(&dst.ss, sa, alen);
  n = tapio__flight_launch(&d->fx->s, data, len, &dst, NULL);
  for (i = 0; i < n && rc == 0; i++)
    rc = send_held(d, data, len, sa, alen);
  return n < 0 ? n : rc;
}

int tapio__dgram_sender(tapio_transport *t, int make, tapio__fsender **s) {
  tapio__dgram *d;
  *s = NULL;
  if (t->kind != &dgram_kind)
    return TAPIO_EINVAL;
  d = to_dgram(t);
  if (!d->fx && make) {
    dgram_faults *fx = tapio__calloc(t->loop, sizeof *fx);
    if (!fx)
      return TAPIO_ENOMEM;
    tapio__flight_init(&fx->fl, t->loop, land);
    fx->fl.at_once = 1;
    fx->s.flight = &fx->fl;
    fx->s.left = left;
    fx->d = d;
    d->fx = fx;
  }
  *s = d->fx ? &d->fx->s : NULL;
  return 0;
}

static void faults_free(tapio__dgram *d) {
  if (!d->fx)
    return;
  tapio__flight_free(&d->fx->fl);
  tapio__fsender_free(d->head.loop, &d->fx->s);
  tapio__free(d->head.loop, d->fx, sizeof *d->fx);
  d->fx = NULL;
}

int tapio_transport_sendto(tapio_transport *t, const void *data, size_t len,
                           const void *addr, size_t addrlen) {
  const struct sockaddr *sa;
  socklen_t alen;
  tapio__dgram *d;
  dgram_area *a;
  int rc;
  if (!t || (!data && len) || len > PTRDIFF_MAX)
    return TAPIO_EINVAL;
  if (t->kind != &dgram_kind) /* a virtual endpoint: decided by its kind */
    return t->kind->id == TAPIO_TRANSPORT_DATAGRAM
               ? tapio__vdgram_sendto(t, data, len, addr, addrlen)
               : TAPIO_ENOTSUP;
  d = to_dgram(t);
  rc = tapio__dgram_destination(d->af, d->connected, &d->dflt, t, addr,
                                addrlen, &sa, &alen);
  if (rc < 0)
    return rc;
  if (t->flags & TAPIO__T_CLOSING)
    return tapio__dgram_lost_send(t, &d->lost_sends);
  if (d->fx) /* the testing kit's faults */
    return faulty_sendto(d, data, len, sa, alen);
  if (d->q.head) /* behind what waits, never before it */
    return enqueue(d, data, len, sa, alen);
  a = (dgram_area *)t->loop->dbuf;
  if (a && a->owner == d && len <= CORK_MAX) {
    if (a->ncork == CORK_N)
      flush_cork(a);
    if (!d->q.head) {
      cork(a, data, len, sa, alen);
      return 0;
    }
    return enqueue(d, data, len, sa, alen);
  }
  if (a && a->owner == d)
    flush_cork(a); /* a large one: what was gathered goes first */
  return send_or_queue(d, data, len, sa, alen);
}

/* ---- Reading ------------------------------------------------------------- */

/* Reports what the socket's error queue holds (IP_RECVERR): each entry an
 * ICMP error about a datagram sent, with the address it went to. Returns
 * how many there were. A Unix socket has none: MSG_ERRQUEUE there reads
 * (and here would drop) an ordinary datagram. */
static int drain_errqueue(tapio__dgram *d) {
  int n = 0;
  if (d->af == AF_UNIX)
    return 0;
  while (n < NSLOTS && !(d->head.flags & TAPIO__T_CLOSING)) {
    char ctrl[512], msg[256];
    tapio__addr name;
    struct msghdr m;
    struct cmsghdr *c;
    int code = 0;
    memset(&m, 0, sizeof m);
    m.msg_name = &name.ss;
    m.msg_namelen = sizeof name.ss;
    m.msg_control = ctrl;
    m.msg_controllen = sizeof ctrl;
    if (recvmsg(d->rio.fd, &m, MSG_ERRQUEUE | MSG_DONTWAIT) < 0)
      break;
    for (c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
      if ((c->cmsg_level == SOL_IP && c->cmsg_type == IP_RECVERR) ||
          (c->cmsg_level == SOL_IPV6 && c->cmsg_type == IPV6_RECVERR)) {
        struct sock_extended_err ee;
        memcpy(&ee, CMSG_DATA(c), sizeof ee);
        code = tapio__from_errno((int)ee.ee_errno);
      }
    n++;
    if (!code || !proto_of(d)->error_received)
      continue;
    tapio__describe(msg, sizeof msg, "sendto", (struct sockaddr *)&name.ss,
                    m.msg_namelen, code);
    proto_of(d)->error_received(d->head.ud, &d->head, code, msg);
  }
  return n;
}

/* recvmmsg failed with err (not EAGAIN): the error queue says more; an
 * error it does not explain goes to error_received as it is. */
static void read_error(tapio__dgram *d, int err) {
  int code = tapio__from_errno(err);
  if (drain_errqueue(d) == 0 && proto_of(d)->error_received &&
      !(d->head.flags & TAPIO__T_CLOSING))
    proto_of(d)->error_received(d->head.ud, &d->head, code,
                                tapio_strerror(code));
}

#define TOO_LARGE 160 /* its message's room */

static int too_large_msg(char *msg, size_t len, size_t slot) {
  return snprintf(msg, TOO_LARGE, "a datagram of %zu bytes is larger than "
                  "the %zu bytes tapio receives: dropped", len, slot);
}

static void too_large(tapio__dgram *d, size_t len, size_t slot) {
  char msg[TOO_LARGE];
  too_large_msg(msg, len, slot);
  if (proto_of(d)->error_received)
    proto_of(d)->error_received(d->head.ud, &d->head, TAPIO_EMSGSIZE, msg);
}

/* Reading was paused inside the batch: datagrams i..n are held, copied,
 * for after resume_reading (closed: dropped, as the socket's rest). Out
 * of memory, the endpoint fails: a datagram must not go missing. */
static __attribute__((noinline)) void hold_rest(tapio__dgram *d,
                                                dgram_area *a, int i, int n,
                                                size_t slot) {
  int rc = 0;
  if (d->head.flags & TAPIO__T_CLOSING)
    return;
  for (; i < n && rc == 0; i++) {
    struct msghdr *m = &a->msgs[i].msg_hdr;
    size_t len = a->msgs[i].msg_len;
    char msg[TOO_LARGE];
    if ((m->msg_flags & MSG_TRUNC) || len > slot)
      rc = tapio__held_add(&d->rest, TAPIO_EMSGSIZE, msg,
                           (size_t)too_large_msg(msg, len, slot) + 1, NULL,
                           0);
    else
      rc = tapio__held_add(&d->rest, 0, m->msg_iov->iov_base, len,
                           m->msg_name, m->msg_namelen);
  }
  if (rc < 0)
    tapio__transport_force_close(&d->head, rc, NULL);
}

/* Calls the protocol for datagrams 0..n of the batch, until it pauses
 * reading or closes (one flag test per datagram); how many it took. */
static int deliver(tapio__dgram *d, dgram_area *a, int n, size_t slot) {
  tapio_transport *t = &d->head;
  int i;
  for (i = 0; i < n && !(t->flags & (TAPIO__T_CLOSING | TAPIO__T_RPAUSED));
       i++) {
    struct msghdr *m = &a->msgs[i].msg_hdr;
    size_t len = a->msgs[i].msg_len;
    if ((m->msg_flags & MSG_TRUNC) || len > slot) {
      too_large(d, len, slot);
      continue;
    }
    t->nrecv += len;
    if (proto_of(d)->datagram_received)
      proto_of(d)->datagram_received(t->ud, t, m->msg_iov->iov_base, len,
                                     m->msg_namelen ? m->msg_name : NULL,
                                     m->msg_namelen);
  }
  return i;
}

/* Reads up to nslots datagrams into the slots: recvmmsg for several,
 * recvfrom for one (on Linux a recvmmsg, or a recvmsg, of one costs more
 * than a recvfrom: bench/udp_calls.c, bench/README.md "UDP echo").
 * Returns how many, or -1 with errno. */
static int receive(tapio__dgram *d, dgram_area *a, int nslots, size_t slot) {
  int i, n;
  for (i = 0; i < nslots; i++) {
    struct msghdr *m = &a->msgs[i].msg_hdr;
    a->iov[i].iov_base = a->slots + (size_t)i * slot;
    a->iov[i].iov_len = slot;
    m->msg_iov = &a->iov[i];
    m->msg_iovlen = 1;
    m->msg_name = &a->names[i].ss;
    m->msg_namelen = sizeof a->names[i].ss;
    m->msg_control = NULL;
    m->msg_controllen = 0;
    m->msg_flags = 0;
  }
  /* MSG_TRUNC: the length of a datagram too large for its slot */
  if (nslots == 1) {
    struct msghdr *m = &a->msgs[0].msg_hdr;
    ssize_t len;
    do
      len = recvfrom(d->rio.fd, a->slots, slot, MSG_DONTWAIT | MSG_TRUNC,
                     (struct sockaddr *)m->msg_name, &m->msg_namelen);
    while (len < 0 && errno == EINTR);
    if (len < 0)
      return -1;
    a->msgs[0].msg_len = (unsigned)len;
    return 1;
  }
  do
    n = recvmmsg(d->rio.fd, a->msgs, (unsigned)nslots,
                 MSG_DONTWAIT | MSG_TRUNC, NULL);
  while (n < 0 && errno == EINTR);
  return n;
}

/* The size of the next read, as large as what arrives. Datagrams that
 * come one at a time are read one by one (a slot that stays empty costs
 * a header copied in and out, and a recvmmsg more than a recvfrom); when
 * one wake-up has read GROW of them so, they are coming faster than they
 * are handled and reads take several, the number doubling while they come
 * back full, halving when half empty, back to one when one came. */
static void adapt(tapio__dgram *d, int n, int want, int got) {
  if (want == 1)
    d->vlen = got >= GROW ? 4 : 1;
  else if (n == want && d->vlen < NSLOTS)
    d->vlen *= 2;
  else if (n == 1)
    d->vlen = 1;
  else if (n * 2 <= want)
    d->vlen /= 2;
}

/* Reads until the socket is empty, as a plain libev echo does (what the
 * protocol's replies brought in meanwhile is read without another
 * epoll_wait), BUDGET datagrams at most, so a flood cannot starve the
 * loop. */
static void on_readable(struct ev_loop *ev, ev_io *w, int revents) {
  tapio__dgram *d = TAPIO_CONTAINER(w, tapio__dgram, rio);
  tapio_transport *t = &d->head;
  dgram_area *a = area_of(t->loop);
  size_t slot = d->af == AF_UNIX ? UNIX_SLOT : SLOT;
  int nslots = (int)(sizeof a->slots / slot), got = 0, errs = 0;
  (void)ev;
  (void)revents;
  if (!a) {
    tapio__transport_force_close(t, TAPIO_ENOMEM, NULL);
    return;
  }
  while (got < BUDGET &&
         !(t->flags & (TAPIO__T_CLOSING | TAPIO__T_RPAUSED))) {
    int want = d->vlen < nslots ? d->vlen : nslots;
    int n, took;
    if (want > BUDGET - got)
      want = BUDGET - got;
    n = receive(d, a, want, slot);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (got == 0 && errs == 0) /* woken with nothing: an error waits */
        drain_errqueue(d);
      break;
    }
    if (n < 0) {
      read_error(d, errno);
      if (++errs == ERRS)
        break;
      continue;
    }
    a->owner = n > 1 ? d : NULL; /* one datagram: its replies go at once */
    took = deliver(d, a, n, slot);
    if (took < n)
      hold_rest(d, a, took, n, slot);
    flush_cork(a);
    a->owner = NULL;
    got += n;
    adapt(d, n, want, got);
  }
}

/* ---- The datagram's steps of the lifetime ------------------------------- */

/* Reading (again): not before connection_made returned, nor while
 * paused or closing. */
static void read_on(tapio_transport *t) {
  tapio__dgram *d = to_dgram(t);
  if ((t->flags & (TAPIO__T_MADE | TAPIO__T_CLOSING | TAPIO__T_RPAUSED)) ==
      TAPIO__T_MADE)
    ev_io_start(t->loop->ev, &d->rio);
}

static void dgram_start(tapio_transport *t) { read_on(t); }

static void dgram_reading(tapio_transport *t) {
  tapio__dgram *d = to_dgram(t);
  if (t->flags & TAPIO__T_RPAUSED)
    ev_io_stop(t->loop->ev, &d->rio);
  else
    tapio__held_resume(&d->rest); /* then read_on */
}

/* SO_MEMINFO's count of the datagrams the kernel dropped as the receive
 * queue was full (its sk_drops, which SO_RXQ_OVFL would report too, but
 * in every datagram's ancillary data, a cost on the hot path): asked
 * when wanted. A 32-bit counter in the kernel: it wraps. */
static uint64_t socket_drops(int fd) {
#ifdef SO_MEMINFO
  uint32_t mem[SK_MEMINFO_VARS];
  socklen_t len = sizeof mem;
  if (fd < 0 || getsockopt(fd, SOL_SOCKET, SO_MEMINFO, mem, &len) < 0 ||
      len <= SK_MEMINFO_DROPS * sizeof mem[0])
    return UINT64_MAX; /* the OS cannot tell */
  return mem[SK_MEMINFO_DROPS];
#else
  (void)fd;
  return UINT64_MAX;
#endif
}

uint64_t tapio__dgram_drops(tapio_transport *t) {
  tapio__dgram *d;
  if (t->kind != &dgram_kind)
    return tapio__vdgram_drops(t);
  d = to_dgram(t);
  return d->rio.fd < 0 ? d->drops_at_end : socket_drops(d->rio.fd);
}

/* A close inside a batch's callback: the gathered sends go first. */
static void flush_own_cork(tapio__dgram *d) {
  dgram_area *a = (dgram_area *)d->head.loop->dbuf;
  if (a && a->owner == d)
    flush_cork(a);
}

static void dgram_close(tapio_transport *t) {
  tapio__dgram *d = to_dgram(t);
  ev_io_stop(t->loop->ev, &d->rio);
  flush_own_cork(d);
  end_if_flushed(d);
}

static void dgram_halt(tapio_transport *t) {
  tapio__dgram *d = to_dgram(t);
  flush_own_cork(d); /* asyncio had sent those already */
  ev_io_stop(t->loop->ev, &d->rio);
  ev_io_stop(t->loop->ev, &d->wio);
  clear_queue(d);
  clear_errors(d);
  tapio__held_clear(&d->rest);
  if (d->fx) /* an abort: what the faults hold goes too */
    tapio__flight_drop(&d->fx->fl, &d->fx->s);
}

static void dgram_destroy(tapio_transport *t) {
  tapio__dgram *d = to_dgram(t);
  dgram_halt(t);
  faults_free(d);
  close(d->rio.fd);
  tapio__free(t->loop, d, sizeof *d);
}

static int dgram_fd(tapio_transport *t) {
  return to_dgram(t)->rio.fd;
}

/* A retained endpoint after connection_lost: a shell without descriptor;
 * its fault counts stay readable. */
static void dgram_shed(tapio_transport *t) {
  tapio__dgram *d = to_dgram(t);
  dgram_halt(t);
  if (d->fx) {
    tapio__flight_free(&d->fx->fl);
    tapio__fsender_free(t->loop, &d->fx->s);
  }
  d->drops_at_end = socket_drops(d->rio.fd);
  close(d->rio.fd);
  d->rio.fd = d->wio.fd = -1;
}

static const tapio__kind dgram_kind = {
  TAPIO_TRANSPORT_DATAGRAM,
  TAPIO__CAN_READ | TAPIO__CAN_FLOW,
  sizeof(tapio_datagram_protocol),
  dgram_start, dgram_close, dgram_halt, dgram_destroy, dgram_fd, dgram_shed,
  dgram_reading
};

tapio_transport *tapio__datagram_new(tapio_loop *loop, int fd, int af,
                                     const tapio_datagram_protocol *proto,
                                     void *ud, int connected,
                                     const tapio__addr *dflt) {
  tapio__dgram *d = tapio__calloc(loop, sizeof *d);
  if (!d)
    return NULL;
  tapio__transport_init(&d->head, &dgram_kind, loop, proto, ud);
  d->af = af;
  d->connected = connected;
  if (dflt)
    d->dflt = *dflt;
  d->etask.run = run_errors;
  d->vlen = 1;
  tapio__held_init(&d->rest, &d->head, read_on);
  ev_io_init(&d->rio, on_readable, fd, EV_READ);
  ev_io_init(&d->wio, on_writable, fd, EV_WRITE);
  return &d->head;
}
