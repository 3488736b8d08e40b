/* The allocator budget from Lua: a host whose lua_State and tapio loop
 * each allocate through a budget of its own runs a Lua echo server. When
 * the loop's budget refuses, a create call fails with ENOMEM, an accepted
 * connection is refused with the Lua exception handler told, a write
 * that must buffer ends its transport with connection_lost(ENOMEM); when
 * the Lua state's refuses, a connection is refused; either way the loop
 * goes on, serves again once memory is back, and nothing is leaked. */
#include "test.h"

#include <tapio_host.h>

#include <lauxlib.h>
#include <lualib.h>

typedef struct budget {
  size_t used, limit;
  long refused;
} budget;

static void *budget_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
  budget *b = ud;
  size_t old = ptr ? osize : 0; /* Lua passes a type tag for new blocks */
  void *p;
  if (nsize == 0) {
    free(ptr);
    b->used -= old;
    return NULL;
  }
  if (nsize > old && nsize - old > b->limit - b->used) {
    b->refused++;
    return NULL;
  }
  p = realloc(ptr, nsize);
  if (p)
    b->used = b->used - old + nsize;
  return p;
}

static const char setup[] =
  "errors, lost, conns = {}, {}, {}\n"
  "loop:set_exception_handler(function(_, ctx)\n"
  "  errors[#errors + 1] = type(ctx.exception) == 'table'\n"
  "    and ctx.exception.code or tostring(ctx.message)\n"
  "end)\n"
  "local Echo = {}\n"
  "Echo.__index = Echo\n"
  "function Echo:connection_made(t) self.t = t; conns[#conns + 1] = t end\n"
  "function Echo:data_received(d) self.t:write(d) end\n"
  "function Echo:connection_lost(err)\n"
  "  lost[#lost + 1] = err and err.code or 0\n"
  "end\n"
  "loop:create_server(function() return setmetatable({}, Echo) end,\n"
  "  '127.0.0.1', 0):add_done_callback(function(f)\n"
  "    port = f:result():addresses()[1].port\n"
  "  end)\n"
  "function flood(i)\n"
  "  local t, chunk = conns[i], string.rep('x', 65536)\n"
  "  for _ = 1, 10000 do\n"
  "    if t:is_closing() then return true end\n"
  "    t:write(chunk)\n"
  "  end\n"
  "end\n"
  "function try_create()\n"
  "  local ok, f = pcall(loop.create_server, loop, function() end,\n"
  "                      '127.0.0.1', 0)\n"
  "  if not ok then return type(f) == 'table' and f.code or f end\n"
  "  if f:done() and f:exception() then return f:exception().code end\n"
  "  return 'created'\n"
  "end\n"
  "function refs() return loop:_debug().refs end\n";

static lua_State *L;

/* Runs a global function of the script; its result as an integer. */
static long call(const char *fn, int arg)
{
  lua_getglobal(L, fn);
  lua_pushinteger(L, arg);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK)
    FAIL("%s: %s", fn, lua_tostring(L, -1));
  {
    long v = lua_isinteger(L, -1) ? (long)lua_tointeger(L, -1)
                                  : lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
  }
}

static long global_len(const char *name)
{
  long n;
  lua_getglobal(L, name);
  n = (long)luaL_len(L, -1);
  lua_pop(L, 1);
  return n;
}

static long global_at(const char *name, long i)
{
  long v;
  lua_getglobal(L, name);
  lua_rawgeti(L, -1, i);
  v = (long)lua_tointeger(L, -1);
  lua_pop(L, 2);
  return v;
}

/* One non-blocking read towards n bytes; 1 once they are all there. */
static int take(int fd, char *buf, size_t *got, size_t n)
{
  ssize_t k = recv(fd, buf + *got, n - *got, MSG_DONTWAIT);
  if (k == 0 || (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK))
    FAIL("the echo ended after %zu of %zu bytes", *got, n);
  if (k > 0)
    *got += (size_t)k;
  return *got == n;
}

