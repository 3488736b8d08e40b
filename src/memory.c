/* In-memory pairs: two stream transports joined through memory. Each is
 * the stream body of stream.c with an I/O layer of memory instead of a
 * socket, so that writing, flow control, half-close, BufferedProtocol,
 * closing and aborting are the socket's own code.
 *
 * A pair's sides may also be pipe transports (a read pipe and a write
 * pipe, the pipe kinds' own ids and abilities): the pipes between a
 * subprocess transport and a fake child (vchild.c).
 *
 * This file holds the sides as transports: their kinds, making a pair
 * (by the test, the virtual network, a fake child), their names, the end
 * of their lives. How bytes go between them: memory_link.c; when a side
 * runs: memory_wake.c; how a side's end reaches the other (end of file, a
 * reset, EPIPE): memory_ends.c; what they share: memory_int.h. */
#include "memory_int.h"

#include <errno.h>
#include <sys/epoll.h>

#define DEFAULT_CAPACITY (64 * 1024)

/* A memory pair's side, or NULL. */
mem_end *tapio__mem_of(tapio_transport *t) {
  const tapio__kind *k;
  if (!t || !tapio__is_stream(t))
    return NULL;
  k = tapio__base_kind(t);
  return k == &tapio__mem_socket_kind || k == &tapio__mem_read_pipe_kind ||
                 k == &tapio__mem_write_pipe_kind
             ? end_of(tapio__to_stream(t))
             : NULL;
}

/* ---- The kind: a stream whose other end is a memory pair's --------------- */

static void mem_start(tapio_transport *t) {
  mem_end *e = end_of(tapio__to_stream(t));
  tapio__stream_start(t);
  /* what the peer wrote before connection_made, or its end */
  if (tapio__mem_can_read(e) || !peer_of(e))
    tapio__mem_wake(e);
}

static void run_made(tapio__task *task) {
  mem_end *e = TAPIO_CONTAINER(task, mem_end, made);
  tapio__transport_made(&e->s.head);
}

static void pair_unref(pair *p) {
  tapio_loop *loop = p->loop;
  if (--p->refs > 0)
    return;
  tapio__mem_link_free(loop, &p->links[0]);
  tapio__mem_link_free(loop, &p->links[1]);
  tapio__free(loop, p, sizeof *p);
}

static void mem_destroy(tapio_transport *t) {
  tapio__stream *s = tapio__to_stream(t);
  mem_end *e = end_of(s);
  pair *p = e->p;
  tapio__stream_halt(t);
  if (s->io->free) /* a layer put on it (TLS), as stream.c's destroy */
    s->io->free(s, s->io_ctx);
  tapio__mem_end_gone(e);
  tapio__free(p->loop, e, sizeof *e);
  pair_unref(p);
}

/* Retained past connection_lost: the peer sees the end now. */
static void mem_shed(tapio_transport *t) {
  tapio__stream_halt(t);
  tapio__mem_end_gone(end_of(tapio__to_stream(t)));
}

static int mem_fd(tapio_transport *t) {
  (void)t;
  return TAPIO_ENOTSUP;
}

const tapio__kind tapio__mem_socket_kind = {
  TAPIO_TRANSPORT_STREAM,
  TAPIO__CAN_READ | TAPIO__CAN_WRITE | TAPIO__CAN_FLOW,
  sizeof(tapio_protocol),
  mem_start, tapio__stream_close, tapio__stream_halt,
  mem_destroy, mem_fd, mem_shed, tapio__stream_reading
};

/* The pipe kinds, able to do what pipe.c's do. */
const tapio__kind tapio__mem_read_pipe_kind = {
  TAPIO_TRANSPORT_READ_PIPE,
  TAPIO__READ_PIPE_CAPS,
  sizeof(tapio_protocol),
  mem_start, tapio__stream_close, tapio__stream_halt,
  mem_destroy, mem_fd, mem_shed, tapio__stream_reading
};

const tapio__kind tapio__mem_write_pipe_kind = {
  TAPIO_TRANSPORT_WRITE_PIPE,
  TAPIO__WRITE_PIPE_CAPS,
  sizeof(tapio_protocol),
  mem_start, tapio__stream_close, tapio__stream_halt,
  mem_destroy, mem_fd, mem_shed, NULL
};

/* ---- Making a pair ------------------------------------------------------- */

static const tapio__kind *const streams[2] = {&tapio__mem_socket_kind,
                                              &tapio__mem_socket_kind};

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
  tapio__stream_init(&e->s, kind, loop, fd, &tapio__memory_io, proto, ud);
  e->p = p;
  e->side = side;
  e->made.run = run_made;
  tapio__mem_wake_init(e);
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
  static const tapio__kind *const down[2] = {&tapio__mem_write_pipe_kind,
                                             &tapio__mem_read_pipe_kind};
  static const tapio__kind *const up[2] = {&tapio__mem_read_pipe_kind,
                                           &tapio__mem_write_pipe_kind};
  return pair_new(loop, to_child ? down : up, proto, ud, &tapio__no_protocol,
                  NULL, 0, parent, child);
}

void tapio__memory_on_gone(tapio_transport *t,
                           void (*fn)(void *ud, tapio_transport *t),
                           void *ud) {
  mem_end *e = tapio__mem_of(t);
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
  c = tapio__mem_of(*client);
  s = tapio__mem_of(*server);
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
  mem_end *e = tapio__mem_of(t);
  const tapio__addr *a = e ? &e->names[peer ? 1 : 0] : NULL;
  if (!a || a->len == 0)
    return TAPIO_ENOTSUP;
  return tapio__format_addr((const struct sockaddr *)&a->ss, a->len, host,
                            hostlen, port, family);
}

tapio_transport *tapio_memory_peer(tapio_transport *t) {
  mem_end *e = tapio__mem_of(t);
  return e && peer_of(e) ? &peer_of(e)->s.head : NULL;
}
