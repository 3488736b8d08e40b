/* Servers: listening sockets, accepting, the clients they made, closing. */
#include "tapio_int.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ACCEPT_RETRY_DELAY 1.0 /* seconds, after running out of fds */

typedef struct listener {
  ev_io io;              /* a socket's (fd -1 for a virtual one) */
  tapio_server *server;
  int af;                /* its address family */
  tapio__vlisten *v;     /* on a virtual loop: where it listens (vnet.c) */
} listener;

typedef struct waiter {
  struct waiter *next;
  tapio_closed_fn cb;
  void *ud;
} waiter;

struct tapio_server {
  tapio_loop *loop;
  tapio__link link;      /* loop->servers */
  tapio__link clients;   /* transports it accepted, still alive */
  size_t nclients;
  tapio_protocol_factory factory;
  void *factory_ud;
  listener *ls;
  size_t nls;
  int backlog, nodelay, keep_alive, cleanup;
  uint8_t serving, closed, released;
  int busy;              /* inside an accept loop */
  char *unix_path;
  ino_t unix_ino;
  tapio__timer retry;     /* accepting again after running out of fds */
  waiter *waiters;
  tapio__task task;      /* runs the waiters */
  tapio__tls_params tls; /* "ssl": every connection is a TLS server */
  tapio_handshake_failed_fn hs_failed; /* told of failed handshakes */
  void *hs_failed_ud;
};

/* Memory goes once the user let go, it is closed, its clients are gone
 * and nothing of it is running or queued. */
static void maybe_free(tapio_server *s) {
  tapio_loop *loop = s->loop;
  if (!s->released || !s->closed || s->nclients || s->task.posted ||
      s->busy || s->waiters)
    return;
  tapio__list_remove(&s->link);
  tapio__tls_params_free(loop, &s->tls);
  tapio__free(loop, s, sizeof *s);
}

/* Posted when the last client went with the server closed; a factory
 * that closes its server is asked for a connection still, counted after
 * its close posted this: the waiters then wait for that one (its
 * detach posts again). */
static void run_waiters(tapio__task *task) {
  tapio_server *s = TAPIO_CONTAINER(task, tapio_server, task);
  waiter *w = s->waiters;
  if (s->nclients)
    return;
  s->waiters = NULL;
  s->busy++;
  while (w) {
    waiter *next = w->next;
    w->cb(w->ud, s);
    tapio__free(s->loop, w, sizeof *w);
    w = next;
  }
  s->busy--;
  maybe_free(s);
}

static void check_waiters(tapio_server *s) {
  /* also while it runs: a waiter added from a callback runs next turn */
  if (s->closed && s->nclients == 0 && s->waiters)
    tapio__task_post(s->loop, &s->task);
}

/* ---- Accepting --------------------------------------------------------- */

static void listen_all(tapio_server *s, int on) {
  size_t i;
  for (i = 0; i < s->nls; i++) {
    if (s->ls[i].v)
      tapio__vnet_serve(s->ls[i].v, on);
    else if (on)
      ev_io_start(s->loop->ev, &s->ls[i].io);
    else
      ev_io_stop(s->loop->ev, &s->ls[i].io);
  }
}

static void on_retry(tapio__timer *tm) {
  tapio_server *s = TAPIO_CONTAINER(tm, tapio_server, retry);
  if (s->serving)
    listen_all(s, 1);
}

/* Out of descriptors or memory: stop accepting for a while rather than
 * spin on a listener that stays readable. */
static void accept_failed(tapio_server *s, int err) {
  int code = tapio__from_errno(err);
  if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
    tapio__report(s->loop, code,
                  "accept failed; the server pauses accepting for 1 second",
                  NULL);
    listen_all(s, 0);
    tapio__timer_start(&s->retry, ACCEPT_RETRY_DELAY);
  } else {
    tapio__report(s->loop, code, "accept failed", NULL);
  }
}

/* The protocol for t, from the factory; 0, or -1 after reporting why
 * there is none. */
static int take_protocol(tapio_server *s, tapio_transport *t) {
  const tapio_protocol *proto = NULL;
  void *ud = NULL;
  int rc = s->factory(s->factory_ud, s, &proto, &ud);
  if (rc != 0) {
    tapio__report(s->loop, rc, "protocol factory rejected a connection",
                  NULL);
    return -1;
  }
  if (!proto) { /* e.g. an FFI callback that raised: its default return */
    tapio__report(s->loop, TAPIO_EINVAL, "protocol factory returned 0 but "
                  "gave no protocol (*proto NULL)", NULL);
    return -1;
  }
  if (tapio__proto_check(proto, sizeof *proto) < 0) {
    char msg[128]; /* the usual cause: a table whose .size was not set */
    snprintf(msg, sizeof msg, "protocol factory gave a table of size %u, "
             "not sizeof(tapio_protocol) (%u) or more",
             (unsigned)proto->size, (unsigned)sizeof *proto);
    tapio__report(s->loop, TAPIO_EINVAL, msg, NULL);
    return -1;
  }
  t->proto = (const tapio__proto *)proto;
  t->ud = ud;
  return 0;
}

