/* TLS contexts: an OpenSSL SSL_CTX and what tapio keeps beside it (verify
 * policy, ALPN, SNI table, key log, the clients' session cache), shared by
 * every connection made from it and counted by reference. The layer that
 * runs a connection is tls.c. */
#include "tls_int.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- Errors ------------------------------------------------------------ */

/* Keeps OpenSSL's first queued error as ctx's message; returns code. */
static int fail(tapio_tls_context *c, int code) {
  unsigned long e = ERR_peek_error();
  if (e)
    ERR_error_string_n(e, c->err, sizeof c->err);
  else
    snprintf(c->err, sizeof c->err, "%s", tapio_strerror(code));
  ERR_clear_error();
  return code;
}

/* fail(), the words after "what: " (the file that did not load). */
static int fail_in(tapio_tls_context *c, int code, const char *what) {
  char e[160];
  unsigned long err = ERR_peek_error();
  if (err)
    ERR_error_string_n(err, e, sizeof e);
  else
    snprintf(e, sizeof e, "%s", tapio_strerror(code));
  ERR_clear_error();
  snprintf(c->err, sizeof c->err, "%.90s: %s", what, e);
  return code;
}

/* A call refused before OpenSSL: why, in words; returns code. */
static int refuse(tapio_tls_context *c, int code, const char *why) {
  snprintf(c->err, sizeof c->err, "%s", why);
  return code;
}

static void ok(tapio_tls_context *c) {
  c->err[0] = '\0';
}

const char *tapio_tls_context_error(tapio_tls_context *c) {
  return c ? c->err : "";
}

/* ---- Callbacks OpenSSL makes -------------------------------------------- */

/* Clients: the server asked for a certificate and none is loaded. None
 * is sent, as without this; TLS 1.2 servers then answer with a bare
 * handshake_failure alert, which this tells apart (tls_error.c). */
static int cert_asked_cb(SSL *ssl, X509 **x509, EVP_PKEY **pkey) {
  tapio__tls *tc = SSL_get_app_data(ssl);
  (void)x509;
  (void)pkey;
  if (tc)
    tc->cert_asked = 1;
  return 0;
}

static void keylog_cb(const SSL *ssl, const char *line) {
  tapio_tls_context *c = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
  pthread_mutex_lock(&c->lock);
  if (c->keylog) {
    fprintf(c->keylog, "%s\n", line);
    fflush(c->keylog);
  }
  pthread_mutex_unlock(&c->lock);
  if (c->keylog_fn)
    c->keylog_fn(c->keylog_ud, line);
}

