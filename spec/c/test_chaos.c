/* A seeded chaos test of the ABI's lifetime and callback rules.
 *
 * Each round is one loop full of actors at once: TCP, Unix and TLS
 * servers with their clients, socketpairs, pipes, UDP endpoint pairs,
 * `sh -c cat` children with piped stdio, timers and signal handlers.
 * Every callback draws from the round's PRNG what to do next (write 0 to
 * 1 MiB, writelines, write_eof, pause/resume reading, close, abort, fail,
 * retain/release, close or release a server, close_clients, abort_clients,
 * STARTTLS in the middle, a new protocol table, new watermarks, a testing
 * fault, stop the loop, a timer that does one of these later, kill a
 * child, raise a signal) and checks DESIGN.md's rules on every event:
 * - connection_made at most once and from the loop, then at most one
 *   connection_lost, nothing after it; eof_received at most once, before
 *   connection_lost, and no data after it nor while reading is paused;
 * - pause_writing/resume_writing alternate, starting with pause; no
 *   callback inside a transport method but pause_writing inside a write;
 * - the bytes a peer receives are a prefix of what its peer wrote (each
 *   stream starts with its id, then bytes that depend on their offset),
 *   all of them when the writer ended cleanly and the reader saw the end;
 *   datagrams arrive whole;
 * - every handle is freed exactly once, never while one of its callbacks
 *   runs or while we hold it: the loop's allocator is the test's, which
 *   knows every live block (a free of an unknown block fails), and each
 *   handle is the start of its block, so the test sees when a transport,
 *   a server or a scheduled call goes; nothing is left when the loop is
 *   freed;
 * - the loop goes on: every actor reaches its end before a deadline in
 *   loop time (after a wind-down that closes, then aborts, what is left).
 *
 * Each seed runs twice: on a real loop, and on a virtual clock (the
 * testing kit's virtual network, with memory pairs instead of pipes,
 * socketpairs and children), which replays exactly.
 *
 * Seeds: a fixed list by default (three under valgrind);
 * TAPIO_CHAOS_SEED=n replays one, TAPIO_CHAOS_ROUNDS=n runs n seeds (from
 * TAPIO_CHAOS_SEED, or the list's first, on), TAPIO_CHAOS_VERBOSE=1 prints
 * what each round did (=2: and every event of every actor as it comes). A
 * failure prints the seed and the history of the actors concerned. On a
 * real loop, replay is as exact as the OS's timing lets it be: the draws
 * follow the order of events. */
#include "tls.h"

#include <stdarg.h>

/* ---- Sizes and times --------------------------------------------------- */

enum {
  MAX_EPS = 80,      /* stream ends (clients, accepted, pipes) a round */
  MAX_SRVS = 4,
  MAX_DGRAMS = 8,
  MAX_PROCS = 3,
  MAX_TIMERS = 3000,
  MAX_SIDS = 256,    /* byte streams a round */
  HIST = 48,         /* events kept per actor */
  MARKER = 0xff      /* STARTTLS: never a byte of a stream's pattern */
};

static const uint64_t default_seeds[] = {
  1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12
};

static double slow(void)
{
  return under_valgrind() ? 4.0 : 1.0;
}

/* ---- A round's state --------------------------------------------------- */

typedef struct hist {
  char name[32];
  char ev[HIST][56];
  unsigned n;
} hist;

typedef struct chaos chaos;
typedef struct srvact srvact;

enum { K_TCP, K_UNIX, K_TLS, K_PIPE, K_MEM };
static const char *const kind_name[] = {
  "tcp", "unix", "tls", "pipe", "mem"
};

/* What every actor with a transport has: its history, its transport,
 * where it is in its life, and how it draws what to do. */
typedef struct actor {
  hist h;
  chaos *c;
  tapio_transport *t;
  void (*act)(struct actor *a);
  int pending, made, lost, in_lost, paused, freed, refs, events, budget;
  int closed; /* we closed it (a child: its stdin) */
  int ended;  /* we called close, abort or fail on it */
} actor;

/* One stream end: a client, an accepted connection, a pipe's end. */
typedef struct ep {
  actor a; /* first: an ep is its actor */
  int used, kind, server_side, reader, writer;
  srvact *srv;
  int eof, lost_code, table;
  int rpaused; /* we paused reading */
  int faulted; /* a testing fault: its end may come early */
  double closed_at; /* loop time of our first close */
  int stuck;        /* closed long ago, nothing to flush, not ended */
  /* what it writes */
  uint32_t sid;
  uint64_t written;
  int hdr_sent, wrote_eof, dropped;
  /* what it reads */
  unsigned char hdr[4];
  int nhdr, eof_open;
  uint32_t in_sid;
  uint64_t received;
  /* STARTTLS: 1 marker sent (client), 2 TLS started, 3 done, 8 failed,
   * 9 refused (server could not answer) */
  int up;
  char *buf;
  size_t buflen;
} ep;

struct srvact {
  hist h;
  chaos *c;
  int kind, port;
  tapio_server *s;
  int created, closed, released, closed_cb, freed;
  char path[96];
};

/* A UDP endpoint of a pair. */
typedef struct dep {
  actor a;
  struct dep *peer;
  uint32_t sid, seq;
  unsigned char addr[TAPIO_ADDR_MAX];
  size_t addrlen;
} dep;

/* A `sh -c cat` child. */
typedef struct proc {
  actor a;
  int exited;
  int pipe_lost[3], pipe_code[3], in_pipe_lost;
  tapio_transport *pref[3]; /* pipe transports we retained */
  int pfreed[3];
  int killed, dropped, returncode, exit_known;
  uint32_t sid;
  uint64_t written, received;
} proc;

enum { TG_ACTOR, TG_GLOBAL, TG_CLIENT };

typedef struct tmr {
  chaos *c;
  int target_kind, beat; /* beat: the actor's own, again while it lives */
  void *target;
  tapio_handle *h;
  int keep, fired, cancelled, released, freed;
} tmr;

enum { OWN_NONE, OWN_ACTOR, OWN_SRV, OWN_PIPE, OWN_TMR };

typedef struct anode {
  struct anode *next;
  void *p;
  size_t size;
  int own;
  void *owner;
  int fd; /* OWN_PIPE: which pipe of the proc */
} anode;

