/* The pipe benchmark's child: writes BYTES bytes to stdout as fast as it
 * can, 64 KiB at a time (a pipe's default capacity), then exits.
 *
 *   pipe_source BYTES */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static _Alignas(4096) char block[64 * 1024];

int main(int argc, char **argv)
{
  long long left = argc > 1 ? atoll(argv[1]) : 0;
  memset(block, 'x', sizeof block);
  while (left > 0) {
    size_t n = left < (long long)sizeof block ? (size_t)left : sizeof block;
    ssize_t k = write(1, block, n);
    if (k < 0 && errno == EINTR)
      continue;
    if (k <= 0) {
      perror("pipe_source: write");
      return 1;
    }
    left -= k;
  }
  return 0;
}
