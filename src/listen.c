/* create_server and create_unix_server: resolving (without blocking),
 * binding and listening, done from the loop so that the caller always
 * hears back from it. */
#include "tapio_int.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

typedef struct listen_req {
  tapio__request req;
  tapio_server_fn cb;
  void *cb_ud;
  tapio_server *server;
  char **hosts;          /* TCP: nhosts names; Unix: hosts[0] is the path */
  size_t nhosts;
  int port, family, backlog, reuse_address, reuse_port, start_serving;
  int sock, is_unix;     /* sock: the server's listener already, if >= 0 */
  int res_flags;         /* "flags" as TAPIO__RES_* */
  size_t next;           /* the host to resolve next */
  tapio__lookup *lookup; /* its lookup, while under way */
  char why[256];         /* which address did not bind, for the completion */
  tapio__addr *bound;    /* the addresses asked for and bound so far */
  size_t nbound, capbound;
} listen_req;

static void req_free(listen_req *r) {
  tapio_loop *loop = r->req.loop;
  size_t i;
  tapio__lookup_cancel(r->lookup);
  for (i = 0; i < r->nhosts; i++)
    tapio__strfree(loop, r->hosts[i]);
  tapio__free(loop, r->hosts, r->nhosts * sizeof *r->hosts);
  tapio__free(loop, r->bound, r->capbound * sizeof *r->bound);
  tapio__free(loop, r, sizeof *r);
}

/* Completes the request; a failure's message is what
 * tapio_loop_error_message answers during the callback. */
static void finish(listen_req *r, int rc) {
  tapio_loop *loop = r->req.loop;
  tapio_server *s = r->server;
  tapio_server_fn cb = r->cb;
  void *ud = r->cb_ud;
  const char *old = loop->errmsg;
  char why[sizeof r->why];
  int call = tapio__request_done(&r->req);
  memcpy(why, r->why, sizeof why);
  req_free(r);
  if (rc < 0) {
    tapio__server_destroy(s);
    s = NULL;
  }
  if (!call)
    return;
  loop->errmsg = rc < 0 && why[0] ? why : NULL;
  cb(ud, rc, s);
  loop->errmsg = old;
}

static void req_cancel(tapio__request *req) {
  finish((listen_req *)req, TAPIO_ECANCELED);
}

/* Binding failed with rc: says on which address, as asyncio's OSError
 * does. */
static int bind_failed_with(listen_req *r, const tapio__addr *a, int rc) {
  tapio__describe(r->why, sizeof r->why,
                  "error while attempting to bind on address",
                  (const struct sockaddr *)&a->ss, a->len, rc);
  return rc;
}

static int bind_failed(listen_req *r, int fd, const tapio__addr *a) {
  int rc = tapio__from_errno(errno);
  close(fd);
  return bind_failed_with(r, a, rc);
}

/* On a virtual loop: a listener of its network, no socket (vnet.c). */
static int bind_virtual(listen_req *r, const tapio__addr *a) {
  int rc = tapio__server_add_virtual(r->server, a, r->reuse_port);
  return rc == TAPIO_EADDRINUSE ? bind_failed_with(r, a, rc) : rc;
}

static int listen_fd(listen_req *r, int fd) {
  if (listen(fd, r->backlog) < 0) {
    int rc = tapio__from_errno(errno);
    close(fd);
    return rc;
  }
  return tapio__server_add_fd(r->server, fd);
}

