/* What must hold as a round ends: every actor at its end in time, closes
 * that end, an orderly end that delivers every byte, and every handle
 * freed once our last references go. */
#include "chaos.h"

/* An actor at its end: its create call completed, and it was never made
 * or its connection_lost came (a server: released and wait_closed). */
static int ended(const actor *a)
{
  return !a->c || (!a->pending && (!a->made || a->lost));
}

/* How many actors have not reached their end (their histories dumped
 * when asked). */
int unfinished(chaos *c, int show)
{
  int i, n = 0;
  const actor *a;
  for (i = 0; i < MAX_EPS + MAX_DGRAMS + MAX_PROCS; i++) {
    a = i < MAX_EPS ? &c->eps[i].a
        : i < MAX_EPS + MAX_DGRAMS ? &c->dgs[i - MAX_EPS].a
                                   : &c->procs[i - MAX_EPS - MAX_DGRAMS].a;
    if (!ended(a) && ++n && show)
      dump(&a->h);
  }
  for (i = 0; i < c->nsrvs; i++)
    if ((!c->srvs[i].released || !c->srvs[i].closed_cb) && ++n && show)
      dump(&c->srvs[i].h);
  return n;
}

int round_over(chaos *c)
{
  int i;
  for (i = 0; i < c->ntimers; i++)
    if (!c->timers[i].fired && !c->timers[i].cancelled)
      return 0;
  return !unfinished(c, 0);
}

/* A stream end we closed long ago with nothing left to flush must have
 * ended: what may keep a close waiting is bytes to send (a peer that
 * closed too reads no more) or a fault, and TLS's close_notify exchange
 * has its timeout (0.5 s). Seen so at two ticks running (its
 * connection_lost may be on its way at the first): a failure. */
void check_closes(chaos *c)
{
  int i;
  for (i = 0; i < MAX_EPS; i++) {
    ep *e = &c->eps[i];
    int stuck = e->used && e->a.made && !e->a.lost && e->a.closed &&
                !e->faulted && now(c) - e->closed_at > 0.8 * slow() &&
                tapio_transport_get_write_buffer_size(e->a.t) == 0;
    if (stuck && e->stuck)
      BUG(&e->a.h, NULL, "closed %.2f s ago with nothing to flush, and no "
          "connection_lost", now(c) - e->closed_at);
    e->stuck = stuck;
  }
}

/* The clients that got all their peer wrote: exactly all of it. */
void check_exact(chaos *c)
{
  int i;
  for (i = 0; i < MAX_EPS; i++) {
    ep *e = &c->eps[i], *w = e->used ? writer_of(e) : NULL;
    if (!e->eof_open || e->nhdr < 4 || !w || e->faulted)
      continue;
    if (w->dropped || w->lost_code || !w->a.lost || w->faulted)
      continue;
    c->n_exact++;
    if (e->received != w->written)
      BUG(&e->a.h, &w->a.h, "an orderly end after %llu bytes of %llu written",
          (unsigned long long)e->received,
          (unsigned long long)w->written);
  }
  for (i = 0; i < c->nprocs; i++) {
    proc *p = &c->procs[i];
    if (p->dropped || p->killed || !p->a.closed || p->pipe_code[0] ||
        p->pipe_code[1] || p->returncode != 0)
      continue;
    c->n_exact++;
    if (p->received != p->written)
      BUG(&p->a.h, NULL, "cat gave back %llu bytes of %llu",
          (unsigned long long)p->received, (unsigned long long)p->written);
  }
}

/* After the round: our last references go, each frees at once. */
void release_all(chaos *c)
{
  int i, fd;
  for (i = 0; i < MAX_EPS; i++)
    while (c->eps[i].used && c->eps[i].a.refs)
      release(&c->eps[i].a);
  for (i = 0; i < c->ndgs; i++)
    while (c->dgs[i].a.refs)
      release(&c->dgs[i].a);
  for (i = 0; i < c->nprocs; i++)
    for (fd = 0; fd < 3; fd++)
      proc_pipe_ref(&c->procs[i], fd, 0);
  for (i = 0; i < c->ntimers; i++) {
    tmr *tm = &c->timers[i];
    if (tm->keep && !tm->released) {
      tm->released = 1;
      tapio_handle_release(tm->h);
      if (!tm->freed)
        BUG(&c->g, NULL, "the release of a spent handle kept it");
    }
  }
}

void check_all_freed(chaos *c)
{
  int i;
  for (i = 0; i < MAX_EPS; i++)
    if (c->eps[i].used && c->eps[i].a.made && !c->eps[i].a.freed)
      BUG(&c->eps[i].a.h, NULL, "a transport never freed");
  for (i = 0; i < c->nsrvs; i++)
    if (!c->srvs[i].freed)
      BUG(&c->srvs[i].h, NULL, "a server never freed");
  for (i = 0; i < c->ndgs; i++)
    if (c->dgs[i].a.made && !c->dgs[i].a.freed)
      BUG(&c->dgs[i].a.h, NULL, "an endpoint never freed");
  for (i = 0; i < c->nprocs; i++)
    if (c->procs[i].a.made && !c->procs[i].a.freed)
      BUG(&c->procs[i].a.h, NULL, "a subprocess never freed");
  if (tapio_loop_transport_count(c->loop) || tapio_loop_server_count(c->loop))
    BUG(NULL, NULL, "%zu transports and %zu servers left",
        tapio_loop_transport_count(c->loop),
        tapio_loop_server_count(c->loop));
}
