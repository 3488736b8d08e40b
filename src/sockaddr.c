/* Sockets and addresses: the helpers every endpoint shares (formatting an
 * address for the ABI, Unix socket addresses, socket options). */
#include "tapio_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <net/if.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

int tapio__family_to_af(int family) {
  switch (family) {
  case TAPIO_AF_INET:
    return AF_INET;
  case TAPIO_AF_INET6:
    return AF_INET6;
  case TAPIO_AF_UNIX:
    return AF_UNIX;
  default:
    return AF_UNSPEC;
  }
}

static int copy_host(const char *src, char *host, size_t hostlen) {
  size_t n = strlen(src);
  if (!host)
    return 0;
  if (n >= hostlen)
    return TAPIO_ENOBUFS;
  memcpy(host, src, n + 1);
  return 0;
}

/* The path of a Unix address (possibly "" for an unnamed socket); an
 * abstract name (its first byte NUL) as "@name". */
static void unix_path(const struct sockaddr *sa, socklen_t len, char *buf,
                      size_t size) {
  const struct sockaddr_un *un = (const void *)sa;
  size_t n = len > offsetof(struct sockaddr_un, sun_path)
                 ? len - offsetof(struct sockaddr_un, sun_path) : 0;
  if (n > size - 1)
    n = size - 1;
  memcpy(buf, un->sun_path, n);
  buf[n] = 0;
  if (n > 0 && buf[0] == 0)
    buf[0] = '@';
}

int tapio__format_addr(const struct sockaddr *sa, socklen_t len, char *host,
                       size_t hostlen, int *port, int *family) {
  char buf[sizeof(struct sockaddr_un) + INET6_ADDRSTRLEN];
  int p = 0, fam = TAPIO_AF_UNSPEC;
  const char *text = "";
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *in = (const void *)sa;
    text = inet_ntop(AF_INET, &in->sin_addr, buf, sizeof buf);
    p = ntohs(in->sin_port);
    fam = TAPIO_AF_INET;
  } else if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *in6 = (const void *)sa;
    text = inet_ntop(AF_INET6, &in6->sin6_addr, buf, sizeof buf);
    if (text && in6->sin6_scope_id) /* as getnameinfo writes it */
      snprintf(buf + strlen(buf), sizeof buf - strlen(buf), "%%%u",
               (unsigned)in6->sin6_scope_id);
    p = ntohs(in6->sin6_port);
    fam = TAPIO_AF_INET6;
  } else if (sa->sa_family == AF_UNIX) {
    unix_path(sa, len, buf, sizeof buf);
    text = buf;
    fam = TAPIO_AF_UNIX;
  }
  if (port)
    *port = p;
  if (family)
    *family = fam;
  if (fam == TAPIO_AF_UNSPEC)
    return TAPIO_EAFNOSUPPORT;
  return text ? copy_host(text, host, hostlen) : TAPIO_EINVAL;
}

int tapio_addr_format(const void *addr, size_t addrlen, char *host,
                      size_t hostlen, int *port, int *family) {
  if (port)
    *port = 0;
  if (family)
    *family = 0;
  if (!addr || addrlen < sizeof(sa_family_t) ||
      addrlen > sizeof(struct sockaddr_storage) || (!host && hostlen))
    return TAPIO_EINVAL;
  if (!host)
    hostlen = 0;
  return tapio__format_addr(addr, (socklen_t)addrlen, host, hostlen, port,
                            family);
}

/* The scope of "fe80::1%eth0" or "fe80::1%2"; 0 if none or unknown. */
static uint32_t scope_id(const char *scope) {
  char *end;
  unsigned long n = strtoul(scope, &end, 10);
  if (*scope && !*end && n <= UINT32_MAX)
    return (uint32_t)n;
  return if_nametoindex(scope);
}

/* A literal IPv4 or IPv6 address into a; TAPIO_EAI_NONAME if it is none. */
static int parse_ip(const char *host, int port, tapio__addr *a) {
  char buf[INET6_ADDRSTRLEN];
  const char *pct = strchr(host, '%');
  size_t len = pct ? (size_t)(pct - host) : strlen(host);
  struct sockaddr_in *in = (struct sockaddr_in *)&a->ss;
  struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&a->ss;
  memset(a, 0, sizeof *a);
  host = tapio__broadcast_name(host);
  if (inet_pton(AF_INET, host, &in->sin_addr) == 1) {
    in->sin_family = AF_INET;
    in->sin_port = htons((uint16_t)port);
    a->len = sizeof *in;
    return 0;
  }
  if (len >= sizeof buf)
    return TAPIO_EAI_NONAME;
  memcpy(buf, host, len);
  buf[len] = 0;
  if (inet_pton(AF_INET6, buf, &in6->sin6_addr) != 1)
    return TAPIO_EAI_NONAME;
  in6->sin6_family = AF_INET6;
  in6->sin6_port = htons((uint16_t)port);
  if (pct && !(in6->sin6_scope_id = scope_id(pct + 1)))
    return TAPIO_EAI_NONAME;
  a->len = sizeof *in6;
  return 0;
}

