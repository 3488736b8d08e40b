/* The virtual network of a virtual-clock loop. Its servers (create_server,
 * create_unix_server) listen at addresses of the loop's own, with no
 * socket, and its connects (create_connection, create_unix_connection)
 * meet them there: each connection is a memory pair (memory.c) whose
 * sides answer sockname and peername with the network's addresses. So a
 * client and a server are tested through the calls they use on real
 * sockets, on the virtual clock.
 *
 * As the kernel does: a connect completes once there is room in the
 * listener's backlog (connections made and not yet accepted: backlog + 1
 * of them, as Linux counts), and the
 * server accepts them while it serves; one to a full backlog waits, as a
 * SYN to a full queue goes unanswered, until room comes or the listener
 * closes (refused then); a Unix one fails at once with EAGAIN. A listener that closes resets the connections it
 * never accepted. A connect where nothing listens is refused. */
#include "tapio_int.h"

#include <netinet/in.h>
#include <string.h>
#include <sys/un.h>


struct tapio__vlisten {
  tapio__link link;      /* the kit's vnet list */
  tapio_server *server;
  tapio__addr addr;      /* where it listens, its port chosen */
  int backlog, reuse_port, serving;
  tapio__link queue;     /* accepted: vconn, oldest first */
  size_t nqueued;
  tapio__link stalled;   /* tapio__vconnect waiting for room */
  tapio__task accept;
};

typedef struct vconn {   /* a connection in a backlog */
  tapio__link link;
  tapio_transport *t;    /* the server's side */
} vconn;

struct tapio__vconnect {
  tapio_loop *loop;
  tapio__link link;      /* in a listener's stalled list, while there */
  tapio__vlisten *stalled_on;
  tapio__task task;
  tapio__addr to, from;
  int has_from;
  const tapio_protocol *proto;
  void *ud;
  tapio__vconnected_fn done;
  void *done_ud;
};

/* ---- Addresses ------------------------------------------------------------ */

const char *tapio__vnet_host(const char *host, int family) {
  if (!host || strcmp(host, "localhost") != 0)
    return NULL;
  return tapio__family_to_af(family) == AF_INET6 ? "::1" : "127.0.0.1";
}

static int port_taken(tapio__kit *kit, int port) {
  tapio__link *l;
  for (l = kit->vnet.next; l != &kit->vnet; l = l->next) {
    tapio__vlisten *v = TAPIO_CONTAINER(l, tapio__vlisten, link);
    if (tapio__addr_port(&v->addr) == port)
      return 1;
  }
  return 0;
}

/* An ephemeral port no listener has, in the kernel's range and order. */
static int pick_port(tapio__kit *kit) {
  int i, span = TAPIO__PORT_LAST - TAPIO__PORT_FIRST + 1;
  for (i = 0; i < span; i++) {
    int port = TAPIO__PORT_FIRST + (kit->next_port++ % span);
    if (!port_taken(kit, port))
      return port;
  }
  return TAPIO_EADDRINUSE;
}

/* ---- Listening and accepting ---------------------------------------------- */

static void post_accept(tapio__vlisten *v) {
  if (v->serving && !tapio__list_empty(&v->queue))
    tapio__task_post(tapio_server_get_loop(v->server), &v->accept);
}

/* A connect waiting for room tries again, from its own task. */
static void wake_stalled(tapio__vlisten *v) {
  tapio__vconnect *c;
  if (tapio__list_empty(&v->stalled))
    return;
  c = TAPIO_CONTAINER(v->stalled.next, tapio__vconnect, link);
  tapio__list_remove(&c->link);
  c->stalled_on = NULL;
  tapio__task_post(c->loop, &c->task);
}

/* One connection per task, as a socket's readiness gives one accept at a
 * time here: the server's code may close the listener (freeing v). */
static void run_accept(tapio__task *task) {
  tapio__vlisten *v = TAPIO_CONTAINER(task, tapio__vlisten, accept);
  tapio_loop *loop = tapio_server_get_loop(v->server);
  vconn *q;
  tapio_transport *t;
  if (!v->serving || tapio__list_empty(&v->queue))
    return;
  q = TAPIO_CONTAINER(v->queue.next, vconn, link);
  tapio__list_remove(&q->link);
  v->nqueued--;
  t = q->t;
  tapio__free(loop, q, sizeof *q);
  wake_stalled(v);
  post_accept(v);
  tapio__server_take(v->server, t);
}