/* A failed handshake is the client's to hear of; the server's user only
 * when it asked (asyncio logs it in debug mode). One the server or the
 * loop cut short (ECANCELED) is no failure of the client's. */
static void handshake_failed(tapio_server *s, tapio_transport *t, int code) {
  tapio_loop *loop;
  const char *old;
  if (!s || !s->hs_failed || s->released || code == TAPIO_ECANCELED)
    return;
  loop = s->loop;
  old = loop->errmsg;
  loop->errmsg = tapio__tls_error(t); /* what tapio_loop_error_message says */
  /* t is still one of s's clients: a release in the hook frees s only
   * once t is gone */
  s->hs_failed(s->hs_failed_ud, s, t, code);
  loop->errmsg = old;
}

/* A TLS connection gets its protocol once its handshake is done, so that
 * a failed handshake costs the application nothing. Once the user
 * released the server, the factory (and what it uses) may be gone: the
 * connection is aborted. */
static void tls_accepted(void *ud, tapio_transport *t, int status) {
  (void)ud;
  if (status < 0) {
    handshake_failed(t->server, t, status);
    return;
  }
  if (t->server->released || take_protocol(t->server, t) < 0) {
    tapio_transport_abort(t);
    return;
  }
  tapio__transport_made(t);
}

void tapio__server_take(tapio_server *s, tapio_transport *t) {
  s->busy++; /* the factory may release the server */
  if (!s->tls.ctx && take_protocol(s, t) < 0) {
    tapio__transport_discard(t); /* closes its descriptor */
  } else {
    t->server = s;
    tapio__list_push(&s->clients, &t->slink);
    s->nclients++;
    if (!s->tls.ctx)
      tapio__transport_made(t);
    else if (tapio__tls_attach(t, &s->tls, 1, NULL, 0, tls_accepted, NULL) <
             0)
      tapio_transport_abort(t);
  }
  s->busy--;
  maybe_free(s);
}

/* The transport is made before the factory is asked: a factory whose
 * protocol gets no connection_made would never hear of it again (a Lua
 * protocol, a C one's memory), so running out of memory comes first. A
 * TLS connection asks it after its handshake. */
static void accept_one(tapio_server *s, int fd, const tapio__ipaddr *peer,
                       socklen_t peerlen, int af) {
  tapio_transport *t = tapio__stream_new(s->loop, fd, &tapio__no_protocol,
                                         NULL);
  if (!t) {
    close(fd);
    tapio__report(s->loop, TAPIO_ENOMEM, "accept: out of memory", NULL);
    return;
  }
  tapio__maybe_nodelay(fd, af, s->nodelay);
  if (s->keep_alive)
    tapio__sockopt_on(fd, SOL_SOCKET, SO_KEEPALIVE);
  tapio__transport_set_peer(t, &peer->sa, peerlen);
  tapio__server_take(s, t);
}

static void on_accept(struct ev_loop *ev, ev_io *w, int revents) {
  listener *l = TAPIO_CONTAINER(w, listener, io);
  tapio_server *s = l->server;
  int i;
  (void)ev;
  (void)revents;
  s->busy++;
  /* Bounded, as asyncio bounds it by the backlog: other work goes on. */
  for (i = 0; i < (s->backlog > 0 ? s->backlog : 1) && s->serving; i++) {
    tapio__ipaddr peer; /* a long Unix path is cut: not kept then */
    socklen_t len = sizeof peer;
    int fd = accept4(w->fd, &peer.sa, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      accept_one(s, fd, &peer, len, l->af);
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      break;
    } else if (errno != EINTR && errno != ECONNABORTED) {
      accept_failed(s, errno);
      break;
    }
  }
  s->busy--;
  maybe_free(s);
}

void tapio__server_detach(tapio_server *s, tapio_transport *t) {
  tapio__list_remove(&t->slink);
  t->server = NULL;
  s->nclients--;
  check_waiters(s);
  maybe_free(s);
}

/* ---- Public methods ---------------------------------------------------- */

int tapio_server_start_serving(tapio_server *s) {
  if (!s)
    return TAPIO_EINVAL;
  if (s->closed)
    return TAPIO_ECLOSED;
  if (!s->serving) {
    s->serving = 1;
    listen_all(s, 1);
  }
  return 0;
}

