/* Making stream transports: create_connection (TCP), create_unix_connection,
 * connect_accepted_socket and the "sock" option; with "ssl", the request
 * completes once the TLS handshake is done (tls.c). */
#include "tapio_int.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

/* ---- Connect requests -------------------------------------------------- */

typedef struct connect_req {
  tapio__request req;
  tapio_connect_fn cb;
  void *cb_ud;
  const tapio_protocol *proto;
  void *proto_ud;
  char *host;          /* TCP: name to resolve; Unix: the path */
  int port, family, nodelay, is_unix;
  int af;              /* of the socket being connected */
  char *local_host;
  int local_port, has_local;
  tapio__addr *addrs, *locals;
  size_t naddrs, nlocals, next;
  int fd, last_err;
  ev_io io;
  tapio_transport *t;  /* wrapped socket: made when the request runs */
  tapio__tls_params tls;
  int tls_server;      /* connect_accepted_socket: the server's side */
  tapio_transport *hs; /* its TLS handshake is running */
} connect_req;

static void req_free(connect_req *r) {
  tapio_loop *loop = r->req.loop;
  tapio__strfree(loop, r->host);
  tapio__strfree(loop, r->local_host);
  tapio__addrs_free(loop, r->addrs, r->naddrs);
  tapio__addrs_free(loop, r->locals, r->nlocals);
  tapio__tls_params_free(loop, &r->tls);
  tapio__free(loop, r, sizeof *r);
}

static void req_fail(connect_req *r, int code) {
  tapio_connect_fn cb = r->cb;
  void *ud = r->cb_ud;
  tapio__request_done(&r->req);
  if (ev_is_active(&r->io))
    ev_io_stop(r->req.loop->ev, &r->io);
  if (r->fd >= 0)
    close(r->fd);
  if (r->t)
    tapio__transport_discard(r->t);
  if (r->hs)
    tapio__tls_cancel(r->hs, code);
  req_free(r);
  cb(ud, code, NULL);
}

static void req_cancel(tapio__request *req) {
  req_fail((connect_req *)req, TAPIO_ECANCELED);
}

/* The connection is ready: the transport is made, then the caller told. */
static void req_made(connect_req *r, tapio_transport *t) {
  tapio_connect_fn cb = r->cb;
  void *ud = r->cb_ud;
  tapio__request_done(&r->req);
  req_free(r);
  tapio__transport_made(t);
  cb(ud, 0, t);
}

static void req_tls_done(void *ud, tapio_transport *t, int status) {
  connect_req *r = ud;
  tapio_loop *loop = t->loop;
  r->hs = NULL;
  if (status == 0) {
    req_made(r, t);
    return;
  }
  loop->errmsg = tapio__tls_error(t); /* t goes after the callback */
  req_fail(r, status);
  loop->errmsg = NULL;
}

/* The socket is connected: the transport is made (after a TLS handshake
 * when asked), then the caller told. */
static void req_connected(connect_req *r) {
  tapio_transport *t = r->t;
  int rc;
  if (!t) {
    tapio__addr *a = &r->addrs[r->next - 1];
    t = tapio__stream_new(r->req.loop, r->fd, r->proto, r->proto_ud);
    if (!t) {
      req_fail(r, TAPIO_ENOMEM);
      return;
    }
    tapio__transport_set_peer(t, (struct sockaddr *)&a->ss, a->len);
    tapio__maybe_nodelay(r->fd, r->af, r->nodelay);
  }
  r->fd = -1;
  r->t = NULL;
  if (!r->tls.ctx) {
    req_made(r, t);
    return;
  }
  rc = tapio__tls_attach(t, &r->tls, r->tls_server, NULL, 0, req_tls_done, r);
  if (rc < 0) {
    tapio__transport_discard(t);
    req_fail(r, rc);
    return;
  }
  r->hs = t;
}

static int bind_local(connect_req *r, int fd, int af) {
  size_t i;
  int err = TAPIO_EADDRNOTAVAIL;
  for (i = 0; i < r->nlocals; i++) {
    tapio__addr *a = &r->locals[i];
    if (a->ss.ss_family != af)
      continue;
    if (bind(fd, (struct sockaddr *)&a->ss, a->len) == 0)
      return 0;
    err = tapio__from_errno(errno);
  }
  return err;
}

