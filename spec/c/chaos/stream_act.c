/* What a stream end does when it draws: write, writelines, write_eof,
 * pause and resume reading, close, abort, fail, retain and release, its
 * server's calls, STARTTLS, a new protocol table, new watermarks, a
 * testing fault. Each checks what the call answered. */
#include "chaos.h"

static int may_write(ep *e)
{
  return e->writer && e->hdr_sent && e->up != 1 && !e->a.c->writing;
}

/* What a write must answer, knowing what we did to t. */
static void check_write_rc(ep *e, int rc, int was_closing)
{
  int want = e->wrote_eof ? TAPIO_ESHUTDOWN /* asyncio's order */
             : was_closing ? TAPIO_ECLOSED : 0;
  if (rc != want)
    BUG(&e->a.h, NULL, "write answered %s, not %s (closing %d, eof %d)",
        tapio_errname(rc), tapio_errname(want), was_closing, e->wrote_eof);
}

static void ep_write(ep *e, int lines)
{
  chaos *c = e->a.c;
  size_t n = rnd_size(c, c->max_write);
  int was_closing = tapio_transport_is_closing(e->a.t), rc;
  if (!may_write(e))
    return;
  pat_fill(c->scratch, n, e->sid, e->written);
  note(&e->a.h, "%.3f %s %zu", now(c), lines ? "writelines" : "write", n);
  e->written += n; /* before: the peer cannot read before it returns */
  if (lines) {
    const void *bufs[4];
    size_t lens[4], off = 0, k = 1 + rnd(c, 4), i;
    for (i = 0; i < k; i++) {
      lens[i] = i + 1 < k ? rnd(c, (unsigned)(n - off + 1)) : n - off;
      bufs[i] = c->scratch + off;
      off += lens[i];
    }
    write_begin(c, "writelines", e);
    rc = tapio_transport_writelines(e->a.t, bufs, lens, k);
    write_end(c);
  } else {
    rc = ep_send(e, c->scratch, n);
  }
  if (rc != 0 || n == 0)
    e->written -= n;
  if (n)
    check_write_rc(e, rc, was_closing);
}

static void ep_write_eof(ep *e)
{
  int can = tapio_transport_can_write_eof(e->a.t), rc;
  int closing = tapio_transport_is_closing(e->a.t);
  if (!e->writer || e->up == 1 || e->a.c->writing)
    return;
  note(&e->a.h, "%.3f write_eof (can %d)", now(e->a.c), can);
  e->a.c->sync = "write_eof";
  rc = tapio_transport_write_eof(e->a.t);
  e->a.c->sync = NULL;
  if (rc != (can ? 0 : TAPIO_ENOTSUP))
    BUG(&e->a.h, NULL, "write_eof answered %s (can_write_eof %d)",
        tapio_errname(rc), can);
  if (can && e->kind == K_PIPE)
    e->a.closed = 1; /* a write pipe's write_eof is close */
  else if (can && !closing)
    e->wrote_eof = 1; /* on a closing one it does nothing */
}

void ep_reading(ep *e, int on)
{
  int rc;
  note(&e->a.h, "%.3f %s_reading", now(e->a.c), on ? "resume" : "pause");
  e->a.c->sync = on ? "resume_reading" : "pause_reading";
  rc = on ? tapio_transport_resume_reading(e->a.t)
          : tapio_transport_pause_reading(e->a.t);
  e->a.c->sync = NULL;
  if (rc != (e->reader ? 0 : TAPIO_ENOTSUP))
    BUG(&e->a.h, NULL, "%s_reading answered %s", on ? "resume" : "pause",
        tapio_errname(rc));
  if (e->reader)
    e->rpaused = !on;
  if (!on && tapio_transport_is_reading(e->a.t))
    BUG(&e->a.h, NULL, "is_reading answers 1 after pause_reading");
}

/* close (0), abort (1) or fail (2) */
void ep_end(ep *e, int how)
{
  static const char *const names[] = { "close", "abort", "fail" };
  note(&e->a.h, "%.3f %s", now(e->a.c), names[how]);
  closing(e, how != 0);
  e->a.c->sync = names[how];
  if (how == 0)
    CHECK_OK(tapio_transport_close(e->a.t));
  else if (how == 1)
    CHECK_OK(tapio_transport_abort(e->a.t));
  else
    CHECK_OK(tapio_transport_fail(e->a.t, TAPIO_ECONNABORTED, "chaos"));
  e->a.c->sync = NULL;
}

