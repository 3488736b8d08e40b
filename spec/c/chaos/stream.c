/* Stream ends (clients, accepted connections, pipes, socketpairs, memory
 * pairs): their protocol tables and what each callback checks (callback
 * order, bytes a prefix of what the peer wrote). */
#include "chaos.h"

/* ---- Stream ends: the checks ------------------------------------------- */

ep *writer_of(ep *e)
{
  return e->in_sid < MAX_SIDS ? e->a.c->sids[e->in_sid] : NULL;
}

/* n stream bytes (no marker): the next of what the writer wrote. */
static void check_prefix(ep *e, const unsigned char *p, size_t n)
{
  ep *w = writer_of(e);
  size_t i;
  if (!n)
    return;
  if (!w)
    BUG(&e->a.h, NULL, "%zu bytes of unknown stream %u", n, e->in_sid);
  if (e->received + n > w->written)
    BUG(&e->a.h, &w->a.h, "received %llu bytes of stream %u; its writer wrote "
        "%llu", (unsigned long long)(e->received + n), e->in_sid,
        (unsigned long long)w->written);
  for (i = 0; i < n; i++)
    if (p[i] != pat(e->in_sid, e->received + i))
      BUG(&e->a.h, &w->a.h, "byte %llu of stream %u is %u, not %u",
          (unsigned long long)(e->received + i), e->in_sid, p[i],
          pat(e->in_sid, e->received + i));
  e->received += n;
  e->a.c->n_bytes += n;
}

static void ep_bytes(ep *e, const unsigned char *p, size_t n)
{
  if (!e->reader)
    BUG(&e->a.h, NULL, "a write pipe received %zu bytes", n);
  if (e->rpaused)
    BUG(&e->a.h, NULL, "%zu bytes while reading is paused", n);
  if (e->eof)
    BUG(&e->a.h, NULL, "%zu bytes after eof_received", n);
  while (n && e->nhdr < 4) { /* the stream's id first */
    if (*p >= 0x80)
      BUG(&e->a.h, NULL, "header byte %d is %u", e->nhdr, *p);
    e->in_sid |= (uint32_t)*p << (7 * e->nhdr);
    e->hdr[e->nhdr++] = *p++;
    n--;
    if (e->nhdr == 4 && (!writer_of(e) || writer_of(e) == e))
      BUG(&e->a.h, NULL, "stream id %u is no writer's", e->in_sid);
  }
  if (n) {
    const unsigned char *m = memchr(p, MARKER, n);
    size_t k = m ? (size_t)(m - p) : n;
    check_prefix(e, p, k);
    if (m)
      marker_seen(e, m + 1, n - k - 1);
  }
}

/* ---- Stream ends: the protocol ----------------------------------------- */

static const tapio_protocol ep_proto, ep_bproto, ep_noeof;
const tapio_protocol *const tables[3] = {
  &ep_proto, &ep_bproto, &ep_noeof
};

/* One write of e's. Its pause_writing may act, but not write: nothing may
 * come between these bytes and what the caller does next. */
int ep_send(ep *e, const void *p, size_t n)
{
  chaos *c = e->a.c;
  int rc;
  write_begin(c, "write", e);
  rc = tapio_transport_write(e->a.t, p, n);
  write_end(c);
  return rc;
}

static void write_header(ep *e)
{
  unsigned char h[4];
  int i, rc;
  for (i = 0; i < 4; i++)
    h[i] = (unsigned char)((e->sid >> (7 * i)) & 0x7f);
  rc = ep_send(e, h, 4);
  if (rc != 0 && !tapio_transport_is_closing(e->a.t))
    BUG(&e->a.h, NULL, "header write: %s", tapio_errname(rc));
  e->hdr_sent = rc == 0;
}

static void ep_made(void *ud, tapio_transport *t)
{
  ep *e = ud;
  made(&e->a, t);
  if (e->writer)
    write_header(e);
  ep_act(&e->a);
}

static void ep_lost(void *ud, tapio_transport *t, int code, const char *msg)
{
  ep *e = ud;
  e->lost_code = code;
  lost(&e->a, t, code, msg);
}

static void ep_data(void *ud, tapio_transport *t, const char *data,
                    size_t len)
{
  ep *e = ud;
  enter(&e->a, t, "data_received");
  if (e->table == 1)
    BUG(&e->a.h, NULL, "data_received on a BufferedProtocol");
  if (!len)
    BUG(&e->a.h, NULL, "empty data_received");
  ep_bytes(e, (const unsigned char *)data, len);
  e->a.act(&e->a);
}