int tapio__vnet_listen(tapio_server *s, const tapio__addr *a, int backlog,
                       int reuse_port, tapio__vlisten **out) {
  tapio_loop *loop = tapio_server_get_loop(s);
  tapio__kit *kit = loop->kit;
  tapio__vlisten *v;
  tapio__link *l;
  tapio__addr at = *a;
  if (!kit)
    return TAPIO_EINVAL;
  if (at.ss.ss_family != AF_UNIX && tapio__addr_port(&at) == 0) {
    int port = pick_port(kit);
    if (port < 0)
      return port;
    tapio__addr_set_port(&at, port);
  }
  for (l = kit->vnet.next; l != &kit->vnet; l = l->next) {
    tapio__vlisten *o = TAPIO_CONTAINER(l, tapio__vlisten, link);
    if (tapio__addr_clash(&o->addr, &at) && !(reuse_port && o->reuse_port))
      return TAPIO_EADDRINUSE;
  }
  if (!(v = tapio__calloc(loop, sizeof *v)))
    return TAPIO_ENOMEM;
  v->server = s;
  v->addr = at;
  v->backlog = backlog;
  v->reuse_port = reuse_port;
  v->accept.run = run_accept;
  tapio__list_init(&v->queue);
  tapio__list_init(&v->stalled);
  tapio__list_push(&kit->vnet, &v->link);
  *out = v;
  return 0;
}

static void refuse(tapio__vconnect *c);

/* The connections v never accepted go, reset. */
static void drop_backlog(tapio__vlisten *v) {
  tapio_loop *loop = tapio_server_get_loop(v->server);
  while (!tapio__list_empty(&v->queue)) {
    vconn *q = TAPIO_CONTAINER(v->queue.next, vconn, link);
    tapio__list_remove(&q->link);
    tapio__memory_reset(q->t, TAPIO_ECONNRESET);
    tapio__transport_discard(q->t);
    tapio__free(loop, q, sizeof *q);
  }
  v->nqueued = 0;
}

void tapio__vnet_drop_backlogs(tapio_loop *loop) {
  tapio__link *l;
  if (!loop->kit)
    return;
  for (l = loop->kit->vnet.next; l != &loop->kit->vnet; l = l->next)
    drop_backlog(TAPIO_CONTAINER(l, tapio__vlisten, link));
}

void tapio__vnet_unlisten(tapio__vlisten *v) {
  tapio_loop *loop = tapio_server_get_loop(v->server);
  tapio__list_remove(&v->link);
  tapio__task_unpost(loop, &v->accept);
  drop_backlog(v);
  while (!tapio__list_empty(&v->stalled)) {
    tapio__vconnect *c = TAPIO_CONTAINER(v->stalled.next, tapio__vconnect,
                                         link);
    tapio__list_remove(&c->link);
    c->stalled_on = NULL;
    refuse(c);
  }
  tapio__free(loop, v, sizeof *v);
}

void tapio__vnet_serve(tapio__vlisten *v, int on) {
  v->serving = on;
  while (on && !tapio__list_empty(&v->stalled))
    wake_stalled(v); /* each finds room: a serving listener takes all */
  post_accept(v);
}

int tapio__vnet_name(const tapio__vlisten *v, char *host, size_t hostlen,
                     int *port, int *family) {
  return tapio__format_addr((const struct sockaddr *)&v->addr.ss,
                            v->addr.len, host, hostlen, port, family);
}

/* ---- Connecting ----------------------------------------------------------- */

static void connect_free(tapio__vconnect *c) {
  if (c->stalled_on)
    tapio__list_remove(&c->link);
  tapio__task_unpost(c->loop, &c->task);
  tapio__free(c->loop, c, sizeof *c);
}

static void fail(tapio__vconnect *c, int code) {
  char msg[300];
  tapio__vconnected_fn done = c->done;
  void *ud = c->done_ud;
  tapio__describe(msg, sizeof msg, "connect call failed",
                  (const struct sockaddr *)&c->to.ss, c->to.len, code);
  connect_free(c);
  done(ud, NULL, code, msg);
}

/* What a stalled connect gets when its listener closes: a refusal, from
 * its task (the server's close is the user's call). */
static void run_refused(tapio__task *task) {
  fail(TAPIO_CONTAINER(task, tapio__vconnect, task), TAPIO_ECONNREFUSED);
}

static void refuse(tapio__vconnect *c) {
  c->task.run = run_refused;
  tapio__task_post(c->loop, &c->task);
}