/* A server takes the first of its protocols that the client offers. */
static int alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned inlen, void *arg) {
  tapio_tls_context *c = arg;
  unsigned char *sel = NULL;
  (void)ssl;
  if (SSL_select_next_proto(&sel, outlen, c->alpn, (unsigned)c->alpn_len, in,
                            inlen) != OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_NOACK; /* no protocol in common: go on without */
  *out = sel;
  return SSL_TLSEXT_ERR_OK;
}

static tapio_tls_context *sni_lookup(tapio_tls_context *c, const char *name) {
  size_t i;
  for (i = 0; name && i < c->nsni; i++)
    if (strcasecmp(c->sni[i].name, name) == 0)
      return c->sni[i].use;
  return NULL;
}

static int sni_cb(SSL *ssl, int *alert, void *arg) {
  tapio_tls_context *c = arg, *use = NULL;
  const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  (void)alert;
  if (c->sni_fn && c->sni_fn(c->sni_ud, c, name, &use) != 0)
    return SSL_TLSEXT_ERR_ALERT_FATAL; /* unrecognized_name */
  if (!use)
    use = sni_lookup(c, name);
  if (use && use != c)
    tapio__tls_switch_context(ssl, use);
  return SSL_TLSEXT_ERR_OK;
}

/* ---- Making and releasing ----------------------------------------------- */

int tapio_tls_context_new(int side, tapio_tls_context **out) {
  tapio_tls_context *c;
  if (out)
    *out = NULL;
  if (!out || (side != TAPIO_TLS_CLIENT && side != TAPIO_TLS_SERVER))
    return TAPIO_EINVAL;
  c = calloc(1, sizeof *c);
  if (!c)
    return TAPIO_ENOMEM;
  c->ctx = SSL_CTX_new(side == TAPIO_TLS_CLIENT ? TLS_client_method()
                                                : TLS_server_method());
  c->bio = tapio__tls_bio_method();
  if (!c->ctx || !c->bio || pthread_mutex_init(&c->lock, NULL) != 0) {
    SSL_CTX_free(c->ctx);
    BIO_meth_free(c->bio);
    free(c);
    ERR_clear_error();
    return TAPIO_ENOMEM;
  }
  c->refs = 1;
  c->side = side;
  c->cache_max = side == TAPIO_TLS_CLIENT ? 64 : 0;
  SSL_CTX_set_app_data(c->ctx, c);
  SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION);
  /* Idle connections give OpenSSL's record buffers back; a read takes
   * what fits a 64 KiB buffer (four full records) in one system call. */
  SSL_CTX_set_mode(c->ctx, SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_read_ahead(c->ctx, 1);
  SSL_CTX_set_default_read_buffer_len(c->ctx, 64 * 1024);
  SSL_CTX_set_options(c->ctx, SSL_OP_NO_COMPRESSION);
  tapio__tls_session_setup(c);
  if (side == TAPIO_TLS_CLIENT)
    SSL_CTX_set_client_cert_cb(c->ctx, cert_asked_cb);
  if (side == TAPIO_TLS_SERVER) {
    SSL_CTX_set_options(c->ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_tlsext_servername_callback(c->ctx, sni_cb);
    SSL_CTX_set_tlsext_servername_arg(c->ctx, c);
  }
  tapio_tls_context_set_verify(c, side == TAPIO_TLS_CLIENT
                                      ? TAPIO_TLS_VERIFY_REQUIRED
                                      : TAPIO_TLS_VERIFY_NONE);
  c->check_hostname = side == TAPIO_TLS_CLIENT;
  *out = c;
  return 0;
}

void tapio__tls_context_retain(tapio_tls_context *c) {
  if (c)
    __atomic_add_fetch(&c->refs, 1, __ATOMIC_RELAXED);
}

void tapio_tls_context_release(tapio_tls_context *c) {
  size_t i;
  if (!c || __atomic_sub_fetch(&c->refs, 1, __ATOMIC_ACQ_REL) != 0)
    return;
  for (i = 0; i < c->nsni; i++) {
    free(c->sni[i].name);
    tapio_tls_context_release(c->sni[i].use);
  }
  free(c->sni);
  tapio__tls_session_clear(c);
  if (c->keylog)
    fclose(c->keylog);
  free(c->alpn);
  SSL_CTX_free(c->ctx);
  BIO_meth_free(c->bio);
  pthread_mutex_destroy(&c->lock);
  free(c);
}

int tapio_tls_context_get_side(tapio_tls_context *c) {
  return c ? c->side : TAPIO_EINVAL;
}

/* ---- Certificates ------------------------------------------------------ */

static int password_cb(char *buf, int size, int rwflag, void *u) {
  size_t len = u ? strlen(u) : 0;
  (void)rwflag;
  if (len > (size_t)size)
    return -1;
  if (len) /* no password: u is NULL, which memcpy must not get */
    memcpy(buf, u, len);
  return (int)len;
}

/* ---- Files ------------------------------------------------------------- */

/* A PEM file read whole through a close-on-exec descriptor, as a memory
 * BIO. OpenSSL's *_file calls read through fopen without "e": a child
 * that another thread started (fork and exec) during the read kept that
 * descriptor. */
typedef struct file_text {
  BIO *bio;
  char *text;
} file_text;

#define FILE_MAX (64u << 20) /* far above any PEM bundle */

/* path's words for errno err, tapio's where it has them; the code. */
static int file_error(tapio_tls_context *c, const char *path, int err) {
  int rc = tapio__from_errno(err);
  snprintf(c->err, sizeof c->err, "%s: %s", path,
           rc == TAPIO_EUNKNOWN ? strerror(err) : tapio_strerror(rc));
  return rc;
}

/* fd's bytes to its end into *out (malloc'd), *len of them; 0, an errno
 * (positive), or a tapio code. */
static int read_all(int fd, char **out, size_t *len) {
  size_t cap = 16384, n = 0;
  char *buf = malloc(cap), *more;
  ssize_t got = 0;
  while (buf) {
    got = read(fd, buf + n, cap - n);
    if (got < 0 && errno == EINTR)
      continue;
    if (got <= 0)
      break;
    n += (size_t)got;
    if (n < cap)
      continue;
    more = cap < FILE_MAX ? realloc(buf, 2 * cap) : NULL;
    if (!more) {
      free(buf);
      return cap < FILE_MAX ? TAPIO_ENOMEM : TAPIO_E2BIG;
    }
    buf = more;
    cap *= 2;
  }
  if (!buf || got < 0) {
    int err = buf ? errno : 0;
    free(buf);
    return buf ? err : TAPIO_ENOMEM;
  }
  *out = buf;
  *len = n;
  return 0;
}

static int file_open(tapio_tls_context *c, const char *path, file_text *f) {
  size_t len = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC), rc;
  f->bio = NULL;
  f->text = NULL;
  if (fd < 0)
    return file_error(c, path, errno);
  rc = read_all(fd, &f->text, &len);
  close(fd);
  if (rc > 0) { /* a directory, say: a bad file, as OpenSSL's reading said */
    file_error(c, path, rc);
    return TAPIO_ETLS;
  }
  if (rc == TAPIO_E2BIG) {
    snprintf(c->err, sizeof c->err, "%.90s: larger than 64 MiB", path);
    return TAPIO_EINVAL;
  }
  if (rc == 0 && !(f->bio = BIO_new_mem_buf(f->text, (int)len)))
    rc = TAPIO_ENOMEM;
  if (rc < 0) {
    free(f->text);
    f->text = NULL;
    snprintf(c->err, sizeof c->err, "%s", tapio_strerror(rc));
  }
  return rc;
}

static void file_close(file_text *f) {
  BIO_free(f->bio);
  free(f->text);
}

/* SSL_CTX_use_certificate_chain_file on the file's text: the leaf, then
 * the chain; only the text's end may stop the reading. */
static int use_chain_file(tapio_tls_context *c, BIO *b,
                          const char *password) {
  X509 *x = PEM_read_bio_X509_AUX(b, NULL, password_cb, (void *)password);
  unsigned long e;
  int rc = x && SSL_CTX_use_certificate(c->ctx, x) == 1 &&
           SSL_CTX_clear_chain_certs(c->ctx) == 1;
  X509_free(x);
  while (rc && (x = PEM_read_bio_X509(b, NULL, password_cb,
                                      (void *)password)) != NULL)
    if (SSL_CTX_add0_chain_cert(c->ctx, x) != 1) {
      X509_free(x);
      rc = 0;
    }
  e = ERR_peek_last_error();
  if (!rc || ERR_GET_LIB(e) != ERR_LIB_PEM ||
      ERR_GET_REASON(e) != PEM_R_NO_START_LINE)
    return 0;
  ERR_clear_error();
  return 1;
}

/* SSL_CTX_use_PrivateKey_file (PEM) on the file's text. */
static int use_key_file(tapio_tls_context *c, BIO *b, const char *password) {
  EVP_PKEY *pk = PEM_read_bio_PrivateKey(b, NULL, password_cb,
                                         (void *)password);
  int rc = pk && SSL_CTX_use_PrivateKey(c->ctx, pk) == 1;
  EVP_PKEY_free(pk);
  return rc;
}

/* SSL_CTX_load_verify_locations' CA file on the file's text: every
 * certificate and CRL into the store; none is an error. */
static int add_cas_file(tapio_tls_context *c, BIO *b) {
  X509_STORE *store = SSL_CTX_get_cert_store(c->ctx);
  STACK_OF(X509_INFO) *all = PEM_X509_INFO_read_bio(b, NULL, NULL, NULL);
  int i, n = 0, rc = all != NULL;
  for (i = 0; rc && i < sk_X509_INFO_num(all); i++) {
    X509_INFO *it = sk_X509_INFO_value(all, i);
    if (it->x509 && (rc = X509_STORE_add_cert(store, it->x509) == 1))
      n++;
    if (rc && it->crl && (rc = X509_STORE_add_crl(store, it->crl) == 1))
      n++;
  }
  sk_X509_INFO_pop_free(all, X509_INFO_free);
  if (rc && n == 0) {
    ERR_raise(ERR_LIB_X509, X509_R_NO_CERTIFICATE_OR_CRL_FOUND);
    rc = 0;
  }
  return rc;
}

/* Checks the key against the chain: loading a wrong key is an error now,
 * not a failed handshake later. */
static int key_matches(tapio_tls_context *c) {
  if (SSL_CTX_check_private_key(c->ctx) != 1)
    return fail(c, TAPIO_ETLS);
  ok(c);
  return 0;
}

int tapio_tls_context_load_cert_chain(tapio_tls_context *c,
                                      const char *certfile,
                                      const char *keyfile,
                                      const char *password) {
  file_text cf, kf;
  int rc;
  if (!c || !certfile)
    return TAPIO_EINVAL;
  if (!keyfile)
    keyfile = certfile;
  if ((rc = file_open(c, certfile, &cf)) < 0)
    return rc;
  if ((rc = file_open(c, keyfile, &kf)) < 0) {
    file_close(&cf);
    return rc;
  }
  ERR_clear_error();
  if (!use_chain_file(c, cf.bio, password))
    rc = fail_in(c, TAPIO_ETLS, certfile);
  else if (!use_key_file(c, kf.bio, password))
    rc = fail_in(c, TAPIO_ETLS, keyfile); /* no key there, a bad password */
  else
    rc = key_matches(c);
  file_close(&cf);
  file_close(&kf);
  return rc;
}

/* The chain in PEM text: the first certificate is the leaf. */
static int use_chain_pem(tapio_tls_context *c, BIO *b) {
  X509 *x = PEM_read_bio_X509_AUX(b, NULL, NULL, NULL);
  int rc = x && SSL_CTX_use_certificate(c->ctx, x) == 1;
  X509_free(x);
  SSL_CTX_clear_chain_certs(c->ctx);
  while (rc && (x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL)
    if (SSL_CTX_add0_chain_cert(c->ctx, x) != 1) {
      X509_free(x);
      rc = 0;
    }
  ERR_clear_error(); /* the end of the text reads as an error */
  return rc;
}

int tapio_tls_context_load_cert_chain_pem(tapio_tls_context *c,
                                          const char *cert, size_t certlen,
                                          const char *key, size_t keylen,
                                          const char *password) {
  BIO *cb, *kb;
  EVP_PKEY *pk = NULL;
  int rc;
  if (!c || !cert || !certlen || certlen > INT32_MAX || keylen > INT32_MAX ||
      (key && !keylen))
    return TAPIO_EINVAL;
  if (!key) {
    key = cert;
    keylen = certlen;
  }
  ERR_clear_error();
  cb = BIO_new_mem_buf(cert, (int)certlen);
  kb = BIO_new_mem_buf(key, (int)keylen);
  if (!cb || !kb)
    rc = fail(c, TAPIO_ENOMEM);
  else if (!use_chain_pem(c, cb))
    rc = refuse(c, TAPIO_ETLS, "no certificate in the PEM text");
  else if (!(pk = PEM_read_bio_PrivateKey(kb, NULL, password_cb,
                                          (void *)password)))
    rc = ERR_peek_error() ? fail_in(c, TAPIO_ETLS, "the key")
                          : refuse(c, TAPIO_ETLS, "no key in the PEM text");
  else
    rc = SSL_CTX_use_PrivateKey(c->ctx, pk) == 1 ? key_matches(c)
                                                 : fail(c, TAPIO_ETLS);
  EVP_PKEY_free(pk);
  BIO_free(cb);
  BIO_free(kb);
  return rc;
}

static int add_pem_cas(tapio_tls_context *c, const char *pem, size_t len) {
  X509_STORE *store = SSL_CTX_get_cert_store(c->ctx);
  BIO *b = BIO_new_mem_buf(pem, (int)len);
  X509 *x;
  int n = 0;
  while (b && (x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
    if (X509_STORE_add_cert(store, x) == 1)
      n++;
    X509_free(x);
  }
  BIO_free(b);
  ERR_clear_error();
  return n > 0;
}

int tapio_tls_context_load_verify_locations(tapio_tls_context *c,
                                            const char *cafile,
                                            const char *capath,
                                            const char *pem, size_t pemlen) {
  file_text f;
  int rc;
  if (!c || (!cafile && !capath && !pem) || pemlen > INT32_MAX ||
      (pem && !pemlen))
    return TAPIO_EINVAL;
  if (cafile && (rc = file_open(c, cafile, &f)) < 0)
    return rc;
  ERR_clear_error();
  rc = !cafile || add_cas_file(c, f.bio);
  if (cafile)
    file_close(&f);
  if (!rc)
    return fail_in(c, TAPIO_ETLS, cafile);
  /* the directory's files are read by OpenSSL, when a handshake needs one */
  if (capath && SSL_CTX_load_verify_locations(c->ctx, NULL, capath) != 1)
    return fail_in(c, TAPIO_ETLS, capath);
  if (pem && !add_pem_cas(c, pem, pemlen)) {
    snprintf(c->err, sizeof c->err, "no certificate in the PEM text");
    return TAPIO_ETLS;
  }
  pthread_mutex_lock(&c->lock);
  c->cas_given = 1; /* the system store is not loaded then */
  pthread_mutex_unlock(&c->lock);
  ok(c);
  return 0;
}

/* SSL_CTX_set_default_verify_paths with its file (SSL_CERT_FILE, else
 * OpenSSL's) read by file_open; a file that does not load is no error, as
 * there. The directory (SSL_CERT_DIR, else OpenSSL's) and store lookups
 * are OpenSSL's: they read a file when a handshake needs one. c's words
 * stay those of the last call on it. */
static void default_paths(tapio_tls_context *c) {
  X509_STORE *store = SSL_CTX_get_cert_store(c->ctx);
  const char *file = secure_getenv(X509_get_default_cert_file_env());
  X509_LOOKUP *dir, *uri;
  char words[sizeof c->err];
  file_text f;
  memcpy(words, c->err, sizeof words);
  if (file_open(c, file ? file : X509_get_default_cert_file(), &f) == 0) {
    add_cas_file(c, f.bio);
    file_close(&f);
  }
  memcpy(c->err, words, sizeof words);
  if ((dir = X509_STORE_add_lookup(store, X509_LOOKUP_hash_dir())))
    X509_LOOKUP_add_dir(dir, NULL, X509_FILETYPE_DEFAULT);
  if ((uri = X509_STORE_add_lookup(store, X509_LOOKUP_store())))
    X509_LOOKUP_add_store(uri, NULL);
  ERR_clear_error();
}

/* Before a connection that verifies: the system store, unless CAs were
 * given. SSL_CERT_FILE and SSL_CERT_DIR are honoured, as by OpenSSL. */
void tapio__tls_context_load_defaults(tapio_tls_context *c) {
  pthread_mutex_lock(&c->lock);
  if (!c->cas_given && !c->defaults_loaded) {
    c->defaults_loaded = 1;
    default_paths(c);
  }
  pthread_mutex_unlock(&c->lock);
}

/* ---- Policy ------------------------------------------------------------ */

int tapio_tls_context_set_verify(tapio_tls_context *c, int mode) {
  int m;
  if (!c)
    return TAPIO_EINVAL;
  switch (mode) {
  case TAPIO_TLS_VERIFY_NONE:
    m = SSL_VERIFY_NONE;
    break;
  case TAPIO_TLS_VERIFY_OPTIONAL:
    m = SSL_VERIFY_PEER;
    break;
  case TAPIO_TLS_VERIFY_REQUIRED:
    m = SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
    break;
  default:
    return refuse(c, TAPIO_EINVAL, "TAPIO_TLS_VERIFY_NONE, _OPTIONAL or "
                  "_REQUIRED expected");
  }
  c->verify = mode;
  SSL_CTX_set_verify(c->ctx, m, NULL);
  return 0;
}

int tapio_tls_context_set_check_hostname(tapio_tls_context *c, int on) {
  if (!c)
    return TAPIO_EINVAL;
  if (c->side != TAPIO_TLS_CLIENT)
    return refuse(c, TAPIO_ENOTSUP, "a client context's setting");
  c->check_hostname = on != 0;
  return 0;
}

static int proto_version(int v, int *out) {
  if (v == 0 || v == TAPIO_TLS_1_2 || v == TAPIO_TLS_1_3) {
    *out = v == TAPIO_TLS_1_2 ? TLS1_2_VERSION
                              : v == TAPIO_TLS_1_3 ? TLS1_3_VERSION : 0;
    return 0;
  }
  return TAPIO_EINVAL;
}

int tapio_tls_context_set_versions(tapio_tls_context *c, int min, int max) {
  int lo, hi;
  if (!c)
    return TAPIO_EINVAL;
  if (proto_version(min, &lo) < 0 || proto_version(max, &hi) < 0)
    return refuse(c, TAPIO_EINVAL,
                  "TAPIO_TLS_1_2, TAPIO_TLS_1_3 or 0 expected");
  if (lo && hi && lo > hi)
    return refuse(c, TAPIO_EINVAL, "the minimum version is above the "
                  "maximum");
  if ((lo && SSL_CTX_set_min_proto_version(c->ctx, lo) != 1) ||
      (hi && SSL_CTX_set_max_proto_version(c->ctx, hi) != 1))
    return fail(c, TAPIO_ETLS);
  ok(c);
  return 0;
}

int tapio_tls_context_set_ciphers(tapio_tls_context *c, const char *tls12,
                                  const char *tls13) {
  if (!c)
    return TAPIO_EINVAL;
  ERR_clear_error();
  if ((tls12 && SSL_CTX_set_cipher_list(c->ctx, tls12) != 1) ||
      (tls13 && SSL_CTX_set_ciphersuites(c->ctx, tls13) != 1))
    return fail(c, TAPIO_EINVAL);
  ok(c);
  return 0;
}

int tapio_tls_context_set_alpn(tapio_tls_context *c,
                               const char *const *protos, size_t n) {
  size_t i, len = 0;
  unsigned char *wire, *p;
  if (!c || (n && !protos))
    return TAPIO_EINVAL;
  for (i = 0; i < n; i++) {
    size_t l = protos[i] ? strlen(protos[i]) : 0;
    if (l == 0 || l > 255)
      return refuse(c, TAPIO_EINVAL, "a protocol name is 1 to 255 bytes");
    if (len + l + 1 > 65535)
      return refuse(c, TAPIO_EINVAL, "the list is over 65535 bytes");
    len += l + 1;
  }
  wire = len ? malloc(len) : NULL;
  if (len && !wire)
    return TAPIO_ENOMEM;
  for (i = 0, p = wire; i < n; i++) {
    size_t l = strlen(protos[i]);
    *p++ = (unsigned char)l;
    memcpy(p, protos[i], l);
    p += l;
  }
  free(c->alpn);
  c->alpn = wire;
  c->alpn_len = len;
  if (c->side == TAPIO_TLS_CLIENT)
    return SSL_CTX_set_alpn_protos(c->ctx, wire, (unsigned)len) == 0
               ? 0 : fail(c, TAPIO_ENOMEM);
  SSL_CTX_set_alpn_select_cb(c->ctx, len ? alpn_cb : NULL, c);
  return 0;
}

int tapio_tls_context_add_sni(tapio_tls_context *c, const char *name,
                              tapio_tls_context *use) {
  struct tapio__sni *grown;
  char *copy;
  if (!c)
    return TAPIO_EINVAL;
  if (!name || !*name || !use)
    return refuse(c, TAPIO_EINVAL, "a host name and a context expected");
  if (c->side != TAPIO_TLS_SERVER || use->side != TAPIO_TLS_SERVER)
    return refuse(c, TAPIO_EINVAL, "server contexts only");
  if (sni_lookup(c, name))
    return refuse(c, TAPIO_EEXIST, "that name was added already");
  grown = realloc(c->sni, (c->nsni + 1) * sizeof *grown);
  copy = grown ? strdup(name) : NULL;
  if (!copy) {
    if (grown)
      c->sni = grown;
    return TAPIO_ENOMEM;
  }
  c->sni = grown;
  tapio__tls_context_retain(use);
  c->sni[c->nsni].name = copy;
  c->sni[c->nsni++].use = use;
  return 0;
}

int tapio_tls_context_set_sni_callback(tapio_tls_context *c,
                                       tapio_tls_sni_fn fn, void *ud) {
  if (!c)
    return TAPIO_EINVAL;
  if (c->side != TAPIO_TLS_SERVER)
    return refuse(c, TAPIO_ENOTSUP, "a server context's setting");
  c->sni_fn = fn;
  c->sni_ud = ud;
  return 0;
}

static void keylog_update(tapio_tls_context *c) {
  SSL_CTX_set_keylog_callback(c->ctx,
                              c->keylog || c->keylog_fn ? keylog_cb : NULL);
}

int tapio_tls_context_set_keylog_file(tapio_tls_context *c,
                                      const char *path) {
  FILE *f = NULL;
  if (!c)
    return TAPIO_EINVAL;
  /* close-on-exec ("e"): a child started later must not hold the log */
  if (path && !(f = fopen(path, "ae"))) {
    int rc = tapio__from_errno(errno);
    snprintf(c->err, sizeof c->err, "%s: %s", path, tapio_strerror(rc));
    return rc;
  }
  pthread_mutex_lock(&c->lock);
  if (c->keylog)
    fclose(c->keylog);
  c->keylog = f;
  pthread_mutex_unlock(&c->lock);
  keylog_update(c);
  return 0;
}

int tapio_tls_context_set_keylog_callback(tapio_tls_context *c,
                                          tapio_tls_keylog_fn fn, void *ud) {
  if (!c)
    return TAPIO_EINVAL;
  c->keylog_fn = fn;
  c->keylog_ud = ud;
  keylog_update(c);
  return 0;
}

int tapio_tls_context_set_session_cache(tapio_tls_context *c, size_t n) {
  if (!c)
    return TAPIO_EINVAL;
  if (c->side != TAPIO_TLS_CLIENT)
    return refuse(c, TAPIO_ENOTSUP, "a client context's setting");
  if (n > 65536)
    return refuse(c, TAPIO_EINVAL, "at most 65536");
  tapio__tls_session_clear(c); /* the ring is made for its size */
  pthread_mutex_lock(&c->lock);
  c->cache_max = n;
  pthread_mutex_unlock(&c->lock);
  return 0;
}