enum { ABUCKETS = 4096 };

struct chaos {
  uint64_t seed, rng;
  int virt; /* a virtual clock: the virtual network, memory pairs */
  tapio_loop *loop;
  anode *live[ABUCKETS];
  size_t nlive;
  double t0, wind, abort_at, deadline;
  int winding, aborting, done, depth, writing;
  const char *sync; /* a transport method on the stack */
  void *sync_ep;    /* whose pause_writing may come inside it */
  ep eps[MAX_EPS];
  srvact srvs[MAX_SRVS];
  int nsrvs;
  dep dgs[MAX_DGRAMS];
  int ndgs;
  proc procs[MAX_PROCS];
  int nprocs;
  tmr timers[MAX_TIMERS];
  int ntimers;
  ep *sids[MAX_SIDS];
  uint32_t next_sid;
  int sig_on[2];
  char dir[64];
  tapio_options *cli_tls, *srv_tls, *up_cli, *up_srv, *unix_up_cli;
  unsigned char *scratch;
  size_t max_write;
  hist g; /* the round's own events */
  /* what the round did, for TAPIO_CHAOS_VERBOSE */
  unsigned long n_events, n_exact, n_upgrades, n_exceptions, n_frees;
  uint64_t n_bytes;
};

static tapio_tls_context *server_tls, *client_tls;

/* ---- PRNG and patterns ------------------------------------------------- */