static int copy_out(const tapio__addr *a, void *addr, size_t *addrlen) {
  if (*addrlen < a->len)
    return TAPIO_ENOBUFS;
  memcpy(addr, &a->ss, a->len);
  *addrlen = a->len;
  return 0;
}

int tapio_addr_parse(const char *host, int port, void *addr,
                     size_t *addrlen) {
  tapio__addr a;
  int rc;
  if (!host || !addr || !addrlen || port < 0 || port > 65535)
    return TAPIO_EINVAL;
  rc = parse_ip(host, port, &a);
  return rc < 0 ? rc : copy_out(&a, addr, addrlen);
}

int tapio_addr_unix(const char *path, void *addr, size_t *addrlen) {
  tapio__addr a;
  int rc;
  if (!path || !addr || !addrlen)
    return TAPIO_EINVAL;
  rc = tapio__unix_addr(path, &a);
  return rc < 0 ? rc : copy_out(&a, addr, addrlen);
}

int tapio__fd_name(int fd, int peer, char *host, size_t hostlen, int *port,
                   int *family) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  int rc;
  memset(&ss, 0, sizeof ss);
  rc = peer ? getpeername(fd, (struct sockaddr *)&ss, &len)
            : getsockname(fd, (struct sockaddr *)&ss, &len);
  if (rc < 0)
    return tapio__from_errno(errno);
  return tapio__format_addr((struct sockaddr *)&ss, len, host, hostlen, port,
                            family);
}

void tapio__addrs_flowinfo(tapio__addr *addrs, size_t n, uint32_t flow) {
  size_t i;
  for (i = 0; flow && i < n; i++)
    if (addrs[i].ss.ss_family == AF_INET6)
      ((struct sockaddr_in6 *)&addrs[i].ss)->sin6_flowinfo = htonl(flow);
}

/* An abstract name ("@name") has no file and no terminating NUL: its
 * length is the address's, and it may fill sun_path. */
int tapio__unix_addr(const char *path, tapio__addr *a) {
  struct sockaddr_un *un = (struct sockaddr_un *)&a->ss;
  size_t n = strlen(path);
  int abstract = tapio__unix_abstract(path);
  if (n == 0 || (abstract && n == 1))
    return TAPIO_EINVAL;
  if (n > sizeof un->sun_path - !abstract)
    return TAPIO_ENAMETOOLONG;
  memset(a, 0, sizeof *a);
  un->sun_family = AF_UNIX;
  memcpy(un->sun_path, path, n);
  if (abstract)
    un->sun_path[0] = 0;
  a->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + !abstract);
  return 0;
}

void tapio__unix_unlink_stale(const char *path) {
  struct stat st;
  if (!tapio__unix_abstract(path) && stat(path, &st) == 0 &&
      S_ISSOCK(st.st_mode))
    unlink(path);
}

int tapio__socket_nonblock(int fd) {
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
    return tapio__from_errno(errno);
  return 0;
}

int tapio__sockopt_on(int fd, int level, int name) {
  int one = 1;
  return setsockopt(fd, level, name, &one, sizeof one) < 0
             ? tapio__from_errno(errno) : 0;
}

void tapio__maybe_nodelay(int fd, int af, int nodelay) {
  if (nodelay && (af == AF_INET || af == AF_INET6))
    tapio__sockopt_on(fd, IPPROTO_TCP, TCP_NODELAY);
}

void tapio__describe(char *buf, size_t size, const char *what,
                     const struct sockaddr *sa, socklen_t len, int code) {
  char host[TAPIO_ADDR_MAX], v6[48] = "";
  int port = 0, fam = 0;
  if (!sa || len == 0 ||
      tapio__format_addr(sa, len, host, sizeof host, &port, &fam) < 0) {
    snprintf(buf, size, "%s: %s", what, tapio_strerror(code));
    return;
  }
  if (fam == TAPIO_AF_UNIX) {
    snprintf(buf, size, "%s '%s': %s", what, host, tapio_strerror(code));
    return;
  }
  if (fam == TAPIO_AF_INET6) { /* Python's 4-tuple, as the value shows it */
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
    snprintf(v6, sizeof v6, ", %lu, %lu",
             (unsigned long)ntohl(s6->sin6_flowinfo),
             (unsigned long)s6->sin6_scope_id);
  }
  snprintf(buf, size, "%s ('%s', %d%s): %s", what, host, port, v6,
           tapio_strerror(code));
}

const char *tapio__describe_lookup(char *buf, size_t size, const char *host,
                                   int code) {
  if (code > TAPIO_EAI_NONAME || code < TAPIO_EAI_SOCKTYPE)
    return NULL;
  snprintf(buf, size, "could not resolve '%s': %s", host ? host : "",
           tapio_strerror(code));
  return buf;
}

