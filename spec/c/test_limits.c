/* Limits: descriptors running out when a loop is made, many timers falling
 * due at once, and size arguments at the edge of their types. */
#include "test.h"

#include <math.h>

/* ---- Out of descriptors ------------------------------------------------ */

/* A loop needs two descriptors (its epoll instance and its wakeup). With
 * none or one left, tapio_loop_new returns TAPIO_EMFILE at once, keeps no
 * descriptor and no memory, and the process goes on: with two, it works. */
static void loop_new_emfile(void)
{
  fd_fill f;
  tapio_loop *loop = NULL;
  int free_fds;
  fd_fill_up(&f);
  for (free_fds = 0; free_fds <= 1; free_fds++) {
    fd_fill_free(&f, free_fds ? 1 : 0);
    CHECK_EQ(fd_count_free(), free_fds);
    loop = (tapio_loop *)&f; /* overwritten with NULL on failure */
    CHECK_ERR(tapio_loop_new(&loop), TAPIO_EMFILE);
    CHECK(loop == NULL);
    CHECK_EQ(fd_count_free(), free_fds); /* nothing kept */
  }
  fd_fill_free(&f, 1);
  CHECK_OK(tapio_loop_new(&loop));
  CHECK_EQ(fd_count_free(), 0);
  free_loop(loop);
  CHECK_EQ(fd_count_free(), 2);
  fd_fill_release(&f);
}

TEST_MAIN(
  TEST(loop_new_emfile)
)