int tapio_server_is_serving(tapio_server *s) {
  return s && s->serving && !s->closed;
}

static void close_listeners(tapio_server *s) {
  size_t i;
  struct stat st;
  for (i = 0; i < s->nls; i++) {
    if (s->ls[i].v) {
      tapio__vnet_unlisten(s->ls[i].v);
      continue;
    }
    ev_io_stop(s->loop->ev, &s->ls[i].io);
    close(s->ls[i].io.fd);
  }
  tapio__free(s->loop, s->ls, s->nls * sizeof *s->ls);
  s->ls = NULL;
  s->nls = 0;
  /* Remove the socket file only if it is still the one we made. */
  if (s->unix_path && s->cleanup && stat(s->unix_path, &st) == 0 &&
      st.st_ino == s->unix_ino)
    unlink(s->unix_path);
  tapio__strfree(s->loop, s->unix_path);
  s->unix_path = NULL;
}

int tapio_server_close(tapio_server *s) {
  if (!s)
    return TAPIO_EINVAL;
  if (s->closed)
    return 0;
  s->closed = 1;
  s->serving = 0;
  tapio__timer_stop(&s->retry);
  close_listeners(s);
  check_waiters(s);
  return 0;
}

static void each_client(tapio_server *s, int (*fn)(tapio_transport *)) {
  tapio__link *l;
  /* close and abort never call back synchronously: the list holds still */
  for (l = s->clients.next; l != &s->clients; l = l->next)
    fn(TAPIO_CONTAINER(l, tapio_transport, slink));
}

int tapio_server_close_clients(tapio_server *s) {
  if (!s)
    return TAPIO_EINVAL;
  each_client(s, tapio_transport_close);
  return 0;
}

int tapio_server_abort_clients(tapio_server *s) {
  if (!s)
    return TAPIO_EINVAL;
  each_client(s, tapio_transport_abort);
  return 0;
}

size_t tapio_server_client_count(tapio_server *s) {
  return s ? s->nclients : 0;
}

int tapio_server_wait_closed(tapio_server *s, tapio_closed_fn cb, void *ud) {
  waiter *w;
  if (!s || !cb)
    return TAPIO_EINVAL;
  if (s->loop->freeing)
    return TAPIO_ECLOSED;
  w = tapio__alloc(s->loop, sizeof *w);
  if (!w)
    return TAPIO_ENOMEM;
  w->cb = cb;
  w->ud = ud;
  w->next = s->waiters;
  s->waiters = w;
  check_waiters(s);
  return 0;
}

size_t tapio_server_socket_count(tapio_server *s) { return s ? s->nls : 0; }

int tapio_server_get_address(tapio_server *s, size_t i, char *host,
                             size_t hostlen, int *port, int *family) {
  if (!s || i >= s->nls)
    return TAPIO_EINVAL;
  if (s->ls[i].v)
    return tapio__vnet_name(s->ls[i].v, host, hostlen, port, family);
  return tapio__fd_name(s->ls[i].io.fd, 0, host, hostlen, port, family);
}

int tapio_server_get_fd(tapio_server *s, size_t i) {
  if (!s || i >= s->nls)
    return TAPIO_EINVAL;
  return s->ls[i].v ? TAPIO_ENOTSUP : s->ls[i].io.fd;
}

int tapio_server_set_handshake_failed(tapio_server *s,
                                      tapio_handshake_failed_fn fn, void *ud) {
  if (!s)
    return TAPIO_EINVAL;
  s->hs_failed = fn;
  s->hs_failed_ud = ud;
  return 0;
}

tapio_loop *tapio_server_get_loop(tapio_server *s) {
  return s ? s->loop : NULL;
}

void tapio_server_release(tapio_server *s) {
  if (!s || s->released)
    return;
  s->released = 1;
  tapio_server_close(s);
  maybe_free(s);
}

void tapio__servers_close_all(tapio_loop *loop) {
  tapio__link *l;
  for (l = loop->servers.next; l != &loop->servers; l = l->next) {
    tapio_server_close(TAPIO_CONTAINER(l, tapio_server, link));
  }
}

int tapio__servers_hold_fd(tapio_loop *loop, int fd) {
  tapio__link *l;
  size_t i;
  for (l = loop->servers.next; l != &loop->servers; l = l->next) {
    tapio_server *s = TAPIO_CONTAINER(l, tapio_server, link);
    for (i = 0; i < s->nls; i++)
      if (!s->ls[i].v && s->ls[i].io.fd == fd)
        return 1;
  }
  return 0;
}