int tapio__addr_equal(const struct sockaddr *a, socklen_t alen,
                      const struct sockaddr *b, socklen_t blen) {
  if (a->sa_family != b->sa_family)
    return 0;
  if (a->sa_family == AF_INET && alen >= sizeof(struct sockaddr_in) &&
      blen >= sizeof(struct sockaddr_in)) {
    const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
    return x->sin_port == y->sin_port &&
           x->sin_addr.s_addr == y->sin_addr.s_addr;
  }
  if (a->sa_family == AF_INET6 && alen >= sizeof(struct sockaddr_in6) &&
      blen >= sizeof(struct sockaddr_in6)) {
    const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
    return x->sin6_port == y->sin6_port &&
           x->sin6_scope_id == y->sin6_scope_id &&
           memcmp(&x->sin6_addr, &y->sin6_addr, sizeof x->sin6_addr) == 0;
  }
  return alen == blen && memcmp(a, b, alen) == 0;
}

/* ---- The virtual network's addresses (vnet.c, vdgram.c) ------------------ */

int tapio__addr_port(const tapio__addr *a) {
  const struct sockaddr *sa = (const struct sockaddr *)&a->ss;
  if (sa->sa_family == AF_INET)
    return ntohs(((const struct sockaddr_in *)sa)->sin_port);
  if (sa->sa_family == AF_INET6)
    return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
  return 0;
}

void tapio__addr_set_port(tapio__addr *a, int port) {
  struct sockaddr *sa = (struct sockaddr *)&a->ss;
  if (sa->sa_family == AF_INET)
    ((struct sockaddr_in *)sa)->sin_port = htons((uint16_t)port);
  else if (sa->sa_family == AF_INET6)
    ((struct sockaddr_in6 *)sa)->sin6_port = htons((uint16_t)port);
}

int tapio__addr_is_any(const tapio__addr *a) {
  const struct sockaddr *sa = (const struct sockaddr *)&a->ss;
  if (sa->sa_family == AF_INET)
    return ((const struct sockaddr_in *)sa)->sin_addr.s_addr == INADDR_ANY;
  if (sa->sa_family == AF_INET6)
    return IN6_IS_ADDR_UNSPECIFIED(
        &((const struct sockaddr_in6 *)sa)->sin6_addr);
  return 0;
}

int tapio__addr_same_host(const tapio__addr *a, const tapio__addr *b) {
  const struct sockaddr *x = (const void *)&a->ss, *y = (const void *)&b->ss;
  if (x->sa_family != y->sa_family)
    return 0;
  if (x->sa_family == AF_INET)
    return ((const struct sockaddr_in *)x)->sin_addr.s_addr ==
           ((const struct sockaddr_in *)y)->sin_addr.s_addr;
  if (x->sa_family == AF_INET6)
    return IN6_ARE_ADDR_EQUAL(&((const struct sockaddr_in6 *)x)->sin6_addr,
                              &((const struct sockaddr_in6 *)y)->sin6_addr);
  return a->len == b->len && /* an abstract name may hold NULs */
         memcmp(((const struct sockaddr_un *)x)->sun_path,
                ((const struct sockaddr_un *)y)->sun_path,
                a->len - offsetof(struct sockaddr_un, sun_path)) == 0;
}

int tapio__addr_clash(const tapio__addr *a, const tapio__addr *b) {
  return a->ss.ss_family == b->ss.ss_family &&
         tapio__addr_port(a) == tapio__addr_port(b) &&
         (tapio__addr_same_host(a, b) || tapio__addr_is_any(a) ||
          tapio__addr_is_any(b));
}

/* Linux's source for a destination a on this host: a itself, but
 * 127.0.0.1 for every 127.x.y.z (the route to lo names it), for the
 * wildcard and for a broadcast (the virtual network has no other
 * interface to send it from). */
void tapio__addr_source(tapio__addr *a, int port) {
  const struct sockaddr_in *in = (const struct sockaddr_in *)&a->ss;
  int v4 = a->ss.ss_family == AF_INET;
  if (tapio__addr_is_any(a) || tapio__addr_is_broadcast(a) ||
      (v4 && (ntohl(in->sin_addr.s_addr) >> 24) == 127))
    tapio__addr_loopback(a, port);
  else
    tapio__addr_set_port(a, port);
}

int tapio__addr_is_broadcast(const tapio__addr *a) {
  const struct sockaddr_in *in = (const struct sockaddr_in *)&a->ss;
  return a->ss.ss_family == AF_INET &&
         in->sin_addr.s_addr == htonl(INADDR_BROADCAST);
}

void tapio__addr_loopback(tapio__addr *a, int port) {
  if (a->ss.ss_family == AF_INET6)
    ((struct sockaddr_in6 *)&a->ss)->sin6_addr = in6addr_loopback;
  else
    ((struct sockaddr_in *)&a->ss)->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  tapio__addr_set_port(a, port);
}