static void echo_once(tapio_loop *loop, int port, const char *msg)
{
  char buf[64];
  size_t n = strlen(msg), got = 0;
  int fd = raw_connect(AF_INET, "127.0.0.1", port);
  CHECK(fd >= 0);
  raw_send_all(NULL, fd, msg, n);
  HOST_WAIT(loop, take(fd, buf, &got, n));
  CHECK(memcmp(buf, msg, n) == 0);
  close(fd);
}

static void refused(tapio_loop *loop, int port)
{
  char c;
  int fd = raw_connect(AF_INET, "127.0.0.1", port);
  CHECK(fd >= 0);
  HOST_WAIT(loop, recv(fd, &c, 1, MSG_DONTWAIT) == 0 ||
                      (errno != EAGAIN && errno != EWOULDBLOCK));
  close(fd);
}

static void budgets_from_lua(void)
{
  budget lb = { 0, SIZE_MAX, 0 }, cb = { 0, SIZE_MAX, 0 };
  tapio_loop *loop;
  long refs0, nerr, nlost;
  int port, peer_a;
  size_t lua0;
  uint64_t core0;
  L = lua_newstate(budget_alloc, &lb);
  CHECK(L != NULL);
  luaL_openlibs(L);
  CHECK_OK(tapio_lua_open(L));
  CHECK_OK(tapio_loop_new_with_allocator(&loop, budget_alloc, &cb));
  CHECK_OK(tapio_lua_push_loop(L, loop));
  lua_setglobal(L, "loop");
  CHECK(tapio_loop_backend_fd(loop) >= 0);
  if (luaL_dostring(L, setup) != LUA_OK)
    FAIL("setup: %s", lua_tostring(L, -1));
  HOST_WAIT(loop, (lua_getglobal(L, "port"), port = (int)lua_tointeger(L, -1),
                   lua_pop(L, 1), port != 0));
  echo_once(loop, port, "warm"); /* the read buffer is made */
  HOST_WAIT(loop, global_len("lost") == 1);
  lua_gc(L, LUA_GCCOLLECT, 0);
  refs0 = call("refs", 0);
  lua0 = lb.used;
  core0 = tapio_loop_memory(loop);

  /* the loop's budget refuses */
  peer_a = raw_connect(AF_INET, "127.0.0.1", port);
  CHECK(peer_a >= 0);
  HOST_WAIT(loop, global_len("conns") == 2);
  cb.limit = cb.used;
  CHECK_EQ(call("try_create", 0), TAPIO_ENOMEM); /* a create call fails */
  nerr = global_len("errors");
  refused(loop, port); /* accepted, then closed */
  HOST_WAIT(loop, global_len("errors") == nerr + 1);
  CHECK_EQ(global_at("errors", nerr + 1), TAPIO_ENOMEM); /* handler told */
  CHECK(call("flood", 2)); /* a write ends its transport */
  HOST_WAIT(loop, global_len("lost") == 2);
  CHECK_EQ(global_at("lost", 2), TAPIO_ENOMEM);
  close(peer_a);
  cb.limit = SIZE_MAX;
  echo_once(loop, port, "back"); /* memory is back: it serves */
  HOST_WAIT(loop, global_len("lost") == 3);
  lua_gc(L, LUA_GCCOLLECT, 0);
  CHECK_EQ(call("refs", 0), refs0);

  /* the Lua state's budget refuses */
  lua_gc(L, LUA_GCCOLLECT, 0);
  nlost = global_len("lost");
  lb.limit = lb.used;
  refused(loop, port);
  CHECK(lb.refused > 0);
  lb.limit = SIZE_MAX;
  echo_once(loop, port, "again");
  HOST_WAIT(loop, global_len("lost") == nlost + 1); /* "again" only */

  /* nothing leaked: Lua's references, the core's and Lua's memory */
  lua_gc(L, LUA_GCCOLLECT, 0);
  CHECK_EQ(call("refs", 0), refs0);
  CHECK_EQ(tapio_loop_memory(loop), core0);
  CHECK(lb.used < lua0 + 8192); /* the tables of records grew, no more */
  CHECK(cb.refused > 0);
  lua_close(L); /* frees the loop */
  CHECK_EQ(cb.used, 0);
  CHECK_EQ(lb.used, 0);
}

TEST_MAIN(TEST(budgets_from_lua))
