/* The loop's getaddrinfo and getnameinfo (asyncio's loop.getaddrinfo,
 * loop.getnameinfo): requests whose lookups resolve.c makes without
 * blocking, answered from the loop, cancellable. */
#include "tapio_int.h"

#include <stdlib.h>
#include <string.h>

struct tapio_addrinfo {
  const tapio__addr *addrs;
  size_t n;
  int type;                /* 0: a stream and a datagram entry each */
  int proto;               /* 0: the type's own */
  const char *canon;
};

typedef struct lookup_req {
  tapio__request req;
  tapio_addrinfo_fn cb;
  tapio_nameinfo_fn named;
  void *cb_ud;
  char *host, *service;
  int family, type, proto, flags;
  tapio__addr addr;        /* getnameinfo's */
  tapio__lookup *lookup;
} lookup_req;

static void req_free(lookup_req *r) {
  tapio_loop *loop = r->req.loop;
  tapio__lookup_cancel(r->lookup);
  tapio__strfree(loop, r->host);
  tapio__strfree(loop, r->service);
  tapio__free(loop, r, sizeof *r);
}

/* The answer (or the error: addrs NULL) goes to the caller; canon may be
 * the request's own copy of the host, so the request goes after. */
static void answer(lookup_req *r, int status, const tapio__addr *addrs,
                   size_t n, const char *canon) {
  tapio_addrinfo res;
  res.addrs = addrs;
  res.n = n;
  res.type = r->type;
  res.proto = r->proto;
  res.canon = (r->flags & TAPIO_AI_CANONNAME) ? canon : NULL;
  if (tapio__request_done(&r->req))
    r->cb(r->cb_ud, status, status == 0 ? &res : NULL);
  req_free(r);
}

static void named(lookup_req *r, int status, const char *host,
                  const char *service) {
  tapio_nameinfo_fn cb = r->named;
  void *ud = r->cb_ud;
  int call = tapio__request_done(&r->req);
  req_free(r);
  if (call)
    cb(ud, status, status == 0 ? host : NULL, status == 0 ? service : NULL);
}

static void req_cancel(tapio__request *req) {
  lookup_req *r = (lookup_req *)req;
  if (r->named)
    named(r, TAPIO_ECANCELED, NULL, NULL);
  else
    answer(r, TAPIO_ECANCELED, NULL, 0, NULL);
}

static void on_resolved(void *ud, int status, tapio__addr *addrs, size_t n,
                        const char *canon) {
  lookup_req *r = ud;
  tapio_loop *loop = r->req.loop;
  r->lookup = NULL;
  answer(r, status, addrs, n, canon);
  tapio__addrs_free(loop, addrs, n);
}

static void on_named(void *ud, int status, const char *host,
                     const char *service) {
  lookup_req *r = ud;
  r->lookup = NULL;
  named(r, status, host, service);
}

static void req_run(tapio__task *task) {
  lookup_req *r = TAPIO_CONTAINER(task, lookup_req, req.task);
  tapio_loop *loop = r->req.loop;
  tapio__addr *addrs = NULL;
  size_t n = 0;
  int rc;
  if (loop->freeing) {
    req_cancel(&r->req);
    return;
  }
  if (r->named) {
    rc = tapio__nameinfo(loop, (struct sockaddr *)&r->addr.ss, r->addr.len,
                         r->flags, on_named, r, &r->lookup);
    if (rc < 0)
      named(r, rc, NULL, NULL);
    return;
  }
  rc = tapio__resolve(loop, r->host, r->service, r->family,
                      tapio__res_flags(r->flags), on_resolved, r, &r->lookup,
                      &addrs, &n);
  if (rc == 1) /* a literal: the canonical name is itself */
    on_resolved(r, 0, addrs, n, r->host);
  else if (rc < 0)
    answer(r, rc, NULL, 0, NULL);
}

/* A request for cb_ud in *out, or TAPIO_ECLOSED / TAPIO_ENOMEM; or
 * TAPIO_EVIRTUAL on a virtual loop unless its network answers (names). */
static int req_new(tapio_loop *loop, void *ud, int names,
                   lookup_req **out) {
  lookup_req *r;
  *out = NULL;
  if (loop->freeing)
    return TAPIO_ECLOSED;
  if (tapio__virtual(loop) && !names)
    return TAPIO_EVIRTUAL;
  r = tapio__calloc(loop, sizeof *r);
  if (!r)
    return TAPIO_ENOMEM;
  r->req.loop = loop;
  r->req.ud = ud;
  r->cb_ud = ud;
  *out = r;
  return 0;
}

