/* Sockets and addresses: the helpers every endpoint shares (formatting an
 * address for the ABI, Unix socket addresses, socket options). */
#include "tapio_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/un.h>

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

/* The path of a Unix address (possibly "" for an unnamed socket). */
static void unix_path(const struct sockaddr *sa, socklen_t len, char *buf,
                      size_t size) {
  const struct sockaddr_un *un = (const void *)sa;
  size_t n = len > offsetof(struct sockaddr_un, sun_path)
                 ? len - offsetof(struct sockaddr_un, sun_path) : 0;
  if (n > size - 1)
    n = size - 1;
  memcpy(buf, un->sun_path, n);
  buf[n] = 0;
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
  return text ? copy_host(text, host, hostlen) : TAPIO_EINVAL;
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

int tapio__unix_addr(const char *path, tapio__addr *a) {
  struct sockaddr_un *un = (struct sockaddr_un *)&a->ss;
  size_t n = strlen(path);
  if (n == 0)
    return TAPIO_EINVAL;
  if (n >= sizeof un->sun_path)
    return TAPIO_ENAMETOOLONG;
  memset(a, 0, sizeof *a);
  un->sun_family = AF_UNIX;
  memcpy(un->sun_path, path, n);
  a->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
  return 0;
}

int tapio__socket_nonblock(int fd) {
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
    return tapio__from_errno(errno);
  return 0;
}

void tapio__maybe_nodelay(int fd, int af, int nodelay) {
  int one = 1;
  if (nodelay && (af == AF_INET || af == AF_INET6))
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}
