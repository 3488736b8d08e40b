/* Timers (an actor's later action, its heartbeat, a client's connect, a
 * global action) and signal handlers. */
#include "chaos.h"

static void global_act(chaos *c);

static void timer_fire(void *ud)
{
  tmr *tm = ud;
  chaos *c = tm->c;
  check_sync(c, &c->g, "a timer", NULL);
  if (tm->fired++ || tm->cancelled)
    BUG(&c->g, NULL, "timer %d ran twice or after cancel",
        (int)(tm - c->timers));
  switch (tm->target_kind) {
  case TG_ACTOR: {
    actor *a = tm->target;
    note(&a->h, "%.3f timer", now(c));
    if (a->t && !a->lost) {
      a->events++;
      a->act(a);
      if (tm->beat && !a->lost && !a->closed)
        beat(c, TG_ACTOR, a);
    }
    break;
  }
  case TG_CLIENT: client_start(c); break;
  default: global_act(c); break;
  }
  if (tm->keep && !tm->released && chance(c, 50)) {
    tm->released = 1; /* from inside its own fn: lives until it returns */
    tapio_handle_release(tm->h);
    if (tm->freed)
      BUG(&c->g, NULL, "a handle freed inside its own fn");
  }
}

static tmr *timer_start_in(chaos *c, int kind, void *target, double delay)
{
  tmr *tm;
  if (c->ntimers == MAX_TIMERS || c->aborting)
    return NULL;
  tm = &c->timers[c->ntimers++];
  tm->c = c;
  tm->target_kind = kind;
  tm->target = target;
  tm->keep = chance(c, 50);
  CHECK_OK(tapio_call_later(c->loop, delay, timer_fire, tm,
                            tm->keep ? &tm->h : NULL));
  if (tm->keep)
    own(c, &c->g, tm->h, OWN_TMR, tm, 0);
  if (tm->keep && chance(c, 10)) {
    tm->cancelled = 1;
    tapio_handle_cancel(tm->h);
    if (!tapio_handle_cancelled(tm->h))
      BUG(&c->g, NULL, "a cancelled handle says it is not");
  }
  return tm;
}

void timer_start(chaos *c, int kind, void *target)
{
  timer_start_in(c, kind, target, rnd(c, 300) / 1000.0 * slow());
}

/* An actor's heartbeat: it acts every few milliseconds while it lives,
 * so that one that waits on nothing still spends its budget. */
void beat(chaos *c, int kind, void *target)
{
  tmr *tm = timer_start_in(c, kind, target, (5 + rnd(c, 45)) / 1000.0);
  if (tm)
    tm->beat = 1;
}

static int signo(int i)
{
  return i ? SIGUSR2 : SIGUSR1;
}

static void sig_fire(void *ud)
{
  chaos *c = ud;
  note(&c->g, "%.3f signal", now(c));
  check_sync(c, &c->g, "a signal handler", NULL);
  global_act(c);
}

void raise_signal(chaos *c)
{
  int i = (int)rnd(c, 2);
  if (!c->sig_on[i])
    return;
  note(&c->g, "%.3f raise %d", now(c), i);
  CHECK(kill(getpid(), signo(i)) == 0);
}

/* Something to someone: a signal's or a global timer's chaos. */
static void global_act(chaos *c)
{
  unsigned r = rnd(c, 10);
  if (r < 5) {
    ep *e = &c->eps[rnd(c, MAX_EPS)];
    if (e->used && e->a.t && !e->a.lost)
      ep_act(&e->a);
  } else if (r < 7 && c->ndgs) {
    dep *d = &c->dgs[rnd(c, (unsigned)c->ndgs)];
    if (d->a.t && !d->a.lost)
      dep_act(&d->a);
  } else if (r < 8 && c->nprocs) {
    proc *p = &c->procs[rnd(c, (unsigned)c->nprocs)];
    if (p->a.t && !p->a.lost)
      proc_act(&p->a);
  } else if (r < 9 && !c->winding) {
    client_start(c);
  } else {
    int i = (int)rnd(c, 2);
    if (c->sig_on[i] && chance(c, 30)) {
      note(&c->g, "%.3f remove signal %d", now(c), i);
      signal_off(c, i);
    }
  }
}

/* Signal handler i (0: SIGUSR1, 1: SIGUSR2) on or off. A virtual clock
 * refuses it (a signal comes on real time): that round has none. */
void signal_on(chaos *c, int i)
{
  if (c->virt) {
    CHECK_ERR(tapio_add_signal_handler(c->loop, signo(i), sig_fire, c),
              TAPIO_EVIRTUAL);
    return;
  }
  c->sig_on[i] = 1;
  CHECK_OK(tapio_add_signal_handler(c->loop, signo(i), sig_fire, c));
}

void signal_off(chaos *c, int i)
{
  c->sig_on[i] = 0;
  CHECK_EQ(tapio_remove_signal_handler(c->loop, signo(i)), 1);
}
