/* Why a TLS session failed: OpenSSL's reasons, verification results and
 * the peer's alerts as the codes of capi/tapio.h, and the words kept for
 * connection_lost and tapio_loop_error_message. */
#include "tls_int.h"

#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdio.h>

void tapio__tls_set_err(tapio__tls *tc, const char *fmt, const char *a,
                        const char *b) {
  char msg[320];
  snprintf(msg, sizeof msg, fmt, a, b);
  tapio__strfree(tc->s->head.loop, tc->err);
  tc->err = tapio__strdup(tc->s->head.loop, msg);
}

static int verify_code(long v) {
  switch (v) {
  case X509_V_ERR_CERT_HAS_EXPIRED:
    return TAPIO_ETLS_EXPIRED;
  case X509_V_ERR_CERT_NOT_YET_VALID:
    return TAPIO_ETLS_NOT_YET_VALID;
  case X509_V_ERR_HOSTNAME_MISMATCH:
  case X509_V_ERR_IP_ADDRESS_MISMATCH:
    return TAPIO_ETLS_HOSTNAME;
  case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
  case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
  case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    return TAPIO_ETLS_UNKNOWN_CA;
  case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
  case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    return TAPIO_ETLS_SELF_SIGNED;
  default:
    return TAPIO_ETLS_VERIFY;
  }
}

/* OpenSSL's reasons, ours and the peer's alerts, by what they mean. */
static int reason_code(int reason) {
  switch (reason) {
  case SSL_R_UNSUPPORTED_PROTOCOL:
  case SSL_R_NO_PROTOCOLS_AVAILABLE:
  case SSL_R_TLSV1_ALERT_PROTOCOL_VERSION:
  case SSL_R_WRONG_SSL_VERSION:
    return TAPIO_ETLS_VERSION;
  case SSL_R_NO_SHARED_CIPHER:
  case SSL_R_NO_CIPHERS_AVAILABLE:
  case SSL_R_SSLV3_ALERT_HANDSHAKE_FAILURE:
  case SSL_R_TLSV1_ALERT_INSUFFICIENT_SECURITY:
    return TAPIO_ETLS_CIPHER;
  case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
  case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
    return TAPIO_ETLS_NO_CERT;
  case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
    return TAPIO_ETLS_EXPIRED;
  case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
    return TAPIO_ETLS_UNKNOWN_CA;
  case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
  case SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE:
  case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
    return TAPIO_ETLS_VERIFY;
  default:
    return TAPIO_ETLS;
  }
}

/* Why the last SSL call (which returned r) failed; keeps the words. A
 * peer gone during the handshake is ECONNRESET, as asyncio has it. */
int tapio__tls_classify(tapio__tls *tc, int r) {
  int e = SSL_get_error(tc->ssl, r);
  unsigned long err = ERR_peek_error();
  int reason = ERR_GET_REASON(err);
  const char *what = tc->state == TAPIO__TLS_HANDSHAKE ? "TLS handshake"
                                                       : "TLS";
  if (tc->io_err) {
    tapio__tls_set_err(tc, "%s failed: %s", what, tapio_strerror(tc->io_err));
    return tc->io_err;
  }
  if (tc->in_eof && (e == SSL_ERROR_SYSCALL || e == SSL_ERROR_ZERO_RETURN ||
                     reason == SSL_R_UNEXPECTED_EOF_WHILE_READING)) {
    tapio__tls_set_err(tc, "%s: %s", what, "the peer closed the connection");
    return TAPIO_ECONNRESET;
  }
  if (reason == SSL_R_CERTIFICATE_VERIFY_FAILED) {
    long v = SSL_get_verify_result(tc->ssl);
    tapio__tls_set_err(tc, "certificate verify failed: %s%s",
            X509_verify_cert_error_string(v), "");
    return verify_code(v);
  }
  if (ERR_GET_LIB(err) == ERR_LIB_SSL && tc->cert_asked &&
      reason == SSL_R_SSLV3_ALERT_HANDSHAKE_FAILURE) { /* TLS 1.2's answer to a client without one */
    tapio__tls_set_err(tc, "%s failed: %s", what, "sslv3 alert handshake "
                       "failure (a client certificate was asked for)");
    return TAPIO_ETLS_NO_CERT;
  }
  if (err) {
    const char *rs = ERR_reason_error_string(err);
    int code = ERR_GET_LIB(err) == ERR_LIB_SSL ? reason_code(reason)
                                               : TAPIO_ETLS;
    tapio__tls_set_err(tc, "%s failed: %s", what, rs ? rs : "error");
    /* A session made has a version and a cipher: a handshake_failure
     * alert then ends a later handshake (a renegotiation refused). */
    if (tc->state != TAPIO__TLS_HANDSHAKE &&
        (code == TAPIO_ETLS_CIPHER || code == TAPIO_ETLS_VERSION))
      code = TAPIO_ETLS;
    return code;
  }
  tapio__tls_set_err(tc, "%s failed: %s", what, "protocol error");
  return TAPIO_ETLS;
}
