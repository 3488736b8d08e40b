/* get_extra_info for TLS: the session's version, cipher, ALPN, names,
 * the peer's certificate (as Python's getpeercert() spells its fields),
 * how the session ended, and the layer's figures. */
#include "tls_int.h"

#include <arpa/inet.h>
#include <openssl/x509v3.h>
#include <string.h>

/* Copies the n bytes at p out as the header says: the length always (when
 * len is given), NUL-terminated when there is room; ENOBUFS when it does
 * not fit (and, without len to tell the length, without room for the
 * NUL). */
static int give(const void *p, size_t n, char *buf, size_t buflen,
                size_t *len) {
  if (len)
    *len = n;
  if (!buf || buflen == 0)
    return len ? 0 : TAPIO_ENOBUFS;
  if (n > buflen || (n == buflen && !len))
    return TAPIO_ENOBUFS;
  memcpy(buf, p, n);
  if (n < buflen)
    buf[n] = '\0';
  return 0;
}

static int give_str(const char *s, char *buf, size_t buflen, size_t *len) {
  return s ? give(s, strlen(s), buf, buflen, len) : TAPIO_ENOENT;
}

/* An ASN1 time as Python prints it ("Jan  5 09:34:43 2024 GMT"). */
static int give_time(const ASN1_TIME *tm, char *buf, size_t buflen,
                     size_t *len) {
  BIO *b = BIO_new(BIO_s_mem());
  char *p = NULL;
  long n;
  int rc;
  if (!b)
    return TAPIO_ENOMEM;
  ASN1_TIME_print(b, tm);
  n = BIO_get_mem_data(b, &p);
  rc = n > 0 ? give(p, (size_t)n, buf, buflen, len) : TAPIO_ENOENT;
  BIO_free(b);
  return rc;
}

static int give_serial(X509 *x, char *buf, size_t buflen, size_t *len) {
  BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
  char *hex = bn ? BN_bn2hex(bn) : NULL;
  int rc = hex ? give_str(hex, buf, buflen, len) : TAPIO_ENOMEM;
  OPENSSL_free(hex);
  BN_free(bn);
  return rc;
}

static int give_der(X509 *x, char *buf, size_t buflen, size_t *len) {
  unsigned char *der = NULL;
  int n = i2d_X509(x, &der);
  int rc = n > 0 ? give(der, (size_t)n, buf, buflen, len) : TAPIO_ENOMEM;
  OPENSSL_free(der);
  return rc;
}

static int cert_info(tapio__tls *tc, int which, char *buf, size_t buflen,
                     size_t *len) {
  X509 *x = SSL_get0_peer_certificate(tc->ssl);
  if (!x)
    return TAPIO_ENOENT;
  switch (which) {
  case TAPIO_TLS_INFO_PEER_CERT:
    return give_der(x, buf, buflen, len);
  case TAPIO_TLS_INFO_PEER_NOT_BEFORE:
    return give_time(X509_get0_notBefore(x), buf, buflen, len);
  case TAPIO_TLS_INFO_PEER_NOT_AFTER:
    return give_time(X509_get0_notAfter(x), buf, buflen, len);
  default:
    return give_serial(x, buf, buflen, len);
  }
}

static const char *server_name(tapio__tls *tc) {
  if (SSL_is_server(tc->ssl))
    return SSL_get_servername(tc->ssl, TLSEXT_NAMETYPE_host_name);
  return tc->hostname;
}

static const char *alpn(tapio__tls *tc, size_t *n) {
  const unsigned char *p = NULL;
  unsigned len = 0;
  SSL_get0_alpn_selected(tc->ssl, &p, &len);
  *n = len;
  return len ? (const char *)p : NULL;
}

static const char *compression(tapio__tls *tc) {
  const COMP_METHOD *m = SSL_get_current_compression(tc->ssl);
  return m ? SSL_COMP_get_name(m) : NULL;
}

/* No session agreed (the handshake runs, or failed): no version, no
 * cipher, as Python's version() and cipher() are None then (OpenSSL
 * would say "(NONE)", or the cipher of a half-done handshake). */
static int unagreed(const tapio__tls *tc) {
  return !tc->agreed;
}

int tapio_transport_get_tls_info(tapio_transport *t, int which, char *buf,
                                 size_t buflen, size_t *len) {
  tapio__tls *tc = tapio__tls_of(t);
  size_t n;
  const char *p;
  if (len)
    *len = 0;
  if (!t)
    return TAPIO_EINVAL;
  if (!tc)
    return TAPIO_ENOTSUP;
  switch (which) {
  case TAPIO_TLS_INFO_VERSION:
    return unagreed(tc) ? TAPIO_ENOENT
                        : give_str(SSL_get_version(tc->ssl), buf, buflen, len);
  case TAPIO_TLS_INFO_CIPHER:
    return unagreed(tc)
               ? TAPIO_ENOENT
               : give_str(SSL_get_cipher_name(tc->ssl), buf, buflen, len);
  case TAPIO_TLS_INFO_ALPN:
    p = alpn(tc, &n);
    return p ? give(p, n, buf, buflen, len) : TAPIO_ENOENT;
  case TAPIO_TLS_INFO_SERVER_HOSTNAME:
    return give_str(server_name(tc), buf, buflen, len);
  case TAPIO_TLS_INFO_COMPRESSION:
    return give_str(compression(tc), buf, buflen, len);
  case TAPIO_TLS_INFO_PEER_CERT:
  case TAPIO_TLS_INFO_PEER_NOT_BEFORE:
  case TAPIO_TLS_INFO_PEER_NOT_AFTER:
  case TAPIO_TLS_INFO_PEER_SERIAL:
    return cert_info(tc, which, buf, buflen, len);
  case TAPIO_TLS_INFO_ERROR:
    return give_str(tc->err, buf, buflen, len);
  default:
    return TAPIO_EINVAL;
  }
}