static uint64_t splitmix(uint64_t *s)
{
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static unsigned rnd(chaos *c, unsigned n)
{
  return n ? (unsigned)(splitmix(&c->rng) % n) : 0;
}

static int chance(chaos *c, unsigned pct)
{
  return rnd(c, 100) < pct;
}

/* Mostly small, sometimes up to max: a size of 0 to 2^k - 1 bytes. */
static size_t rnd_size(chaos *c, size_t max)
{
  unsigned bits = rnd(c, 21);
  size_t n = (size_t)(splitmix(&c->rng) & ((1ull << bits) - 1));
  return n > max ? max : n;
}

/* Byte o of stream sid: never MARKER. */
static unsigned char pat(uint32_t sid, uint64_t o)
{
  uint64_t z = ((uint64_t)sid << 44) ^ o;
  z *= 0x9E3779B97F4A7C15ull;
  z ^= z >> 29;
  z *= 0xBF58476D1CE4E5B9ull;
  z ^= z >> 32;
  return (unsigned char)(z % 255);
}

static void pat_fill(unsigned char *b, size_t n, uint32_t sid, uint64_t o)
{
  size_t i;
  for (i = 0; i < n; i++)
    b[i] = pat(sid, o + i);
}

/* ---- Histories and failing loudly -------------------------------------- */

static int trace; /* TAPIO_CHAOS_VERBOSE=2: every event, as it is noted */

static void note(hist *h, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void note(hist *h, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(h->ev[h->n % HIST], sizeof h->ev[0], fmt, ap);
  va_end(ap);
  if (trace)
    printf("%s: %s\n", h->name, h->ev[h->n % HIST]);
  h->n++;
}

static void dump(const hist *h)
{
  unsigned i = h->n > HIST ? h->n - HIST : 0;
  if (!h->name[0])
    return;
  fprintf(stderr, "  history of %s (%u events, last %d):\n", h->name, h->n,
          HIST);
  for (; i < h->n; i++)
    fprintf(stderr, "    %u %s\n", i, h->ev[i % HIST]);
}

static chaos *current; /* the round that runs, for the failure report */

/* Fails the test with the seed, the message and the histories of a and b
 * (either may be NULL). */
#define BUG(a, b, ...)                                                       \
  do {                                                                       \
    fprintf(stderr, "chaos: seed %llu%s (replay: TAPIO_CHAOS_SEED=%llu): ",  \
            (unsigned long long)current->seed,                              \
            current->virt ? ", virtual" : "",                               \
            (unsigned long long)current->seed);                             \
    fprintf(stderr, __VA_ARGS__);                                            \
    fputc('\n', stderr);                                                     \
    if ((a) != NULL)                                                         \
      dump(a);                                                               \
    if ((b) != NULL)                                                         \
      dump(b);                                                               \
    dump(&current->g);                                                       \
    FAIL("chaos invariant broken (seed %llu)",                               \
         (unsigned long long)current->seed);                                \
  } while (0)

static double now(chaos *c)
{
  return tapio_loop_time(c->loop) - c->t0;
}

/* ---- The allocator: every live block of the loop ----------------------- */

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

static void owner_freed(chaos *c, anode *n);

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
static void *track_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
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
static void own(chaos *c, hist *h, void *p, int kind, void *owner, int fd)
{
  anode *n = *afind(c, p);
  if (!n)
    BUG(h, NULL, "handle %p is not the start of a live block of the loop",
        p);
  n->own = kind;
  n->owner = owner;
  n->fd = fd;
}

static void ep_act(actor *a);
static void beat(chaos *c, int kind, void *target);

static void check_sync(chaos *c, hist *h, const char *what, void *who)
{
  if (c->sync && !(who == c->sync_ep && strcmp(what, "pause_writing") == 0))
    BUG(h, NULL, "%s called inside %s", what, c->sync);
}

/* ---- Every actor: the rules of connection_made, connection_lost and the
 * pause_writing/resume_writing pairs, whatever the protocol's kind. */

/* Every callback after connection_made: in order, from the loop, for its
 * own t. */
static void enter(actor *a, tapio_transport *t, const char *what)
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
static void made(actor *a, tapio_transport *t)
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
static void lost(actor *a, tapio_transport *t, int code, const char *msg)
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

static void on_pause(void *ud, tapio_transport *t)
{
  paused(ud, t, 1);
}

static void on_resume(void *ud, tapio_transport *t)
{
  paused(ud, t, 0);
}

static void retain(actor *a)
{
  if (a->lost)
    return;
  note(&a->h, "%.3f retain", now(a->c));
  CHECK_OK(tapio_transport_retain(a->t));
  a->refs++;
}

/* Our last release frees an ended transport at once; inside its
 * connection_lost, never. */
static void release(actor *a)
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

/* ---- Stream ends: the checks ------------------------------------------- */

static ep *writer_of(ep *e)
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

static void marker_seen(ep *e, const unsigned char *rest, size_t n);

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
static const tapio_protocol *const tables[] = {
  &ep_proto, &ep_bproto, &ep_noeof
};

/* One write of e's. Its pause_writing may act, but not write: nothing may
 * come between these bytes and what the caller does next. */
static int ep_send(ep *e, const void *p, size_t n)
{
  chaos *c = e->a.c;
  int rc;
  c->writing = 1;
  c->sync = "write";
  c->sync_ep = e;
  rc = tapio_transport_write(e->a.t, p, n);
  c->sync = NULL;
  c->writing = 0;
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

static ep *ep_new(chaos *c, int kind, int server_side, int reader,
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

static void ep_connected(void *ud, int status, tapio_transport *t)
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
static void closing(ep *e, int abort)
{
  if (!e->a.closed)
    e->closed_at = now(e->a.c);
  e->a.closed = e->a.ended = 1;
  e->dropped |= abort || e->up == 2;
}

/* ---- Servers ----------------------------------------------------------- */

static int chaos_factory(void *ud, tapio_server *s,
                         const tapio_protocol **proto, void **proto_ud)
{
  srvact *sa = ud;
  ep *e;
  note(&sa->h, "%.3f factory", now(sa->c));
  check_sync(sa->c, &sa->h, "the protocol factory", NULL);
  if (s != sa->s)
    BUG(&sa->h, NULL, "factory for server %p, not %p", (void *)s,
        (void *)sa->s);
  if (sa->released)
    BUG(&sa->h, NULL, "factory called after tapio_server_release");
  e = ep_new(sa->c, sa->kind, 1, 1, 1);
  if (!e)
    return TAPIO_EAGAIN; /* full: rejected, as the ABI says */
  e->srv = sa;
  *proto = tables[e->table];
  *proto_ud = e;
  return 0;
}

static void srv_closed(void *ud, tapio_server *s)
{
  srvact *sa = ud;
  note(&sa->h, "%.3f wait_closed", now(sa->c));
  check_sync(sa->c, &sa->h, "wait_closed's callback", NULL);
  if (s != sa->s || sa->closed_cb++)
    BUG(&sa->h, NULL, "wait_closed callback twice or for another server");
  if (tapio_server_client_count(s) != 0)
    BUG(&sa->h, NULL, "wait_closed with %zu clients",
        tapio_server_client_count(s));
}

static void srv_created(void *ud, int status, tapio_server *s)
{
  srvact *sa = ud;
  note(&sa->h, "%.3f created %s", now(sa->c), tapio_errname(status));
  if (status != 0 || !s)
    BUG(&sa->h, NULL, "create_server failed: %s", tapio_errname(status));
  sa->s = s;
  sa->created = 1;
  own(sa->c, &sa->h, s, OWN_SRV, sa, 0);
  CHECK_OK(tapio_server_wait_closed(s, srv_closed, sa));
  if (sa->kind != K_UNIX)
    CHECK_OK(tapio_server_get_address(s, 0, NULL, 0, &sa->port, NULL));
}

/* A server is ours to call until we release it. */
static void srv_close(srvact *sa)
{
  if (!sa->s || sa->released)
    return;
  note(&sa->h, "%.3f close", now(sa->c));
  sa->closed = 1;
  sa->c->sync = "tapio_server_close";
  CHECK_OK(tapio_server_close(sa->s));
  sa->c->sync = NULL;
}

static void srv_release(srvact *sa)
{
  if (!sa->s || sa->released)
    return;
  note(&sa->h, "%.3f release", now(sa->c));
  sa->released = 1;
  sa->closed = 1;
  sa->c->sync = "tapio_server_release";
  tapio_server_release(sa->s);
  sa->c->sync = NULL;
}

/* close_clients (abort 0) or abort_clients (1), noting it on each. */
static void srv_clients(srvact *sa, int abort)
{
  chaos *c = sa->c;
  int i;
  if (!sa->s || sa->released)
    return;
  note(&sa->h, "%.3f %s_clients", now(c), abort ? "abort" : "close");
  for (i = 0; i < MAX_EPS; i++) {
    ep *e = &c->eps[i];
    if (e->used && e->srv == sa && e->a.made && !e->a.lost) {
      note(&e->a.h, "%.3f by server's %s_clients", now(c),
           abort ? "abort" : "close");
      closing(e, abort);
    }
  }
  c->sync = abort ? "abort_clients" : "close_clients";
  CHECK_OK(abort ? tapio_server_abort_clients(sa->s)
                 : tapio_server_close_clients(sa->s));
  c->sync = NULL;
}

static void listener_start(chaos *c, int kind)
{
  static const char *const hosts[] = { "127.0.0.1" };
  srvact *sa = &c->srvs[c->nsrvs];
  CHECK(c->nsrvs < MAX_SRVS);
  c->nsrvs++;
  sa->c = c;
  sa->kind = kind;
  snprintf(sa->h.name, sizeof sa->h.name, "%s.listener#%d",
           kind_name[kind], c->nsrvs - 1);
  if (kind == K_UNIX) {
    snprintf(sa->path, sizeof sa->path, "%s/s%d", c->dir, c->nsrvs);
    CHECK_OK(tapio_create_unix_server(c->loop, sa->path, chaos_factory, sa,
                                      NULL, srv_created, sa));
  } else {
    CHECK_OK(tapio_create_server(c->loop, hosts, 1, 0, chaos_factory, sa,
                                 kind == K_TLS ? c->srv_tls : NULL,
                                 srv_created, sa));
  }
}

/* A client of a random server, now. */
static void client_start(chaos *c)
{
  srvact *sa = &c->srvs[rnd(c, (unsigned)c->nsrvs)];
  ep *e;
  int rc;
  if (!sa->created || c->winding)
    return;
  e = ep_new(c, sa->kind, 0, 1, 1);
  if (!e)
    return;
  e->a.pending = 1;
  note(&e->a.h, "%.3f connect to %s", now(c), sa->h.name);
  c->sync = "a create call";
  if (sa->kind == K_UNIX)
    rc = tapio_create_unix_connection(c->loop, sa->path, tables[e->table],
                                      e, NULL, ep_connected, e);
  else
    rc = tapio_create_connection(c->loop, "127.0.0.1", sa->port,
                                 tables[e->table], e,
                                 sa->kind == K_TLS ? c->cli_tls : NULL,
                                 ep_connected, e);
  c->sync = NULL;
  if (rc != 0)
    BUG(&e->a.h, NULL, "create connection: %s", tapio_errname(rc));
}

/* ---- Pipes ------------------------------------------------------------- */

static void pipe_start(chaos *c)
{
  int fds[2], rc;
  ep *r = ep_new(c, K_PIPE, 0, 1, 0), *w = r ? ep_new(c, K_PIPE, 0, 0, 1)
                                              : NULL;
  if (!w)
    return;
  CHECK(pipe2(fds, O_CLOEXEC) == 0);
  snprintf(r->a.h.name, sizeof r->a.h.name, "pipe.read#%d", (int)(r - c->eps));
  snprintf(w->a.h.name, sizeof w->a.h.name, "pipe.write#%d(sid %u)",
           (int)(w - c->eps), w->sid);
  r->a.pending = w->a.pending = 1;
  c->sync = "a create call";
  rc = tapio_connect_read_pipe(c->loop, fds[0], tables[r->table], r, NULL,
                               ep_connected, r);
  if (rc == 0)
    rc = tapio_connect_write_pipe(c->loop, fds[1], tables[w->table], w,
                                  NULL, ep_connected, w);
  c->sync = NULL;
  if (rc != 0)
    BUG(&r->a.h, &w->a.h, "connect pipe: %s", tapio_errname(rc));
}

/* Both ends of a socketpair, through connect_accepted_socket; the second
 * plays the server's part in STARTTLS. */
static void socketpair_start(chaos *c)
{
  int fds[2], i;
  ep *e[2];
  e[0] = ep_new(c, K_UNIX, 0, 1, 1);
  e[1] = e[0] ? ep_new(c, K_UNIX, 1, 1, 1) : NULL;
  if (!e[1])
    return;
  CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
  for (i = 0; i < 2; i++) {
    snprintf(e[i]->a.h.name, sizeof e[i]->a.h.name, "pair.%c#%d(sid %u)",
             "ab"[i], (int)(e[i] - c->eps), e[i]->sid);
    e[i]->a.pending = 1;
    c->sync = "a create call";
    CHECK_OK(tapio_connect_accepted_socket(c->loop, fds[i],
                                           tables[e[i]->table], e[i], NULL,
                                           ep_connected, e[i]));
    c->sync = NULL;
  }
}

/* A memory pair of the testing kit (virtual rounds), its reads cut in
 * pieces now and then. */
static void mempair_start(chaos *c)
{
  tapio_transport *t[2];
  ep *e[2];
  int i;
  e[0] = ep_new(c, K_MEM, 0, 1, 1);
  e[1] = e[0] ? ep_new(c, K_MEM, 1, 1, 1) : NULL;
  if (!e[1])
    return;
  c->sync = "a create call";
  CHECK_OK(tapio_memory_pair(c->loop, tables[e[0]->table], e[0],
                             tables[e[1]->table], e[1], &t[0], &t[1]));
  c->sync = NULL;
  for (i = 0; i < 2; i++) {
    snprintf(e[i]->a.h.name, sizeof e[i]->a.h.name, "mem.%c#%d(sid %u)",
             "ab"[i], (int)(e[i] - c->eps), e[i]->sid);
    if (chance(c, 50))
      CHECK_OK(tapio_memory_set_chunks(t[i], 1, 1 + rnd(c, 70000),
                                       c->seed + (uint64_t)i));
  }
}

/* ---- STARTTLS in the middle ----------------------------------------------
 * The client sends MARKER and writes nothing more; the server, seeing it,
 * answers MARKER and starts TLS at once; the client starts TLS when the
 * answer comes. Neither sends a clear byte after its marker, so the bytes
 * after a marker in the same read must be none. */

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

static void marker_seen(ep *e, const unsigned char *rest, size_t n)
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

/* ---- Stream ends: actions ---------------------------------------------- */

enum {
  A_WRITE, A_WRITELINES, A_WRITE_EOF, A_PAUSE_R, A_RESUME_R, A_CLOSE,
  A_ABORT, A_FAIL, A_RETAIN, A_RELEASE, A_SRV_CLOSE, A_SRV_RELEASE,
  A_CLOSE_CLIENTS, A_ABORT_CLIENTS, A_STARTTLS, A_SET_PROTO, A_LIMITS,
  A_STOP, A_TIMER, A_KILL, A_SIGNAL, A_FAULT, A_COUNT,
  A_END = A_COUNT /* not drawn: the end an actor past its budget takes */
};
/* per mille; the rest does nothing */
static const unsigned weights[A_COUNT] = {
  230, 60, 15, 50, 80, 12, 4, 2, 30, 40, 2, 2, 1, 1, 25, 40, 30, 15, 60,
  3, 12, 12
};

static int pick(chaos *c)
{
  unsigned r = rnd(c, 1000), i;
  for (i = 0; i < A_COUNT; i++) {
    if (r < weights[i])
      return (int)i;
    r -= weights[i];
  }
  return -1;
}

static void timer_start(chaos *c, int kind, void *target);
static void proc_kill(proc *p);
static void raise_signal(chaos *c);

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
static void draw(actor *a, int n, void (*act_one)(actor *, int))
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
    c->writing = 1;
    c->sync = "writelines";
    c->sync_ep = e;
    rc = tapio_transport_writelines(e->a.t, bufs, lens, k);
    c->sync = NULL;
    c->writing = 0;
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

static void ep_reading(ep *e, int on)
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
static void ep_end(ep *e, int how)
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

/* Testing fault k on t (0..4 tapio_fault_set's, 5 and 6 a drip, 7 clear):
 * an early end or error, or a held direction; streams stay prefixes. */
enum { FAULT_CLEAR = 7 };

static void ep_fault(ep *e, unsigned k)
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
      proc_kill(&c->procs[rnd(c, (unsigned)c->nprocs)]);
    break;
  case A_FAULT: ep_fault(e, rnd(c, FAULT_CLEAR + 1)); break;
  case A_END: ep_end(e, chance(c, 10)); break;
  default: break;
  }
}

/* One or two actions; the end closes (or now and then aborts). */
static void ep_act(actor *a)
{
  draw(a, 1 + chance(a->c, 30), ep_do);
}

/* ---- Datagram endpoints ------------------------------------------------ */

static void dep_act(actor *a);

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
    c->writing = 1;
    c->sync = "sendto";
    c->sync_ep = d;
    rc = tapio_transport_sendto(d->a.t, c->scratch, len,
                                d->a.closed ? NULL : d->peer->addr,
                                d->a.closed ? 0 : d->peer->addrlen);
    c->sync = NULL;
    c->writing = 0;
    if (d->a.closed && rc == TAPIO_EINVAL)
      rc = tapio_transport_sendto(d->a.t, c->scratch, len, d->peer->addr,
                                  d->peer->addrlen);
    if (rc != (closing ? TAPIO_ECLOSED : 0))
      BUG(&d->a.h, NULL, "sendto answered %s (closing %d)",
          tapio_errname(rc), closing);
  }
}

