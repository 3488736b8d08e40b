/* create_datagram_endpoint: a UDP socket bound and/or connected to
 * addresses looked up without blocking (a family both share), a Unix
 * datagram socket, or a socket handed over; asyncio's checks of the
 * options, done when the call is made. The transport is datagram.c's; on
 * a virtual loop, vdgram.c's endpoint of the virtual network. */
#include "tapio_int.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

typedef struct dgram_req {
  tapio__request req;
  tapio_connect_fn cb;
  void *cb_ud;
  const tapio_datagram_protocol *proto;
  void *proto_ud;
  char *local_host, *remote_host, *local_path, *remote_path;
  int local_port, remote_port, has_local, has_remote;
  uint32_t local_flow, remote_flow; /* local_flowinfo, remote_flowinfo */
  int family, reuse_port, broadcast, sock;
  int ip_proto, res_flags; /* "proto"; "flags" as TAPIO__RES_* */
  tapio__addr *locals, *remotes;
  size_t nlocals, nremotes;
  tapio__lookup *lookup;
  tapio_transport *t; /* made at the call from a "sock" */
} dgram_req;

static void req_free(dgram_req *r) {
  tapio_loop *loop = r->req.loop;
  if (r->sock >= 0)
    close(r->sock);
  if (r->t) /* cancelled before the loop ran the call: closes the "sock" */
    tapio__transport_discard(r->t);
  tapio__lookup_cancel(r->lookup);
  tapio__strfree(loop, r->local_host);
  tapio__strfree(loop, r->remote_host);
  tapio__strfree(loop, r->local_path);
  tapio__strfree(loop, r->remote_path);
  tapio__addrs_free(loop, r->locals, r->nlocals);
  tapio__addrs_free(loop, r->remotes, r->nremotes);
  tapio__free(loop, r, sizeof *r);
}

static void req_fail(dgram_req *r, int code, const char *message) {
  tapio_loop *loop = r->req.loop;
  tapio_connect_fn cb = r->cb;
  void *ud = r->cb_ud;
  int call = tapio__request_done(&r->req);
  req_free(r);
  tapio__connect_failed(loop, call, cb, ud, code, message);
}

static void req_cancel(tapio__request *req) {
  req_fail((dgram_req *)req, TAPIO_ECANCELED, NULL);
}

static void finish(dgram_req *r, tapio_transport *t);

/* fd is ready: the transport is made, connection_made runs, the caller
 * is told. peer: the connected peer (or NULL); dflt: the default
 * destination of an endpoint that is not connected (or NULL). */
static void made(dgram_req *r, int fd, int af, const tapio__addr *peer,
                 const tapio__addr *dflt) {
  tapio_transport *t = tapio__datagram_new(r->req.loop, fd, af, r->proto,
                                           r->proto_ud, peer != NULL, dflt);
  if (!t) {
    close(fd);
    req_fail(r, TAPIO_ENOMEM, NULL);
    return;
  }
  if (peer)
    tapio__transport_set_peer(t, (const struct sockaddr *)&peer->ss,
                              peer->len);
  finish(r, t);
}

/* The endpoint t is made: connection_made runs, the caller is told. */
static void finish(dgram_req *r, tapio_transport *t) {
  tapio_connect_fn cb = r->cb;
  void *ud = r->cb_ud;
  tapio__request_done(&r->req);
  req_free(r);
  tapio__transport_made(t);
  cb(ud, 0, t);
}

/* ---- Sockets --------------------------------------------------------- */

/* ICMP errors about what is sent, on connected and unconnected sockets
 * alike: the error queue says which address they concern. */
static void recv_errors(int fd, int af) {
  if (af == AF_INET)
    tapio__sockopt_on(fd, SOL_IP, IP_RECVERR);
  else if (af == AF_INET6)
    tapio__sockopt_on(fd, SOL_IPV6, IPV6_RECVERR);
}

/* A socket of af, with the options asked for, bound to local and
 * connected to remote (either may be NULL). Returns the descriptor, or
 * the error and in *what the call that failed. */