/* Starts connecting to addrs[next]; 0 when under way or done. */
static int connect_one(connect_req *r, tapio__addr *a) {
  int af = a->ss.ss_family;
  int fd = socket(af, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int rc;
  if (fd < 0)
    return tapio__from_errno(errno);
  rc = r->has_local ? bind_local(r, fd, af) : 0;
  if (rc == 0 && connect(fd, (struct sockaddr *)&a->ss, a->len) < 0 &&
      errno != EINPROGRESS)
    rc = tapio__from_errno(errno);
  if (rc < 0) {
    close(fd);
    return rc;
  }
  r->fd = fd;
  r->af = af;
  ev_io_set(&r->io, fd, EV_WRITE);
  ev_io_start(r->req.loop->ev, &r->io);
  return 0;
}

/* Tries the remaining addresses in order, as asyncio does. */
static void try_next(connect_req *r) {
  while (r->next < r->naddrs) {
    int rc = connect_one(r, &r->addrs[r->next++]);
    if (rc == 0)
      return;
    r->last_err = rc;
  }
  req_fail(r, r->last_err ? r->last_err : TAPIO_ECONNREFUSED);
}

static void on_connect(struct ev_loop *ev, ev_io *w, int revents) {
  connect_req *r = TAPIO_CONTAINER(w, connect_req, io);
  int err = 0;
  socklen_t len = sizeof err;
  (void)revents;
  ev_io_stop(ev, w);
  if (getsockopt(r->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
    err = errno;
  if (err == 0) {
    req_connected(r);
    return;
  }
  close(r->fd);
  r->fd = -1;
  r->last_err = tapio__from_errno(err);
  try_next(r);
}

static int resolve_all(connect_req *r) {
  tapio_loop *loop = r->req.loop;
  int rc;
  if (r->is_unix) {
    r->addrs = tapio__alloc(loop, sizeof *r->addrs);
    if (!r->addrs)
      return TAPIO_ENOMEM;
    r->naddrs = 1;
    return tapio__unix_addr(r->host, r->addrs);
  }
  rc = tapio__resolve(loop, r->host, r->port, r->family, 0, &r->addrs,
                      &r->naddrs);
  if (rc == 0 && r->has_local)
    rc = tapio__resolve(loop, r->local_host, r->local_port, r->family, 1,
                        &r->locals, &r->nlocals);
  return rc;
}

/* The request's task: resolve, then connect; or make a wrapped socket. */
static void req_run(tapio__task *task) {
  connect_req *r = TAPIO_CONTAINER(task, connect_req, req.task);
  int rc;
  if (r->req.loop->freeing) {
    req_fail(r, TAPIO_ECANCELED);
    return;
  }
  if (r->t) {
    req_connected(r);
    return;
  }
  rc = resolve_all(r);
  if (rc < 0)
    req_fail(r, rc);
  else
    try_next(r);
}

static connect_req *req_new(tapio_loop *loop, const tapio_protocol *proto,
                            void *proto_ud, tapio_connect_fn cb,
                            void *cb_ud) {
  connect_req *r = tapio__calloc(loop, sizeof *r);
  if (!r)
    return NULL;
  r->req.loop = loop;
  r->cb = cb;
  r->cb_ud = cb_ud;
  r->proto = proto;
  r->proto_ud = proto_ud;
  r->fd = -1;
  ev_init(&r->io, on_connect);
  return r;
}

/* ---- Public entry points ----------------------------------------------- */

static int check_stream_socket(int fd) {
  int type = 0;
  socklen_t len = sizeof type;
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0)
    return tapio__from_errno(errno);
  return type == SOCK_STREAM ? 0 : TAPIO_EINVAL;
}

static int wrap(tapio_loop *loop, int fd, const tapio_protocol *proto,
                void *proto_ud, const tapio_options *opts, int call,
                tapio_connect_fn cb, void *cb_ud) {
  connect_req *r;
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  int rc = check_stream_socket(fd);
  if (rc == 0)
    rc = tapio__socket_nonblock(fd);
  if (rc < 0) {
    close(fd);
    return rc;
  }
  r = req_new(loop, proto, proto_ud, cb, cb_ud);
  if (r && (rc = tapio__tls_params_get(loop, opts, call, NULL, &r->tls)) < 0) {
    req_free(r);
    close(fd);
    return rc;
  }
  if (r)
    r->t = tapio__stream_new(loop, fd, proto, proto_ud);
  if (!r || !r->t) {
    if (r)
      req_free(r);
    close(fd);
    return TAPIO_ENOMEM;
  }
  r->tls_server = call == TAPIO_CALL_CONNECT_ACCEPTED_SOCKET;
  if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0)
    tapio__maybe_nodelay(fd, ss.ss_family,
                         (int)tapio__opt_int(opts, TAPIO__OPT_NODELAY, 1));
  len = sizeof ss;
  if (getpeername(fd, (struct sockaddr *)&ss, &len) == 0)
    tapio__transport_set_peer(r->t, (struct sockaddr *)&ss, len);
  tapio__request_start(loop, &r->req, req_run, req_cancel);
  return 0;
}

/* What every create call checks first: its handles and protocol table, a
 * loop being freed, and options it does not take. */
static int bad_args(tapio_loop *loop, const tapio_protocol *proto,
                    tapio_connect_fn cb, const tapio_options *opts, int call) {
  if (!loop || !cb || tapio__proto_check(proto, sizeof *proto) < 0)
    return TAPIO_EINVAL;
  if (loop->freeing)
    return TAPIO_ECLOSED;
  return tapio__opts_check(opts, call);
}

int tapio_connect_accepted_socket(tapio_loop *loop, int fd,
                                  const tapio_protocol *proto, void *proto_ud,
                                  const tapio_options *opts,
                                  tapio_connect_fn cb, void *cb_ud) {
  int rc = bad_args(loop, proto, cb, opts,
                    TAPIO_CALL_CONNECT_ACCEPTED_SOCKET);
  if (rc == 0 && fd < 0)
    rc = TAPIO_EBADF;
  if (rc < 0) {
    if (fd >= 0)
      close(fd);
    return tapio__opts_fail(opts, rc);
  }
  return wrap(loop, fd, proto, proto_ud, opts,
              TAPIO_CALL_CONNECT_ACCEPTED_SOCKET, cb, cb_ud);
}

static int start(connect_req *r, const char *host) {
  tapio_loop *loop = r->req.loop;
  r->host = tapio__strdup(loop, host);
  if (!r->host || (r->has_local && !r->local_host)) {
    req_free(r);
    return TAPIO_ENOMEM;
  }
  tapio__request_start(loop, &r->req, req_run, req_cancel);
  return 0;
}

int tapio_create_connection(tapio_loop *loop, const char *host, int port,
                            const tapio_protocol *proto, void *proto_ud,
                            const tapio_options *opts, tapio_connect_fn cb,
                            void *cb_ud) {
  connect_req *r;
  const char *local = tapio__opt_str(opts, TAPIO__OPT_LOCAL_HOST);
  int rc = bad_args(loop, proto, cb, opts, TAPIO_CALL_CREATE_CONNECTION);
  int sock = tapio__opt_is_set(opts, TAPIO__OPT_SOCK);
  if (rc == 0 && sock && ((host && *host) || port))
    rc = TAPIO_EINVAL; /* host/port and sock exclude each other */
  if (rc == 0 && !sock && (!host || !*host || port < 0 || port > 65535))
    rc = TAPIO_EINVAL;
  if (rc < 0)
    return tapio__opts_fail(opts, rc);
  if (sock)
    return wrap(loop, (int)tapio__opt_int(opts, TAPIO__OPT_SOCK, -1), proto,
                proto_ud, opts, TAPIO_CALL_CREATE_CONNECTION, cb, cb_ud);
  r = req_new(loop, proto, proto_ud, cb, cb_ud);
  if (!r)
    return TAPIO_ENOMEM;
  rc = tapio__tls_params_get(loop, opts, TAPIO_CALL_CREATE_CONNECTION, host,
                             &r->tls);
  if (rc < 0) {
    req_free(r);
    return rc;
  }
  r->port = port;
  r->family = (int)tapio__opt_int(opts, TAPIO__OPT_FAMILY, 0);
  r->nodelay = (int)tapio__opt_int(opts, TAPIO__OPT_NODELAY, 1);
  r->has_local = local || tapio__opt_is_set(opts, TAPIO__OPT_LOCAL_PORT);
  r->local_port = (int)tapio__opt_int(opts, TAPIO__OPT_LOCAL_PORT, 0);
  if (r->has_local)
    r->local_host = tapio__strdup(loop, local ? local : "");
  return start(r, host);
}

int tapio_create_unix_connection(tapio_loop *loop, const char *path,
                                 const tapio_protocol *proto, void *proto_ud,
                                 const tapio_options *opts,
                                 tapio_connect_fn cb, void *cb_ud) {
  tapio__addr probe;
  connect_req *r;
  int rc = bad_args(loop, proto, cb, opts,
                    TAPIO_CALL_CREATE_UNIX_CONNECTION);
  if (rc == 0)
    rc = path ? tapio__unix_addr(path, &probe) : TAPIO_EINVAL;
  if (rc < 0)
    return tapio__opts_fail(opts, rc);
  r = req_new(loop, proto, proto_ud, cb, cb_ud);
  if (!r)
    return TAPIO_ENOMEM;
  rc = tapio__tls_params_get(loop, opts, TAPIO_CALL_CREATE_UNIX_CONNECTION,
                             NULL, &r->tls);
  if (rc < 0) {
    req_free(r);
    return rc;
  }
  r->is_unix = 1;
  return start(r, path);
}