static void dep_do(actor *a, int what)
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

static void dep_act(actor *a)
{
  draw(a, 1, dep_do);
}

static void dep_connected(void *ud, int status, tapio_transport *t)
{
  dep *d = ud;
  chaos *c = d->a.c;
  note(&d->a.h, "%.3f completion %s", now(c), tapio_errname(status));
  d->a.pending = 0;
  if (status != 0 || t != d->a.t)
    BUG(&d->a.h, NULL, "datagram endpoint: %s", tapio_errname(status));
  CHECK_OK(tapio_transport_get_sockname(t, NULL, 0, NULL, NULL));
  {
    char host[64];
    int port;
    d->addrlen = sizeof d->addr;
    CHECK_OK(tapio_transport_get_sockname(t, host, sizeof host, &port,
                                          NULL));
    CHECK_OK(tapio_addr_parse(host, port, d->addr, &d->addrlen));
  }
  if (!d->peer->a.t && !d->peer->a.pending) { /* the second, connected to us */
    tapio_options *o = NULL;
    char host[64];
    int port;
    CHECK_OK(tapio_transport_get_sockname(t, host, sizeof host, &port,
                                          NULL));
    CHECK_OK(tapio_options_new(c->loop, &o));
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

static void dgram_start(chaos *c)
{
  dep *a, *b;
  tapio_options *o = NULL;
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
  CHECK_OK(tapio_options_new(c->loop, &o));
  CHECK_OK(tapio_options_set_str(o, "local_host", "127.0.0.1"));
  a->a.pending = 1;
  CHECK_OK(tapio_create_datagram_endpoint(c->loop, &dep_proto, a, o,
                                          dep_connected, a));
  tapio_options_free(o);
}

/* ---- Subprocesses ------------------------------------------------------ */

static void proc_act(actor *a);

static void proc_made(void *ud, tapio_transport *t)
{
  proc *p = ud;
  made(&p->a, t);
  if (tapio_transport_retain(t) != TAPIO_ENOTSUP)
    BUG(&p->a.h, NULL, "a subprocess transport could be retained");
  proc_act(&p->a);
}

/* Last: after the exit and every pipe's end. */
static void proc_lost(void *ud, tapio_transport *t, int code,
                      const char *msg)
{
  proc *p = ud;
  int i;
  if (!p->exited)
    BUG(&p->a.h, NULL, "connection_lost before process_exited");
  for (i = 0; i < 3; i++)
    if (!p->pipe_lost[i] || tapio_subprocess_get_pipe_transport(t, i))
      BUG(&p->a.h, NULL, "connection_lost with pipe %d open", i);
  lost(&p->a, t, code, msg);
}

static void proc_data(void *ud, tapio_transport *t, int fd, const char *data,
                      size_t len)
{
  proc *p = ud;
  size_t i;
  enter(&p->a, t, fd == 1 ? "stdout" : "stderr");
  if ((fd != 1 && fd != 2) || p->pipe_lost[fd] || !len)
    BUG(&p->a.h, NULL, "pipe_data_received fd %d (lost %d) len %zu", fd,
        fd == 1 || fd == 2 ? p->pipe_lost[fd] : -1, len);
  if (fd == 1) {
    if (p->received + len > p->written)
      BUG(&p->a.h, NULL, "cat said %llu bytes; it was given %llu",
          (unsigned long long)(p->received + len),
          (unsigned long long)p->written);
    for (i = 0; i < len; i++)
      if ((unsigned char)data[i] != pat(p->sid, p->received + i))
        BUG(&p->a.h, NULL, "byte %llu from cat is wrong",
            (unsigned long long)(p->received + i));
    p->received += len;
  }
  proc_act(&p->a);
}

static void proc_pipe_lost(void *ud, tapio_transport *t, int fd, int code,
                           const char *msg)
{
  proc *p = ud;
  char what[40];
  snprintf(what, sizeof what, "pipe %d lost %s", fd,
           code ? tapio_errname(code) : "0");
  enter(&p->a, t, what);
  if (fd < 0 || fd > 2 || p->pipe_lost[fd])
    BUG(&p->a.h, NULL, "pipe_connection_lost %d twice", fd);
  if ((code == 0) != (msg == NULL))
    BUG(&p->a.h, NULL, "pipe_connection_lost code %d message %s", code,
        msg ? msg : "NULL");
  p->pipe_lost[fd] = 1;
  p->pipe_code[fd] = code;
  p->in_pipe_lost = fd + 1;
  proc_act(&p->a);
  p->in_pipe_lost = 0;
}

static void proc_exited(void *ud, tapio_transport *t)
{
  proc *p = ud;
  enter(&p->a, t, "exited");
  if (p->exited++)
    BUG(&p->a.h, NULL, "process_exited twice");
  p->exit_known = tapio_subprocess_get_returncode(t, &p->returncode);
  if (!p->exit_known)
    BUG(&p->a.h, NULL, "process_exited without a returncode");
  proc_act(&p->a);
}

static const tapio_subprocess_protocol proc_proto = {
  .size = sizeof(tapio_subprocess_protocol),
  .connection_made = proc_made,
  .connection_lost = proc_lost,
  .pause_writing = on_pause,
  .resume_writing = on_resume,
  .pipe_data_received = proc_data,
  .pipe_connection_lost = proc_pipe_lost,
  .process_exited = proc_exited,
};

static void proc_connected(void *ud, int status, tapio_transport *t)
{
  proc *p = ud;
  note(&p->a.h, "%.3f completion %s", now(p->a.c), tapio_errname(status));
  p->a.pending = 0;
  if (status != 0 || !p->a.made || t != p->a.t)
    BUG(&p->a.h, NULL, "subprocess completion %s", tapio_errname(status));
}

static void proc_kill(proc *p)
{
  int rc;
  if (!p->a.t || p->a.lost)
    return;
  note(&p->a.h, "%.3f kill", now(p->a.c));
  p->killed = 1;
  rc = tapio_subprocess_kill(p->a.t);
  if (rc != 0 && rc != TAPIO_ESRCH)
    BUG(&p->a.h, NULL, "kill answered %s", tapio_errname(rc));
}

static void proc_write(proc *p)
{
  chaos *c = p->a.c;
  tapio_transport *in = tapio_subprocess_get_pipe_transport(p->a.t, 0);
  size_t n = rnd_size(c, c->max_write / 4);
  int closing, rc;
  if (!in || c->writing || !n)
    return;
  closing = tapio_transport_is_closing(in);
  pat_fill(c->scratch, n, p->sid, p->written);
  note(&p->a.h, "%.3f write %zu", now(c), n);
  p->written += n;
  c->writing = 1;
  c->sync = "write";
  c->sync_ep = p;
  rc = tapio_transport_write(in, c->scratch, n);
  c->sync = NULL;
  c->writing = 0;
  if (rc != 0)
    p->written -= n;
  if (rc != (closing ? TAPIO_ECLOSED : 0))
    BUG(&p->a.h, NULL, "stdin write answered %s (closing %d)",
        tapio_errname(rc), closing);
}

static void proc_pipe_ref(proc *p, int fd, int retain)
{
  tapio_transport *pt = NULL;
  if (retain && !p->a.lost) /* the subprocess transport is still there */
    pt = tapio_subprocess_get_pipe_transport(p->a.t, fd);
  if (retain && pt && !p->pref[fd]) {
    note(&p->a.h, "%.3f retain pipe %d", now(p->a.c), fd);
    CHECK_OK(tapio_transport_retain(pt));
    p->pref[fd] = pt;
    own(p->a.c, &p->a.h, pt, OWN_PIPE, p, fd);
  } else if (!retain && p->pref[fd]) {
    note(&p->a.h, "%.3f release pipe %d", now(p->a.c), fd);
    pt = p->pref[fd];
    p->pref[fd] = NULL;
    tapio_transport_release(pt);
    if (p->pipe_lost[fd] && p->in_pipe_lost != fd + 1 && !p->pfreed[fd])
      BUG(&p->a.h, NULL, "the release of ended pipe %d kept it", fd);
  }
}

static void proc_do(actor *a, int what)
{
  proc *p = (proc *)a;
  chaos *c = a->c;
  tapio_transport *pt;
  int rc;
  switch (what) {
  case A_WRITE: case A_WRITELINES: proc_write(p); break;
  case A_WRITE_EOF: case A_END:
    if ((pt = tapio_subprocess_get_pipe_transport(p->a.t, 0)) != NULL) {
      note(&p->a.h, "%.3f stdin write_eof", now(c));
      p->a.closed = 1;
      CHECK_OK(tapio_transport_write_eof(pt));
    }
    break;
  case A_PAUSE_R: case A_RESUME_R:
    if ((pt = tapio_subprocess_get_pipe_transport(p->a.t, 1)) != NULL) {
      note(&p->a.h, "%.3f stdout %s", now(c), what == A_PAUSE_R ? "pause"
                                                              : "resume");
      CHECK_OK(what == A_PAUSE_R ? tapio_transport_pause_reading(pt)
                              : tapio_transport_resume_reading(pt));
    }
    break;
  case A_CLOSE: case A_ABORT:
    note(&p->a.h, "%.3f %s", now(c), what == A_CLOSE ? "close" : "abort");
    p->dropped = 1;
    CHECK_OK(what == A_CLOSE ? tapio_transport_close(p->a.t)
                          : tapio_transport_abort(p->a.t));
    break;
  case A_FAIL:
    if ((pt = tapio_subprocess_get_pipe_transport(p->a.t, 1 + rnd(c, 2)))) {
      note(&p->a.h, "%.3f close a read pipe", now(c));
      p->dropped = 1;
      CHECK_OK(tapio_transport_close(pt));
    }
    break;
  case A_RETAIN: proc_pipe_ref(p, (int)rnd(c, 3), 1); break;
  case A_RELEASE: proc_pipe_ref(p, (int)rnd(c, 3), 0); break;
  case A_KILL: /* it ends the child: now and then */
    if (!chance(c, 20))
      break;
    if (chance(c, 50)) {
      proc_kill(p);
    } else if (!p->exited && !p->a.lost) {
      note(&p->a.h, "%.3f terminate", now(c));
      p->killed = 1;
      rc = tapio_subprocess_terminate(p->a.t);
      if (rc != 0 && rc != TAPIO_ESRCH)
        BUG(&p->a.h, NULL, "terminate answered %s", tapio_errname(rc));
    }
    break;
  default: break;
  }
}

static void proc_act(actor *a)
{
  draw(a, 1, proc_do);
}

static void proc_start(chaos *c)
{
  proc *p;
  if (c->nprocs == MAX_PROCS || c->next_sid == MAX_SIDS)
    return;
  p = &c->procs[c->nprocs++];
  p->a.c = c;
  p->a.act = proc_act;
  p->sid = c->next_sid++;
  p->a.budget = 5 + (int)rnd(c, 40);
  snprintf(p->a.h.name, sizeof p->a.h.name, "cat#%d(sid %u)", c->nprocs - 1,
           p->sid);
  p->a.pending = 1;
  c->sync = "a create call";
  CHECK_OK(tapio_subprocess_shell(c->loop, "exec cat", &proc_proto, p, NULL,
                                  proc_connected, p));
  c->sync = NULL;
}

/* ---- Timers and signals ------------------------------------------------ */

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

static void timer_start(chaos *c, int kind, void *target)
{
  timer_start_in(c, kind, target, rnd(c, 300) / 1000.0 * slow());
}

/* An actor's heartbeat: it acts every few milliseconds while it lives,
 * so that one that waits on nothing still spends its budget. */
static void beat(chaos *c, int kind, void *target)
{
  tmr *tm = timer_start_in(c, kind, target, (5 + rnd(c, 45)) / 1000.0);
  if (tm)
    tm->beat = 1;
}

static void sig_fire(void *ud)
{
  chaos *c = ud;
  note(&c->g, "%.3f signal", now(c));
  check_sync(c, &c->g, "a signal handler", NULL);
  global_act(c);
}

static void raise_signal(chaos *c)
{
  int i = (int)rnd(c, 2);
  if (!c->sig_on[i])
    return;
  note(&c->g, "%.3f raise %d", now(c), i);
  CHECK(kill(getpid(), i ? SIGUSR2 : SIGUSR1) == 0);
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
      c->sig_on[i] = 0;
      CHECK_EQ(tapio_remove_signal_handler(c->loop, i ? SIGUSR2 : SIGUSR1),
               1);
    }
  }
}

