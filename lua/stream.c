/* The hot paths of the Lua streams (tapio/reader.lua) in C: a stream
 * connection's data_received handing a chunk to the task waiting in a
 * read and resuming it there and then, and readline's cut of a line
 * out of the reader's first chunk. The state stays in the reader's and
 * task's Lua tables (tapio/reader.lua, tapio/task.lua own it); these
 * functions only spare the Lua calls, the bytecodes and the string
 * library's argument checks of the usual case, and hand everything else
 * to the Lua functions they were given. */
#include "tapio_lua.h"

#include <string.h>

#if LUA_VERSION_NUM >= 504
#define resume_co(co, from, narg, nres) lua_resume((co), (from), (narg), (nres))
#else
static int resume_co(lua_State *co, lua_State *from, int narg, int *nres) {
  int status = lua_resume(co, narg);
  (void)from;
  *nres = lua_gettop(co); /* 5.1: the stack holds only the results */
  return status;
}
#endif

/* Whether tapio.task resumes tasks through its timed resume (debug
 * mode): then a wake-up takes tapio.task's own unpark. */
static const char timed_key = 't';

/* The field names both closures read, as their first upvalues: a key
 * pushed from an upvalue and a raw get or set cost about half a
 * lua_getfield, which interns its C string each time. The tables' fields
 * read here are always present (or, _parked, absent from the class too):
 * the raw access is the same as Lua's. */
static const char *const keys[] = {
  "_reader", "_waiter", "_take", "_size", "_parked", "_co", "_must_cancel",
  "_failed", "_chunks", "_head", "_tail", "_off", "_limit", "_consumed",
  "_paused"
};
enum { K_READER = 1, K_WAITER, K_TAKE, K_SIZE, K_PARKED, K_CO,
       K_MUST_CANCEL, K_FAILED, K_CHUNKS, K_HEAD, K_TAIL, K_OFF, K_LIMIT,
       K_CONSUMED, K_PAUSED, NKEYS = K_PAUSED };

/* The upvalues after the keys: data_received's, cut_line's. */
enum { U_FEED = NKEYS + 1, U_UNPARK, U_STOPPED, U_PARK, U_DEFERRED,
       U_TIMED };
enum { U_READERS = NKEYS + 1, U_MAYBE_RESUME };

/* Pushes t[k] of the table at idx (absolute), raw. */
static void get(lua_State *L, int idx, int k) {
  lua_pushvalue(L, lua_upvalueindex(k));
  lua_rawget(L, idx);
}

static lua_Integer int_field(lua_State *L, int idx, int k) {
  get(L, idx, k);
  return lua_tointeger(L, -1); /* left on the stack: the call's end pops */
}

static int bool_field(lua_State *L, int idx, int k) {
  get(L, idx, k);
  return lua_toboolean(L, -1);
}

static void set_int(lua_State *L, int idx, int k, lua_Integer v) {
  lua_pushvalue(L, lua_upvalueindex(k));
  lua_pushinteger(L, v);
  lua_rawset(L, idx);
}

/* Calls tapio.task's stopped(task, ok, what, on) with the task at ti
 * and the values on top (ok last), which it pops. */
static void stopped(lua_State *L, int ti) {
  lua_pushvalue(L, lua_upvalueindex(U_STOPPED));
  lua_pushvalue(L, ti);
  lua_pushvalue(L, -3);
  lua_pushvalue(L, -6);
  lua_pushvalue(L, -6);
  lua_call(L, 4, 0);
  lua_pop(L, 3);
}

/* The coroutine co's results after resume_co: nres values yielded (or
 * returned), or the error. Pushes what, on, ok for stopped. */
static void push_outcome(lua_State *L, lua_State *co, int status, int nres) {
  if (status == LUA_YIELD && nres >= 1) {
    lua_xmove(co, L, nres);
    lua_settop(L, lua_gettop(L) - nres + 2); /* what, on: nil if none */
    lua_pushboolean(L, 1);
  } else if (status == LUA_OK || status == LUA_YIELD) {
    lua_settop(co, 0); /* a task's function returns nothing (task.lua) */
    lua_pushnil(L);
    lua_pushnil(L);
    lua_pushboolean(L, 1);
  } else {
    lua_xmove(co, L, 1); /* the error */
    lua_pushnil(L);
    lua_pushboolean(L, 0);
  }
}

