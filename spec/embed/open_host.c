/* tapio_lua_push_loop in the Lua states hosts hand it, and with none. */
#include "test.h"

#include <tapio_host.h>

#include <lauxlib.h>
#include <lualib.h>

/* The loop's allocator: counts the bytes it holds. */
static void *counting_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
  size_t *used = ud, old = ptr ? osize : 0;
  void *p;
  if (nsize == 0) {
    free(ptr);
    *used -= old;
    return NULL;
  }
  p = realloc(ptr, nsize);
  if (p)
    *used = *used - old + nsize;
  return p;
}

static tapio_loop *counted_loop(size_t *used)
{
  tapio_loop *loop = NULL;
  *used = 0;
  CHECK_OK(tapio_loop_new_with_allocator(&loop, counting_alloc, used));
  return loop;
}

/* With no state the loop is freed all the same (the header: after the
 * call the loop is never the host's to free). */
static void null_state_frees_the_loop(void)
{
  size_t used;
  tapio_loop *loop = counted_loop(&used);
  CHECK(used > 0);
  CHECK_ERR(tapio_lua_push_loop(NULL, loop), TAPIO_EINVAL);
  CHECK_EQ(used, 0);
  CHECK_ERR(tapio_lua_push_loop(NULL, NULL), TAPIO_EINVAL);
}

TEST_MAIN(TEST(null_state_frees_the_loop))
