/* Counting what OpenSSL allocates, for the TLS rows' stats ports
 * (openssl_echo.c, tapio_echo.c) and spec/c/test_tls_waiting.c:
 * ossl_count_install() before anything of OpenSSL runs, then ossl_bytes
 * is what it holds (malloc's usable sizes, which is what the process
 * pays). */
#ifndef TAPIO_BENCH_OSSL_COUNT_H
#define TAPIO_BENCH_OSSL_COUNT_H

#include <malloc.h>
#include <openssl/crypto.h>
#include <stdint.h>
#include <stdlib.h>

static int64_t ossl_bytes;

static void *count_malloc(size_t n, const char *file, int line)
{
  void *p = malloc(n);
  (void)file;
  (void)line;
  if (p)
    ossl_bytes += (int64_t)malloc_usable_size(p);
  return p;
}

static void count_free(void *p, const char *file, int line)
{
  (void)file;
  (void)line;
  if (p)
    ossl_bytes -= (int64_t)malloc_usable_size(p);
  free(p);
}

static void *count_realloc(void *p, size_t n, const char *file, int line)
{
  size_t old = p ? malloc_usable_size(p) : 0;
  void *q = realloc(p, n);
  (void)file;
  (void)line;
  if (q || n == 0)
    ossl_bytes += (int64_t)(q ? malloc_usable_size(q) : 0) - (int64_t)old;
  return q;
}

/* 0 when OpenSSL has allocated already: it keeps its own allocator. */
static inline int ossl_count_install(void)
{
  return CRYPTO_set_mem_functions(count_malloc, count_realloc, count_free);
}

#endif