/* tapio.task's unpark(task, obj, value) for the task at ti parked on the
 * value at oi, resuming it with the value at vi; the usual end (the task
 * parks again, with no work deferred and no cancel pending) done here,
 * anything else by tapio.task's stopped. Returns whether it woke it. */
static int unpark(lua_State *L, int ti, int oi, int vi) {
  lua_State *co;
  int status, nres = 0, top = lua_gettop(L);
  if (*(int *)lua_touserdata(L, lua_upvalueindex(U_TIMED))) {
    lua_pushvalue(L, lua_upvalueindex(U_UNPARK));
    lua_pushvalue(L, ti);
    lua_pushvalue(L, oi);
    lua_pushvalue(L, vi);
    lua_call(L, 3, 1);
    return lua_toboolean(L, -1);
  }
  get(L, ti, K_PARKED);
  if (!lua_rawequal(L, -1, oi))
    return 0;
  lua_pushvalue(L, lua_upvalueindex(K_PARKED));
  lua_pushnil(L);
  lua_rawset(L, ti);
  get(L, ti, K_CO);
  co = lua_tothread(L, -1); /* the task holds its coroutine */
  lua_pushvalue(L, vi);
  lua_xmove(L, co, 1);
  status = resume_co(co, L, 1, &nres);
  if (status == LUA_YIELD && nres == 2) {
    lua_xmove(co, L, 2); /* [top+3] what, [top+4] on */
    lua_rawgeti(L, lua_upvalueindex(U_DEFERRED), 1);
    if (lua_rawequal(L, top + 3, lua_upvalueindex(U_PARK)) &&
        lua_isnil(L, -1) && !bool_field(L, ti, K_MUST_CANCEL)) {
      lua_pushvalue(L, lua_upvalueindex(K_PARKED));
      lua_pushvalue(L, top + 4);
      lua_rawset(L, ti);
      return 1;
    }
    lua_settop(L, top + 4);
    lua_pushboolean(L, 1);
  } else {
    push_outcome(L, co, status, nres);
  }
  stopped(L, ti);
  return 1;
}

/* data_received(protocol, data) of a stream connection (tapio.reader's
 * M.data_received): where a read waits for up to n bytes on an empty
 * buffer and #data <= n, data is handed to it as it came; else, or when
 * the task no longer waits there, tapio.reader's feed_data buffers it. */
static int data_received(lua_State *L) {
  size_t n = 0;
  lua_settop(L, 2);
  get(L, 1, K_READER); /* 3 */
  get(L, 3, K_WAITER); /* 4: a task, or false */
  if (lua_type(L, 2) == LUA_TSTRING)
    n = tl_rawlen(L, 2);
  if (lua_toboolean(L, 4) && n > 0) {
    get(L, 3, K_TAKE);
    if ((lua_Number)n <= lua_tonumber(L, -1) &&
        int_field(L, 3, K_SIZE) == 0) {
      lua_pushvalue(L, lua_upvalueindex(K_WAITER));
      lua_pushboolean(L, 0);
      lua_rawset(L, 3);
      if (unpark(L, 4, 3, 2))
        return 0;
    }
  }
  lua_pushvalue(L, lua_upvalueindex(U_FEED));
  lua_pushvalue(L, 3);
  lua_pushvalue(L, 2);
  lua_call(L, 2, 0);
  return 0;
}

/* Takes the line of nbytes at off (1-based) that ends the first chunk
 * (at 6; p, its bytes) out of the buffer, as take does; pushes it. */
static void take_chunk_end(lua_State *L, const char *p, lua_Integer off,
                           lua_Integer nbytes, lua_Integer head,
                           lua_Integer size) {
  if (off == 1)
    lua_pushvalue(L, 6); /* the chunk as it came */
  else
    lua_pushlstring(L, p + off - 1, (size_t)nbytes);
  lua_pushnil(L);
  lua_rawseti(L, 5, (int)head);
  set_int(L, 1, K_HEAD, size == nbytes ? 1 : head + 1);
  if (size == nbytes)
    set_int(L, 1, K_TAIL, 0);
}

