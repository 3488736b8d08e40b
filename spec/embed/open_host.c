/* tapio_lua_push_loop in the Lua states hosts hand it: one where tapio
 * cannot be required (no tapio_lua_open, no search path), one where a
 * script loaded tapio.core from package.cpath (the module a luarocks tree
 * installs: another copy of the binding than the host's), and none. */
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

static void run_lua(lua_State *L, const char *code)
{
  if (luaL_dostring(L, code) != LUA_OK)
    FAIL("%s", lua_tostring(L, -1));
}

/* Search paths that find nothing: only what the host puts in L. */
static lua_State *bare_state(void)
{
  lua_State *L = luaL_newstate();
  CHECK(L != NULL);
  luaL_openlibs(L);
  run_lua(L, "package.path, package.cpath = '', ''");
  return L;
}

/* The header: the object gets the Lua layer's methods "when
 * tapio_lua_open or a search path lets it"; without either, it is pushed
 * with the binding's own (it was refused with ENOMEM, with memory to
 * spare). */
static void pushed_without_the_lua_layer(void)
{
  lua_State *L = bare_state();
  size_t used;
  tapio_loop *loop = counted_loop(&used);
  int top = lua_gettop(L);
  CHECK_OK(tapio_lua_push_loop(L, loop));
  CHECK_EQ(lua_gettop(L), top + 1);
  CHECK(tapio_lua_to_loop(L, -1) == loop);
  lua_setglobal(L, "loop");
  run_lua(L, "n = 0; loop:call_soon(function() n = n + 1 end)");
  CHECK_OK(tapio_loop_run_once(loop, 0));
  run_lua(L, "assert(n == 1, 'the call ran')");
  lua_close(L);
  CHECK_EQ(used, 0);
}

/* A state whose scripts required tapio from the search paths (as from a
 * luarocks tree) before the host pushed its loop: its tapio.core is another copy of the binding,
 * whose registry keys and metatables are its own. The push is refused with
 * TAPIO_EEXIST, nothing pushed, and the loop freed at once (it crashed
 * in the registry of the copy that never opened). */
static void refused_beside_another_copy(void)
{
  lua_State *L = bare_state();
  size_t used;
  tapio_loop *loop = counted_loop(&used);
  int top;
  run_lua(L, "package.path = '" LUA_SRC_DIR "/?.lua;" LUA_SRC_DIR
             "/?/init.lua'\n"
             "package.cpath = '" CORE_SO_DIR "/?.so'\n"
             "assert(require 'tapio')");
  top = lua_gettop(L);
  CHECK_ERR(tapio_lua_push_loop(L, loop), TAPIO_EEXIST);
  CHECK_EQ(lua_gettop(L), top);
  CHECK_EQ(used, 0); /* no object took it: freed at once */
  lua_close(L);
}

/* A tapio that require finds and that raises is no memory shortage:
 * TAPIO_ECALLBACK, the loop freed at once. */
static void a_raising_layer_is_a_callback_error(void)
{
  lua_State *L = bare_state();
  size_t used;
  tapio_loop *loop = counted_loop(&used);
  run_lua(L, "package.preload.tapio = function() error('broken') end");
  CHECK_ERR(tapio_lua_push_loop(L, loop), TAPIO_ECALLBACK);
  CHECK_EQ(used, 0);
  lua_close(L);
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

TEST_MAIN(TEST(pushed_without_the_lua_layer),
          TEST(a_raising_layer_is_a_callback_error),
          TEST(refused_beside_another_copy),
          TEST(null_state_frees_the_loop))