static int open_socket(dgram_req *r, int af, const tapio__addr *local,
                       const tapio__addr *remote, const char **what) {
  int fd = socket(af, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, r->ip_proto);
  int rc = 0;
  *what = "socket";
  if (fd < 0)
    return tapio__from_errno(errno);
  if (r->reuse_port)
    rc = tapio__sockopt_on(fd, SOL_SOCKET, SO_REUSEPORT);
  if (rc == 0 && r->broadcast)
    rc = tapio__sockopt_on(fd, SOL_SOCKET, SO_BROADCAST);
  recv_errors(fd, af);
  if (rc == 0 && local) {
    *what = "error while attempting to bind on address";
    if (bind(fd, (const struct sockaddr *)&local->ss, local->len) < 0)
      rc = tapio__from_errno(errno);
  }
  if (rc == 0 && remote && !r->broadcast) {
    *what = "connect call failed";
    if (connect(fd, (const struct sockaddr *)&remote->ss, remote->len) < 0)
      rc = tapio__from_errno(errno);
  }
  if (rc < 0) {
    close(fd);
    return rc;
  }
  return fd;
}

static const tapio__addr *first_of(const tapio__addr *v, size_t n, int af) {
  size_t i;
  for (i = 0; i < n; i++)
    if (v[i].ss.ss_family == af)
      return &v[i];
  return NULL;
}

/* On a virtual loop: an endpoint of its network (vdgram.c), made; 0, or
 * the error of its bind. */
static int make_virtual(dgram_req *r, int af, const tapio__addr *local,
                        const tapio__addr *remote) {
  tapio_transport *t;
  int rc = tapio__vdgram_new(r->req.loop, r->proto, r->proto_ud, af, local,
                             remote, r->broadcast, r->reuse_port, &t);
  if (rc == 0)
    finish(r, t);
  return rc;
}

/* Tries each remote address (or each local one) with the first local
 * (remote) address of its family, as asyncio pairs them; the first
 * socket made wins. All failing, the first error is the answer. */
static void make_ip(dgram_req *r) {
  const tapio__addr *v = r->has_remote ? r->remotes : r->locals;
  size_t n = r->has_remote ? r->nremotes : r->nlocals, i;
  int first = 0;
  char msg[256] = "no local and remote addresses of the same family";
  if (!r->has_remote && !r->has_local)
    n = 1; /* a family alone: an unbound socket */
  for (i = 0; i < n; i++) {
    int af = v ? v[i].ss.ss_family : tapio__family_to_af(r->family);
    const tapio__addr *local = r->has_remote ? first_of(r->locals,
                                                        r->nlocals, af)
                                             : (v ? &v[i] : NULL);
    const tapio__addr *remote = r->has_remote ? &v[i] : NULL;
    const char *what;
    int fd;
    if (r->has_local && !local)
      continue;
    if (tapio__virtual(r->req.loop)) {
      fd = make_virtual(r, af, local, remote);
      if (fd == 0)
        return;
      what = "error while attempting to bind on address";
    } else {
      fd = open_socket(r, af, local, remote, &what);
    }
    if (fd >= 0) {
      made(r, fd, af, remote && !r->broadcast ? remote : NULL,
           r->broadcast ? remote : NULL);
      return;
    }
    if (!first) {
      const tapio__addr *a = remote && what[0] == 'c' ? remote : local;
      first = fd;
      tapio__describe(msg, sizeof msg, what,
                      a ? (const struct sockaddr *)&a->ss : NULL,
                      a ? a->len : 0, fd);
    }
  }
  req_fail(r, first ? first : TAPIO_EINVAL, msg);
}

/* A Unix datagram socket: bound to local_path (a stale socket file
 * removed first, as asyncio does), connected to remote_path. */
static void make_unix(dgram_req *r) {
  tapio__addr local, remote;
  const char *what;
  int fd, rc = 0;
  if (r->local_path)
    rc = tapio__unix_addr(r->local_path, &local);
  if (rc == 0 && r->remote_path)
    rc = tapio__unix_addr(r->remote_path, &remote);
  if (rc < 0) {
    req_fail(r, rc, NULL);
    return;
  }
  if (r->local_path)
    tapio__unix_unlink_stale(r->local_path);
  fd = open_socket(r, AF_UNIX, r->local_path ? &local : NULL,
                   r->remote_path ? &remote : NULL, &what);
  if (fd < 0) {
    char msg[256];
    const tapio__addr *a = what[0] == 'c' ? &remote
                           : what[0] == 'e' ? &local : NULL;
    tapio__describe(msg, sizeof msg, what,
                    a ? (const struct sockaddr *)&a->ss : NULL,
                    a ? a->len : 0, fd);
    req_fail(r, fd, msg);
    return;
  }
  made(r, fd, AF_UNIX, r->remote_path ? &remote : NULL, NULL);
}

