/* The transport's head, shared by every kind: its lifetime (close, abort,
 * connection_lost and freeing), its protocol, write flow control and the
 * per-transport figures. The kinds (stream.c, ...) do the I/O. */
#include "tapio_int.h"

#include <errno.h>
#include <string.h>

#define DEFAULT_HIGH (64 * 1024)

int tapio__proto_check(const void *proto, size_t min) {
  const tapio__proto *p = proto;
  return p && p->size >= min ? 0 : TAPIO_EINVAL;
}

static void run_lost(tapio__task *task);

void tapio__transport_init(tapio_transport *t, const tapio__kind *kind,
                           tapio_loop *loop, const void *proto, void *ud) {
  t->kind = kind;
  t->loop = loop;
  t->proto = proto;
  t->ud = ud;
  t->high = DEFAULT_HIGH;
  t->low = DEFAULT_HIGH / 4;
  t->task.run = run_lost;
  if (!(kind->caps & TAPIO__CAN_WRITE))
    t->flags |= TAPIO__T_NOWRITE; /* one flag test on the write path */
  tapio__list_init(&t->slink);
  tapio__list_push(&loop->transports, &t->link);
}

static void destroy(tapio_transport *t) {
  tapio__free(t->loop, t->wfigs, sizeof *t->wfigs);
  t->kind->destroy(t);
}

static void release(tapio_transport *t) {
  tapio__list_remove(&t->link);
  tapio__strfree(t->loop, t->lost_msg);
  t->lost_msg = NULL;
  if (t->refs) { /* retained: a closed shell until the last release */
    t->flags |= TAPIO__T_ENDED;
    t->kind->shed(t);
    tapio__list_push(&t->loop->shells, &t->link);
    return;
  }
  destroy(t);
}

int tapio_transport_retain(tapio_transport *t) {
  if (!t)
    return TAPIO_EINVAL;
  if (!t->kind->shed)
    return TAPIO_ENOTSUP;
  if ((t->flags & TAPIO__T_ENDED) && !t->refs)
    return TAPIO_ECLOSED; /* unreachable but through a stale pointer */
  t->refs++;
  return 0;
}

void tapio_transport_release(tapio_transport *t) {
  if (!t || !t->refs)
    return;
  if (--t->refs == 0 && (t->flags & TAPIO__T_ENDED)) {
    tapio__list_remove(&t->link);
    destroy(t);
  }
}

void tapio__shells_free_all(tapio_loop *loop) {
  while (!tapio__list_empty(&loop->shells)) {
    tapio_transport *t =
        TAPIO_CONTAINER(loop->shells.next, tapio_transport, link);
    tapio__list_remove(&t->link);
    destroy(t);
  }
}

void tapio__transport_discard(tapio_transport *t) { release(t); }

static void maybe_pause(tapio_transport *t);

void tapio__transport_made(tapio_transport *t) {
  t->flags |= TAPIO__T_MADE;
  if (t->proto->connection_made)
    t->proto->connection_made(t->ud, t);
  t->kind->start(t);
  maybe_pause(t); /* written before (a memory pair's): over the mark */
}

/* ---- Closing ----------------------------------------------------------- */

/* The end ends a pause still going on: its time joins the totals, so
 * that the figures read in connection_lost, or from a retained shell
 * later, are the connection's and stop growing. */
static void end_pauses(tapio_transport *t) {
  double now = tapio__time(t->loop);
  if (t->flags & TAPIO__T_WPAUSED)
    t->wfigs->paused += now - t->wfigs->since;
  if (t->flags & TAPIO__T_RPAUSED)
    t->rpaused += now - t->rpause_since;
  t->flags &= ~(uint32_t)(TAPIO__T_WPAUSED | TAPIO__T_RPAUSED);
}

/* Once: an end already on its way keeps its code and message. */
void tapio__transport_lost(tapio_transport *t, int code, const char *message) {
  if (t->flags & TAPIO__T_LOST)
    return;
  end_pauses(t);
  t->flags |= TAPIO__T_LOST | TAPIO__T_CLOSING;
  t->lost_code = code;
  if (message)
    t->lost_msg = tapio__strdup(t->loop, message);
  tapio__task_post(t->loop, &t->task);
}

int tapio_transport_close(tapio_transport *t) {
  if (!t)
    return TAPIO_EINVAL;
  if (t->flags & TAPIO__T_CLOSING)
    return 0;
  t->flags |= TAPIO__T_CLOSING;
  t->kind->close(t);
  return 0;
}