/* ---- Frees ------------------------------------------------------------- */

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

/* ---- The round --------------------------------------------------------- */

static void on_exception(void *ud, tapio_loop *loop, int code,
                         const char *message, tapio_transport *t)
{
  chaos *c = ud;
  (void)loop;
  (void)t;
  c->n_exceptions++;
  note(&c->g, "%.3f exception %s: %.30s", now(c), tapio_errname(code),
       message ? message : "");
  if (getenv("TAPIO_CHAOS_VERBOSE"))
    fprintf(stderr, "seed %llu: exception %s: %s\n",
            (unsigned long long)c->seed, tapio_errname(code),
            message ? message : "");
}

/* An actor at its end: its create call completed, and it was never made
 * or its connection_lost came (a server: released and wait_closed). */
static int ended(const actor *a)
{
  return !a->c || (!a->pending && (!a->made || a->lost));
}

/* How many actors have not reached their end (their histories dumped
 * when asked). */
static int unfinished(chaos *c, int show)
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

static int round_over(chaos *c)
{
  int i;
  for (i = 0; i < c->ntimers; i++)
    if (!c->timers[i].fired && !c->timers[i].cancelled)
      return 0;
  return !unfinished(c, 0);
}

/* Closes (then aborts) what is left: the end of every actor. */
static void wind_down(chaos *c, int abort)
{
  int i;
  note(&c->g, "%.3f %s", now(c), abort ? "abort all" : "wind down");
  for (i = 0; i < 2; i++)
    if (c->sig_on[i]) {
      c->sig_on[i] = 0;
      CHECK_EQ(tapio_remove_signal_handler(c->loop, i ? SIGUSR2 : SIGUSR1),
               1);
    }
  for (i = 0; i < MAX_EPS; i++) {
    ep *e = &c->eps[i];
    if (e->used && e->a.made && !e->a.lost) {
      if (e->faulted)
        ep_fault(e, FAULT_CLEAR); /* what a fault holds goes at once */
      ep_reading(e, 1);
      if (abort || !e->a.closed)
        ep_end(e, abort);
    }
  }
  for (i = 0; i < c->nsrvs; i++)
    srv_release(&c->srvs[i]);
  for (i = 0; i < c->ndgs; i++)
    if (c->dgs[i].a.made && !c->dgs[i].a.lost)
      dep_do(&c->dgs[i].a, abort ? A_ABORT : A_CLOSE);
  for (i = 0; i < c->nprocs; i++)
    if (c->procs[i].a.made && !c->procs[i].a.lost)
      proc_do(&c->procs[i].a, abort ? A_ABORT : A_CLOSE);
}