/* A socket handed over becomes the endpoint at the call (its family and
 * peer, if connected, read then), so that another create call or
 * add_reader given it meanwhile finds it owned (tapio__sock_check); the
 * endpoint is made (connection_made) when the loop runs the call. */
static int wrap_sock(dgram_req *r) {
  tapio__addr self, peer;
  int fd = r->sock, connected;
  self.len = sizeof self.ss;
  peer.len = sizeof peer.ss;
  memset(&self.ss, 0, sizeof self.ss);
  if (getsockname(fd, (struct sockaddr *)&self.ss, &self.len) < 0)
    return tapio__from_errno(errno);
  connected = getpeername(fd, (struct sockaddr *)&peer.ss, &peer.len) == 0;
  r->t = tapio__datagram_new(r->req.loop, fd, self.ss.ss_family, r->proto,
                             r->proto_ud, connected, NULL);
  if (!r->t)
    return TAPIO_ENOMEM;
  r->sock = -1; /* the transport's now */
  recv_errors(fd, self.ss.ss_family);
  if (connected)
    tapio__transport_set_peer(r->t, (const struct sockaddr *)&peer.ss,
                              peer.len);
  return 0;
}

/* The loop runs the call of a socket handed over: connection_made. */
static void finish_wrapped(dgram_req *r) {
  tapio_transport *t = r->t;
  r->t = NULL; /* finish's now */
  finish(r, t);
}

/* ---- Lookups --------------------------------------------------------- */

static void resolve_remote(dgram_req *r);

/* Keeps a lookup's answer (or one given at once: rc 1): the local
 * addresses are looked up first, then the remote ones. */
static void take(dgram_req *r, int rc, tapio__addr *addrs, size_t n) {
  int local = r->has_local && !r->locals;
  if (rc < 0) {
    char msg[300];
    req_fail(r, rc, tapio__describe_lookup(msg, sizeof msg,
                                           local ? r->local_host
                                                 : r->remote_host,
                                           rc));
  } else if (local) {
    r->locals = addrs;
    r->nlocals = n;
    tapio__addrs_flowinfo(addrs, n, r->local_flow);
    resolve_remote(r);
  } else {
    r->remotes = addrs;
    r->nremotes = n;
    tapio__addrs_flowinfo(addrs, n, r->remote_flow);
    make_ip(r);
  }
}

static void on_answer(void *ud, int status, tapio__addr *addrs, size_t n,
                      const char *canon) {
  dgram_req *r = ud;
  (void)canon;
  r->lookup = NULL;
  take(r, status, addrs, n);
}

static void resolve(dgram_req *r, int local) {
  tapio__addr *addrs = NULL;
  size_t n = 0;
  int rc = tapio__resolve_port(
      r->req.loop, local ? r->local_host : r->remote_host,
      local ? r->local_port : r->remote_port, r->family,
      (local ? TAPIO__RES_PASSIVE : 0) | r->res_flags, on_answer, r,
      &r->lookup, &addrs, &n);
  if (rc != 0)
    take(r, rc, addrs, n);
}

static void resolve_remote(dgram_req *r) {
  if (r->has_remote)
    resolve(r, 0);
  else
    make_ip(r);
}

static void req_run(tapio__task *task) {
  dgram_req *r = TAPIO_CONTAINER(task, dgram_req, req.task);
  if (r->req.loop->freeing)
    req_fail(r, TAPIO_ECANCELED, NULL);
  else if (r->t)
    finish_wrapped(r);
  else if (r->local_path || r->remote_path)
    make_unix(r);
  else if (r->has_local)
    resolve(r, 1);
  else
    resolve_remote(r);
}

/* ---- The call: asyncio's checks, at once ------------------------------ */

static int is_set(const tapio_options *o, enum tapio__opt which) {
  return tapio__opt_is_set(o, which);
}

/* Literal local and remote hosts of different families (D13). */
static int families_clash(const char *local, const char *remote) {
  char a[TAPIO_ADDR_MAX], b[TAPIO_ADDR_MAX];
  size_t alen = sizeof a, blen = sizeof b;
  if (!local || !remote || tapio_addr_parse(local, 0, a, &alen) < 0 ||
      tapio_addr_parse(remote, 0, b, &blen) < 0)
    return 0;
  return ((struct sockaddr *)a)->sa_family !=
         ((struct sockaddr *)b)->sa_family;
}

