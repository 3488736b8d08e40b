/* What the files of the testing kit's memory pairs share: a pair, its
 * sides and the link each way, and the calls between the files. memory.c
 * holds the sides as transports (their kinds, making a pair);
 * memory_link.c how bytes go from one side to the other (the links, the
 * I/O layer, the test's settings: chunks, cuts, delay, capacity);
 * memory_wake.c when a side runs (waking its stream as a socket's
 * readiness would); memory_ends.c how a side's end reaches the other
 * (end of file, a reset, EPIPE). */
#ifndef TAPIO_MEMORY_INT_H
#define TAPIO_MEMORY_INT_H

#include "tapio_int.h"

typedef struct seg {
  struct seg *next;
  double at;           /* when the reader may have it (loop time) */
  size_t len, off;     /* data[off..len) is left */
  char data[];
} seg;

/* One direction: what one side wrote that the other has not read. */
typedef struct mlink {
  seg *head, *tail;
  size_t queued;       /* bytes in the segments */
  size_t capacity;
  uint64_t taken;      /* bytes read from it so far */
  int eof;             /* the writer ended: end of file after the bytes */
  int error;           /* reset: the reader fails with it after the bytes */
  double end_at;       /* when the end (eof, error) reaches the reader */
  int eof_first;       /* the eof came before the error: a FIN, then a RST
                          (in CLOSE_WAIT), which the reader reads as eof */
  size_t chunk_min, chunk_max; /* 0, 0: reads take all there is */
  uint64_t rng;        /* splitmix64 state for chunk sizes */
  uint64_t *cuts;      /* offsets no read spans, ascending */
  size_t ncuts;
  double delay;
} mlink;

typedef struct mem_end mem_end;

typedef struct pair {
  tapio_loop *loop;
  mlink links[2];       /* links[i]: what side i writes */
  mem_end *ends[2];    /* NULL once that side is gone */
  int refs;
} pair;

struct mem_end {
  tapio__stream s;
  pair *p;
  int side;            /* 0: a, 1: b */
  tapio__task made;    /* connection_made */
  tapio__task wake;    /* runs the stream's read or write step */
  tapio__timer due;    /* a delayed byte becomes readable */
  tapio__link link;    /* in the kit's list of sides, while the side is */
  tapio__addr names[2]; /* the virtual network's: [0] its own, [1] its
                           peer's; len 0 for a pair made by the test */
  void (*gone)(void *ud, tapio_transport *t); /* told when the side goes */
  void *gone_ud;
  int rst_set;         /* the peer's socket is closed and bytes of this
                          side's reach it: its kernel answers with a RST */
  double rst_at;       /* ... which is back here then: writes fail */
};

/* Statics of the memory files alone (they include this header). */
static inline mem_end *end_of(tapio__stream *s) {
  return TAPIO_CONTAINER(s, mem_end, s);
}
static inline mlink *in_link(mem_end *e) { return &e->p->links[!e->side]; }
static inline mlink *out_link(mem_end *e) { return &e->p->links[e->side]; }
static inline mem_end *peer_of(mem_end *e) { return e->p->ends[!e->side]; }
static inline double now_of(mem_end *e) { return tapio__time(e->s.head.loop); }

/* ---- The sides as transports (memory.c) ---------------------------------- */

/* The kinds of a side: a socket's, and the pipes'. */
extern const tapio__kind tapio__mem_socket_kind, tapio__mem_read_pipe_kind,
    tapio__mem_write_pipe_kind;
/* A memory pair's side, or NULL. */
mem_end *tapio__mem_of(tapio_transport *t);

/* ---- Links and the I/O layer (memory_link.c) ----------------------------- */

extern const tapio__io tapio__memory_io;
/* Bytes the reader may have now: the segments due, in order. */
size_t tapio__mem_readable(const mlink *l, double now);
/* Copies the first n bytes out (buf may be NULL: dropped), freeing what
 * is read. */
void tapio__mem_take(tapio_loop *loop, mlink *l, char *buf, size_t n);
void tapio__mem_link_free(tapio_loop *loop, mlink *l);
/* The writer's end (eof, or error for a reset) has reached the reader. */
int tapio__mem_ended(const mlink *l, double now);
/* The writer's side ends the link (error 0: eof), at the time its
 * segment would arrive; the first end sets that time. */
void tapio__mem_link_end(tapio_loop *loop, mlink *l, int error);
/* The reader has something to do: bytes due, or the end after them. */
int tapio__mem_can_read(mem_end *e);
/* A write would do something: room, or an error to give. */
int tapio__mem_can_write(mem_end *e);

/* ---- Waking a side (memory_wake.c) --------------------------------------- */

/* e's wake task and timer, and e among the kit's sides. */
void tapio__mem_wake_init(mem_end *e);
/* Their undoing, when e goes. */
void tapio__mem_wake_stop(mem_end *e);
/* Posts e's wake task (e may be NULL). */
void tapio__mem_wake(mem_end *e);
/* The next delayed byte of e's input, or its end: its timer, when it is
 * not due yet (e may be NULL). */
void tapio__mem_arm_due(mem_end *e);

/* ---- A side's end, as the other sees it (memory_ends.c) ------------------ */

/* A write pipe whose reader went: closed with EPIPE; 1 when so. */
int tapio__mem_reader_left(mem_end *e);
/* A write to a side whose peer has gone, as TCP answers it. */
ssize_t tapio__mem_write_to_gone(mem_end *e, const struct iovec *iov,
                                 int n);
/* The side goes: its end reaches the peer. Once. */
void tapio__mem_end_gone(mem_end *e);

#endif /* TAPIO_MEMORY_INT_H */