void tapio__transport_force_close(tapio_transport *t, int code,
                                  const char *message) {
  if (t->flags & TAPIO__T_LOST)
    return;
  t->flags |= TAPIO__T_CLOSING;
  t->lost_code = code; /* for halt: a subprocess passes it to its pipes */
  t->kind->halt(t);
  tapio__transport_lost(t, code, message);
}

int tapio_transport_abort(tapio_transport *t) {
  if (!t)
    return TAPIO_EINVAL;
  tapio__transport_force_close(t, 0, NULL);
  return 0;
}

int tapio_transport_fail(tapio_transport *t, int code, const char *message) {
  if (!t || code >= 0)
    return TAPIO_EINVAL;
  tapio__transport_force_close(t, code, message);
  return 0;
}

int tapio_transport_is_closing(tapio_transport *t) {
  return t && (t->flags & TAPIO__T_CLOSING) != 0;
}

/* connection_lost, the last callback; then the kind frees the body. */
static void run_lost(tapio__task *task) {
  tapio_transport *t = TAPIO_CONTAINER(task, tapio_transport, task);
  t->kind->halt(t);
  if ((t->flags & TAPIO__T_MADE) && t->proto->connection_lost) {
    const char *msg = NULL;
    if (t->lost_code)
      msg = t->lost_msg ? t->lost_msg : tapio_strerror(t->lost_code);
    t->proto->connection_lost(t->ud, t, t->lost_code, msg);
  }
  if (t->server)
    tapio__server_detach(t->server, t);
  release(t);
}

/* ---- Flow control ------------------------------------------------------ */

/* Never before connection_made: see tapio__transport_made. */
static void maybe_pause(tapio_transport *t) {
  if (t->wsize <= t->high ||
      (t->flags & (TAPIO__T_WPAUSED | TAPIO__T_MADE)) != TAPIO__T_MADE)
    return;
  t->flags |= TAPIO__T_WPAUSED;
  t->wfigs->pauses++;
  t->wfigs->since = tapio__time(t->loop);
  if (t->proto->pause_writing)
    t->proto->pause_writing(t->ud, t);
}

int tapio__flow_figs(tapio_transport *t) {
  if (!t->wfigs && !(t->wfigs = tapio__calloc(t->loop, sizeof *t->wfigs)))
    return TAPIO_ENOMEM;
  return 0;
}

void tapio__flow_grew(tapio_transport *t) {
  if (t->wsize > t->wfigs->peak)
    t->wfigs->peak = t->wsize;
  maybe_pause(t);
}

void tapio__flow_shrank(tapio_transport *t) {
  if (!(t->flags & TAPIO__T_WPAUSED) || t->wsize > t->low)
    return;
  t->flags &= ~(uint32_t)TAPIO__T_WPAUSED;
  t->wfigs->paused += tapio__time(t->loop) - t->wfigs->since;
  if (t->proto->resume_writing)
    t->proto->resume_writing(t->ud, t);
}

static int can(tapio_transport *t, uint32_t cap) {
  return t && (t->kind->caps & cap);
}

/* A limit that does not fit a size_t (32-bit) means "never". */
static size_t to_size(int64_t v) {
#if SIZE_MAX < INT64_MAX
  if ((uint64_t)v > SIZE_MAX)
    return SIZE_MAX;
#endif
  return (size_t)v;
}

int tapio_write_buffer_limits(int64_t *high, int64_t *low) {
  int64_t h, l;
  if (!high || !low || *high < -1 || *low < -1)
    return TAPIO_EINVAL;
  h = *high;
  l = *low;
  if (h == -1) /* 4 * low, saturating */
    h = l == -1 ? DEFAULT_HIGH : (l > INT64_MAX / 4 ? INT64_MAX : 4 * l);
  if (l == -1)
    l = h / 4;
  if (l > h)
    return TAPIO_EINVAL;
  *high = h;
  *low = l;
  return 0;
}

int tapio_transport_set_write_buffer_limits(tapio_transport *t, int64_t high,
                                            int64_t low) {
  if (!can(t, TAPIO__CAN_FLOW))
    return t ? TAPIO_ENOTSUP : TAPIO_EINVAL;
  if (tapio_write_buffer_limits(&high, &low) < 0)
    return TAPIO_EINVAL;
  t->high = to_size(high);
  t->low = to_size(low);
  maybe_pause(t);
  return 0;
}