static int ep_eof(void *ud, tapio_transport *t)
{
  ep *e = ud;
  enter(&e->a, t, "eof_received");
  if (e->eof)
    BUG(&e->a.h, NULL, "eof_received twice");
  if (e->rpaused)
    BUG(&e->a.h, NULL, "eof_received while reading is paused");
  e->eof = 1;
  e->eof_open = !e->a.closed && !e->dropped;
  e->a.act(&e->a);
  return chance(e->a.c, 50);
}

static void *ep_get_buffer(void *ud, tapio_transport *t, int64_t hint,
                           size_t *len)
{
  ep *e = ud;
  enter(&e->a, t, "get_buffer");
  if (hint != -1)
    BUG(&e->a.h, NULL, "get_buffer sizehint %lld", (long long)hint);
  if (e->eof || e->rpaused)
    BUG(&e->a.h, NULL, "get_buffer after eof_received or while paused");
  if (!e->buf) {
    e->buflen = 1 + rnd(e->a.c, 65536);
    e->buf = malloc(e->buflen);
    CHECK(e->buf != NULL);
  }
  if (rnd(e->a.c, 1000) == 0) { /* no buffer: the transport aborts */
    e->dropped = 1;
    note(&e->a.h, "no buffer");
    *len = 0;
    return NULL;
  }
  *len = e->buflen;
  return e->buf;
}

static void ep_buffer_updated(void *ud, tapio_transport *t, size_t n)
{
  ep *e = ud;
  enter(&e->a, t, "buffer_updated");
  if (n == 0 || n > e->buflen)
    BUG(&e->a.h, NULL, "buffer_updated with %zu bytes of %zu", n, e->buflen);
  ep_bytes(e, (const unsigned char *)e->buf, n);
  e->a.act(&e->a);
}

static const tapio_protocol ep_proto = {
  .size = sizeof(tapio_protocol),
  .connection_made = ep_made,
  .connection_lost = ep_lost,
  .pause_writing = on_pause,
  .resume_writing = on_resume,
  .data_received = ep_data,
  .eof_received = ep_eof,
};

static const tapio_protocol ep_bproto = {
  .size = sizeof(tapio_protocol),
  .connection_made = ep_made,
  .connection_lost = ep_lost,
  .pause_writing = on_pause,
  .resume_writing = on_resume,
  .eof_received = ep_eof,
  .get_buffer = ep_get_buffer,
  .buffer_updated = ep_buffer_updated,
};

/* eof_received NULL: the reference's default, which closes. */
static const tapio_protocol ep_noeof = {
  .size = sizeof(tapio_protocol),
  .connection_made = ep_made,
  .connection_lost = ep_lost,
  .pause_writing = on_pause,
  .resume_writing = on_resume,
  .data_received = ep_data,
};

/* ---- Stream ends: new ones --------------------------------------------- */

ep *ep_new(chaos *c, int kind, int server_side, int reader,
                  int writer)
{
  int i;
  for (i = 0; i < MAX_EPS; i++) {
    ep *e = &c->eps[i];
    if (e->used)
      continue;
    memset(e, 0, sizeof *e);
    e->used = 1;
    e->a.c = c;
    e->a.act = ep_act;
    e->kind = kind;
    e->server_side = server_side;
    e->reader = reader;
    e->writer = writer;
    e->a.budget = 5 + (int)rnd(c, 30);
    e->table = (int)rnd(c, 3);
    if (writer && c->next_sid < MAX_SIDS) {
      e->sid = c->next_sid++;
      c->sids[e->sid] = e;
    } else if (writer) {
      e->writer = 0; /* no ids left: it only reads */
    }
    snprintf(e->a.h.name, sizeof e->a.h.name, "%s.%s#%d(sid %u)",
             kind_name[kind], server_side ? "server" : "client", i, e->sid);
    return e;
  }
  return NULL;
}

void ep_connected(void *ud, int status, tapio_transport *t)
{
  ep *e = ud;
  note(&e->a.h, "%.3f completion %s", now(e->a.c), tapio_errname(status));
  check_sync(e->a.c, &e->a.h, "a create completion", NULL);
  if (!e->a.pending)
    BUG(&e->a.h, NULL, "a completion twice");
  e->a.pending = 0;
  if (status == 0 && (!t || !e->a.made || e->a.t != t))
    BUG(&e->a.h, NULL, "completion 0 with %p before/without connection_made",
        (void *)t);
  if (status != 0 && (t || e->a.made))
    BUG(&e->a.h, NULL, "failed completion with a transport or after made");
}

/* e is closed (abort: or aborted). A close during STARTTLS's handshake
 * aborts, as asyncio's does: what was written before is dropped too. */
void closing(ep *e, int abort)
{
  if (!e->a.closed)
    e->closed_at = now(e->a.c);
  e->a.closed = e->a.ended = 1;
  e->dropped |= abort || e->up == 2;
}
