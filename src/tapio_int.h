/* The one private header of the core: the object model behind the opaque
 * handles of capi/tapio.h. Nothing outside src/ includes it. */
#ifndef TAPIO_INT_H
#define TAPIO_INT_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* accept4, MSG_NOSIGNAL */
#endif

#include "tapio.h"

#include <ev.h>
#include <pthread.h>
#include <stdint.h>
#include <netinet/in.h>
#include <sys/socket.h>

#define TAPIO_CONTAINER(ptr, type, member) \
  ((type *)((char *)(ptr) - offsetof(type, member)))

/* ---- Intrusive lists --------------------------------------------------- */

typedef struct tapio__link {
  struct tapio__link *next, *prev;
} tapio__link;

void tapio__list_init(tapio__link *head);
void tapio__list_push(tapio__link *head, tapio__link *l);
void tapio__list_remove(tapio__link *l);
int tapio__list_empty(const tapio__link *head);

/* ---- Tasks: the loop's ready queue ------------------------------------- */

/* Everything deferred to "soon" is a task: user calls, connection_made of a
 * wrapped socket, connection_lost, completions. Tasks run in FIFO order in
 * the loop's check phase, after I/O callbacks of the same iteration. */
typedef struct tapio__task tapio__task;
typedef void (*tapio__task_fn)(tapio__task *task);
struct tapio__task {
  tapio__task *next;
  tapio__task_fn run;
};

/* ---- Loop -------------------------------------------------------------- */

typedef struct tapio__ts_call tapio__ts_call;

struct tapio_loop {
  struct ev_loop *ev;
  tapio_alloc_fn alloc;
  void *alloc_ud;
  uint64_t memory;
  int running;        /* run/run_once on the stack */
  int stop_requested; /* tapio_loop_stop: spent by the run it applies to */
  int syserr;         /* libev reported a system error during this run */
  const char *syserr_msg; /* its message, until reported */
  int freeing;        /* tapio_loop_free is tearing down */
  ev_check check;     /* runs the ready queue after each poll */
  ev_idle idle;       /* keeps the poll non-blocking while tasks wait */
  ev_io wakeup;       /* call_soon_threadsafe; keeps run() alive */
  int wakeup_fd;      /* its eventfd */
  tapio__task *ready_head, *ready_tail;
  tapio__link due;    /* timers fired this iteration, not yet queued */
  uint64_t seq;
  pthread_mutex_t ts_lock;
  tapio__ts_call *ts_head, *ts_tail;
  tapio_exception_fn exc_fn;
  void *exc_ud;
  tapio__link handles;     /* every tapio_handle not yet freed */
  tapio__link transports;  /* every live transport */
  tapio__link servers;     /* every server not yet freed */
  tapio__link requests;    /* pending connects and server creations */
  char *rbuf;              /* the shared read buffer, made on first read */
  void *rbuf_block;        /* the allocation rbuf is aligned within */
};

void *tapio__alloc(tapio_loop *loop, size_t size);
void *tapio__calloc(tapio_loop *loop, size_t size);
void tapio__free(tapio_loop *loop, void *ptr, size_t size);
char *tapio__strdup(tapio_loop *loop, const char *s);
void tapio__strfree(tapio_loop *loop, char *s);

void tapio__task_post(tapio_loop *loop, tapio__task *task);
void tapio__report(tapio_loop *loop, int code, const char *message,
                   tapio_transport *t);
double tapio__now(void);

#define TAPIO__RBUF_SIZE (256 * 1024)
/* The kernel copies into a page-aligned buffer several times faster than
 * into one 16 bytes past a page (where malloc puts large blocks). */
#define TAPIO__RBUF_ALIGN 4096

/* The loop's read buffer, allocated on first use; NULL without memory. */
char *tapio__read_buffer(tapio_loop *loop);

/* ---- Errors ------------------------------------------------------------ */

int tapio__from_errno(int err);
int tapio__from_gai(int err);

/* ---- Scheduled calls ----------------------------------------------------- */

/* Moves the timers that fired into the ready queue, in (when, seq) order. */
void tapio__queue_due(tapio_loop *loop);
void tapio__handles_free_all(tapio_loop *loop);
void tapio__handles_cancel_all(tapio_loop *loop);

/* ---- Options ----------------------------------------------------------- */

/* Every option of every create call, in the order of options.c's table. */
enum tapio__opt {
  TAPIO__OPT_LOCAL_HOST,
  TAPIO__OPT_LOCAL_PORT,
  TAPIO__OPT_FAMILY,
  TAPIO__OPT_SOCK,
  TAPIO__OPT_NODELAY,
  TAPIO__OPT_BACKLOG,
  TAPIO__OPT_REUSE_ADDRESS,
  TAPIO__OPT_REUSE_PORT,
  TAPIO__OPT_START_SERVING,
  TAPIO__OPT_CLEANUP_SOCKET,
  TAPIO__OPT_COUNT
};

/* TAPIO_EINVAL if o holds an option call (enum tapio_call) does not take. */
int tapio__opts_check(const tapio_options *o, int call);
/* A create call failing: the descriptor given as "sock" is tapio's from
 * the call on, so it is closed. Returns code. */