size_t tapio_loop_server_count(tapio_loop *loop) {
  tapio__link *l;
  size_t n = 0;
  if (!loop)
    return 0;
  for (l = loop->servers.next; l != &loop->servers; l = l->next)
    n += !TAPIO_CONTAINER(l, tapio_server, link)->closed;
  return n;
}

/* After the loop's last drain: what the user never released goes too. */
void tapio__servers_free_all(tapio_loop *loop) {
  while (!tapio__list_empty(&loop->servers)) {
    tapio_server *s = TAPIO_CONTAINER(loop->servers.next, tapio_server, link);
    while (s->waiters) {
      waiter *w = s->waiters;
      s->waiters = w->next;
      tapio__free(loop, w, sizeof *w);
    }
    s->released = 1;
    tapio__task_unpost(loop, &s->task);
    s->busy = 0;
    s->nclients = 0;
    maybe_free(s);
  }
}

/* ---- Creating ---------------------------------------------------------- */

tapio_server *tapio__server_new(tapio_loop *loop,
                                tapio_protocol_factory factory, void *ud,
                                const tapio_options *opts) {
  tapio_server *s = tapio__calloc(loop, sizeof *s);
  if (!s)
    return NULL;
  s->loop = loop;
  s->factory = factory;
  s->factory_ud = ud;
  s->backlog = (int)tapio__opt_int(opts, TAPIO__OPT_BACKLOG, 100);
  s->nodelay = (int)tapio__opt_int(opts, TAPIO__OPT_NODELAY, 1);
  s->keep_alive = (int)tapio__opt_int(opts, TAPIO__OPT_KEEP_ALIVE, 0);
  s->cleanup = (int)tapio__opt_int(opts, TAPIO__OPT_CLEANUP_SOCKET, 1);
  s->task.run = run_waiters;
  if (tapio__tls_params_get(loop, opts, TAPIO_CALL_CREATE_SERVER, NULL,
                            &s->tls) < 0) {
    tapio__free(loop, s, sizeof *s);
    return NULL;
  }
  tapio__list_init(&s->clients);
  tapio__list_push(&loop->servers, &s->link);
  tapio__timer_init(&s->retry, loop, on_retry);
  return s;
}

static int socket_family(int fd) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  return getsockname(fd, (struct sockaddr *)&ss, &len) == 0 ? ss.ss_family
                                                            : AF_UNSPEC;
}

/* One more listener, the last of s->ls; NULL without memory. */
static listener *add_listener(tapio_server *s, int fd) {
  size_t n = s->nls + 1;
  listener *ls = tapio__alloc(s->loop, n * sizeof *ls);
  size_t i;
  if (!ls)
    return NULL;
  for (i = 0; i < s->nls; i++) {
    ls[i] = s->ls[i];
    ev_io_init(&ls[i].io, on_accept, s->ls[i].io.fd, EV_READ);
  }
  memset(&ls[s->nls], 0, sizeof *ls);
  ls[s->nls].server = s;
  ev_io_init(&ls[s->nls].io, on_accept, fd, EV_READ);
  tapio__free(s->loop, s->ls, s->nls * sizeof *s->ls);
  s->ls = ls;
  s->nls = n;
  return &ls[n - 1];
}

/* Adds a listening socket; the server owns fd from now on. */
int tapio__server_add_fd(tapio_server *s, int fd) {
  listener *l = add_listener(s, fd);
  if (!l) {
    close(fd);
    return TAPIO_ENOMEM;
  }
  l->af = socket_family(fd);
  return 0;
}

int tapio__server_add_virtual(tapio_server *s, const tapio__addr *a,
                              int reuse_port) {
  listener *l;
  tapio__vlisten *v = NULL;
  int rc = tapio__vnet_listen(s, a, s->backlog, reuse_port, &v);
  if (rc < 0)
    return rc;
  if (!(l = add_listener(s, -1))) {
    tapio__vnet_unlisten(v);
    return TAPIO_ENOMEM;
  }
  l->af = a->ss.ss_family;
  l->v = v;
  return 0;
}

int tapio__server_set_unix_path(tapio_server *s, const char *path) {
  struct stat st;
  s->unix_path = tapio__strdup(s->loop, path);
  if (!s->unix_path)
    return TAPIO_ENOMEM;
  if (stat(path, &st) == 0)
    s->unix_ino = st.st_ino;
  return 0;
}

/* A server whose creation failed: nothing was seen by the user. */
void tapio__server_destroy(tapio_server *s) {
  s->cleanup = 0;
  s->released = 1;
  tapio_server_close(s);
  maybe_free(s);
}