#define FN "create_datagram_endpoint"

/* asyncio: sock excludes every option that makes a socket; refused with
 * the names of those given, as its message names them (D14). */
static int sock_excludes(tapio_loop *loop, const tapio_options *o) {
  static const enum tapio__opt with_sock[] = {
    TAPIO__OPT_LOCAL_HOST, TAPIO__OPT_LOCAL_PORT, TAPIO__OPT_REMOTE_HOST,
    TAPIO__OPT_REMOTE_PORT, TAPIO__OPT_LOCAL_PATH, TAPIO__OPT_REMOTE_PATH,
    TAPIO__OPT_FAMILY, TAPIO__OPT_REUSE_PORT, TAPIO__OPT_ALLOW_BROADCAST,
    TAPIO__OPT_PROTO, TAPIO__OPT_FLAGS, TAPIO__OPT_LOCAL_FLOWINFO,
    TAPIO__OPT_REMOTE_FLOWINFO};
  char names[256];
  size_t i, n = 0;
  names[0] = '\0';
  for (i = 0; i < sizeof with_sock / sizeof *with_sock; i++)
    if (is_set(o, with_sock[i]) && n < sizeof names)
      n += (size_t)snprintf(names + n, sizeof names - n, "%s'%s'",
                            n ? ", " : "", tapio__opt_name(with_sock[i]));
  if (n == 0)
    return 0;
  tapio__refuse(loop, FN ": 'sock' cannot be given with %s (asyncio: "
                "socket modifier keyword arguments can not be used when "
                "sock is specified)", names);
  return TAPIO_EINVAL;
}

/* asyncio's checks of the options (D13, D14), each refused with words
 * that say which options and why (tapio_loop_error_message); the Lua
 * binding raises them less the call's name, so they name no option that
 * the binding spells otherwise (local_host, local_path: its local_addr). */
static int check_options(tapio_loop *loop, const tapio_options *o) {
  int ip = is_set(o, TAPIO__OPT_LOCAL_HOST) ||
           is_set(o, TAPIO__OPT_LOCAL_PORT) ||
           is_set(o, TAPIO__OPT_REMOTE_HOST) ||
           is_set(o, TAPIO__OPT_REMOTE_PORT);
  int path = is_set(o, TAPIO__OPT_LOCAL_PATH) ||
             is_set(o, TAPIO__OPT_REMOTE_PATH);
  const char *local = tapio__opt_str(o, TAPIO__OPT_LOCAL_HOST);
  const char *remote = tapio__opt_str(o, TAPIO__OPT_REMOTE_HOST);
  if (is_set(o, TAPIO__OPT_SOCK))
    return sock_excludes(loop, o);
  if (ip && path)
    tapio__refuse(loop, FN ": an IP address (a host or port) and a Unix "
                  "path given together: the local and remote addresses "
                  "must be both IP or both Unix paths");
  else if (path && is_set(o, TAPIO__OPT_FAMILY))
    tapio__refuse(loop, FN ": 'family' given with a Unix path (a path's "
                  "family is AF_UNIX)");
  else if (!ip && !path && !is_set(o, TAPIO__OPT_FAMILY))
    tapio__refuse(loop, FN ": no local or remote address, no family and no "
                  "sock: nothing to make a socket of (asyncio: unexpected "
                  "address family)");
  else if (is_set(o, TAPIO__OPT_REMOTE_HOST) !=
           is_set(o, TAPIO__OPT_REMOTE_PORT))
    tapio__refuse(loop, FN ": the remote address has a %s but no %s (it is "
                  "a host and a port)", remote ? "host" : "port",
                  remote ? "port" : "host");
  else if (families_clash(local, remote))
    tapio__refuse(loop, FN ": the local host '%s' and the remote host '%s' "
                  "are of different families (asyncio: can not get address "
                  "information)", local, remote);
  else
    return 0;
  return TAPIO_EINVAL;
}

static char *copy(tapio_loop *loop, const char *s, int *failed) {
  char *c = s ? tapio__strdup(loop, s) : NULL;
  if (s && !c)
    *failed = 1;
  return c;
}

/* local_host or remote_host: "<broadcast>" as sendto takes it. */
static char *copy_host(tapio_loop *loop, const char *s, int *failed) {
  return copy(loop, tapio__broadcast_name(s), failed);
}