static tapio__vlisten *find(tapio_loop *loop, const tapio__addr *to) {
  tapio__link *l;
  for (l = loop->kit->vnet.next; l != &loop->kit->vnet; l = l->next) {
    tapio__vlisten *v = TAPIO_CONTAINER(l, tapio__vlisten, link);
    if (tapio__addr_clash(&v->addr, to))
      return v;
  }
  return NULL;
}

/* Where the two sides are: the address connected to (the listener's when
 * that one is the wildcard), and the client's, at an ephemeral port
 * unless it asked for one (a Unix client is unnamed), on the host it
 * asked for, else on the source Linux picks for the destination. */
static int name_sides(tapio__vconnect *c, const tapio__vlisten *v,
                      tapio__addr *from, tapio__addr *to) {
  int port;
  *to = tapio__addr_is_any(&c->to) ? v->addr : c->to;
  if (tapio__addr_is_any(to))
    tapio__addr_loopback(to, tapio__addr_port(&c->to));
  if (to->ss.ss_family == AF_UNIX) {
    memset(from, 0, sizeof *from);
    from->ss.ss_family = AF_UNIX;
    from->len = sizeof(sa_family_t);
    return 0;
  }
  *from = c->has_from ? c->from : *to;
  if (c->has_from && tapio__addr_port(from) != 0)
    return 0;
  if ((port = pick_port(c->loop->kit)) < 0)
    return port;
  if (!c->has_from || tapio__addr_is_any(from))
    tapio__addr_source(from, port);
  else
    tapio__addr_set_port(from, port);
  return 0;
}

/* The connection: the server's side into v's backlog, the client's to
 * the caller. */
static void connect_to(tapio__vconnect *c, tapio__vlisten *v) {
  tapio_transport *client, *server;
  tapio__vconnected_fn done = c->done;
  void *ud = c->done_ud;
  tapio__addr from, to;
  vconn *q = tapio__alloc(c->loop, sizeof *q);
  int rc = q ? name_sides(c, v, &from, &to) : TAPIO_ENOMEM;
  if (rc == 0)
    rc = tapio__memory_connect(c->loop, c->proto, c->ud, &from, &to,
                               &client, &server);
  if (rc < 0) {
    tapio__free(c->loop, q, q ? sizeof *q : 0);
    fail(c, rc);
    return;
  }
  q->t = server;
  tapio__list_push(&v->queue, &q->link);
  v->nqueued++;
  post_accept(v);
  connect_free(c);
  done(ud, client, 0, NULL);
}

static void run_connect(tapio__task *task) {
  tapio__vconnect *c = TAPIO_CONTAINER(task, tapio__vconnect, task);
  tapio__vlisten *v = find(c->loop, &c->to);
  if (!v) {
    fail(c, c->to.ss.ss_family == AF_UNIX ? TAPIO_ENOENT
                                          : TAPIO_ECONNREFUSED);
  } else if (!v->serving && v->nqueued > (size_t)v->backlog &&
             c->to.ss.ss_family == AF_UNIX) {
    fail(c, TAPIO_EAGAIN); /* a Unix connect does not wait: EAGAIN */
  } else if (!v->serving && v->nqueued > (size_t)v->backlog) {
    /* Linux's queue is full past backlog: it holds backlog + 1 */
    c->stalled_on = v; /* no room: it waits, as an unanswered SYN */
    tapio__list_push(&v->stalled, &c->link);
  } else {
    connect_to(c, v);
  }
}

int tapio__vnet_connect(tapio_loop *loop, const tapio__addr *to,
                        const tapio__addr *from, const tapio_protocol *proto,
                        void *ud, tapio__vconnected_fn done, void *done_ud,
                        tapio__vconnect **out) {
  tapio__vconnect *c;
  if (!loop->kit)
    return TAPIO_EINVAL;
  if (!(c = tapio__calloc(loop, sizeof *c)))
    return TAPIO_ENOMEM;
  c->loop = loop;
  c->to = *to;
  if (from) {
    c->from = *from;
    c->has_from = 1;
  }
  c->proto = proto;
  c->ud = ud;
  c->done = done;
  c->done_ud = done_ud;
  c->task.run = run_connect;
  tapio__task_post(loop, &c->task);
  *out = c;
  return 0;
}

void tapio__vnet_cancel(tapio__vconnect *c) {
  if (c)
    connect_free(c);
}
