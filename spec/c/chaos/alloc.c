/* The chaos loop's allocator: it knows every live block of the loop, so
 * the test sees when a transport, a server or a call handle is freed, and
 * checks that it goes only once we and its callbacks let go. */
#include "chaos.h"

static size_t ahash(const void *p)
{
  return (size_t)(((uintptr_t)p >> 4) * 2654435761u) % ABUCKETS;
}

static anode **afind(chaos *c, const void *p)
{
  anode **n = &c->live[ahash(p)];
  while (*n && (*n)->p != p)
    n = &(*n)->next;
  return n;
}

/* The loop freed a handle of ours: only once we and its callbacks let go. */
static void owner_freed(chaos *c, anode *n)
{
  c->n_frees++;
  switch (n->own) {
  case OWN_ACTOR: {
    actor *a = n->owner;
    note(&a->h, "freed");
    if (!a->lost || a->in_lost || a->refs || a->freed)
      BUG(&a->h, NULL, "transport freed (lost %d, inside lost %d, refs %d, "
          "freed %d)", a->lost, a->in_lost, a->refs, a->freed);
    a->freed = 1;
    break;
  }
  case OWN_PIPE: {
    proc *p = n->owner;
    note(&p->a.h, "pipe %d freed", n->fd);
    if (!p->pipe_lost[n->fd] || p->in_pipe_lost == n->fd + 1 ||
        p->pref[n->fd] || p->pfreed[n->fd])
      BUG(&p->a.h, NULL, "pipe %d freed while retained or before its end",
          n->fd);
    p->pfreed[n->fd] = 1;
    break;
  }
  case OWN_SRV: {
    srvact *sa = n->owner;
    note(&sa->h, "freed");
    if (!sa->released || sa->closed_cb != 1 || sa->freed)
      BUG(&sa->h, NULL, "server freed (released %d, wait_closed %d)",
          sa->released, sa->closed_cb);
    sa->freed = 1;
    break;
  }
  case OWN_TMR: {
    tmr *tm = n->owner;
    if (!tm->released || !(tm->fired || tm->cancelled) || tm->freed)
      BUG(&c->g, NULL, "timer handle %d freed (released %d, ran %d, "
          "cancelled %d)", (int)(tm - c->timers), tm->released, tm->fired,
          tm->cancelled);
    tm->freed = 1;
    break;
  }
  default: break;
  }
}

/* A block the loop gives back: live, and of the size it was given. */
static void forget(chaos *c, void *ptr, size_t size)
{
  anode **at = afind(c, ptr), *n = *at;
  if (!n)
    BUG(NULL, NULL, "the loop freed %p, which is not a live block of it "
        "(freed twice?)", ptr);
  if (n->size != size)
    BUG(NULL, NULL, "the loop freed %p as %zu bytes; it has %zu", ptr, size,
        n->size);
  *at = n->next;
  c->nlive--;
  if (n->own)
    owner_freed(c, n);
  free(n);
}

static void remember(chaos *c, void *p, size_t size)
{
  anode *n = calloc(1, sizeof *n), **at = &c->live[ahash(p)];
  CHECK(n != NULL);
  n->p = p;
  n->size = size;
  n->next = *at;
  *at = n;
  c->nlive++;
}

/* The loop's allocator (tapio_alloc_fn): malloc's, keeping count. */
void *track_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
  chaos *c = ud;
  void *p;
  if (nsize == 0) {
    if (ptr)
      forget(c, ptr, osize);
    free(ptr);
    return NULL;
  }
  if (ptr)
    forget(c, ptr, osize);
  if ((p = realloc(ptr, nsize)) == NULL) {
    if (ptr)
      remember(c, ptr, osize); /* still the loop's */
    return NULL;
  }
  remember(c, p, nsize);
  return p;
}

/* Marks p (a handle the ABI gave) as owner's, so that its free is seen. */
void own(chaos *c, hist *h, void *p, int kind, void *owner, int fd)
{
  anode *n = *afind(c, p);
  if (!n)
    BUG(h, NULL, "handle %p is not the start of a live block of the loop",
        p);
  n->own = kind;
  n->owner = owner;
  n->fd = fd;
}

void free_blocks(chaos *c)
{
  size_t i;
  for (i = 0; i < ABUCKETS; i++)
    while (c->live[i]) {
      anode *n = c->live[i];
      c->live[i] = n->next;
      free(n);
    }
}