int64_t tapio_transport_get_tls_num(tapio_transport *t, int which) {
  tapio__tls *tc = tapio__tls_of(t);
  int bits = 0;
  if (!t)
    return TAPIO_EINVAL;
  if (!tc)
    return TAPIO_ENOTSUP;
  switch (which) {
  case TAPIO_TLS_NUM_VERSION:
    return SSL_version(tc->ssl) == TLS1_3_VERSION ? TAPIO_TLS_1_3
                                                  : TAPIO_TLS_1_2;
  case TAPIO_TLS_NUM_SECRET_BITS:
    if (!unagreed(tc))
      SSL_get_cipher_bits(tc->ssl, &bits);
    return bits;
  case TAPIO_TLS_NUM_SESSION_REUSED:
    return SSL_session_reused(tc->ssl) == 1;
  case TAPIO_TLS_NUM_END:
    return tc->end;
  case TAPIO_TLS_NUM_HANDSHAKE_USEC:
    return (int64_t)tc->hs_usec;
  case TAPIO_TLS_NUM_WIRE_BYTES_RECEIVED:
    return (int64_t)tc->wire_in;
  case TAPIO_TLS_NUM_WIRE_BYTES_SENT:
    return (int64_t)tc->wire_out;
  default:
    return TAPIO_EINVAL;
  }
}

/* ---- The certificate's names ------------------------------------------- */

static int name_entry(const X509_NAME *nm, size_t i, char *name,
                      size_t namelen, char *value, size_t valuelen) {
  const X509_NAME_ENTRY *e;
  unsigned char *utf8 = NULL;
  char obj[128];
  int n, rc;
  if (i >= (size_t)X509_NAME_entry_count(nm))
    return TAPIO_ENOENT;
  e = X509_NAME_get_entry(nm, (int)i);
  OBJ_obj2txt(obj, sizeof obj, X509_NAME_ENTRY_get_object(e), 0);
  n = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(e));
  if (n < 0)
    return TAPIO_ENOMEM;
  rc = give_str(obj, name, namelen, NULL);
  if (rc == 0)
    rc = give(utf8, (size_t)n, value, valuelen, NULL);
  OPENSSL_free(utf8);
  return rc;
}

/* An IP address entry, as Python writes it: IPv6 in full, upper case. */
static void ip_text(const ASN1_OCTET_STRING *ip, char *out, size_t len) {
  const unsigned char *p = ASN1_STRING_get0_data(ip);
  int n = ASN1_STRING_length(ip), i;
  if (n == 4) {
    inet_ntop(AF_INET, p, out, (socklen_t)len);
    return;
  }
  out[0] = '\0';
  for (i = 0; n == 16 && i < 16; i += 2)
    snprintf(out + strlen(out), len - strlen(out), "%s%X", i ? ":" : "",
             (unsigned)(p[i] << 8 | p[i + 1]));
}

static int san_entry(X509 *x, size_t i, char *name, size_t namelen,
                     char *value, size_t valuelen) {
  GENERAL_NAMES *names = X509_get_ext_d2i(x, NID_subject_alt_name, NULL,
                                          NULL);
  const GENERAL_NAME *g;
  const char *kind = "othername", *text = "<unsupported>";
  char ip[64];
  int rc;
  if (!names || i >= (size_t)sk_GENERAL_NAME_num(names)) {
    GENERAL_NAMES_free(names);
    return TAPIO_ENOENT;
  }
  g = sk_GENERAL_NAME_value(names, (int)i);
  if (g->type == GEN_DNS || g->type == GEN_EMAIL || g->type == GEN_URI) {
    kind = g->type == GEN_DNS ? "DNS" : g->type == GEN_EMAIL ? "email"
                                                            : "URI";
    text = (const char *)ASN1_STRING_get0_data(g->d.ia5);
  } else if (g->type == GEN_IPADD) {
    kind = "IP Address";
    ip_text(g->d.ip, ip, sizeof ip);
    text = ip;
  }
  rc = give_str(kind, name, namelen, NULL);
  if (rc == 0)
    rc = give_str(text, value, valuelen, NULL);
  GENERAL_NAMES_free(names);
  return rc;
}

int tapio_transport_get_peercert_entry(tapio_transport *t, int which,
                                       size_t i, char *name, size_t namelen,
                                       char *value, size_t valuelen) {
  tapio__tls *tc = tapio__tls_of(t);
  X509 *x;
  if (!t || !name || !value || !namelen || !valuelen)
    return TAPIO_EINVAL;
  if (!tc)
    return TAPIO_ENOTSUP;
  if (!(x = SSL_get0_peer_certificate(tc->ssl)))
    return TAPIO_ENOENT;
  switch (which) {
  case TAPIO_TLS_SUBJECT:
    return name_entry(X509_get_subject_name(x), i, name, namelen, value,
                      valuelen);
  case TAPIO_TLS_ISSUER:
    return name_entry(X509_get_issuer_name(x), i, name, namelen, value,
                      valuelen);
  case TAPIO_TLS_SUBJECT_ALT_NAME:
    return san_entry(x, i, name, namelen, value, valuelen);
  default:
    return TAPIO_EINVAL;
  }
}

tapio_tls_context *tapio_transport_get_tls_context(tapio_transport *t) {
  tapio__tls *tc = tapio__tls_of(t);
  return !tc ? NULL : tc->sni ? tc->sni : tc->ctx;
}

void *tapio_transport_get_ssl(tapio_transport *t) {
  tapio__tls *tc = tapio__tls_of(t);
  return tc ? tc->ssl : NULL;
}