/* A service that is a number must be a port. */
static int bad_service(const char *s) {
  char *end;
  long v;
  if (!s || *s < '0' || *s > '9')
    return 0;
  v = strtol(s, &end, 10);
  return *end == '\0' && (v < 0 || v > 65535);
}

int tapio_getaddrinfo(tapio_loop *loop, const char *host,
                      const char *service, int family, int type, int flags,
                      tapio_addrinfo_fn cb, void *ud) {
  return tapio_getaddrinfo_proto(loop, host, service, family, type, 0, flags,
                                 cb, ud);
}

/* The type a protocol number picks when none is asked for. */
static int type_of(int proto) {
  return tapio__ipproto_check(TAPIO_SOCK_STREAM, proto) == 0
             ? TAPIO_SOCK_STREAM
             : TAPIO_SOCK_DGRAM;
}

int tapio_getaddrinfo_proto(tapio_loop *loop, const char *host,
                            const char *service, int family, int type,
                            int proto, int flags, tapio_addrinfo_fn cb,
                            void *ud) {
  lookup_req *r;
  int rc;
  if (!loop || !cb || (!host && !service) || bad_service(service) ||
      (family != 0 && family != TAPIO_AF_INET && family != TAPIO_AF_INET6) ||
      type < 0 || type > TAPIO_SOCK_DGRAM || proto < 0 || proto > 255 ||
      (flags & ~TAPIO__AI_ALL_FLAGS))
    return TAPIO_EINVAL;
  if ((rc = tapio__ipproto_check(type, proto)) < 0)
    return rc;
  if ((rc = req_new(loop, ud, 1, &r)) < 0)
    return rc;
  r->cb = cb;
  r->family = family;
  r->type = type == 0 && proto != 0 ? type_of(proto) : type;
  r->proto = proto;
  r->flags = flags;
  r->host = host ? tapio__strdup(loop, host) : NULL;
  r->service = tapio__strdup(loop, service ? service : "0");
  if ((host && !r->host) || !r->service) {
    req_free(r);
    return TAPIO_ENOMEM;
  }
  tapio__request_start(loop, &r->req, req_run, req_cancel);
  return 0;
}

size_t tapio_addrinfo_count(const tapio_addrinfo *res) {
  return !res ? 0 : res->type ? res->n : 2 * res->n;
}

int tapio_addrinfo_get(const tapio_addrinfo *res, size_t i,
                       const void **addr, size_t *addrlen, int *family,
                       int *type, int *protocol) {
  const tapio__addr *a;
  int t;
  if (!res || i >= tapio_addrinfo_count(res))
    return TAPIO_EINVAL;
  a = &res->addrs[res->type ? i : i / 2];
  t = res->type ? res->type : (i % 2 ? TAPIO_SOCK_DGRAM : TAPIO_SOCK_STREAM);
  if (addr)
    *addr = &a->ss;
  if (addrlen)
    *addrlen = a->len;
  if (family)
    *family = a->ss.ss_family == AF_INET6 ? TAPIO_AF_INET6 : TAPIO_AF_INET;
  if (type)
    *type = t;
  if (protocol)
    *protocol = res->proto ? res->proto : t == TAPIO_SOCK_STREAM ? 6 : 17;
  return 0;
}

const char *tapio_addrinfo_canonname(const tapio_addrinfo *res) {
  return res && (res->n && res->canon) ? res->canon : NULL;
}

int tapio_getnameinfo(tapio_loop *loop, const void *addr, size_t addrlen,
                      int flags, tapio_nameinfo_fn cb, void *ud) {
  const struct sockaddr *sa = addr;
  lookup_req *r;
  int rc;
  if (!loop || !cb || !addr || addrlen < sizeof(sa_family_t) ||
      addrlen > sizeof(struct sockaddr_storage) || (flags & ~31))
    return TAPIO_EINVAL;
  if (sa->sa_family != AF_INET && sa->sa_family != AF_INET6)
    return TAPIO_EAFNOSUPPORT;
  if (addrlen < (sa->sa_family == AF_INET ? sizeof(struct sockaddr_in)
                                          : sizeof(struct sockaddr_in6)))
    return TAPIO_EINVAL;
  if ((rc = req_new(loop, ud, 0, &r)) < 0)
    return rc;
  r->named = cb;
  r->flags = flags;
  memcpy(&r->addr.ss, addr, addrlen);
  r->addr.len = (socklen_t)addrlen;
  tapio__request_start(loop, &r->req, req_run, req_cancel);
  return 0;
}
