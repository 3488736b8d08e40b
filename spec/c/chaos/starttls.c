/* STARTTLS in the middle of a stream: the client sends MARKER and writes
 * nothing more; the server, seeing it, answers MARKER and starts TLS at
 * once; the client starts TLS when the answer comes. Neither sends a clear
 * byte after its marker, so the bytes after a marker in the same read must
 * be none. */
#include "chaos.h"

static void upgraded(void *ud, int status, tapio_transport *t)
{
  ep *e = ud;
  note(&e->a.h, "%.3f start_tls done %s", now(e->a.c), tapio_errname(status));
  check_sync(e->a.c, &e->a.h, "start_tls's completion", NULL);
  if (e->up != 2)
    BUG(&e->a.h, NULL, "start_tls completion in state %d", e->up);
  if ((status == 0) != (t != NULL) || (t && t != e->a.t))
    BUG(&e->a.h, NULL, "start_tls completion %d with %p", status, (void *)t);
  e->up = status ? 8 : 3;
  e->a.c->n_upgrades += status == 0;
}

static int upgrade(ep *e, const void *rest, size_t n)
{
  chaos *c = e->a.c;
  int rc;
  const tapio_options *o = e->server_side ? c->up_srv
                           : e->kind == K_TCP || e->kind == K_TLS
                               ? c->up_cli : c->unix_up_cli;
  e->up = 2;
  note(&e->a.h, "%.3f start_tls", now(c));
  c->sync = "tapio_transport_start_tls";
  rc = tapio_transport_start_tls(e->a.t, tables[e->table], e,
                                 e->server_side ? server_tls : client_tls,
                                 o, rest, n, upgraded, e);
  c->sync = NULL;
  if (rc != 0) {
    e->up = 8;
    if (rc != TAPIO_ECLOSED || !tapio_transport_is_closing(e->a.t))
      BUG(&e->a.h, NULL, "start_tls: %s", tapio_errname(rc));
  }
  return rc;
}

void marker_seen(ep *e, const unsigned char *rest, size_t n)
{
  note(&e->a.h, "%.3f marker (%zu after)", now(e->a.c), n);
  if (n)
    BUG(&e->a.h, writer_of(e) ? &writer_of(e)->a.h : NULL,
        "%zu clear bytes after the STARTTLS marker", n);
  if (e->server_side && e->up == 0) {
    unsigned char m = MARKER;
    int rc;
    if (!e->writer || !e->hdr_sent || e->wrote_eof || e->a.closed ||
        tapio_transport_is_closing(e->a.t)) {
      e->up = 9;
      return;
    }
    if ((rc = ep_send(e, &m, 1)) != 0) {
      e->up = 9;
      return;
    }
    upgrade(e, rest, n);
  } else if (!e->server_side && e->up == 1) {
    upgrade(e, rest, n);
  } else {
    BUG(&e->a.h, NULL, "a STARTTLS marker in state %d", e->up);
  }
}
