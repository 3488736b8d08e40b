/* The write queue: the bytes a stream could not send at once, in chunks
 * of at least MIN_CHUNK so that many small writes do not mean many small
 * allocations. */
#include "tapio_int.h"

#include <string.h>

#define MIN_CHUNK (16 * 1024)

struct tapio__wchunk {
  tapio__wchunk *next;
  size_t cap, start, end;
  char data[];
};

static void chunk_free(tapio_loop *loop, tapio__wchunk *c) {
  tapio__free(loop, c, sizeof *c + c->cap);
}

int tapio__wq_push(tapio_loop *loop, tapio__wqueue *q, const char *p,
                   size_t len) {
  tapio__wchunk *c = q->tail;
  size_t room = c ? c->cap - c->end : 0;
  size_t n = len < room ? len : room;
  if (n) {
    memcpy(c->data + c->end, p, n);
    c->end += n;
    p += n;
    len -= n;
  }
  if (!len)
    return 0;
  room = len > MIN_CHUNK ? len : MIN_CHUNK;
  c = tapio__alloc(loop, sizeof *c + room);
  if (!c)
    return TAPIO_ENOMEM;
  c->next = NULL;
  c->cap = room;
  c->start = 0;
  c->end = len;
  memcpy(c->data, p, len);
  if (q->tail)
    q->tail->next = c;
  else
    q->head = c;
  q->tail = c;
  return 0;
}

int tapio__wq_iov(const tapio__wqueue *q, struct iovec *iov, int max) {
  const tapio__wchunk *c;
  int n = 0;
  for (c = q->head; c && n < max; c = c->next, n++) {
    iov[n].iov_base = (void *)(c->data + c->start);
    iov[n].iov_len = c->end - c->start;
  }
  return n;
}

void tapio__wq_consume(tapio_loop *loop, tapio__wqueue *q, size_t n) {
  while (n) {
    tapio__wchunk *c = q->head;
    size_t left = c->end - c->start;
    if (n < left) {
      c->start += n;
      return;
    }
    n -= left;
    q->head = c->next;
    if (!q->head)
      q->tail = NULL;
    chunk_free(loop, c);
  }
}

void tapio__wq_clear(tapio_loop *loop, tapio__wqueue *q) {
  tapio__wchunk *c = q->head;
  while (c) {
    tapio__wchunk *next = c->next;
    chunk_free(loop, c);
    c = next;
  }
  q->head = q->tail = NULL;
}