/* A stream end we closed long ago with nothing left to flush must have
 * ended: what may keep a close waiting is bytes to send (a peer that
 * closed too reads no more) or a fault, and TLS's close_notify exchange
 * has its timeout (0.5 s). Seen so at two ticks running (its
 * connection_lost may be on its way at the first): a failure. */
static void check_closes(chaos *c)
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

static void tick(void *ud)
{
  chaos *c = ud;
  double t = now(c);
  if (round_over(c)) {
    c->done = 1;
    tapio_loop_stop(c->loop);
    return;
  }
  if (t > c->deadline) {
    unfinished(c, 1);
    BUG(NULL, NULL, "the round did not end in %.1f s of loop time",
        c->deadline);
  }
  if (t > c->abort_at && !c->aborting) {
    if (getenv("TAPIO_CHAOS_VERBOSE")) { /* what a close did not end */
      fprintf(stderr, "seed %llu: aborting what is left:\n",
              (unsigned long long)c->seed);
      unfinished(c, 1);
    }
    c->aborting = 1;
    wind_down(c, 1);
  } else if (t > c->wind && !c->winding) {
    c->winding = 1;
    wind_down(c, 0);
  }
  check_closes(c);
  CHECK_OK(tapio_call_later(c->loop, 0.02, tick, c, NULL));
}

