/* UDP endpoint pairs: datagrams of a pattern that say their stream,
 * sequence and length, so that each is checked whole. */
#include "chaos.h"

static void dep_made(void *ud, tapio_transport *t)
{
  made(ud, t);
}

static void dep_lost(void *ud, tapio_transport *t, int code, const char *msg)
{
  lost(ud, t, code, msg);
}

static uint32_t get32(const char *p)
{
  uint32_t v;
  memcpy(&v, p, 4);
  return v;
}

static void dep_received(void *ud, tapio_transport *t, const char *data,
                         size_t len, const void *addr, size_t addrlen)
{
  dep *d = ud;
  size_t i;
  enter(&d->a, t, "datagram_received");
  (void)addr;
  (void)addrlen;
  if (len) { /* sid, seq, length, then the pattern */
    uint32_t sid, seq;
    if (len < 12 || get32(data + 8) != len)
      BUG(&d->a.h, NULL, "a datagram of %zu bytes says %u", len,
          len >= 12 ? get32(data + 8) : 0);
    sid = get32(data);
    seq = get32(data + 4);
    if (!d->peer || sid != d->peer->sid)
      BUG(&d->a.h, NULL, "a datagram of stream %u", sid);
    for (i = 12; i < len; i++)
      if ((unsigned char)data[i] != pat(sid, ((uint64_t)seq << 32) | i))
        BUG(&d->a.h, &d->peer->a.h, "datagram %u of %u: byte %zu is wrong", seq,
            sid, i);
  }
  dep_act(&d->a);
}

static void dep_error(void *ud, tapio_transport *t, int code,
                      const char *msg)
{
  dep *d = ud;
  enter(&d->a, t, code ? tapio_errname(code) : "error 0");
  if (code >= 0 || !msg)
    BUG(&d->a.h, NULL, "error_received code %d message %s", code,
        msg ? msg : "NULL");
  dep_act(&d->a);
}

static const tapio_datagram_protocol dep_proto = {
  .size = sizeof(tapio_datagram_protocol),
  .connection_made = dep_made,
  .connection_lost = dep_lost,
  .pause_writing = on_pause,
  .resume_writing = on_resume,
  .datagram_received = dep_received,
  .error_received = dep_error,
};

static void dep_send(dep *d)
{
  chaos *c = d->a.c;
  int n = 1 + (int)rnd(c, 20), i;
  if (!d->peer || !d->peer->addrlen || c->writing)
    return;
  note(&d->a.h, "%.3f send %d", now(c), n);
  for (i = 0; i < n; i++) {
    size_t len = chance(c, 10) ? 0 : 12 + rnd_size(c, 9000);
    int closing = tapio_transport_is_closing(d->a.t), rc;
    uint32_t seq = d->seq++, len32 = (uint32_t)len;
    if (len) {
      size_t k;
      memcpy(c->scratch, &d->sid, 4);
      memcpy(c->scratch + 4, &seq, 4);
      memcpy(c->scratch + 8, &len32, 4);
      for (k = 12; k < len; k++)
        c->scratch[k] = pat(d->sid, ((uint64_t)seq << 32) | k);
    }
    write_begin(c, "sendto", d);
    rc = tapio_transport_sendto(d->a.t, c->scratch, len,
                                d->a.closed ? NULL : d->peer->addr,
                                d->a.closed ? 0 : d->peer->addrlen);
    write_end(c);
    if (d->a.closed && rc == TAPIO_EINVAL)
      rc = tapio_transport_sendto(d->a.t, c->scratch, len, d->peer->addr,
                                  d->peer->addrlen);
    if (rc != (closing ? TAPIO_ECLOSED : 0))
      BUG(&d->a.h, NULL, "sendto answered %s (closing %d)",
          tapio_errname(rc), closing);
  }
}

void dep_do(actor *a, int what)
{
  dep *d = (dep *)a;
  chaos *c = a->c;
  switch (what) {
  case A_WRITE: case A_WRITELINES: dep_send(d); break;
  case A_CLOSE: case A_ABORT: case A_END:
    note(&d->a.h, "%.3f %s", now(c), what == A_ABORT ? "abort" : "close");
    d->a.closed = d->a.ended = 1;
    c->sync = "close";
    CHECK_OK(what != A_ABORT ? tapio_transport_close(d->a.t)
                          : tapio_transport_abort(d->a.t));
    c->sync = NULL;
    break;
  case A_RETAIN: retain(&d->a); break;
  case A_RELEASE: release(&d->a); break;
  case A_LIMITS:
    if (!c->writing) {
      c->sync = "set_write_buffer_limits";
      c->sync_ep = d;
      CHECK_OK(tapio_transport_set_write_buffer_limits(
          d->a.t, (int64_t)rnd_size(c, 1 << 16), -1));
      c->sync = NULL;
    }
    break;
  default: break;
  }
}

void dep_act(actor *a)
{
  draw(a, 1, dep_do);
}

static void dep_connected(void *ud, int status, tapio_transport *t)
{
  dep *d = ud;
  chaos *c = d->a.c;
  char host[64];
  int port;
  note(&d->a.h, "%.3f completion %s", now(c), tapio_errname(status));
  d->a.pending = 0;
  if (status != 0 || t != d->a.t)
    BUG(&d->a.h, NULL, "datagram endpoint: %s", tapio_errname(status));
  CHECK_OK(tapio_transport_get_sockname(t, NULL, 0, NULL, NULL));
  d->addrlen = sizeof d->addr;
  CHECK_OK(tapio_transport_get_sockname(t, host, sizeof host, &port, NULL));
  CHECK_OK(tapio_addr_parse(host, port, d->addr, &d->addrlen));
  if (!d->peer->a.t && !d->peer->a.pending) { /* the second, connected to us */
    tapio_options *o = new_options(c->loop);
    CHECK_OK(tapio_options_set_str(o, "local_host", "127.0.0.1"));
    CHECK_OK(tapio_options_set_str(o, "remote_host", host));
    CHECK_OK(tapio_options_set_int(o, "remote_port", port));
    d->peer->a.pending = 1;
    CHECK_OK(tapio_create_datagram_endpoint(c->loop, &dep_proto, d->peer, o,
                                            dep_connected, d->peer));
    tapio_options_free(o);
  }
  dep_act(&d->a);
}

void dgram_start(chaos *c)
{
  dep *a, *b;
  tapio_options *o;
  if (c->ndgs + 2 > MAX_DGRAMS || c->next_sid + 2 > MAX_SIDS)
    return;
  a = &c->dgs[c->ndgs++];
  b = &c->dgs[c->ndgs++];
  a->a.c = b->a.c = c;
  a->a.act = b->a.act = dep_act;
  a->peer = b;
  b->peer = a;
  a->sid = c->next_sid++;
  b->sid = c->next_sid++;
  a->a.budget = 5 + (int)rnd(c, 40);
  b->a.budget = 5 + (int)rnd(c, 40);
  snprintf(a->a.h.name, sizeof a->a.h.name, "udp.a#%d(sid %u)",
           c->ndgs - 2, a->sid);
  snprintf(b->a.h.name, sizeof b->a.h.name, "udp.b#%d(sid %u)",
           c->ndgs - 1, b->sid);
  o = new_options(c->loop);
  CHECK_OK(tapio_options_set_str(o, "local_host", "127.0.0.1"));
  a->a.pending = 1;
  CHECK_OK(tapio_create_datagram_endpoint(c->loop, &dep_proto, a, o,
                                          dep_connected, a));
  tapio_options_free(o);
}