static int bind_one(listen_req *r, const tapio__addr *a) {
  int af = a->ss.ss_family, rc = 0, fd;
  if (tapio__virtual(r->req.loop))
    return bind_virtual(r, a);
  fd = socket(af, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return tapio__from_errno(errno);
  if (r->reuse_address)
    rc = tapio__sockopt_on(fd, SOL_SOCKET, SO_REUSEADDR);
  if (rc == 0 && r->reuse_port)
    rc = tapio__sockopt_on(fd, SOL_SOCKET, SO_REUSEPORT);
  /* as asyncio: an IPv6 listener takes IPv6 only, IPv4 gets its own */
  if (rc == 0 && af == AF_INET6)
    rc = tapio__sockopt_on(fd, IPPROTO_IPV6, IPV6_V6ONLY);
  if (rc < 0) {
    close(fd);
    return rc;
  }
  if (bind(fd, (const struct sockaddr *)&a->ss, a->len) < 0)
    return bind_failed(r, fd, a);
  return listen_fd(r, fd);
}

/* Whether a and b are one address: family, port, address (and an IPv6
 * one's scope). */
static int same_addr(const tapio__addr *a, const tapio__addr *b) {
  const struct sockaddr_in *a4 = (const void *)&a->ss,
                           *b4 = (const void *)&b->ss;
  const struct sockaddr_in6 *a6 = (const void *)&a->ss,
                            *b6 = (const void *)&b->ss;
  if (a->ss.ss_family != b->ss.ss_family)
    return 0;
  if (a->ss.ss_family == AF_INET)
    return a4->sin_port == b4->sin_port &&
           a4->sin_addr.s_addr == b4->sin_addr.s_addr;
  if (a->ss.ss_family == AF_INET6)
    return a6->sin6_port == b6->sin6_port &&
           a6->sin6_scope_id == b6->sin6_scope_id &&
           memcmp(&a6->sin6_addr, &b6->sin6_addr, sizeof a6->sin6_addr) == 0;
  return a->len == b->len && memcmp(&a->ss, &b->ss, a->len) == 0;
}

/* Binds a unless it was bound already: an address given twice (a host
 * repeated, a name and its literal, a lookup that repeats one) gets one
 * listener, as asyncio's create_server does since bpo-26338, where the
 * second bind would fail with EADDRINUSE (or, at port 0, make a second
 * listener on another port). */
static int bind_new(listen_req *r, const tapio__addr *a) {
  tapio_loop *loop = r->req.loop;
  size_t i;
  int rc;
  for (i = 0; i < r->nbound; i++)
    if (same_addr(&r->bound[i], a))
      return 0;
  if (r->nbound == r->capbound) {
    size_t cap = r->capbound ? 2 * r->capbound : 4;
    tapio__addr *more = tapio__alloc(loop, cap * sizeof *more);
    if (!more)
      return TAPIO_ENOMEM;
    if (r->nbound)
      memcpy(more, r->bound, r->nbound * sizeof *more);
    tapio__free(loop, r->bound, r->capbound * sizeof *r->bound);
    r->bound = more;
    r->capbound = cap;
  }
  rc = bind_one(r, a);
  if (rc == 0)
    r->bound[r->nbound++] = *a;
  return rc;
}

static int bind_addrs(listen_req *r, tapio__addr *addrs, size_t n) {
  size_t i;
  int rc = 0;
  for (i = 0; rc == 0 && i < n; i++)
    rc = bind_new(r, &addrs[i]);
  tapio__addrs_free(r->req.loop, addrs, n);
  return rc;
}

static void bind_hosts(listen_req *r);

static void on_resolved(void *ud, int status, tapio__addr *addrs, size_t n,
                        const char *canon) {
  listen_req *r = ud;
  (void)canon;
  r->lookup = NULL;
  if (status == 0)
    status = bind_addrs(r, addrs, n);
  else /* next is past the host looked up */
    tapio__describe_lookup(r->why, sizeof r->why,
                           r->nhosts ? r->hosts[r->next - 1] : NULL, status);
  if (status < 0)
    finish(r, status);
  else
    bind_hosts(r);
}

/* Every host in turn, each looked up without blocking (no host at all:
 * every interface); then the server starts serving. */
static void bind_hosts(listen_req *r) {
  while (r->next < (r->nhosts ? r->nhosts : 1)) {
    const char *host = r->nhosts ? r->hosts[r->next] : NULL;
    tapio__addr *addrs = NULL;
    size_t n = 0;
    int rc = tapio__resolve_port(r->req.loop, host, r->port, r->family,
                                 r->res_flags, on_resolved, r, &r->lookup,
                                 &addrs, &n);
    r->next++;
    if (rc == 0)
      return; /* on_resolved goes on */
    if (rc == 1)
      rc = bind_addrs(r, addrs, n);
    else if (rc < 0)
      tapio__describe_lookup(r->why, sizeof r->why, host, rc);
    if (rc < 0) {
      finish(r, rc);
      return;
    }
  }
  if (r->start_serving)
    tapio_server_start_serving(r->server);
  finish(r, 0);
}

static int bind_unix(listen_req *r) {
  const char *path = r->hosts[0];
  tapio__addr a;
  int fd, rc = tapio__unix_addr(path, &a);
  if (rc < 0)
    return rc;
  if (tapio__virtual(r->req.loop)) /* a path of its network: no file */
    return bind_virtual(r, &a);
  tapio__unix_unlink_stale(path);
  fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return tapio__from_errno(errno);
  if (bind(fd, (struct sockaddr *)&a.ss, a.len) < 0)
    return bind_failed(r, fd, &a);
  rc = tapio__unix_abstract(path) ? 0 /* no file to remove at close */
                                   : tapio__server_set_unix_path(r->server,
                                                                 path);
  return rc < 0 ? (close(fd), rc) : listen_fd(r, fd);
}

/* A "sock" or a Unix path is bound at once; hosts may need lookups. */
static void req_run(tapio__task *task) {
  listen_req *r = TAPIO_CONTAINER(task, listen_req, req.task);
  int rc = 0, fd = r->sock;
  if (r->req.loop->freeing) {
    finish(r, TAPIO_ECANCELED);
    return;
  }
  if (fd >= 0) {
    /* listened on as asyncio's server does (a bound socket not yet
     * listening serves; a listening one gets the backlog); a Unix one's
     * file stays the caller's; on failure the server closes it */
    rc = listen(fd, r->backlog) < 0 ? tapio__from_errno(errno) : 0;
    if (rc < 0) /* a connected one, say: asyncio's listen raises too */
      snprintf(r->why, sizeof r->why, "%s: cannot listen on the socket "
               "given as 'sock': %s", r->is_unix ? "create_unix_server"
               : "create_server", tapio_strerror(rc));
  } else if (r->is_unix) {
    rc = bind_unix(r);
  } else {
    bind_hosts(r);
    return;
  }
  if (rc == 0 && r->start_serving)
    tapio_server_start_serving(r->server);
  finish(r, rc);
}

static listen_req *req_new(tapio_loop *loop, tapio_protocol_factory factory,
                           void *factory_ud, const tapio_options *opts,
                           size_t nhosts) {
  listen_req *r = tapio__calloc(loop, sizeof *r);
  if (!r)
    return NULL;
  r->req.loop = loop;
  r->sock = -1;
  r->hosts = nhosts ? tapio__calloc(loop, nhosts * sizeof *r->hosts) : NULL;
  r->nhosts = r->hosts ? nhosts : 0;
  r->server = tapio__server_new(loop, factory, factory_ud, opts);
  if ((nhosts && !r->hosts) || !r->server) {
    if (r->server)
      tapio__server_destroy(r->server);
    req_free(r);
    return NULL;
  }
  r->family = (int)tapio__opt_int(opts, TAPIO__OPT_FAMILY, 0);
  r->backlog = (int)tapio__opt_int(opts, TAPIO__OPT_BACKLOG, 100);
  r->reuse_address = (int)tapio__opt_int(opts, TAPIO__OPT_REUSE_ADDRESS, 1);
  r->reuse_port = (int)tapio__opt_int(opts, TAPIO__OPT_REUSE_PORT, 0);
  r->start_serving = (int)tapio__opt_int(opts, TAPIO__OPT_START_SERVING, 1);
  r->res_flags = tapio__res_flags((int)tapio__opt_int(opts, TAPIO__OPT_FLAGS,
                                                      TAPIO_AI_PASSIVE));
  r->sock = (int)tapio__opt_int(opts, TAPIO__OPT_SOCK, -1); /* ours now */
  return r;
}

static int copy_hosts(listen_req *r, const char *const *hosts) {
  size_t i;
  for (i = 0; i < r->nhosts; i++) {
    r->hosts[i] = tapio__strdup(r->req.loop, hosts[i] ? hosts[i] : "");
    if (!r->hosts[i])
      return TAPIO_ENOMEM;
  }
  return 0;
}

/* A "sock" is the server's listener from the call on (add_fd closes it
 * if it cannot be), so that another create call given it while this one
 * waits for the loop finds it owned (tapio__sock_check). */
static int submit(listen_req *r, tapio_server_fn cb, void *cb_ud,
                  const char *const *hosts) {
  int rc = r->sock >= 0 ? tapio__server_add_fd(r->server, r->sock) : 0;
  if (rc == 0)
    rc = copy_hosts(r, hosts);
  if (rc < 0) {
    tapio__server_destroy(r->server); /* closes the "sock" it took */
    req_free(r);
    return rc;
  }
  r->cb = cb;
  r->cb_ud = cb_ud;
  r->req.ud = cb_ud;
  tapio__request_start(r->req.loop, &r->req, req_run, req_cancel);
  return 0;
}

/* What every create call checks first: its handles, a loop being freed,
 * and options it does not take. */
static int bad_args(tapio_loop *loop, tapio_protocol_factory factory,
                    tapio_server_fn cb, const tapio_options *opts, int call) {
  tapio__refuse_none(loop);
  if (!loop || !factory || !cb)
    return TAPIO_EINVAL;
  if (loop->freeing)
    return TAPIO_ECLOSED;
  if (tapio__virtual(loop) && tapio__opt_is_set(opts, TAPIO__OPT_SOCK))
    return TAPIO_EVIRTUAL; /* a real socket: the virtual network has none */
  return tapio__opts_check(loop, opts, call);
}

int tapio_create_server(tapio_loop *loop, const char *const *hosts,
                        size_t nhosts, int port, tapio_protocol_factory factory,
                        void *factory_ud, const tapio_options *opts,
                        tapio_server_fn cb, void *cb_ud) {
  listen_req *r;
  int rc = bad_args(loop, factory, cb, opts, TAPIO_CALL_CREATE_SERVER);
  if (rc == 0 && (port < 0 || port > 65535 || (nhosts && !hosts) ||
                  nhosts > SIZE_MAX / sizeof(char *)))
    rc = TAPIO_EINVAL;
  if (rc == 0 && tapio__opt_is_set(opts, TAPIO__OPT_SOCK) && (nhosts || port))
    rc = TAPIO_EINVAL; /* sock excludes host and port, as in asyncio */
  if (rc == 0 && tapio__opt_is_set(opts, TAPIO__OPT_SOCK))
    rc = tapio__sock_check(loop, (int)tapio__opt_int(opts, TAPIO__OPT_SOCK,
                                                     -1),
                           SOCK_STREAM, TAPIO_CALL_CREATE_SERVER);
  if (rc < 0)
    return tapio__opts_fail(opts, rc);
  r = req_new(loop, factory, factory_ud, opts, hosts ? nhosts : 0);
  if (!r)
    return tapio__opts_fail(opts, TAPIO_ENOMEM);
  r->port = port;
  return submit(r, cb, cb_ud, hosts);
}

int tapio_create_unix_server(tapio_loop *loop, const char *path,
                             tapio_protocol_factory factory, void *factory_ud,
                             const tapio_options *opts, tapio_server_fn cb,
                             void *cb_ud) {
  listen_req *r;
  int rc = bad_args(loop, factory, cb, opts, TAPIO_CALL_CREATE_UNIX_SERVER);
  int sock = tapio__opt_is_set(opts, TAPIO__OPT_SOCK);
  if (rc == 0)
    rc = tapio__unix_path_or_sock(loop, path, opts,
                                  TAPIO_CALL_CREATE_UNIX_SERVER);
  if (rc == 0 && sock)
    rc = tapio__sock_check(loop, (int)tapio__opt_int(opts, TAPIO__OPT_SOCK,
                                                     -1),
                           SOCK_STREAM, TAPIO_CALL_CREATE_UNIX_SERVER);
  if (rc < 0)
    return tapio__opts_fail(opts, rc);
  r = req_new(loop, factory, factory_ud, opts, sock ? 0 : 1);
  if (!r)
    return tapio__opts_fail(opts, TAPIO_ENOMEM);
  r->is_unix = 1;
  return submit(r, cb, cb_ud, &path);
}
