/* A program outside the project, built against an installed tapio: it
 * must find the header and the library, and run. */
#include <tapio.h>

#include <stdio.h>
#include <string.h>

int main(void) {
  tapio_loop *loop;
  if (tapio_loop_new(&loop) != 0)
    return 1;
  if (strcmp(tapio_version_string(), "@VERSION@") != 0)
    return 2;
  printf("tapio %s\n", tapio_version_string());
  return tapio_loop_free(loop) == 0 ? 0 : 3;
}