static dgram_req *req_new(tapio_loop *loop, const tapio_options *o) {
  dgram_req *r = tapio__calloc(loop, sizeof *r);
  int failed = 0;
  if (!r)
    return NULL;
  r->req.loop = loop;
  r->sock = (int)tapio__opt_int(o, TAPIO__OPT_SOCK, -1);
  r->local_host = copy_host(loop, tapio__opt_str(o, TAPIO__OPT_LOCAL_HOST),
                            &failed);
  r->remote_host = copy_host(loop, tapio__opt_str(o, TAPIO__OPT_REMOTE_HOST),
                             &failed);
  r->local_path = copy(loop, tapio__opt_str(o, TAPIO__OPT_LOCAL_PATH),
                       &failed);
  r->remote_path = copy(loop, tapio__opt_str(o, TAPIO__OPT_REMOTE_PATH),
                        &failed);
  r->local_port = (int)tapio__opt_int(o, TAPIO__OPT_LOCAL_PORT, 0);
  r->remote_port = (int)tapio__opt_int(o, TAPIO__OPT_REMOTE_PORT, 0);
  r->local_flow = (uint32_t)tapio__opt_int(o, TAPIO__OPT_LOCAL_FLOWINFO, 0);
  r->remote_flow = (uint32_t)tapio__opt_int(o, TAPIO__OPT_REMOTE_FLOWINFO, 0);
  r->has_local = is_set(o, TAPIO__OPT_LOCAL_HOST) ||
                 is_set(o, TAPIO__OPT_LOCAL_PORT);
  r->has_remote = is_set(o, TAPIO__OPT_REMOTE_HOST);
  r->family = (int)tapio__opt_int(o, TAPIO__OPT_FAMILY, 0);
  r->reuse_port = (int)tapio__opt_int(o, TAPIO__OPT_REUSE_PORT, 0);
  r->broadcast = (int)tapio__opt_int(o, TAPIO__OPT_ALLOW_BROADCAST, 0);
  r->ip_proto = (int)tapio__opt_int(o, TAPIO__OPT_PROTO, 0);
  r->res_flags = tapio__res_flags((int)tapio__opt_int(o, TAPIO__OPT_FLAGS, 0));
  if (failed) {
    r->sock = -1; /* closed by the caller's failure path */
    req_free(r);
    return NULL;
  }
  return r;
}

int tapio_create_datagram_endpoint(tapio_loop *loop,
                                   const tapio_datagram_protocol *proto,
                                   void *proto_ud, const tapio_options *opts,
                                   tapio_connect_fn cb, void *cb_ud) {
  dgram_req *r;
  int rc = 0;
  tapio__refuse_none(loop);
  if (!loop || !cb || tapio__proto_check(proto, sizeof *proto) < 0)
    rc = TAPIO_EINVAL;
  else
    rc = tapio__io_refused(loop);
  if (rc == TAPIO_EVIRTUAL && !is_set(opts, TAPIO__OPT_SOCK) &&
      !is_set(opts, TAPIO__OPT_LOCAL_PATH) &&
      !is_set(opts, TAPIO__OPT_REMOTE_PATH))
    rc = 0; /* an endpoint of the virtual network: make_virtual */
  if (rc == 0)
    rc = tapio__opts_check(loop, opts, TAPIO_CALL_CREATE_DATAGRAM_ENDPOINT);
  if (rc == 0)
    rc = check_options(loop, opts);
  if (rc == 0 && is_set(opts, TAPIO__OPT_SOCK))
    rc = tapio__sock_check(loop, (int)tapio__opt_int(opts, TAPIO__OPT_SOCK,
                                                     -1),
                           SOCK_DGRAM, TAPIO_CALL_CREATE_DATAGRAM_ENDPOINT);
  if (rc < 0)
    return tapio__opts_fail(opts, rc);
  r = req_new(loop, opts);
  if (!r)
    return tapio__opts_fail(opts, TAPIO_ENOMEM);
  r->cb = cb;
  r->cb_ud = cb_ud;
  r->proto = proto;
  r->proto_ud = proto_ud;
  r->req.ud = cb_ud;
  if (r->sock >= 0 && (rc = wrap_sock(r)) < 0) {
    r->sock = -1; /* closed by the failure path */
    req_free(r);
    return tapio__opts_fail(opts, rc);
  }
  tapio__request_start(loop, &r->req, req_run, req_cancel);
  return 0;
}