int tapio__opts_fail(const tapio_options *o, int code);
int64_t tapio__opt_int(const tapio_options *o, enum tapio__opt which,
                       int64_t dflt);
int tapio__opt_is_set(const tapio_options *o, enum tapio__opt which);
/* A string option, or NULL when not set. */
const char *tapio__opt_str(const tapio_options *o, enum tapio__opt which);

/* ---- Stream transport -------------------------------------------------- */

enum {
  TAPIO__T_MADE = 1 << 0,         /* connection_made has run */
  TAPIO__T_PAUSED = 1 << 1,       /* pause_reading */
  TAPIO__T_CLOSING = 1 << 2,      /* close or abort called */
  TAPIO__T_EOF_RECEIVED = 1 << 3,
  TAPIO__T_EOF_WANTED = 1 << 4,   /* write_eof called */
  TAPIO__T_SHUT = 1 << 5,         /* shutdown(SHUT_WR) done */
  TAPIO__T_LOST = 1 << 6,         /* connection_lost scheduled */
  TAPIO__T_PROTO_PAUSED = 1 << 7, /* pause_writing called */
  TAPIO__T_SOCKET = 1 << 8        /* fd is a socket: use send() */
};

typedef struct tapio__wchunk tapio__wchunk;

/* An IP address (a short Unix one too) in as little room as it takes. */
typedef union tapio__ipaddr {
  struct sockaddr sa;
  struct sockaddr_in6 in6;
} tapio__ipaddr;

struct tapio_transport {
  ev_io rio, wio;
  tapio_loop *loop;
  const tapio_protocol *proto;
  void *ud;
  tapio__task task;        /* connection_lost */
  tapio__link link;        /* loop->transports */
  tapio__link slink;       /* server->clients */
  tapio_server *server;
  tapio__wchunk *whead, *wtail;
  size_t wsize;
  size_t high, low;
  uint32_t flags;
  uint32_t write_pauses;
  int lost_code;
  char *lost_msg;
  uint64_t nrecv, nsent, wpeak;
  double wpause_since, rpause_since;
  double wpaused, rpaused;
  tapio__ipaddr peer;      /* peername, kept: a reset makes it unknowable */
  socklen_t peerlen;       /* 0: not kept (a long Unix path: ask the fd) */
};

tapio_transport *tapio__transport_new(tapio_loop *loop, int fd,
                                      const tapio_protocol *proto, void *ud);
/* Calls connection_made, then starts reading unless closed or paused. */
void tapio__transport_made(tapio_transport *t);
/* Keeps the peer's address (when it fits) for get_peername. */
void tapio__transport_set_peer(tapio_transport *t, const struct sockaddr *sa,
                               socklen_t len);
/* Frees a transport whose connection_made never ran (closes its fd). */
void tapio__transport_discard(tapio_transport *t);
/* abort with a code; 0 means a clean abort. */
void tapio__transport_force_close(tapio_transport *t, int code,
                                  const char *message);

/* ---- Requests: pending connects and server creations ------------------- */

typedef struct tapio__request tapio__request;
struct tapio__request {
  tapio__task task;
  tapio__link link;          /* loop->requests */
  tapio_loop *loop;
  void (*cancel)(tapio__request *req); /* completes with ECANCELED */
};

void tapio__request_start(tapio_loop *loop, tapio__request *req,
                          tapio__task_fn run,
                          void (*cancel)(tapio__request *));
void tapio__request_done(tapio__request *req);
void tapio__requests_cancel_all(tapio_loop *loop);

/* ---- Name resolution --------------------------------------------------- */

typedef struct tapio__addr {
  struct sockaddr_storage ss;
  socklen_t len;
} tapio__addr;

/* The one way names become addresses: *out gets *n stream-socket
 * addresses (free with tapio__addrs_free). host NULL or "" with passive
 * means every interface. It blocks for now; callers only call it from
 * tasks, never from inside a user's call, so an asynchronous resolver can
 * replace it without touching them. */
int tapio__resolve(tapio_loop *loop, const char *host, int port, int family,
                   int passive, tapio__addr **out, size_t *n);
void tapio__addrs_free(tapio_loop *loop, tapio__addr *addrs, size_t n);

/* ---- Sockets ----------------------------------------------------------- */

int tapio__family_to_af(int family);
int tapio__format_addr(const struct sockaddr *sa, socklen_t len, char *host,
                       size_t hostlen, int *port, int *family);
int tapio__socket_nonblock(int fd);
void tapio__set_nodelay(int fd);

/* ---- Servers ----------------------------------------------------------- */

tapio_server *tapio__server_new(tapio_loop *loop,
                                tapio_protocol_factory factory, void *ud,
                                const tapio_options *opts);
/* Adds a listening socket; the server owns fd from then on. */
int tapio__server_add_fd(tapio_server *s, int fd);
int tapio__server_set_unix_path(tapio_server *s, const char *path);
/* Undoes tapio__server_new when creation fails. */
void tapio__server_destroy(tapio_server *s);
void tapio__server_detach(tapio_server *s, tapio_transport *t);
void tapio__servers_close_all(tapio_loop *loop);
void tapio__servers_free_all(tapio_loop *loop);

#endif
