/* The chaos test's parts (spec/c/test_chaos.c runs the rounds; each
 * concern is a file of spec/c/chaos/): the state of a round and its
 * actors, and what each part offers the others. */
#ifndef TAPIO_CHAOS_H
#define TAPIO_CHAOS_H

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

static inline double slow(void)
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

/* What an actor may draw (prng.c weighs them). */
enum {
  A_WRITE, A_WRITELINES, A_WRITE_EOF, A_PAUSE_R, A_RESUME_R, A_CLOSE,
  A_ABORT, A_FAIL, A_RETAIN, A_RELEASE, A_SRV_CLOSE, A_SRV_RELEASE,
  A_CLOSE_CLIENTS, A_ABORT_CLIENTS, A_STARTTLS, A_SET_PROTO, A_LIMITS,
  A_STOP, A_TIMER, A_KILL, A_SIGNAL, A_FAULT, A_COUNT,
  A_END = A_COUNT /* not drawn: the end an actor past its budget takes */
};

/* Testing fault k on t (0..4 tapio_fault_set's, 5 and 6 a drip, 7 clear):
 * an early end or error, or a held direction; streams stay prefixes. */
enum { FAULT_CLEAR = 7 };

extern tapio_tls_context *server_tls, *client_tls;
extern chaos *current; /* the round that runs, for the failure report */
extern int trace;      /* TAPIO_CHAOS_VERBOSE=2: every event, as noted */

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

/* prng.c */
unsigned rnd(chaos *c, unsigned n);
int chance(chaos *c, unsigned pct);
size_t rnd_size(chaos *c, size_t max);
unsigned char pat(uint32_t sid, uint64_t o);
void pat_fill(unsigned char *b, size_t n, uint32_t sid, uint64_t o);
int pick(chaos *c);

/* actor.c */
void note(hist *h, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void dump(const hist *h);
double now(chaos *c);
void write_begin(chaos *c, const char *what, void *who);
void write_end(chaos *c);
void check_sync(chaos *c, hist *h, const char *what, void *who);
void enter(actor *a, tapio_transport *t, const char *what);
void made(actor *a, tapio_transport *t);
void lost(actor *a, tapio_transport *t, int code, const char *msg);
void on_pause(void *ud, tapio_transport *t);
void on_resume(void *ud, tapio_transport *t);
void retain(actor *a);
void release(actor *a);
void draw(actor *a, int n, void (*act_one)(actor *, int));

/* alloc.c */
void *track_alloc(void *ud, void *ptr, size_t osize, size_t nsize);
void own(chaos *c, hist *h, void *p, int kind, void *owner, int fd);
void free_blocks(chaos *c);

/* stream.c */
extern const tapio_protocol *const tables[3]; /* a stream end's, by e->table */
ep *writer_of(ep *e);
int ep_send(ep *e, const void *p, size_t n);
ep *ep_new(chaos *c, int kind, int server_side, int reader, int writer);
void ep_connected(void *ud, int status, tapio_transport *t);
void closing(ep *e, int abort);

/* stream_act.c */
void ep_reading(ep *e, int on);
void ep_end(ep *e, int how);
void ep_fault(ep *e, unsigned k);
void ep_act(actor *a);

/* starttls.c */
void marker_seen(ep *e, const unsigned char *rest, size_t n);

/* connect.c */
void srv_close(srvact *sa);
void srv_release(srvact *sa);
void srv_clients(srvact *sa, int abort);
void listener_start(chaos *c, int kind);
void client_start(chaos *c);
void pipe_start(chaos *c);
void socketpair_start(chaos *c);
void mempair_start(chaos *c);

/* dgram.c */
void dep_do(actor *a, int what);
void dep_act(actor *a);
void dgram_start(chaos *c);

/* proc.c */
void proc_kill(proc *p, int term);
void proc_pipe_ref(proc *p, int fd, int retain);
void proc_do(actor *a, int what);
void proc_act(actor *a);
void proc_start(chaos *c);

/* timer.c */
void timer_start(chaos *c, int kind, void *target);
void beat(chaos *c, int kind, void *target);
void signal_on(chaos *c, int i);
void signal_off(chaos *c, int i);
void raise_signal(chaos *c);

/* ends.c */
int unfinished(chaos *c, int show);
int round_over(chaos *c);
void check_closes(chaos *c);
void check_exact(chaos *c);
void release_all(chaos *c);
void check_all_freed(chaos *c);

/* round.c */
void run_round(uint64_t seed, int virt);

#endif
