/* Name resolution, behind the one function tapio__resolve. */
#include "tapio_int.h"

#include <netdb.h>
#include <stdio.h>
#include <string.h>

#ifdef EAI_ADDRFAMILY
#define EAI_ADDRFAMILY_OR_NONAME EAI_ADDRFAMILY
#else
#define EAI_ADDRFAMILY_OR_NONAME EAI_NONAME
#endif

static size_t count(const struct addrinfo *ai) {
  size_t n = 0;
  for (; ai; ai = ai->ai_next)
    n++;
  return n;
}

int tapio__resolve(tapio_loop *loop, const char *host, int port, int family,
                   int passive, tapio__addr **out, size_t *n) {
  struct addrinfo hints, *res = NULL, *ai;
  char service[16];
  size_t i = 0;
  int rc;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = tapio__family_to_af(family);
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = passive ? AI_PASSIVE : AI_ADDRCONFIG;
  if (host && !*host)
    host = NULL;
  snprintf(service, sizeof service, "%d", port);
  rc = getaddrinfo(host, service, &hints, &res);
  if (rc == EAI_NONAME || rc == EAI_ADDRFAMILY_OR_NONAME) {
    /* AI_ADDRCONFIG hides ::1 on hosts whose only IPv6 is loopback. */
    hints.ai_flags &= ~AI_ADDRCONFIG;
    rc = getaddrinfo(host, service, &hints, &res);
  }
  if (rc != 0)
    return tapio__from_gai(rc);
  *out = tapio__alloc(loop, count(res) * sizeof **out);
  if (!*out) {
    freeaddrinfo(res);
    return TAPIO_ENOMEM;
  }
  for (ai = res; ai; ai = ai->ai_next) {
    memcpy(&(*out)[i].ss, ai->ai_addr, ai->ai_addrlen);
    (*out)[i++].len = ai->ai_addrlen;
  }
  *n = i;
  freeaddrinfo(res);
  return 0;
}

void tapio__addrs_free(tapio_loop *loop, tapio__addr *addrs, size_t n) {
  if (addrs)
    tapio__free(loop, addrs, n * sizeof *addrs);
}