void tapio_transport_get_write_buffer_limits(tapio_transport *t, size_t *low,
                                             size_t *high) {
  int flow = can(t, TAPIO__CAN_FLOW);
  if (low)
    *low = flow ? t->low : 0;
  if (high)
    *high = flow ? t->high : 0;
}

size_t tapio_transport_get_write_buffer_size(tapio_transport *t) {
  return t ? t->wsize : 0;
}

/* ---- Protocol, loop, kind ---------------------------------------------- */

/* Where t's protocol is: its own fields, or where a sendfile holds it. */
static const tapio__proto **proto_slot(tapio_transport *t, void ***ud) {
  if (t->flags & TAPIO__T_SENDFILE)
    return tapio__sendfile_held(t, ud);
  *ud = &t->ud;
  return &t->proto;
}

int tapio_transport_set_protocol(tapio_transport *t,
                                 const tapio_protocol *proto, void *ud) {
  const tapio__proto **slot;
  void **uslot;
  if (!t || tapio__proto_check(proto, t->kind->proto_size) < 0 ||
      (t->flags & TAPIO__T_OWNED)) /* a subprocess's pipe forwards to it */
    return TAPIO_EINVAL;
  slot = proto_slot(t, &uslot);
  *slot = (const tapio__proto *)proto;
  *uslot = ud;
  t->flags |= TAPIO__T_NEWPROTO;
  return 0;
}

/* The typed setters: the kind is checked, which the size cannot tell. */
static int set_kind_protocol(tapio_transport *t, int kind, const void *proto,
                             void *ud) {
  if (tapio_transport_get_kind(t) != kind)
    return TAPIO_EINVAL;
  return tapio_transport_set_protocol(t, proto, ud);
}

int tapio_transport_set_datagram_protocol(tapio_transport *t,
                                          const tapio_datagram_protocol *proto,
                                          void *ud) {
  return set_kind_protocol(t, TAPIO_TRANSPORT_DATAGRAM, proto, ud);
}

int tapio_transport_set_subprocess_protocol(
    tapio_transport *t, const tapio_subprocess_protocol *proto, void *ud) {
  return set_kind_protocol(t, TAPIO_TRANSPORT_SUBPROCESS, proto, ud);
}

void *tapio_transport_get_protocol(tapio_transport *t,
                                   const tapio_protocol **proto) {
  const tapio__proto **slot;
  void **uslot;
  if (!t) {
    if (proto)
      *proto = NULL;
    return NULL;
  }
  slot = proto_slot(t, &uslot);
  if (proto)
    *proto = (const tapio_protocol *)*slot;
  return *uslot;
}

tapio_loop *tapio_transport_get_loop(tapio_transport *t) {
  return t ? t->loop : NULL;
}

int tapio_transport_get_kind(tapio_transport *t) {
  return t ? t->kind->id : TAPIO_EINVAL;
}

/* ---- Figures ----------------------------------------------------------- */

static uint64_t usec(double seconds) {
  return seconds > 0 ? (uint64_t)(seconds * 1e6) : 0;
}

static double paused_for(const tapio_transport *t, uint32_t flag,
                         double total, double since) {
  return total + ((t->flags & flag) ? tapio__time(t->loop) - since : 0);
}

uint64_t tapio_transport_get_stat(tapio_transport *t, int which) {
  static const tapio__wfigs none; /* nothing was ever buffered */
  const tapio__wfigs *w;
  if (!t)
    return 0;
  w = t->wfigs ? t->wfigs : &none;
  switch (which) {
  case TAPIO_STAT_BYTES_RECEIVED:
    return t->nrecv;
  case TAPIO_STAT_BYTES_SENT:
    return t->nsent;
  case TAPIO_STAT_WRITE_BUFFER_SIZE:
    return t->wsize;
  case TAPIO_STAT_WRITE_BUFFER_PEAK:
    return w->peak;
  case TAPIO_STAT_WRITE_PAUSED_USEC:
    return usec(paused_for(t, TAPIO__T_WPAUSED, w->paused, w->since));
  case TAPIO_STAT_READ_PAUSED_USEC:
    return usec(paused_for(t, TAPIO__T_RPAUSED, t->rpaused, t->rpause_since));
  case TAPIO_STAT_WRITE_PAUSES:
    return w->pauses;
  case TAPIO_STAT_DATAGRAMS_DROPPED:
    return t->kind->id == TAPIO_TRANSPORT_DATAGRAM ? tapio__dgram_drops(t)
                                                   : UINT64_MAX;
  default:
    return 0;
  }
}