static void round_start_actors(chaos *c)
{
  int i, n;
  listener_start(c, K_TCP);
  listener_start(c, K_UNIX);
  listener_start(c, K_TLS);
  if (chance(c, 50))
    listener_start(c, (int)rnd(c, 3));
  n = 4 + (int)rnd(c, 3);
  for (i = 0; i < n; i++)
    c->virt ? mempair_start(c) : pipe_start(c);
  n = c->virt ? 0 : 1 + (int)rnd(c, 3); /* no descriptors on a virtual loop */
  for (i = 0; i < n; i++)
    socketpair_start(c);
  for (i = 0; i < 2; i++)
    dgram_start(c);
  n = c->virt ? 0 : 1 + (int)rnd(c, MAX_PROCS);
  for (i = 0; i < n; i++)
    proc_start(c);
  n = 8 + (int)rnd(c, 16); /* clients, in the first 0.3 s */
  for (i = 0; i < n; i++)
    timer_start(c, TG_CLIENT, NULL);
  n = 5 + (int)rnd(c, 10);
  for (i = 0; i < n; i++)
    timer_start(c, TG_GLOBAL, NULL);
  c->sig_on[0] = 1;
  CHECK_OK(tapio_add_signal_handler(c->loop, SIGUSR1, sig_fire, c));
  if (chance(c, 50)) {
    c->sig_on[1] = 1;
    CHECK_OK(tapio_add_signal_handler(c->loop, SIGUSR2, sig_fire, c));
  }
}

