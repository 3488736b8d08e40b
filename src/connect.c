/* Making stream transports: create_connection (TCP: its names looked up
 * without blocking, its addresses raced in eyeballs.c),
 * create_unix_connection, connect_accepted_socket and the "sock" option;
 * with "ssl", the request completes once the TLS handshake is done
 * (tls.c). */
#include "tapio_int.h"

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
  int ip_proto, res_flags; /* "proto"; "flags" as TAPIO__RES_* */
  char *local_host;
  int local_port, has_local;
  uint32_t local_flow;   /* local_flowinfo */
  double delay;        /* happy_eyeballs_delay; -1: not set */
  size_t first;        /* interleave: first-family addresses first; 0 no */
  tapio__addr *addrs, *locals;
  size_t naddrs, nlocals;
  tapio__lookup *lookup;
  tapio__race *race;
  tapio__vconnect *vc; /* on a virtual loop, instead of the race */
  tapio_transport *t;  /* wrapped socket: made when the request runs */
  tapio__tls_params tls;
  int tls_server;      /* connect_accepted_socket: the server's side */
  tapio_transport *hs; /* its TLS handshake is running */
} connect_req;

static void req_free(connect_req *r) {
  tapio_loop *loop = r->req.loop;
  tapio__lookup_cancel(r->lookup);
  tapio__race_cancel(r->race);
  tapio__vnet_cancel(r->vc);
  tapio__strfree(loop, r->host);
  tapio__strfree(loop, r->local_host);
  tapio__addrs_free(loop, r->addrs, r->naddrs);
  tapio__addrs_free(loop, r->locals, r->nlocals);
  tapio__tls_params_free(loop, &r->tls);
  tapio__free(loop, r, sizeof *r);
}

/* Ends the request with code; message (or NULL) is what
 * tapio_loop_error_message answers during the completion. */
static void req_fail(connect_req *r, int code, const char *message) {
  tapio_loop *loop = r->req.loop;
  tapio_connect_fn cb = r->cb;
  void *ud = r->cb_ud;
  int call = tapio__request_done(&r->req);
  if (r->t)
    tapio__transport_discard(r->t);
  if (r->hs)
    tapio__tls_cancel(r->hs, code);
  req_free(r);
  tapio__connect_failed(loop, call, cb, ud, code, message);
}

static void req_cancel(tapio__request *req) {
  req_fail((connect_req *)req, TAPIO_ECANCELED, NULL);
}

/* The connection is ready: connection_made, then the caller is told. */
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
  r->hs = NULL;
  if (status == 0)
    req_made(r, t);
  else /* the transport is failing already; it goes after the callback */
    req_fail(r, status, tapio__tls_error(t));
}

/* The transport is made (or was, for a wrapped socket): after a TLS
 * handshake when asked, connection_made, then the caller is told. */
static void req_connected(connect_req *r) {
  tapio_transport *t = r->t;
  int rc;
  r->t = NULL;
  if (!r->tls.ctx) {
    req_made(r, t);
    return;
  }
  rc = tapio__tls_attach(t, &r->tls, r->tls_server, NULL, 0, req_tls_done, r);
  if (rc < 0) {
    tapio__transport_discard(t);
    req_fail(r, rc, NULL);
    return;
  }
  r->hs = t;
}

/* The race is over: a connected socket, or what each address answered. */
static void on_raced(void *ud, int fd, const tapio__addr *addr, int code,
                     const char *message) {
  connect_req *r = ud;
  r->race = NULL;
  if (fd < 0) {
    req_fail(r, code, message);
    return;
  }
  r->t = tapio__stream_new(r->req.loop, fd, r->proto, r->proto_ud);
  if (!r->t) {
    close(fd);
    req_fail(r, TAPIO_ENOMEM, NULL);
    return;
  }
  tapio__transport_set_peer(r->t, (const struct sockaddr *)&addr->ss,
                            addr->len);
  tapio__maybe_nodelay(fd, addr->ss.ss_family, r->nodelay);
  req_connected(r);
}

