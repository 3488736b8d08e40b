/* The loop's allocator: every allocation of a loop and its handles goes
 * through it and is counted (tapio_loop_memory); the loop's read buffer. */
#include "tapio_int.h"

#include <stdlib.h>
#include <string.h>

void *tapio__default_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  (void)ud;
  (void)osize;
  if (nsize == 0) {
    free(ptr);
    return NULL;
  }
  return realloc(ptr, nsize);
}

void *tapio__alloc(tapio_loop *loop, size_t size) {
  void *p = loop->alloc(loop->alloc_ud, NULL, 0, size);
  if (p)
    loop->memory += size;
  return p;
}

void *tapio__calloc(tapio_loop *loop, size_t size) {
  void *p = tapio__alloc(loop, size);
  if (p)
    memset(p, 0, size);
  return p;
}

void tapio__free(tapio_loop *loop, void *ptr, size_t size) {
  if (!ptr)
    return;
  loop->alloc(loop->alloc_ud, ptr, size, 0);
  loop->memory -= size;
}

char *tapio__strdup(tapio_loop *loop, const char *s) {
  size_t n = strlen(s) + 1;
  char *p = tapio__alloc(loop, n);
  if (p)
    memcpy(p, s, n);
  return p;
}

void tapio__strfree(tapio_loop *loop, char *s) {
  if (s)
    tapio__free(loop, s, strlen(s) + 1);
}

uint64_t tapio_loop_memory(tapio_loop *loop) {
  return loop ? loop->memory : 0;
}

char *tapio__read_buffer_make(tapio_loop *loop) {
  uintptr_t p;
  loop->rbuf_block = tapio__alloc(loop, TAPIO__RBUF_SIZE + TAPIO__RBUF_ALIGN);
  if (!loop->rbuf_block)
    return NULL;
  p = (uintptr_t)loop->rbuf_block;
  p = (p + TAPIO__RBUF_ALIGN - 1) & ~(uintptr_t)(TAPIO__RBUF_ALIGN - 1);
  loop->rbuf = (char *)p;
  return loop->rbuf;
}