/* cut_line(reader, co) -> the line, or nothing: readline's usual case,
 * in the task that read the reader last (readers[reader]._co == co),
 * with no error set: a whole line within the limit in the buffer's first
 * chunk, taken out of the buffer. */
static int cut_line(lua_State *L) {
  const char *p, *nl;
  size_t len;
  lua_Integer size, head, off, e, nbytes;
  lua_settop(L, 2);
  lua_pushvalue(L, 1);
  lua_rawget(L, lua_upvalueindex(U_READERS)); /* 3: the task, NOBODY, nil */
  if (!lua_istable(L, 3))
    return 0;
  get(L, 3, K_CO); /* 4 */
  if (!lua_rawequal(L, 4, 2))
    return 0;
  size = int_field(L, 1, K_SIZE); /* 5 */
  if (size == 0 || bool_field(L, 1, K_FAILED))
    return 0;
  get(L, 1, K_CHUNKS);
  lua_replace(L, 5);
  head = int_field(L, 1, K_HEAD);
  lua_rawgeti(L, 5, (int)head); /* 7: the first chunk */
  lua_replace(L, 6);
  p = lua_tolstring(L, 6, &len);
  if (!p)
    return 0;
  off = int_field(L, 1, K_OFF);
  if (off < 1 || (size_t)off > len)
    return 0;
  nl = memchr(p + off - 1, '\n', len - (size_t)(off - 1));
  if (!nl)
    return 0;
  e = nl - p + 1;
  get(L, 1, K_LIMIT);
  if ((lua_Number)(e - off) > lua_tonumber(L, -1))
    return 0; /* over the limit: readline's error path */
  nbytes = e - off + 1;
  lua_settop(L, 6);
  if ((size_t)e < len) {
    lua_pushlstring(L, p + off - 1, (size_t)nbytes); /* 7 */
    set_int(L, 1, K_OFF, e + 1);
  } else {
    take_chunk_end(L, p, off, nbytes, head, size); /* 7 */
    set_int(L, 1, K_OFF, 1);
  }
  set_int(L, 1, K_SIZE, size - nbytes);
  set_int(L, 1, K_CONSUMED, int_field(L, 1, K_CONSUMED) + nbytes);
  if (bool_field(L, 1, K_PAUSED)) {
    lua_pushvalue(L, lua_upvalueindex(U_MAYBE_RESUME));
    lua_pushvalue(L, 1);
    lua_call(L, 1, 0);
  }
  lua_settop(L, 7);
  return 1;
}

static void push_keys(lua_State *L) {
  int i;
  for (i = 0; i < NKEYS; i++)
    lua_pushstring(L, keys[i]);
}

/* core._stream_hooks(feed_data, unpark, stopped, PARK, deferred, readers,
 * maybe_resume) -> data_received, cut_line (tapio.reader): the values
 * they use from tapio.reader and tapio.task. deferred is tapio.task's
 * list of deferred work (the same table for ever). */
static int l_stream_hooks(lua_State *L) {
  int i;
  lua_settop(L, 7);
  luaL_checkstack(L, NKEYS + 8, "_stream_hooks");
  push_keys(L);
  for (i = 1; i <= 5; i++)
    lua_pushvalue(L, i);
  tl_rawgetp(L, LUA_REGISTRYINDEX, &timed_key);
  lua_pushcclosure(L, data_received, U_TIMED);
  push_keys(L);
  lua_pushvalue(L, 6);
  lua_pushvalue(L, 7);
  lua_pushcclosure(L, cut_line, U_MAYBE_RESUME);
  return 2;
}

/* core._stream_timed(on): tapio.task resumes tasks timed (debug mode),
 * or not. */
static int l_stream_timed(lua_State *L) {
  tl_rawgetp(L, LUA_REGISTRYINDEX, &timed_key);
  *(int *)lua_touserdata(L, -1) = lua_toboolean(L, 1);
  return 0;
}

static const luaL_Reg stream_functions[] = {
  {"_stream_hooks", l_stream_hooks},
  {"_stream_timed", l_stream_timed},
  {NULL, NULL}
};

int tl_open_stream(lua_State *L) {
  *(int *)tl_newuserdata(L, sizeof(int)) = 0;
  tl_rawsetp(L, LUA_REGISTRYINDEX, &timed_key);
  luaL_setfuncs(L, stream_functions, 0);
  return 0;
}