/* The virtual network's answer (vnet.c): the transport has its names. */
static void on_vconnected(void *ud, tapio_transport *t, int code,
                          const char *message) {
  connect_req *r = ud;
  r->vc = NULL;
  if (!t) {
    req_fail(r, code, message);
    return;
  }
  r->t = t;
  req_connected(r);
}

static void race(connect_req *r) {
  int rc;
  if (tapio__virtual(r->req.loop)) { /* the first address: no race there */
    rc = tapio__vnet_connect(r->req.loop, &r->addrs[0],
                             r->nlocals ? &r->locals[0] : NULL, r->proto,
                             r->proto_ud, on_vconnected, r, &r->vc);
    if (rc < 0)
      req_fail(r, rc, NULL);
    return;
  }
  rc = tapio__race_start(r->req.loop, r->addrs, r->naddrs, r->locals,
                             r->nlocals, r->delay, r->first, r->ip_proto,
                             on_raced, r, &r->race);
  if (rc < 0)
    req_fail(r, rc, NULL);
}

static void resolve_local(connect_req *r);

/* A lookup's answer, or one given at once (rc 1): the remote addresses,
 * then the local ones; then the race. */
static void take_answer(connect_req *r, int rc, tapio__addr *addrs,
                        size_t n) {
  if (rc < 0) {
    char msg[300];
    req_fail(r, rc, tapio__describe_lookup(msg, sizeof msg,
                                           r->addrs ? r->local_host : r->host,
                                           rc));
  } else if (!r->addrs) {
    r->addrs = addrs;
    r->naddrs = n;
    resolve_local(r);
  } else {
    r->locals = addrs;
    r->nlocals = n;
    tapio__addrs_flowinfo(addrs, n, r->local_flow);
    race(r);
  }
}

static void on_answer(void *ud, int status, tapio__addr *addrs, size_t n,
                      const char *canon) {
  connect_req *r = ud;
  (void)canon;
  r->lookup = NULL;
  take_answer(r, status, addrs, n);
}

static void resolve_local(connect_req *r) {
  tapio__addr *addrs = NULL;
  size_t n = 0;
  int rc;
  if (!r->has_local) {
    race(r);
    return;
  }
  rc = tapio__resolve_port(r->req.loop, r->local_host, r->local_port,
                           r->family, TAPIO__RES_PASSIVE | r->res_flags,
                           on_answer, r,
                           &r->lookup, &addrs, &n);
  if (rc != 0)
    take_answer(r, rc, addrs, n);
}

/* The request's task: resolve (without blocking), then connect; or make
 * a wrapped socket's transport. */
static void req_run(tapio__task *task) {
  connect_req *r = TAPIO_CONTAINER(task, connect_req, req.task);
  tapio__addr *addrs = NULL;
  size_t n = 0;
  int rc;
  if (r->req.loop->freeing) {
    req_fail(r, TAPIO_ECANCELED, NULL);
  } else if (r->t) {
    req_connected(r);
  } else if (r->is_unix) {
    addrs = tapio__alloc(r->req.loop, sizeof *addrs);
    rc = addrs ? tapio__unix_addr(r->host, addrs) : TAPIO_ENOMEM;
    if (rc < 0)
      tapio__free(r->req.loop, addrs, addrs ? sizeof *addrs : 0);
    take_answer(r, rc, addrs, 1);
  } else {
    rc = tapio__resolve_port(r->req.loop, r->host, r->port, r->family,
                             r->res_flags, on_answer, r, &r->lookup, &addrs,
                             &n);
    if (rc != 0)
      take_answer(r, rc, addrs, n);
  }
}

