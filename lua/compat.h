/* The few differences between the Lua 5.4 API and the 5.1 API of LuaJIT
 * that the binding meets, in one place. The binding is written against
 * 5.4; these macros give 5.1/LuaJIT the same names. LuaJIT 2.1 already
 * has luaL_setfuncs, luaL_newlib, luaL_testudata, luaL_setmetatable and
 * luaL_traceback. */
#ifndef TAPIO_LUA_COMPAT_H
#define TAPIO_LUA_COMPAT_H

#include <lauxlib.h>
#include <lua.h>

#if LUA_VERSION_NUM >= 504

/* One user value per userdata is all the binding uses. */
#define tl_newuserdata(L, size) lua_newuserdatauv((L), (size), 1)
#define tl_setuservalue(L, idx) ((void)lua_setiuservalue((L), (idx), 1))
#define tl_getuservalue(L, idx) ((void)lua_getiuservalue((L), (idx), 1))
/* n user values (a job's, work.c): slots 1..n. */
#define tl_newuserdata_n(L, size, n) lua_newuserdatauv((L), (size), (n))
#define tl_setiuservalue(L, idx, i) ((void)lua_setiuservalue((L), (idx), (i)))
#define tl_getiuservalue(L, idx, i) ((void)lua_getiuservalue((L), (idx), (i)))
#define tl_rawlen(L, idx) lua_rawlen((L), (idx))
#define tl_rawgetp(L, idx, p) ((void)lua_rawgetp((L), (idx), (p)))
#define tl_rawsetp(L, idx, p) lua_rawsetp((L), (idx), (p))
#define tl_absindex(L, idx) lua_absindex((L), (idx))
#define tl_requiref(L, name, open) luaL_requiref((L), (name), (open), 0)
#define tl_getsubtable(L, idx, name) ((void)luaL_getsubtable((L), (idx), (name)))
#define tl_raise_after_calls(L) lua_error(L)

/* The value of the number at idx as an integer, as Lua's own functions
 * take it: a float with an integral value counts (2^16, 1e6, 10 / 2).
 * Returns 0 for anything else (a fraction, NaN, beyond lua_Integer). */
static inline int tl_tointeger(lua_State *L, int idx, lua_Integer *v) {
  int ok = 0;
  if (lua_type(L, idx) == LUA_TNUMBER)
    *v = lua_tointegerx(L, idx, &ok);
  return ok;
}

#elif LUA_VERSION_NUM == 501

#include <math.h>

#ifndef LUA_OK
#define LUA_OK 0
#endif

/* 5.1 keeps a table, not any value, as a userdata's environment; the
 * binding only ever stores tables there. */
#define tl_newuserdata(L, size) lua_newuserdata((L), (size))
#define tl_setuservalue(L, idx) ((void)lua_setfenv((L), (idx)))
#define tl_getuservalue(L, idx) lua_getfenv((L), (idx))
#define tl_rawlen(L, idx) lua_objlen((L), (idx))

/* n user values: slots 1..n of a table that is the environment. */
static inline void *tl_newuserdata_n(lua_State *L, size_t size, int n) {
  void *p = lua_newuserdata(L, size);
  lua_createtable(L, n, 0);
  lua_setfenv(L, -2);
  return p;
}

static inline void tl_setiuservalue(lua_State *L, int idx, int i) {
  idx = idx < 0 ? lua_gettop(L) + idx + 1 : idx;
  lua_getfenv(L, idx);
  lua_insert(L, -2);
  lua_rawseti(L, -2, i);
  lua_pop(L, 1);
}

static inline void tl_getiuservalue(lua_State *L, int idx, int i) {
  idx = idx < 0 ? lua_gettop(L) + idx + 1 : idx;
  lua_getfenv(L, idx);
  lua_rawgeti(L, -1, i);
  lua_remove(L, -2);
}

static inline int tl_absindex(lua_State *L, int idx) {
  return (idx > 0 || idx <= LUA_REGISTRYINDEX) ? idx : lua_gettop(L) + idx + 1;
}

static inline void tl_rawgetp(lua_State *L, int idx, const void *p) {
  idx = tl_absindex(L, idx);
  lua_pushlightuserdata(L, (void *)p);
  lua_rawget(L, idx);
}

static inline void tl_rawsetp(lua_State *L, int idx, const void *p) {
  idx = tl_absindex(L, idx);
  lua_pushlightuserdata(L, (void *)p);
  lua_insert(L, -2);
  lua_rawset(L, idx);
}

/* Pushes t[name] of the table at idx, made a new table if it is not one. */
#define tl_getsubtable(L, idx, name) ((void)luaL_findtable((L), (idx), (name), 1))

/* luaL_requiref(L, name, open, 0) as 5.4 has it: open(name) unless
 * package.loaded[name] is already set, which then holds its result;
 * leaves the module on the stack. */
static inline void tl_requiref(lua_State *L, const char *name,
                               lua_CFunction open) {
  tl_getsubtable(L, LUA_REGISTRYINDEX, "_LOADED");
  lua_getfield(L, -1, name);
  if (!lua_toboolean(L, -1)) {
    lua_pop(L, 1);
    lua_pushcfunction(L, open);
    lua_pushstring(L, name);
    lua_call(L, 1, 1);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, name);
  }
  lua_remove(L, -2);
}

static inline int tl_nothing(lua_State *L) {
  (void)L;
  return 0;
}

/* lua_error(L) for a C function that has run Lua code on another thread
 * since it was called (the loop's thread, where every callback runs).
 * LuaJIT before its fix of September 2023 (its issue #1066; Debian 12's
 * 2.1.0~beta3+git20220320 is one) keeps that other thread as the running
 * one when a Lua pcall catches such an error, and the next exit from
 * compiled code then restores a snapshot through the wrong thread: a
 * crash. Calling into the VM on L once makes L the running thread again. */
static inline int tl_raise_after_calls(lua_State *L) {
  lua_pushcfunction(L, tl_nothing);
  lua_call(L, 0, 0);
  return lua_error(L);
}

/* 5.1 numbers are doubles: an integer is a whole number that a double
 * holds exactly. */
static inline int tl_tointeger(lua_State *L, int idx, lua_Integer *v) {
  lua_Number n;
  if (lua_type(L, idx) != LUA_TNUMBER)
    return 0;
  n = lua_tonumber(L, idx);
  if (!(n == floor(n) && n >= -9007199254740992.0 &&
        n <= 9007199254740992.0))
    return 0;
  *v = (lua_Integer)n;
  return 1;
}

#else
#error "tapio's Lua binding supports Lua 5.4 and LuaJIT (5.1 API)"
#endif

static inline int tl_isinteger(lua_State *L, int idx) {
  lua_Integer v;
  return tl_tointeger(L, idx, &v);
}

#endif
