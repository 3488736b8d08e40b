/* TLS from the create calls' options, and start_tls: upgrading an open
 * stream in place. The layer itself is tls.c. */
#include "tls_int.h"

#include <string.h>

#define HANDSHAKE_TIMEOUT 60.0 /* asyncio's defaults */
#define SHUTDOWN_TIMEOUT 30.0

const tapio_protocol tapio__no_protocol = {.size = sizeof(tapio_protocol)};

static int server_call(int call) {
  return call == TAPIO_CALL_CREATE_SERVER ||
         call == TAPIO_CALL_CREATE_UNIX_SERVER ||
         call == TAPIO_CALL_CONNECT_ACCEPTED_SOCKET;
}

/* A client that checks host names needs one (asyncio: "You must set
 * server_hostname when using ssl without a host"). */
static int needs_name(const tapio_tls_context *c) {
  return c->side == TAPIO_TLS_CLIENT && c->check_hostname &&
         c->verify != TAPIO_TLS_VERIFY_NONE;
}

static int params_for(tapio_loop *loop, tapio_tls_context *ctx,
                      const tapio_options *o, int server, const char *host,
                      tapio__tls_params *p) {
  const char *name = tapio__opt_str(o, TAPIO__OPT_SERVER_HOSTNAME);
  memset(p, 0, sizeof *p);
  if (ctx->side != (server ? TAPIO_TLS_SERVER : TAPIO_TLS_CLIENT)) {
    /* Python: "a server socket ... CLIENT context" */
    tapio__refuse(loop, "the TLS context is a %s one; this side needs a %s "
                  "one", server ? "client" : "server",
                  server ? "server" : "client");
    return TAPIO_EINVAL;
  }
  if (!name)
    name = host;
  if (needs_name(ctx) && (!name || !*name)) {
    tapio__refuse(loop, "no server_hostname to check: the TLS context "
                  "checks host names (check_hostname off connects without "
                  "one)");
    return TAPIO_EINVAL;
  }
  if (name && *name && !(p->hostname = tapio__strdup(loop, name)))
    return TAPIO_ENOMEM;
  tapio__tls_context_retain(ctx);
  p->ctx = ctx;
  p->handshake_timeout =
      tapio__opt_double(o, TAPIO__OPT_SSL_HANDSHAKE_TIMEOUT,
                        HANDSHAKE_TIMEOUT);
  p->shutdown_timeout =
      tapio__opt_double(o, TAPIO__OPT_SSL_SHUTDOWN_TIMEOUT,
                        SHUTDOWN_TIMEOUT);
  return 0;
}

int tapio__tls_params_get(tapio_loop *loop, const tapio_options *o, int call,
                          const char *host, tapio__tls_params *p) {
  tapio_tls_context *ctx = tapio__opt_tls(o);
  memset(p, 0, sizeof *p);
  return ctx ? params_for(loop, ctx, o, server_call(call), host, p) : 0;
}

void tapio__tls_params_free(tapio_loop *loop, tapio__tls_params *p) {
  tapio_tls_context_release(p->ctx);
  tapio__strfree(loop, p->hostname);
  memset(p, 0, sizeof *p);
}

/* ---- start_tls ---------------------------------------------------------- */

typedef struct start_req {
  tapio_connect_fn cb;
  void *cb_ud;
} start_req;

static void started(void *ud, tapio_transport *t, int status) {
  start_req *r = ud;
  tapio_connect_fn cb = r->cb;
  void *cb_ud = r->cb_ud;
  tapio__free(t->loop, r, sizeof *r);
  if (status == 0)
    cb(cb_ud, 0, t);
  else /* the transport is failing; it goes after the callback */
    tapio__connect_failed(t->loop, 1, cb, cb_ud, status, tapio__tls_error(t));
}

static int start_check(tapio_transport *t, const tapio_protocol *proto,
                       tapio_tls_context *ctx, const tapio_options *opts,
                       tapio_connect_fn cb) {
  tapio__tls *tc;
  tapio__refuse_none(t ? t->loop : NULL);
  if (!t || !ctx || !cb || tapio__proto_check(proto, sizeof *proto) < 0)
    return TAPIO_EINVAL;
  if (t->kind->id != TAPIO_TRANSPORT_STREAM) {
    /* asyncio: "... is not supported" */
    tapio__refuse(t->loop, "start_tls: TLS goes over a stream transport "
                  "(TCP or Unix) only");
    return TAPIO_ENOTSUP;
  }
  if (t->flags & (TAPIO__T_CLOSING | TAPIO__T_EOF_WANTED)) {
    tapio__refuse(t->loop, "start_tls: the transport is closing%s",
                  t->flags & TAPIO__T_CLOSING ? "" : " (write_eof was "
                  "called)");
    return TAPIO_ECLOSED;
  }
  if ((tc = tapio__tls_of(t)) && tc->state < TAPIO__TLS_OPEN) {
    tapio__refuse(t->loop, "start_tls: the transport's TLS handshake is "
                  "still under way");
    return TAPIO_EBUSY;
  }
  if (t->flags & TAPIO__T_SENDFILE) {
    tapio__refuse(t->loop, "start_tls: a sendfile is in progress");
    return TAPIO_EBUSY;
  }
  return tapio__opts_check(t->loop, opts, TAPIO_CALL_START_TLS);
}

int tapio_transport_start_tls(tapio_transport *t, const tapio_protocol *proto,
                              void *proto_ud, tapio_tls_context *ctx,
                              const tapio_options *opts, const void *buffered,
                              size_t len, tapio_connect_fn cb, void *cb_ud) {
  tapio__tls_params p;
  start_req *r;
  int rc = start_check(t, proto, ctx, opts, cb);
  if (rc == 0 && ((len && !buffered) || len > PTRDIFF_MAX))
    rc = TAPIO_EINVAL;
  if (rc == 0)
    rc = params_for(t->loop, ctx, opts, ctx->side == TAPIO_TLS_SERVER, NULL,
                    &p);
  if (rc < 0)
    return rc;
  r = tapio__alloc(t->loop, sizeof *r);
  if (!r) {
    tapio__tls_params_free(t->loop, &p);
    return TAPIO_ENOMEM;
  }
  r->cb = cb;
  r->cb_ud = cb_ud;
  rc = tapio__tls_attach(t, &p, ctx->side == TAPIO_TLS_SERVER, buffered, len,
                         started, r);
  tapio__tls_params_free(t->loop, &p);
  if (rc < 0) {
    tapio__free(t->loop, r, sizeof *r);
    return rc;
  }
  tapio_transport_set_protocol(t, proto, proto_ud);
  return 0;
}