static connect_req *req_new(tapio_loop *loop, const tapio_protocol *proto,
                            void *proto_ud, tapio_connect_fn cb,
                            void *cb_ud) {
  connect_req *r = tapio__calloc(loop, sizeof *r);
  if (!r)
    return NULL;
  r->req.loop = loop;
  r->req.ud = cb_ud;
  r->cb = cb;
  r->cb_ud = cb_ud;
  r->delay = -1;
  r->proto = proto;
  r->proto_ud = proto_ud;
  return r;
}

/* ---- Public entry points ----------------------------------------------- */

static int wrap(tapio_loop *loop, int fd, const tapio_protocol *proto,
                void *proto_ud, const tapio_options *opts, int call,
                tapio_connect_fn cb, void *cb_ud) {
  connect_req *r;
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  int rc = tapio__sock_check(loop, fd, SOCK_STREAM, call);
  if (rc < 0) {
    if (rc != TAPIO_EBUSY) /* else another owner's */
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
  tapio__refuse_none(loop);
  if (!loop || !cb || tapio__proto_check(proto, sizeof *proto) < 0)
    return TAPIO_EINVAL;
  if (loop->freeing)
    return TAPIO_ECLOSED;
  if (tapio__virtual(loop) && (call == TAPIO_CALL_CONNECT_ACCEPTED_SOCKET ||
                               tapio__opt_is_set(opts, TAPIO__OPT_SOCK)))
    return TAPIO_EVIRTUAL; /* a real socket: the virtual network has none */
  return tapio__opts_check(loop, opts, call);
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
  r->ip_proto = (int)tapio__opt_int(opts, TAPIO__OPT_PROTO, 0);
  r->res_flags = tapio__res_flags((int)tapio__opt_int(opts, TAPIO__OPT_FLAGS,
                                                      0));
  r->has_local = local || tapio__opt_is_set(opts, TAPIO__OPT_LOCAL_PORT);
  r->local_port = (int)tapio__opt_int(opts, TAPIO__OPT_LOCAL_PORT, 0);
  r->local_flow = (uint32_t)tapio__opt_int(opts, TAPIO__OPT_LOCAL_FLOWINFO,
                                           0);
  r->delay = tapio__opt_double(opts, TAPIO__OPT_HAPPY_EYEBALLS_DELAY, -1);
  /* asyncio: interleave defaults to 1 when happy_eyeballs_delay is set */
  r->first = (size_t)tapio__opt_int(opts, TAPIO__OPT_INTERLEAVE,
                                    r->delay >= 0 ? 1 : 0);
  if (r->has_local)
    r->local_host = tapio__strdup(loop, local ? local : "");
  return start(r, host);
}

int tapio_create_unix_connection(tapio_loop *loop, const char *path,
                                 const tapio_protocol *proto, void *proto_ud,
                                 const tapio_options *opts,
                                 tapio_connect_fn cb, void *cb_ud) {
  connect_req *r;
  int rc = bad_args(loop, proto, cb, opts,
                    TAPIO_CALL_CREATE_UNIX_CONNECTION);
  if (rc == 0)
    rc = tapio__unix_path_or_sock(loop, path, opts,
                                  TAPIO_CALL_CREATE_UNIX_CONNECTION);
  if (rc < 0)
    return tapio__opts_fail(opts, rc);
  if (tapio__opt_is_set(opts, TAPIO__OPT_SOCK))
    return wrap(loop, (int)tapio__opt_int(opts, TAPIO__OPT_SOCK, -1), proto,
                proto_ud, opts, TAPIO_CALL_CREATE_UNIX_CONNECTION, cb, cb_ud);
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

/* A transport another file made (a pipe, a subprocess): the request only
 * makes it from the loop, as for a wrapped socket. */
int tapio__request_transport(tapio_loop *loop, tapio_transport *t,
                             tapio_connect_fn cb, void *cb_ud) {
  connect_req *r = req_new(loop, NULL, NULL, cb, cb_ud);
  if (!r)
    return TAPIO_ENOMEM;
  r->t = t;
  tapio__request_start(loop, &r->req, req_run, req_cancel);
  return 0;
}