/* ---- Descriptor and addresses ------------------------------------------ */

int tapio_transport_get_fd(tapio_transport *t) {
  if (!t)
    return TAPIO_EINVAL;
  return (t->flags & TAPIO__T_ENDED) ? TAPIO_ECLOSED : t->kind->fd(t);
}

static int name(tapio_transport *t, int peer, char *host, size_t hostlen,
                int *port, int *family) {
  int fd = tapio_transport_get_fd(t);
  if (fd == TAPIO_ENOTSUP) /* a memory side of the virtual network */
    return tapio__memory_name(t, peer, host, hostlen, port, family);
  return fd < 0 ? fd : tapio__fd_name(fd, peer, host, hostlen, port, family);
}

void tapio__transport_set_peer(tapio_transport *t, const struct sockaddr *sa,
                               socklen_t len) {
  if (len > sizeof t->peer)
    return;
  memcpy(&t->peer, sa, len);
  t->peerlen = len;
}

/* From what connection_made knew, as asyncio keeps it: after a reset the
 * socket no longer knows its peer. */
int tapio_transport_get_peername(tapio_transport *t, char *host,
                                 size_t hostlen, int *port, int *family) {
  if (t && t->peerlen)
    return tapio__format_addr(&t->peer.sa, t->peerlen, host, hostlen, port,
                              family);
  return name(t, 1, host, hostlen, port, family);
}

int tapio_transport_get_sockname(tapio_transport *t, char *host,
                                 size_t hostlen, int *port, int *family) {
  tapio__addr self;
  if (t && !(t->flags & TAPIO__T_ENDED) &&
      tapio__vdgram_sockname(t, &self) == 0) /* no descriptor: virtual */
    return tapio__format_addr((const struct sockaddr *)&self.ss, self.len,
                              host, hostlen, port, family);
  return name(t, 0, host, hostlen, port, family);
}

static int copy_addr(const void *sa, socklen_t len, void *addr,
                     size_t *addrlen) {
  if (*addrlen < len)
    return TAPIO_ENOBUFS;
  memcpy(addr, sa, len);
  *addrlen = len;
  return 0;
}

/* The socket address itself: what was kept, or the descriptor's; a
 * memory side's (no descriptor) from its name. */
static int sockaddr_of(tapio_transport *t, int peer, void *addr,
                       size_t *addrlen) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  char host[TAPIO_ADDR_MAX];
  int fd, port, family, rc;
  if (!t || !addr || !addrlen)
    return TAPIO_EINVAL;
  if (peer && t->peerlen)
    return copy_addr(&t->peer, t->peerlen, addr, addrlen);
  fd = tapio_transport_get_fd(t);
  if (fd >= 0) {
    memset(&ss, 0, sizeof ss);
    rc = peer ? getpeername(fd, (struct sockaddr *)&ss, &len)
              : getsockname(fd, (struct sockaddr *)&ss, &len);
    return rc < 0 ? tapio__from_errno(errno)
                  : copy_addr(&ss, len, addr, addrlen);
  }
  rc = peer ? tapio_transport_get_peername(t, host, sizeof host, &port,
                                           &family)
            : tapio_transport_get_sockname(t, host, sizeof host, &port,
                                           &family);
  if (rc < 0)
    return rc;
  return family == TAPIO_AF_UNIX ? tapio_addr_unix(host, addr, addrlen)
                                 : tapio_addr_parse(host, port, addr, addrlen);
}

int tapio_transport_get_peeraddr(tapio_transport *t, void *addr,
                                 size_t *addrlen) {
  return sockaddr_of(t, 1, addr, addrlen);
}

int tapio_transport_get_sockaddr(tapio_transport *t, void *addr,
                                 size_t *addrlen) {
  tapio__addr self;
  if (t && addr && addrlen && !(t->flags & TAPIO__T_ENDED) &&
      tapio__vdgram_sockname(t, &self) == 0) /* no descriptor: virtual */
    return copy_addr(&self.ss, self.len, addr, addrlen);
  return sockaddr_of(t, 0, addr, addrlen);
}