static tapio_options *tls_opts(chaos *c, tapio_tls_context *ctx,
                               const char *name)
{
  tapio_options *o = NULL;
  CHECK_OK(tapio_options_new(c->loop, &o));
  if (ctx)
    CHECK_OK(tapio_options_set_tls(o, "ssl", ctx));
  if (name)
    CHECK_OK(tapio_options_set_str(o, "server_hostname", name));
  CHECK_OK(tapio_options_set_double(o, "ssl_handshake_timeout",
                                    2.0 * slow()));
  CHECK_OK(tapio_options_set_double(o, "ssl_shutdown_timeout",
                                    0.5 * slow()));
  return o;
}

/* The clients that got all their peer wrote: exactly all of it. */
static void check_exact(chaos *c)
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
static void release_all(chaos *c)
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

static void check_all_freed(chaos *c)
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

static void free_blocks(chaos *c)
{
  size_t i;
  for (i = 0; i < ABUCKETS; i++)
    while (c->live[i]) {
      anode *n = c->live[i];
      c->live[i] = n->next;
      free(n);
    }
}

/* The loop's turns until the round is over: run, or step (waiting or
 * not), all the same; a virtual clock moves in steps of 5 ms. */
static void run_loop(chaos *c)
{
  while (!c->done) {
    if (c->virt)
      CHECK_OK(tapio_loop_advance(c->loop, 0.005));
    else if (chance(c, 70))
      CHECK_OK(tapio_loop_run(c->loop));
    else
      CHECK_OK(tapio_loop_run_once(c->loop, chance(c, 50)));
  }
}

static void run_round(uint64_t seed, int virt)
{
  chaos *c = calloc(1, sizeof *c);
  double wall = now_sec();
  int i;
  CHECK(c != NULL);
  current = c;
  c->seed = seed;
  c->rng = seed;
  c->virt = virt;
  c->next_sid = 1;
  snprintf(c->g.name, sizeof c->g.name, "round");
  c->max_write = under_valgrind() ? 256 * 1024 : 1024 * 1024;
  c->scratch = malloc(c->max_write + 16);
  CHECK(c->scratch != NULL);
  snprintf(c->dir, sizeof c->dir, "/tmp/tapio-chaos-XXXXXX");
  CHECK(mkdtemp(c->dir) != NULL);
  if (virt)
    CHECK_OK(tapio_loop_new_virtual(&c->loop, track_alloc, c));
  else
    CHECK_OK(tapio_loop_new_with_allocator(&c->loop, track_alloc, c));
  tapio_loop_set_exception_handler(c->loop, on_exception, c);
  c->cli_tls = tls_opts(c, client_tls, NULL);
  c->srv_tls = tls_opts(c, server_tls, NULL);
  c->up_cli = tls_opts(c, NULL, "127.0.0.1");
  c->unix_up_cli = tls_opts(c, NULL, "localhost");
  c->up_srv = tls_opts(c, NULL, NULL);
  c->t0 = tapio_loop_time(c->loop);
  c->wind = 0.6 * slow();
  c->abort_at = 1.5 * slow();
  c->deadline = 10.0 * slow();
  round_start_actors(c);
  CHECK_OK(tapio_call_later(c->loop, 0.02, tick, c, NULL));
  run_loop(c);
  release_all(c);
  check_all_freed(c);
  check_exact(c);
  tapio_options_free(c->cli_tls);
  tapio_options_free(c->srv_tls);
  tapio_options_free(c->up_cli);
  tapio_options_free(c->unix_up_cli);
  tapio_options_free(c->up_srv);
  CHECK_OK(tapio_loop_free(c->loop));
  if (c->nlive)
    BUG(NULL, NULL, "%zu blocks of the loop left after tapio_loop_free",
        c->nlive);
  if (getenv("TAPIO_CHAOS_VERBOSE"))
    printf("seed %llu%s: %.2f s, %lu events, %llu bytes checked, %lu exact "
           "ends, %lu upgrades, %lu frees seen, %lu exceptions\n",
           (unsigned long long)seed, virt ? " (virtual)" : "",
           now_sec() - wall, c->n_events,
           (unsigned long long)c->n_bytes, c->n_exact, c->n_upgrades,
           c->n_frees, c->n_exceptions);
  for (i = 0; i < MAX_EPS; i++)
    free(c->eps[i].buf);
  for (i = 0; i < c->nsrvs; i++)
    if (c->srvs[i].kind == K_UNIX)
      unlink(c->srvs[i].path);
  rmdir(c->dir);
  free_blocks(c);
  free(c->scratch);
  free(c);
  current = NULL;
}

/* Each seed twice: on a real loop, then on a virtual clock. */
static void run_seed(uint64_t seed)
{
  run_round(seed, 0);
  run_round(seed, 1);
}

static void chaos_rounds(void)
{
  const char *one = getenv("TAPIO_CHAOS_SEED");
  const char *rounds = getenv("TAPIO_CHAOS_ROUNDS");
  size_t n = sizeof default_seeds / sizeof *default_seeds, i;
  trace = getenv("TAPIO_CHAOS_VERBOSE") &&
          strcmp(getenv("TAPIO_CHAOS_VERBOSE"), "2") == 0;
  signal(SIGUSR1, SIG_IGN); /* a signal raised as a handler goes: no harm */
  signal(SIGUSR2, SIG_IGN);
  server_tls = server_ctx("server");
  client_tls = client_ctx();
  if (rounds) { /* from TAPIO_CHAOS_SEED (or the list's first) on */
    uint64_t first = one ? strtoull(one, NULL, 10) : default_seeds[0];
    for (i = 0; i < strtoull(rounds, NULL, 10); i++)
      run_seed(first + i);
  } else if (one) {
    run_seed(strtoull(one, NULL, 10));
  } else {
    if (under_valgrind())
      n = 3;
    for (i = 0; i < n; i++)
      run_seed(default_seeds[i]);
  }
  tapio_tls_context_release(server_tls);
  tapio_tls_context_release(client_tls);
}

TEST_MAIN(TEST(chaos_rounds))