static void ep_set_proto(ep *e)
{
  int table = (int)rnd(e->a.c, 3);
  note(&e->a.h, "%.3f set_protocol %d", now(e->a.c), table);
  CHECK_OK(tapio_transport_set_protocol(e->a.t, tables[table], e));
  e->table = table;
}

static void ep_limits(ep *e)
{
  int64_t high = (int64_t)rnd_size(e->a.c, 1 << 20);
  int64_t low = chance(e->a.c, 50) ? -1 : (int64_t)rnd(e->a.c,
                                                     (unsigned)high + 1);
  int rc;
  if (e->a.c->writing)
    return;
  note(&e->a.h, "%.3f limits %lld %lld", now(e->a.c), (long long)high,
       (long long)low);
  e->a.c->sync = "set_write_buffer_limits";
  e->a.c->sync_ep = e;
  rc = tapio_transport_set_write_buffer_limits(e->a.t, high, low);
  e->a.c->sync = NULL;
  if (rc != (e->writer ? 0 : TAPIO_ENOTSUP))
    BUG(&e->a.h, NULL, "set_write_buffer_limits answered %s",
        tapio_errname(rc));
}

void ep_fault(ep *e, unsigned k)
{
  chaos *c = e->a.c;
  int rc;
  note(&e->a.h, "%.3f fault %u", now(c), k);
  e->faulted = 1;
  c->sync = "a testing fault";
  if (k < 5)
    rc = tapio_fault_set(e->a.t, (int)k + 1, rnd_size(c, 1 << 18),
                         TAPIO_ECONNRESET);
  else if (k < 7)
    rc = tapio_fault_drip(e->a.t, 1 + rnd_size(c, 1 << 14),
                          rnd(c, 20) / 1000.0);
  else
    rc = tapio_fault_clear(e->a.t);
  c->sync = NULL;
  if (rc != 0 && !(rc == TAPIO_ECLOSED && tapio_transport_is_closing(e->a.t)))
    BUG(&e->a.h, NULL, "fault %u answered %s", k, tapio_errname(rc));
}

static void send_marker(ep *e)
{
  unsigned char m = MARKER;
  if (e->server_side || e->kind == K_PIPE || e->up || !may_write(e) ||
      e->wrote_eof || tapio_transport_is_closing(e->a.t))
    return;
  note(&e->a.h, "%.3f STARTTLS", now(e->a.c));
  if (ep_send(e, &m, 1) == 0)
    e->up = 1;
}

static srvact *some_server(ep *e)
{
  chaos *c = e->a.c;
  return e->srv ? e->srv : &c->srvs[rnd(c, (unsigned)c->nsrvs)];
}

static void ep_do(actor *a, int what)
{
  ep *e = (ep *)a;
  chaos *c = a->c;
  switch (what) {
  case A_WRITE: ep_write(e, 0); break;
  case A_WRITELINES: ep_write(e, 1); break;
  case A_WRITE_EOF: ep_write_eof(e); break;
  case A_PAUSE_R: ep_reading(e, 0); break;
  case A_RESUME_R: ep_reading(e, 1); break;
  case A_CLOSE: ep_end(e, 0); break;
  case A_ABORT: ep_end(e, 1); break;
  case A_FAIL: ep_end(e, 2); break;
  case A_RETAIN: retain(&e->a); break;
  case A_RELEASE: release(&e->a); break;
  case A_SRV_CLOSE: srv_close(some_server(e)); break;
  case A_SRV_RELEASE: srv_release(some_server(e)); break;
  case A_CLOSE_CLIENTS: srv_clients(some_server(e), 0); break;
  case A_ABORT_CLIENTS: srv_clients(some_server(e), 1); break;
  case A_STARTTLS: send_marker(e); break;
  case A_SET_PROTO: ep_set_proto(e); break;
  case A_LIMITS: ep_limits(e); break;
  case A_KILL:
    if (c->nprocs)
      proc_kill(&c->procs[rnd(c, (unsigned)c->nprocs)], 0);
    break;
  case A_FAULT: ep_fault(e, rnd(c, FAULT_CLEAR + 1)); break;
  case A_END: ep_end(e, chance(c, 10)); break;
  default: break;
  }
}

/* One or two actions; the end closes (or now and then aborts). */
void ep_act(actor *a)
{
  draw(a, 1 + chance(a->c, 30), ep_do);
}
