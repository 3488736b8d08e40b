/* What every chaos actor with a transport shares: its history (and the
 * failure report's), the rules of connection_made, connection_lost and
 * pause_writing/resume_writing, retain and release, and how it draws its
 * actions. */
#include "chaos.h"

/* ---- Histories and failing loudly -------------------------------------- */

int trace;

void note(hist *h, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(h->ev[h->n % HIST], sizeof h->ev[0], fmt, ap);
  va_end(ap);
  if (trace)
    printf("%s: %s\n", h->name, h->ev[h->n % HIST]);
  h->n++;
}

void dump(const hist *h)
{
  unsigned i = h->n > HIST ? h->n - HIST : 0;
  if (!h->name[0])
    return;
  fprintf(stderr, "  history of %s (%u events, last %d):\n", h->name, h->n,
          HIST);
  for (; i < h->n; i++)
    fprintf(stderr, "    %u %s\n", i, h->ev[i % HIST]);
}

chaos *current;

double now(chaos *c)
{
  return tapio_loop_time(c->loop) - c->t0;
}

/* ---- What is on the stack ---------------------------------------------- */

/* A write of who's (or a call that may pause its writing) is on the
 * stack: only who's pause_writing may come inside it, and no write may
 * start from there. */
void write_begin(chaos *c, const char *what, void *who)
{
  c->writing = 1;
  c->sync = what;
  c->sync_ep = who;
}

void write_end(chaos *c)
{
  c->sync = NULL;
  c->writing = 0;
}

void check_sync(chaos *c, hist *h, const char *what, void *who)
{
  if (c->sync && !(who == c->sync_ep && strcmp(what, "pause_writing") == 0))
    BUG(h, NULL, "%s called inside %s", what, c->sync);
}

/* ---- Every actor: the rules of connection_made, connection_lost and the
 * pause_writing/resume_writing pairs, whatever the protocol's kind. */

/* Every callback after connection_made: in order, from the loop, for its
 * own t. */
void enter(actor *a, tapio_transport *t, const char *what)
{
  chaos *c = a->c;
  c->n_events++;
  note(&a->h, "%.3f %s", now(c), what);
  check_sync(c, &a->h, what, a);
  if (a->lost)
    BUG(&a->h, NULL, "%s after connection_lost", what);
  if (!a->made)
    BUG(&a->h, NULL, "%s before connection_made", what);
  if (t != a->t)
    BUG(&a->h, NULL, "%s for transport %p, not its own %p", what,
        (void *)t, (void *)a->t);
  if (a->ended && !tapio_transport_is_closing(t))
    BUG(&a->h, NULL, "%s: a transport we closed says it is not closing",
        what);
  a->events++;
}

/* connection_made: once, from the loop; the transport's block is watched
 * from now on, and the actor's heartbeat starts. */
void made(actor *a, tapio_transport *t)
{
  chaos *c = a->c;
  note(&a->h, "%.3f made %p", now(c), (void *)t);
  check_sync(c, &a->h, "connection_made", a);
  if (a->made || !t)
    BUG(&a->h, NULL, "connection_made twice or without a transport");
  a->made = 1;
  a->t = t;
  own(c, &a->h, t, OWN_ACTOR, a, 0);
  beat(c, TG_ACTOR, a);
}

/* connection_lost: once, last; the actor may still act inside it. */
void lost(actor *a, tapio_transport *t, int code, const char *msg)
{
  enter(a, t, code ? tapio_errname(code) : "lost");
  if ((code == 0) != (msg == NULL))
    BUG(&a->h, NULL, "connection_lost code %d with message %s", code,
        msg ? msg : "NULL");
  a->lost = 1;
  a->in_lost = 1;
  a->act(a);
  a->in_lost = 0;
}

static void paused(actor *a, tapio_transport *t, int on)
{
  enter(a, t, on ? "pause_writing" : "resume_writing");
  if (a->paused == on)
    BUG(&a->h, NULL, on ? "pause_writing twice"
                        : "resume_writing without pause_writing");
  a->paused = on;
  a->act(a);
}

void on_pause(void *ud, tapio_transport *t)
{
  paused(ud, t, 1);
}

void on_resume(void *ud, tapio_transport *t)
{
  paused(ud, t, 0);
}

void retain(actor *a)
{
  if (a->lost)
    return;
  note(&a->h, "%.3f retain", now(a->c));
  CHECK_OK(tapio_transport_retain(a->t));
  a->refs++;
}

/* Our last release frees an ended transport at once; inside its
 * connection_lost, never. */
void release(actor *a)
{
  if (!a->refs)
    return;
  note(&a->h, "%.3f release", now(a->c));
  a->refs--;
  a->c->sync = "tapio_transport_release";
  tapio_transport_release(a->t);
  a->c->sync = NULL;
  if (a->lost && !a->in_lost && !a->refs && !a->freed)
    BUG(&a->h, NULL, "the last release of an ended transport kept it");
}

/* ---- Drawing what to do ------------------------------------------------ */

/* The actions every actor has; 1 if what was one of them. */
static int common(actor *a, int what)
{
  switch (what) {
  case A_STOP: tapio_loop_stop(a->c->loop); return 1;
  case A_TIMER: timer_start(a->c, TG_ACTOR, a); return 1;
  case A_SIGNAL: raise_signal(a->c); return 1;
  default: return 0;
  }
}

/* Inside connection_lost, what may still be done. */
static int after_lost(int what)
{
  return what == A_RELEASE || what == A_RETAIN || what == A_TIMER ||
         what == A_STOP || what == A_SRV_RELEASE;
}

/* n draws of what a does, each done by act_one (at most three deep: a
 * callback inside a call); past its budget of events, its end. */
void draw(actor *a, int n, void (*act_one)(actor *, int))
{
  chaos *c = a->c;
  if (c->depth <= 2 && a->t) {
    c->depth++;
    while (n-- > 0) {
      int what = pick(c);
      if (what >= 0 && (!a->lost || after_lost(what)) && !common(a, what))
        act_one(a, what);
    }
    c->depth--;
  }
  if (a->events >= a->budget && !a->closed && !a->lost)
    act_one(a, A_END);
}
