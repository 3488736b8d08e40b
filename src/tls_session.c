/* Session resumption for clients: the session (TLS 1.3 ticket) a server
 * gave is kept in the context under the server's name and address, and
 * offered by the next connection to the same place. A small ring, oldest
 * out; OpenSSL's own client cache is not keyed that way. */
#include "tls_int.h"

#include <stdlib.h>
#include <string.h>

static struct tapio__sess *find(tapio_tls_context *c, const char *key) {
  size_t i;
  for (i = 0; i < c->ncache; i++)
    if (strcmp(c->cache[i].key, key) == 0)
      return &c->cache[i];
  return NULL;
}

/* Keeps sess (a reference OpenSSL gives us) under key; 0 if not kept. */
static int keep(tapio_tls_context *c, const char *key, SSL_SESSION *sess) {
  struct tapio__sess *e;
  char *copy;
  if (c->cache_max == 0)
    return 0;
  if ((e = find(c, key)) != NULL) {
    SSL_SESSION_free(e->sess);
    e->sess = sess;
    return 1;
  }
  if (!c->cache && !(c->cache = calloc(c->cache_max, sizeof *c->cache)))
    return 0;
  if (!(copy = strdup(key)))
    return 0;
  if (c->ncache < c->cache_max) {
    e = &c->cache[c->ncache++];
  } else { /* the ring is full: the oldest goes */
    e = &c->cache[c->cache_next];
    c->cache_next = (c->cache_next + 1) % c->cache_max;
    free(e->key);
    SSL_SESSION_free(e->sess);
  }
  e->key = copy;
  e->sess = sess;
  return 1;
}

/* OpenSSL has a new session for a connection (after the handshake, or a
 * ticket that came later). */
static int new_session(SSL *ssl, SSL_SESSION *sess) {
  tapio__tls *tc = SSL_get_app_data(ssl);
  tapio_tls_context *c = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
  int kept;
  if (!tc || !tc->cache_key)
    return 0;
  pthread_mutex_lock(&c->lock);
  kept = keep(c, tc->cache_key, sess);
  pthread_mutex_unlock(&c->lock);
  return kept;
}

void tapio__tls_session_setup(tapio_tls_context *c) {
  if (c->side != TAPIO_TLS_CLIENT)
    return;
  SSL_CTX_set_session_cache_mode(c->ctx, SSL_SESS_CACHE_CLIENT |
                                         SSL_SESS_CACHE_NO_INTERNAL_STORE);
  SSL_CTX_sess_set_new_cb(c->ctx, new_session);
}

void tapio__tls_session_clear(tapio_tls_context *c) {
  size_t i;
  pthread_mutex_lock(&c->lock);
  for (i = 0; i < c->ncache; i++) {
    free(c->cache[i].key);
    SSL_SESSION_free(c->cache[i].sess);
  }
  free(c->cache);
  c->cache = NULL;
  c->ncache = c->cache_next = 0;
  pthread_mutex_unlock(&c->lock);
}

/* "name@host:port" (or the Unix path): a session is only offered to the
 * server it came from. */
static char *make_key(tapio__tls *tc) {
  tapio_transport *t = &tc->s->head;
  char host[256], key[600];
  int port = 0, family = 0;
  if (tapio_transport_get_peername(t, host, sizeof host, &port, &family) < 0)
    return NULL;
  snprintf(key, sizeof key, "%s@%s:%d", tc->hostname ? tc->hostname : "",
           host, port);
  return tapio__strdup(t->loop, key);
}

void tapio__tls_session_resume(tapio__tls *tc) {
  tapio_tls_context *c = tc->ctx;
  struct tapio__sess *e;
  if (c->cache_max == 0 || !(tc->cache_key = make_key(tc)))
    return;
  pthread_mutex_lock(&c->lock);
  if ((e = find(c, tc->cache_key)) != NULL)
    SSL_set_session(tc->ssl, e->sess);
  pthread_mutex_unlock(&c->lock);
}
