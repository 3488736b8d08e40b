/* The library's version. */
#include "tapio_int.h"

#define TAPIO_STR2(x) #x
#define TAPIO_STR(x) TAPIO_STR2(x)

uint32_t tapio_version(void) { return TAPIO_VERSION; }

const char *tapio_version_string(void) {
  return TAPIO_STR(TAPIO_VERSION_MAJOR) "." TAPIO_STR(
      TAPIO_VERSION_MINOR) "." TAPIO_STR(TAPIO_VERSION_PATCH);
}
