/* The loop's resolver: one c-ares channel per loop, made at the first name
 * that needs DNS, its sockets watched by the loop's libev and its timeouts
 * kept by one timer. c-ares reads /etc/hosts, /etc/resolv.conf (servers,
 * search domains, ndots, options) and nsswitch.conf's hosts order, and
 * needs no thread. tapio_loop_set_resolver (or TAPIO_DNS_SERVERS) points
 * it at other servers, e.g. a test's own DNS server. */
#include "tapio_int.h"

#include <ares.h>

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct tapio__resolver {
  ares_channel channel;
  tapio_loop *loop;
  tapio__timer timer;      /* c-ares's next timeout */
  tapio__link socks;       /* every res_sock */
  size_t pending;          /* lookups c-ares holds, cancelled ones too */
  size_t cancelled;        /* of which cancelled (tombstones) */
};

/* One socket c-ares talks through. */
typedef struct res_sock {
  ev_io io;
  tapio__link link;        /* resolver->socks */
  tapio__resolver *res;
} res_sock;

static pthread_once_t library_once = PTHREAD_ONCE_INIT;
static int library_status;

/* c-ares's process-wide set-up (a no-op on Linux, required elsewhere);
 * never undone, as other users of c-ares in the process may need it. */
static void library_init(void) {
  library_status = ares_library_init(ARES_LIB_INIT_ALL);
}

static void update_timer(tapio__resolver *res) {
  struct timeval tv, *next = ares_timeout(res->channel, NULL, &tv);
  if (!next)
    tapio__timer_stop(&res->timer);
  else
    tapio__timer_start(&res->timer,
                       (double)next->tv_sec + next->tv_usec * 1e-6);
}

static void on_io(struct ev_loop *ev, ev_io *w, int revents) {
  res_sock *rs = TAPIO_CONTAINER(w, res_sock, io);
  tapio__resolver *res = rs->res; /* rs may be freed inside the call */
  int fd = w->fd;
  (void)ev;
  ares_process_fd(res->channel, (revents & EV_READ) ? fd : ARES_SOCKET_BAD,
                  (revents & EV_WRITE) ? fd : ARES_SOCKET_BAD);
  update_timer(res);
}

