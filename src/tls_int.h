/* The TLS part of the core, private to tls.c, tls_context.c, tls_error.c,
 * tls_info.c, tls_session.c and tls_start.c: OpenSSL's types stay out of
 * tapio_int.h, which the rest of the core includes. */
#ifndef TAPIO_TLS_INT_H
#define TAPIO_TLS_INT_H

#include "tapio_int.h"

#include <openssl/ssl.h>
#include <pthread.h>
#include <stdio.h>

struct tapio__sni {
  char *name;
  tapio_tls_context *use;
};

struct tapio__sess {
  char *key;           /* server name and address */
  SSL_SESSION *sess;
};

struct tapio_tls_context {
  int refs;            /* atomic */
  int side, verify, check_hostname;
  int cas_given, defaults_loaded;
  SSL_CTX *ctx;
  BIO_METHOD *bio;     /* the layer's BIO (tls.c), one per context */
  unsigned char *alpn; /* wire format */
  size_t alpn_len;
  struct tapio__sni *sni;
  size_t nsni;
  tapio_tls_sni_fn sni_fn;
  void *sni_ud;
  FILE *keylog;
  tapio_tls_keylog_fn keylog_fn;
  void *keylog_ud;
  struct tapio__sess *cache; /* clients: sessions to resume */
  size_t ncache, cache_max, cache_next;
  pthread_mutex_t lock; /* the cache, the key log, the default store */
  char err[256];
};

enum { TAPIO__TLS_CLEAR, TAPIO__TLS_HANDSHAKE, TAPIO__TLS_OPEN,
       TAPIO__TLS_SHUTDOWN, TAPIO__TLS_DEAD };

/* The layer's state for one connection: tapio__tls_io's context. */
typedef struct tapio__tls {
  tapio__stream *s;
  const tapio__io *lower;  /* the layer under this one: the socket's, or a
                              TLS layer (TLS inside TLS) */
  void *lower_ctx;
  tapio_tls_context *ctx;  /* referenced (its BIO method is in use) */
  tapio_tls_context *sni;  /* the one SNI switched to, referenced */
  SSL *ssl;
  int state;               /* TAPIO__TLS_* */
  int end;                 /* enum tapio_tls_end */
  unsigned kick : 1;       /* the handshake's first step comes without
                              waiting to read (tapio__tls_attach) */
  unsigned in_eof : 1;     /* the lower layer reached its end */
  unsigned got_notify : 1; /* the peer's close_notify came */
  unsigned peer_done : 1;  /* shutdown: nothing more will come */
  unsigned timed_out : 1;
  unsigned wr_wants_read : 1; /* SSL_write waits for a renegotiation */
  unsigned starved : 1;    /* OpenSSL needs more than it holds to go on */
  unsigned batching : 1;   /* tls_writev: records go into `out` */
  unsigned flushing : 1;   /* closed, the stream's buffer not yet sent: the
                              shutdown timer runs already */
  unsigned cert_asked : 1; /* client: the server asked for a certificate
                              and it had none to give */
  unsigned agreed : 1;     /* the handshake was done: a version, a cipher */
  int io_err;              /* the lower layer's error, for the report */
  int rd_end;              /* a read's end kept for the next: 1 EOF, or
                              a negative code */
  char *in;                /* bytes to feed first (start_tls) */
  size_t in_off, in_len;
  char *out;               /* ciphertext the lower layer did not take */
  size_t out_off, out_len, out_cap;
  size_t clear_left;       /* start_tls: the stream's bytes still to go
                              out in the clear before the handshake */
  tapio__timer timer;      /* handshake, then shutdown */
  double timer_secs;       /* its seconds, for the message */
  double shutdown_timeout;
  double t0;
  uint64_t hs_usec, wire_in, wire_out;
  tapio__tls_done_fn done; /* until the handshake is over */
  void *done_ud;
  int done_code;
  tapio__task task;        /* runs done after a halt */
  char *err;               /* why it failed, in words */
  char *hostname;          /* client: server_hostname */
  char *cache_key;         /* client: its session's key */
} tapio__tls;

extern const tapio__io tapio__tls_io;

/* A BIO method whose reads and writes go through the layer below. */
BIO_METHOD *tapio__tls_bio_method(void);
/* SNI picked another context for ssl. */
void tapio__tls_switch_context(SSL *ssl, tapio_tls_context *use);
/* The system's trusted CAs, once, unless the user gave CAs. */
void tapio__tls_context_load_defaults(tapio_tls_context *c);
/* The TLS layer of t (its outermost, under a fault layer if any), or NULL. */
tapio__tls *tapio__tls_of(tapio_transport *t);

/* tls_error.c: the code for why the last SSL call (which returned r)
 * failed, the words kept in tc->err. */
int tapio__tls_classify(tapio__tls *tc, int r);
/* Keeps printf(fmt, a, b) as tc->err. */
void tapio__tls_set_err(tapio__tls *tc, const char *fmt, const char *a,
                        const char *b);

/* tls_session.c: clients keep sessions by server name and address. */
void tapio__tls_session_setup(tapio_tls_context *c);
void tapio__tls_session_clear(tapio_tls_context *c);
/* Sets tc's cache key and, if one is kept, its session to resume. */
void tapio__tls_session_resume(tapio__tls *tc);

#endif