static void on_timer(tapio__timer *tm) {
  tapio__resolver *res = TAPIO_CONTAINER(tm, tapio__resolver, timer);
  ares_process_fd(res->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
  update_timer(res);
}

static res_sock *find_sock(tapio__resolver *res, int fd) {
  tapio__link *l;
  for (l = res->socks.next; l != &res->socks; l = l->next) {
    res_sock *rs = TAPIO_CONTAINER(l, res_sock, link);
    if (rs->io.fd == fd)
      return rs;
  }
  return NULL;
}

static void drop_sock(tapio__resolver *res, res_sock *rs) {
  ev_io_stop(res->loop->ev, &rs->io);
  tapio__list_remove(&rs->link);
  tapio__free(res->loop, rs, sizeof *rs);
}

/* c-ares says what to watch on a socket: read, write, or nothing (it is
 * being closed). Out of memory, the socket goes unwatched and its query
 * ends by timeout. */
static void on_sock_state(void *data, ares_socket_t fd, int readable,
                          int writable) {
  tapio__resolver *res = data;
  res_sock *rs = find_sock(res, fd);
  int events = (readable ? EV_READ : 0) | (writable ? EV_WRITE : 0);
  if (!events) {
    if (rs)
      drop_sock(res, rs);
    return;
  }
  if (!rs) {
    rs = tapio__calloc(res->loop, sizeof *rs);
    if (!rs)
      return;
    rs->res = res;
    ev_init(&rs->io, on_io);
    tapio__list_push(&res->socks, &rs->link);
  }
  ev_io_stop(res->loop->ev, &rs->io);
  ev_io_set(&rs->io, fd, events);
  ev_io_start(res->loop->ev, &rs->io);
}

/* The servers set for the loop, else TAPIO_DNS_SERVERS, else NULL (the
 * system's). */
static const char *servers_of(tapio_loop *loop) {
  const char *env;
  if (loop->dns_servers)
    return loop->dns_servers;
  env = getenv("TAPIO_DNS_SERVERS");
  return env && *env ? env : NULL;
}

static int init_channel(tapio__resolver *res) {
  tapio_loop *loop = res->loop;
  struct ares_options o;
  int mask = ARES_OPT_SOCK_STATE_CB, rc;
  const char *servers = servers_of(loop);
  memset(&o, 0, sizeof o);
  o.sock_state_cb = on_sock_state;
  o.sock_state_cb_data = res;
  if (loop->dns_timeout > 0) {
    o.timeout = (int)(loop->dns_timeout * 1000 + 0.5);
    if (o.timeout < 1)
      o.timeout = 1;
    mask |= ARES_OPT_TIMEOUTMS;
  }
  if (loop->dns_tries > 0) {
    o.tries = loop->dns_tries;
    mask |= ARES_OPT_TRIES;
  }
  rc = ares_init_options(&res->channel, &o, mask);
  if (rc != ARES_SUCCESS)
    return rc == ARES_ENOMEM ? TAPIO_ENOMEM : TAPIO_EAI_FAIL;
  if (servers && ares_set_servers_ports_csv(res->channel, servers) !=
                     ARES_SUCCESS) {
    ares_destroy(res->channel);
    return TAPIO_EINVAL;
  }
  return 0;
}

/* Makes the loop's resolver; 0 or a tapio code. */
static int resolver_new(tapio_loop *loop) {
  tapio__resolver *res;
  int rc;
  pthread_once(&library_once, library_init);
  if (library_status != ARES_SUCCESS)
    return TAPIO_ENOMEM;
  res = tapio__calloc(loop, sizeof *res);
  if (!res)
    return TAPIO_ENOMEM;
  res->loop = loop;
  tapio__list_init(&res->socks);
  tapio__timer_init(&res->timer, loop, on_timer);
  rc = init_channel(res);
  if (rc < 0) {
    tapio__free(loop, res, sizeof *res);
    return rc;
  }
  loop->resolver = res;
  return 0;
}

/* ares_destroy ends every query c-ares holds (their callbacks run with
 * ARES_EDESTRUCTION and free what they held) and closes its sockets,
 * telling on_sock_state. */
void tapio__resolver_free(tapio_loop *loop) {
  tapio__resolver *res = loop->resolver;
  if (!res)
    return;
  ares_destroy(res->channel);
  while (!tapio__list_empty(&res->socks))
    drop_sock(res, TAPIO_CONTAINER(res->socks.next, res_sock, link));
  tapio__timer_stop(&res->timer);
  loop->resolver = NULL;
  tapio__free(loop, res, sizeof *res);
}

static int set_servers(tapio_loop *loop, const char *servers) {
  char *copy = NULL;
  if (servers && *servers) {
    copy = tapio__strdup(loop, servers);
    if (!copy)
      return TAPIO_ENOMEM;
  }
  tapio__strfree(loop, loop->dns_servers);
  loop->dns_servers = copy;
  return 0;
}

/* The channel is remade with the new settings, at once, so that a bad
 * server list is an error of this call; the old settings stay then. */
int tapio_loop_set_resolver(tapio_loop *loop, const char *servers,
                            double timeout, int tries) {
  char *old_servers;
  double old_timeout;
  int old_tries, rc;
  if (!loop || !(timeout >= 0) || timeout > 86400 || tries < 0)
    return TAPIO_EINVAL;
  /* Cancelled lookups do not count: nobody waits for them, and remaking
   * the channel drops them (their owners were told at the cancel). */
  if (loop->resolver &&
      loop->resolver->pending > loop->resolver->cancelled)
    return TAPIO_EBUSY;
  old_servers = loop->dns_servers;
  old_timeout = loop->dns_timeout;
  old_tries = loop->dns_tries;
  loop->dns_servers = NULL;
  rc = set_servers(loop, servers);
  if (rc < 0) {
    loop->dns_servers = old_servers;
    return rc;
  }
  loop->dns_timeout = timeout;
  loop->dns_tries = tries;
  tapio__resolver_free(loop);
  rc = resolver_new(loop);
  if (rc < 0) {
    tapio__strfree(loop, loop->dns_servers);
    loop->dns_servers = old_servers;
    loop->dns_timeout = old_timeout;
    loop->dns_tries = old_tries;
    return rc;
  }
  tapio__strfree(loop, old_servers);
  return 0;
}

/* ---- Lookups ----------------------------------------------------------- */

/* A lookup c-ares works on. Cancelled while c-ares holds it, it stays as
 * a tombstone (cb NULL) until c-ares answers, times out or is destroyed
 * with the loop: c-ares 1.18 cannot cancel one query of a channel. */
struct tapio__lookup {
  tapio__task task;           /* hands the answer over from the loop */
  tapio_loop *loop;
  tapio__resolved_fn cb;      /* NULL once cancelled */
  tapio__named_fn named;      /* a reverse lookup's */
  void *ud;
  int flags, family, status, in_ares; /* family: the AF_* asked for */
  tapio__addr *addrs;
  size_t n;
  char *canon, *host, *service;
};

void tapio__addrs_free(tapio_loop *loop, tapio__addr *addrs, size_t n) {
  if (addrs)
    tapio__free(loop, addrs, n * sizeof *addrs);
}

static void lookup_free(tapio__lookup *lk) {
  tapio_loop *loop = lk->loop;
  tapio__addrs_free(loop, lk->addrs, lk->n);
  tapio__strfree(loop, lk->canon);
  tapio__strfree(loop, lk->host);
  tapio__strfree(loop, lk->service);
  tapio__free(loop, lk, sizeof *lk);
}

void tapio__lookup_cancel(tapio__lookup *lk) {
  if (!lk)
    return;
  if (lk->in_ares) {
    if (lk->cb || lk->named)
      lk->loop->resolver->cancelled++;
    lk->cb = NULL;
    lk->named = NULL;
    return;
  }
  tapio__task_unpost(lk->loop, &lk->task);
  lookup_free(lk);
}

static int from_ares(int status) {
  switch (status) {
  case ARES_SUCCESS:
    return 0;
  case ARES_ENODATA:
  case ARES_ENOTFOUND:
  case ARES_EBADNAME:
  case ARES_ENONAME:
    return TAPIO_EAI_NONAME;
  case ARES_ESERVFAIL:
  case ARES_ETIMEOUT:
  case ARES_ECONNREFUSED:
  case ARES_EREFUSED:
    return TAPIO_EAI_AGAIN; /* as glibc reports them */
  case ARES_EBADFAMILY:
    return TAPIO_EAI_FAMILY;
  case ARES_ESERVICE:
    return TAPIO_EAI_SERVICE;
  case ARES_ENOMEM:
    return TAPIO_ENOMEM;
  case ARES_ECANCELLED:
  case ARES_EDESTRUCTION:
    return TAPIO_ECANCELED;
  default:
    return TAPIO_EAI_FAIL;
  }
}

/* The answer's task: the owner gets it, the lookup is gone first. */
static void run_answer(tapio__task *task) {
  tapio__lookup *lk = TAPIO_CONTAINER(task, tapio__lookup, task);
  tapio_loop *loop = lk->loop;
  int status = loop->freeing ? TAPIO_ECANCELED : lk->status;
  if (lk->named) {
    lk->named(lk->ud, status, lk->host, lk->service);
  } else {
    tapio__addr *addrs = status == 0 ? lk->addrs : NULL;
    size_t n = status == 0 ? lk->n : 0;
    if (status == 0)
      lk->addrs = NULL;
    lk->cb(lk->ud, status, addrs, n, lk->canon);
  }
  lookup_free(lk);
}

static void answered(tapio__lookup *lk, int status) {
  lk->status = status;
  lk->task.run = run_answer;
  tapio__task_post(lk->loop, &lk->task);
}

/* c-ares is done with lk: 1 if someone still wants the answer. */
static int back_from_ares(tapio__lookup *lk) {
  lk->in_ares = 0;
  lk->loop->resolver->pending--;
  if (!lk->cb && !lk->named)
    lk->loop->resolver->cancelled--;
  if ((lk->cb || lk->named) && !lk->loop->freeing)
    return 1;
  lookup_free(lk);
  return 0;
}

/* ---- Forward lookups --------------------------------------------------- */

/* Which address families the host has an address of: bit 0 IPv4, bit 1
 * IPv6. As glibc's AI_ADDRCONFIG counts them: any address but 127.0.0.1
 * and ::1 (127.0.0.2 and a link-local fe80:: count). */
static int configured_families(void) {
  struct ifaddrs *all, *ifa;
  int bits = 0;
  if (getifaddrs(&all) < 0)
    return 3;
  for (ifa = all; ifa; ifa = ifa->ifa_next) {
    const struct sockaddr *sa = ifa->ifa_addr;
    if (!sa)
      continue;
    if (sa->sa_family == AF_INET &&
        ((const struct sockaddr_in *)(const void *)sa)->sin_addr.s_addr !=
            htonl(INADDR_LOOPBACK))
      bits |= 1;
    else if (sa->sa_family == AF_INET6 &&
             !IN6_IS_ADDR_LOOPBACK(
                 &((const struct sockaddr_in6 *)(const void *)sa)
                      ->sin6_addr))
      bits |= 2;
  }
  freeifaddrs(all);
  return bits;
}

static int wanted(int af, int bits) {
  return af == AF_INET ? (bits & 1) : af == AF_INET6 ? (bits & 2) : 1;
}

/* AI_ADDRCONFIG as tapio has always asked it of getaddrinfo, retry
 * included: an answer of both families keeps only those the host has
 * configured, unless that leaves nothing (a host whose only IPv6 is
 * loopback still reaches ::1). Only mixed answers pay for the check. */
static int addrconfig(const struct ares_addrinfo_node *nodes) {
  const struct ares_addrinfo_node *n;
  int seen = 0, bits;
  for (n = nodes; n; n = n->ai_next)
    seen |= n->ai_family == AF_INET ? 1 : n->ai_family == AF_INET6 ? 2 : 0;
  if (seen != 3)
    return 3;
  bits = configured_families();
  return (bits & seen) ? bits : 3;
}

/* AI_V4MAPPED asked of family 6 (c-ares was asked for both): IPv4 only
 * if there is no IPv6 address, or with AI_ALL. */
static int mapped_bits(const struct ares_addrinfo_node *nodes, int flags) {
  const struct ares_addrinfo_node *n;
  if (flags & TAPIO__RES_ALL)
    return 3;
  for (n = nodes; n; n = n->ai_next)
    if (n->ai_family == AF_INET6)
      return 2;
  return 1;
}

/* The families of the answer to keep: bit 0 IPv4, bit 1 IPv6. */
static int kept_families(const tapio__lookup *lk,
                         const struct ares_addrinfo_node *nodes) {
  if (lk->family == AF_INET6 && (lk->flags & TAPIO__RES_V4MAPPED))
    return mapped_bits(nodes, lk->flags);
  if (lk->family != AF_UNSPEC || (lk->flags & TAPIO__RES_PASSIVE))
    return 3;
  return addrconfig(nodes);
}

/* One address of the answer; IPv4 as ::ffff:a.b.c.d when family 6 was
 * asked for (only AI_V4MAPPED lets one through then). */
static void take_addr(tapio__lookup *lk, const struct ares_addrinfo_node *n) {
  tapio__addr *a = &lk->addrs[lk->n++];
  if (lk->family == AF_INET6 && n->ai_family == AF_INET) {
    const struct sockaddr_in *in = (const void *)n->ai_addr;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&a->ss;
    in6->sin6_family = AF_INET6;
    in6->sin6_port = in->sin_port;
    in6->sin6_addr.s6_addr[10] = in6->sin6_addr.s6_addr[11] = 0xff;
    memcpy(&in6->sin6_addr.s6_addr[12], &in->sin_addr, 4);
    a->len = sizeof *in6;
    return;
  }
  memcpy(&a->ss, n->ai_addr, n->ai_addrlen);
  a->len = n->ai_addrlen;
}

static int take_nodes(tapio__lookup *lk, const struct ares_addrinfo *res) {
  const struct ares_addrinfo_node *node;
  int bits = kept_families(lk, res->nodes);
  size_t n = 0;
  for (node = res->nodes; node; node = node->ai_next)
    n += wanted(node->ai_family, bits) &&
         node->ai_addrlen <= sizeof(struct sockaddr_storage);
  if (n == 0)
    return TAPIO_EAI_NONAME;
  lk->addrs = tapio__calloc(lk->loop, n * sizeof *lk->addrs);
  if (!lk->addrs)
    return TAPIO_ENOMEM;
  for (node = res->nodes; node; node = node->ai_next)
    if (wanted(node->ai_family, bits) &&
        node->ai_addrlen <= sizeof(struct sockaddr_storage))
      take_addr(lk, node);
  return 0;
}

/* The name at the end of the CNAME chain, or the name asked for. */
static const char *canonical(const struct ares_addrinfo *res) {
  const struct ares_addrinfo_cname *c = res->cnames;
  while (c && c->next)
    c = c->next;
  return c && c->name ? c->name : res->name;
}

static void on_addrinfo(void *arg, int status, int timeouts,
                        struct ares_addrinfo *res) {
  tapio__lookup *lk = arg;
  int rc = from_ares(status);
  (void)timeouts;
  if (back_from_ares(lk)) {
    if (rc == 0)
      rc = res ? take_nodes(lk, res) : TAPIO_EAI_NONAME;
    if (rc == 0 && (lk->flags & TAPIO__RES_CANON) && canonical(res))
      lk->canon = tapio__strdup(lk->loop, canonical(res));
    answered(lk, rc);
  }
  if (res)
    ares_freeaddrinfo(res);
}

/* The family of an IPv4 or IPv6 literal (the latter maybe with a %scope),
 * or AF_UNSPEC for anything else. */
static int literal_af(const char *host) {
  unsigned char bin[sizeof(struct in6_addr)];
  char buf[INET6_ADDRSTRLEN];
  const char *pct = strchr(host, '%');
  size_t len = pct ? (size_t)(pct - host) : strlen(host);
  if (inet_pton(AF_INET, host, bin) == 1)
    return AF_INET;
  if (len >= sizeof buf)
    return AF_UNSPEC;
  memcpy(buf, host, len);
  buf[len] = 0;
  return inet_pton(AF_INET6, buf, bin) == 1 ? AF_INET6 : AF_UNSPEC;
}

static int is_numeric(const char *host) {
  return literal_af(host) != AF_UNSPEC;
}

static int all_digits(const char *s) {
  if (!*s)
    return 0;
  for (; *s; s++)
    if (*s < '0' || *s > '9')
      return 0;
  return 1;
}

/* A service glibc reads as a number (strtoul to the end: "", " 80" and
 * "+80" too), which AI_NUMERICSERV lets through. */
static int numeric_service(const char *s) {
  char *end;
  (void)strtoul(s, &end, 10);
  return *end == '\0';
}

static int copy_addrinfo(tapio_loop *loop, const struct addrinfo *res,
                         tapio__addr **out, size_t *n) {
  const struct addrinfo *ai;
  size_t i = 0;
  for (ai = res; ai; ai = ai->ai_next)
    i++;
  *out = tapio__calloc(loop, i * sizeof **out);
  if (!*out)
    return TAPIO_ENOMEM;
  for (i = 0, ai = res; ai; ai = ai->ai_next, i++) {
    memcpy(&(*out)[i].ss, ai->ai_addr, ai->ai_addrlen);
    (*out)[i].len = ai->ai_addrlen;
  }
  *n = i;
  return 0;
}

/* A literal address, or no host: glibc answers without any lookup
 * (AI_NUMERICHOST; a service name is read from /etc/services). */
static int resolve_now(tapio_loop *loop, const char *host,
                       const char *service, int family, int flags,
                       tapio__addr **out, size_t *n) {
  struct addrinfo hints, *res = NULL;
  int rc;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = tapio__family_to_af(family);
  hints.ai_socktype = SOCK_STREAM; /* one entry per address */
  hints.ai_flags = AI_NUMERICHOST;
  if (flags & TAPIO__RES_PASSIVE)
    hints.ai_flags |= AI_PASSIVE;
  if (flags & TAPIO__RES_V4MAPPED)
    hints.ai_flags |= AI_V4MAPPED;
  if (flags & TAPIO__RES_ALL)
    hints.ai_flags |= AI_ALL;
  if (service && all_digits(service))
    hints.ai_flags |= AI_NUMERICSERV;
  rc = getaddrinfo(host, service, &hints, &res);
  /* glibc's "no such name" for a literal of the other family than the
   * one asked for; for a literal of that family it is what it says (a
   * scope name on a global address, as in "::1%lo") */
  if (rc == EAI_NONAME && host && hints.ai_family != AF_UNSPEC &&
      hints.ai_family != literal_af(host))
    return TAPIO_EAI_FAMILY;
  if (rc != 0)
    return tapio__from_gai(rc);
  rc = copy_addrinfo(loop, res, out, n);
  freeaddrinfo(res);
  return rc < 0 ? rc : 1;
}

/* A lookup about to be given to c-ares (the resolver made if need be);
 * *lkp NULL and a code when that fails. */
static int lookup_new(tapio_loop *loop, void *ud, int flags,
                      tapio__lookup **lkp) {
  tapio__lookup *lk;
  int rc = loop->resolver ? 0 : resolver_new(loop);
  *lkp = NULL;
  if (rc < 0)
    return rc;
  lk = tapio__calloc(loop, sizeof *lk);
  if (!lk)
    return TAPIO_ENOMEM;
  lk->loop = loop;
  lk->ud = ud;
  lk->flags = flags;
  lk->in_ares = 1;
  loop->resolver->pending++;
  *lkp = lk;
  return 0;
}

/* AI_ADDRCONFIG as glibc applies it, before anything else: family 0
 * becomes the host's one family if it has addresses of one only; a family
 * it has no address of is no such name. */
static int addrconfig_family(int *family) {
  int bits = configured_families();
  if (*family == 0) {
    if (bits == 1 || bits == 2)
      *family = bits == 1 ? TAPIO_AF_INET : TAPIO_AF_INET6;
    return 0;
  }
  return wanted(tapio__family_to_af(*family), bits) ? 0 : TAPIO_EAI_NONAME;
}

/* What every path checks first, as glibc's getaddrinfo does. */
static int check_flags(const char *service, int flags, int *family) {
  if ((flags & TAPIO__RES_NUMERICSERV) && service &&
      !numeric_service(service))
    return TAPIO_EAI_NONAME;
  return (flags & TAPIO__RES_ADDRCONFIG) ? addrconfig_family(family) : 0;
}

/* The family c-ares is asked for: both for AI_V4MAPPED's family 6. */
static int ares_family(int af, int flags) {
  return af == AF_INET6 && (flags & TAPIO__RES_V4MAPPED) ? AF_UNSPEC : af;
}

int tapio__resolve(tapio_loop *loop, const char *host, const char *service,
                   int family, int flags, tapio__resolved_fn cb, void *ud,
                   tapio__lookup **lkp, tapio__addr **addrs, size_t *n) {
  struct ares_addrinfo_hints hints;
  tapio__lookup *lk;
  int rc;
  *lkp = NULL;
  if (host && !*host)
    host = NULL;
  if ((rc = check_flags(service, flags, &family)) < 0)
    return rc;
  if (host && !is_numeric(host) && tapio__virtual(loop)) {
    host = tapio__vnet_host(host, family); /* its network's names alone */
    if (!host)
      return TAPIO_EAI_NONAME;
  }
  if (!host || is_numeric(host))
    return resolve_now(loop, host, service, family, flags, addrs, n);
  if (flags & TAPIO__RES_NUMERIC)
    return TAPIO_EAI_NONAME;
  rc = lookup_new(loop, ud, flags, &lk);
  if (rc < 0)
    return rc;
  lk->cb = cb;
  lk->family = tapio__family_to_af(family);
  memset(&hints, 0, sizeof hints);
  hints.ai_family = ares_family(lk->family, flags);
  /* c-ares sorts the answer as RFC 6724 says, as glibc does */
  if (service && all_digits(service))
    hints.ai_flags |= ARES_AI_NUMERICSERV;
  if (service && strtol(service, NULL, 10) == 0 && all_digits(service))
    service = NULL; /* c-ares 1.18 refuses port "0"; none is port 0 */
  *lkp = lk;
  ares_getaddrinfo(loop->resolver->channel, host, service, &hints,
                   on_addrinfo, lk);
  update_timer(loop->resolver);
  return 0;
}

int tapio__res_flags(int ai_flags) {
  return ((ai_flags & TAPIO_AI_PASSIVE) ? TAPIO__RES_PASSIVE : 0) |
         ((ai_flags & TAPIO_AI_CANONNAME) ? TAPIO__RES_CANON : 0) |
         ((ai_flags & TAPIO_AI_NUMERICHOST) ? TAPIO__RES_NUMERIC : 0) |
         ((ai_flags & TAPIO_AI_V4MAPPED) ? TAPIO__RES_V4MAPPED : 0) |
         ((ai_flags & TAPIO_AI_ALL) ? TAPIO__RES_ALL : 0) |
         ((ai_flags & TAPIO_AI_ADDRCONFIG) ? TAPIO__RES_ADDRCONFIG : 0) |
         ((ai_flags & TAPIO_AI_NUMERICSERV) ? TAPIO__RES_NUMERICSERV : 0);
}

/* glibc's table of types and protocols (raw and DCCP sockets aside). */
int tapio__ipproto_check(int type, int proto) {
  int stream = proto == IPPROTO_TCP || proto == IPPROTO_SCTP;
  int dgram = proto == IPPROTO_UDP || proto == IPPROTO_UDPLITE;
  if (proto == 0 || (type == TAPIO_SOCK_STREAM && stream) ||
      (type == TAPIO_SOCK_DGRAM && dgram) || (type == 0 && (stream || dgram)))
    return 0;
  return TAPIO_EAI_SOCKTYPE;
}

/* ---- Reverse lookups ---------------------------------------------------- */

static void on_nameinfo(void *arg, int status, int timeouts, char *node,
                        char *service) {
  tapio__lookup *lk = arg;
  int rc = from_ares(status);
  (void)timeouts;
  if (!back_from_ares(lk))
    return;
  if (node && strlen(node) > 2 && strcmp(node + strlen(node) - 2, "%0") == 0)
    node[strlen(node) - 2] = '\0'; /* c-ares writes ::1 as "::1%0" */
  if (rc == 0 && node && !(lk->host = tapio__strdup(lk->loop, node)))
    rc = TAPIO_ENOMEM;
  if (rc == 0 && service &&
      !(lk->service = tapio__strdup(lk->loop, service)))
    rc = TAPIO_ENOMEM;
  answered(lk, rc);
}

static int ni_flags(int flags) {
  int f = ARES_NI_LOOKUPHOST | ARES_NI_LOOKUPSERVICE;
  if (flags & TAPIO_NI_NUMERICHOST)
    f |= ARES_NI_NUMERICHOST;
  if (flags & TAPIO_NI_NUMERICSERV)
    f |= ARES_NI_NUMERICSERV;
  if (flags & TAPIO_NI_NAMEREQD)
    f |= ARES_NI_NAMEREQD;
  if (flags & TAPIO_NI_DGRAM)
    f |= ARES_NI_DGRAM;
  if (flags & TAPIO_NI_NOFQDN)
    f |= ARES_NI_NOFQDN;
  return f;
}

int tapio__nameinfo(tapio_loop *loop, const struct sockaddr *sa,
                    socklen_t len, int flags, tapio__named_fn cb, void *ud,
                    tapio__lookup **lkp) {
  tapio__lookup *lk;
  int rc = lookup_new(loop, ud, 0, &lk);
  *lkp = lk;
  if (rc < 0)
    return rc;
  lk->named = cb;
  ares_getnameinfo(loop->resolver->channel, sa, len, ni_flags(flags),
                   on_nameinfo, lk);
  update_timer(loop->resolver);
  return 0;
}

int tapio__resolve_port(tapio_loop *loop, const char *host, int port,
                        int family, int flags, tapio__resolved_fn cb,
                        void *ud, tapio__lookup **lk, tapio__addr **addrs,
                        size_t *n) {
  char service[16];
  snprintf(service, sizeof service, "%d", port);
  return tapio__resolve(loop, host, service, family, flags, cb, ud, lk,
                        addrs, n);
}
