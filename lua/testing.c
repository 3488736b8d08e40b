/* The Lua binding of the testing kit (capi/tapio.h's Testing section):
 * tapio.core.testing, a table the Lua module tapio.testing builds on.
 * Virtual-clock loops, advancing them, memory pairs of Lua protocols,
 * how a side's bytes reach the other, faults, and a seeded generator
 * that gives the same draws under Lua 5.4 and LuaJIT. */
#include "tapio_lua.h"

#include <stdint.h>
#include <string.h>

#define TL_RANDOM "tapio.random"

/* ---- Loops --------------------------------------------------------------- */

/* testing.new_loop(): a "tapio.loop" on a virtual clock at 0. */
static int k_new_loop(lua_State *L) {
  tapio_loop *loop = NULL;
  int rc = tapio_loop_new_virtual(&loop, NULL, NULL);
  if (rc < 0) {
    lua_pushfstring(L, "tapio: testing.new_loop: %s", tapio_strerror(rc));
    tl_pusherror(L, rc, lua_tostring(L, -1));
    return lua_error(L);
  }
  lua_pushcfunction(L, tl_wrap_loop);
  lua_pushlightuserdata(L, &loop);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
    if (loop)
      tapio_loop_free(loop); /* not adopted: no memory for the object */
    return lua_error(L);
  }
  return 1;
}

/* testing._advance(loop, seconds): tapio_loop_advance, from outside a run
 * (clock:advance takes the other way inside one). */
static int k_advance(lua_State *L) {
  const char *fn = "clock:advance";
  tl_loop *lb = tl_checkloop(L, 1, fn);
  double seconds = tl_checknumber(L, 2, fn, 1, "seconds");
  int rc = tapio_loop_advance(lb->loop, seconds);
  if (rc == TAPIO_ENOTSUP)
    return luaL_error(L, "tapio: %s: the loop has no virtual clock "
                      "(tapio.testing.new_loop makes one)", fn);
  if (rc < 0)
    return luaL_error(L, "tapio: %s: %s", fn, tapio_strerror(rc));
  return 0;
}

static int k_is_virtual(lua_State *L) {
  tl_loop *lb = tl_toloop(L, 1, "testing.is_virtual");
  lua_pushboolean(L, lb->loop && tapio_loop_is_virtual(lb->loop));
  return 1;
}

/* The due time of the next timer, or nil. */
static int k_next_timer(lua_State *L) {
  tl_loop *lb = tl_checkloop(L, 1, "clock:next_timer");
  double next = tapio_loop_next_timer(lb->loop);
  if (next < 0)
    return 0;
  lua_pushnumber(L, next);
  return 1;
}

static int k_transport_count(lua_State *L) {
  tl_loop *lb = tl_toloop(L, 1, "testing.transport_count");
  lua_pushinteger(L, lb->loop ? (lua_Integer)tapio_loop_transport_count(
                                    lb->loop)
                              : 0);
  return 1;
}

static int k_server_count(lua_State *L) {
  tl_loop *lb = tl_toloop(L, 1, "testing.server_count");
  lua_pushinteger(L, lb->loop ? (lua_Integer)tapio_loop_server_count(
                                    lb->loop)
                              : 0);
  return 1;
}

/* ---- Memory pairs -------------------------------------------------------- */

static void check_protocol(lua_State *L, int idx, const char *fn, int n,
                           const char *name) {
  if (!lua_istable(L, idx))
    tl_typeerror(L, fn, n, name, idx, "table");
}

/* Takes the protocol at idx for lt, whose transport is t. */
static void take(lua_State *L, tl_transport *lt, tapio_transport *t,
                 int idx) {
  lt->t = t;
  lua_pushvalue(L, idx);
  lt->proto_ref = tl_ref(lt->lb, L);
  tl_choose_kind(L, idx, lt);
}

/* testing._pipe_pair(loop, protocol_a, protocol_b): two tapio.transport
 * objects at once; their connection_made come from the loop. */
static int k_pipe_pair(lua_State *L) {
  const char *fn = "testing.pipe_pair";
  tl_loop *lb = tl_checkloop(L, 1, fn);
  tapio_transport *a, *b;
  tl_transport *la, *lb2;
  int rc;
  check_protocol(L, 2, fn, 1, "protocol_a");
  check_protocol(L, 3, fn, 2, "protocol_b");
  lua_settop(L, 3);
  la = tl_newtransport(L, lb, TL_TRANSPORT);  /* 4 */
  lb2 = tl_newtransport(L, lb, TL_TRANSPORT); /* 5 */
  rc = tapio_memory_pair(lb->loop, &tl_plain_protocol, la,
                         &tl_plain_protocol, lb2, &a, &b);
  if (rc < 0) {
    tl_release_transport(L, la);
    tl_release_transport(L, lb2);
    return luaL_error(L, "tapio: %s: %s", fn, tapio_strerror(rc));
  }
  take(L, la, a, 2);
  take(L, lb2, b, 3);
  return 2;
}

/* The open transport at idx (any kind), or raises at level: 1, the
 * caller's line; 2 for testing._fault and _drip, which testing.fault (in
 * Lua) calls for the user. */
static tapio_transport *checkopen_at(lua_State *L, int level, int idx,
                                     const char *fn) {
  tl_transport *lt = tl_testtransport(L, idx);
  if (!lt)
    tl_typeerror_at(L, level, fn, 1, "transport", idx, "transport");
  if (!lt->t)
    tl_error_at(L, level, fn, "transport is closed");
  return lt->t;
}

static tapio_transport *checkopen(lua_State *L, int idx, const char *fn) {
  return checkopen_at(L, 1, idx, fn);
}

/* A seed: an integer 0..2^53 (what both flavours count exactly). */
static uint64_t checkseed(lua_State *L, int idx, const char *fn, int n) {
  if (lua_isnoneornil(L, idx))
    return 0;
  return (uint64_t)tl_checkint(L, idx, fn, n, "seed", 0,
                               (lua_Integer)1 << 53);
}

/* The Lua layer checked the values: what the core refuses is the
 * transport. */
static int fail_setter(lua_State *L, const char *fn, int rc) {
  if (rc == TAPIO_EINVAL)
    return luaL_error(L, "tapio: %s: not a memory pair's transport", fn);
  return luaL_error(L, "tapio: %s: %s", fn, tapio_strerror(rc));
}

/* testing._chunks(t, min, max, seed) */
static int k_chunks(lua_State *L) {
  const char *fn = "testing.pipe_pair";
  tapio_transport *t = checkopen(L, 1, fn);
  lua_Integer min = tl_checkint(L, 2, fn, 2, "chunk", 0, INT32_MAX);
  lua_Integer max = tl_checkint(L, 3, fn, 2, "chunk", 0, INT32_MAX);
  int rc = tapio_memory_set_chunks(t, (size_t)min, (size_t)max,
                                   checkseed(L, 4, fn, 3));
  return rc < 0 ? fail_setter(L, fn, rc) : 0;
}

/* testing._splits(t, {offsets...}) */
static int k_splits(lua_State *L) {
  const char *fn = "testing.pipe_pair";
  tapio_transport *t = checkopen(L, 1, fn);
  size_t n, i;
  uint64_t *at;
  int rc;
  luaL_checktype(L, 2, LUA_TTABLE);
  n = (size_t)tl_rawlen(L, 2);
  at = lua_newuserdata(L, (n ? n : 1) * sizeof *at);
  for (i = 0; i < n; i++) {
    lua_rawgeti(L, 2, (int)i + 1);
    at[i] = (uint64_t)tl_checkint(L, -1, fn, 2, "splits", 0,
                                  (lua_Integer)1 << 53);
    lua_pop(L, 1);
  }
  rc = tapio_memory_set_splits(t, at, n);
  return rc < 0 ? fail_setter(L, fn, rc) : 0;
}

static int k_delay(lua_State *L) {
  const char *fn = "testing.pipe_pair";
  tapio_transport *t = checkopen(L, 1, fn);
  double d = tl_checknumber(L, 2, fn, 2, "delay");
  int rc = tapio_memory_set_delay(t, d);
  return rc < 0 ? fail_setter(L, fn, rc) : 0;
}

static int k_capacity(lua_State *L) {
  const char *fn = "testing.pipe_pair";
  tapio_transport *t = checkopen(L, 1, fn);
  lua_Integer n = tl_checkint(L, 2, fn, 2, "capacity", 1, INT32_MAX);
  int rc = tapio_memory_set_capacity(t, (size_t)n);
  return rc < 0 ? fail_setter(L, fn, rc) : 0;
}

/* testing.in_flight(t): what t wrote that its peer has not read. */
static int k_in_flight(lua_State *L) {
  const char *fn = "testing.in_flight";
  tapio_transport *t = checkopen(L, 1, fn);
  size_t n = tapio_memory_in_flight(t, NULL, 0);
  char *p = lua_newuserdata(L, n ? n : 1); /* 5.1 has no prepbuffsize */
  tapio_memory_in_flight(t, p, n);
  lua_pushlstring(L, p, n);
  return 1;
}

/* testing.peer(t): the other side's transport object, or nil. */
static int k_peer(lua_State *L) {
  tapio_transport *t = checkopen(L, 1, "testing.peer");
  tapio_transport *p = tapio_memory_peer(t);
  if (!p)
    return 0;
  tl_pushtransport(L, p);
  return 1;
}

/* ---- Faults -------------------------------------------------------------- */

static int fault_result(lua_State *L, int level, const char *fn, int rc) {
  if (rc == TAPIO_ENOTSUP)
    return tl_error_at(L, level, fn, "faults go on stream transports only "
                    "(a socket, a pipe, a memory pair, with TLS or not)");
  if (rc < 0)
    return tl_error_at(L, level, fn, tapio_strerror(rc));
  return 0;
}

/* testing._fault(t, which, after, code) */
static int k_fault(lua_State *L) {
  const char *fn = "testing.fault";
  tapio_transport *t = checkopen_at(L, 2, 1, fn);
  int which = (int)tl_checkint(L, 2, fn, 2, "fault", 1, 5);
  lua_Integer after = tl_checkint(L, 3, fn, 2, "after", 0,
                                  (lua_Integer)1 << 53);
  lua_Integer code = lua_isnoneornil(L, 4)
                         ? 0
                         : tl_checkint(L, 4, fn, 2, "error", INT32_MIN, -1);
  return fault_result(L, 2, fn, tapio_fault_set(t, which, (uint64_t)after,
                                                code));
}

/* testing._drip(t, bytes, interval) */
static int k_drip(lua_State *L) {
  const char *fn = "testing.fault";
  tapio_transport *t = checkopen_at(L, 2, 1, fn);
  lua_Integer bytes = tl_checkint(L, 2, fn, 2, "drip", 0, INT32_MAX);
  double interval = tl_checknumber(L, 3, fn, 2, "drip_interval");
  /* testing.fault checked the values (check_drip) before any was set */
  return fault_result(L, 2, fn, tapio_fault_drip(t, (size_t)bytes,
                                                 interval));
}

static int k_clear_faults(lua_State *L) {
  const char *fn = "testing.clear_faults";
  tl_transport *lt = tl_testtransport(L, 1);
  if (!lt)
    return tl_typeerror(L, fn, 1, "transport", 1, "transport");
  if (lt->t)
    return fault_result(L, 1, fn, tapio_fault_clear(lt->t));
  return 0;
}

/* ---- Virtual datagram endpoints ----------------------------------------- */

static int datagram_result(lua_State *L, const char *fn, int rc) {
  if (rc == TAPIO_EINVAL)
    return tl_error_at(L, 2, fn, "a virtual loop's datagram endpoint "
                       "expected");
  if (rc < 0)
    return tl_error_at(L, 2, fn, tapio_strerror(rc));
  return 0;
}

/* testing._datagram_faults(t, spec): spec's values checked by
 * testing.datagram_faults (seed drawn); nil clears. */
static int k_datagram_faults(lua_State *L) {
  const char *fn = "testing.datagram_faults";
  tapio_transport *t = checkopen_at(L, 2, 1, fn);
  tapio_datagram_faults f;
  uint64_t *drop;
  size_t i;
  if (lua_isnoneornil(L, 2))
    return datagram_result(L, fn, tapio_datagram_set_faults(t, NULL));
  luaL_checktype(L, 2, LUA_TTABLE);
  memset(&f, 0, sizeof f);
  lua_getfield(L, 2, "loss");
  lua_getfield(L, 2, "duplicate");
  lua_getfield(L, 2, "reorder");
  lua_getfield(L, 2, "delay");
  lua_getfield(L, 2, "jitter");
  lua_getfield(L, 2, "seed");
  lua_getfield(L, 2, "drop");
  f.loss = lua_tonumber(L, -7);
  f.duplicate = lua_tonumber(L, -6);
  f.reorder = (unsigned)lua_tointeger(L, -5);
  f.delay = lua_tonumber(L, -4);
  f.jitter = lua_tonumber(L, -3);
  f.seed = checkseed(L, -2, fn, 2);
  f.ndrop = lua_istable(L, -1) ? (size_t)tl_rawlen(L, -1) : 0;
  drop = lua_newuserdata(L, (f.ndrop ? f.ndrop : 1) * sizeof *drop);
  for (i = 0; i < f.ndrop; i++) {
    lua_rawgeti(L, -2, (int)i + 1);
    drop[i] = (uint64_t)lua_tointeger(L, -1);
    lua_pop(L, 1);
  }
  f.drop = drop;
  return datagram_result(L, fn, tapio_datagram_set_faults(t, &f));
}

static int k_datagram_capacity(lua_State *L) {
  const char *fn = "testing.datagram_faults";
  tapio_transport *t = checkopen_at(L, 2, 1, fn);
  lua_Integer n = tl_checkint(L, 2, fn, 2, "capacity", 1, INT32_MAX);
  return datagram_result(L, fn, tapio_datagram_set_capacity(t, (size_t)n));
}

/* testing.datagram_in_flight(t): bytes t sent that have not arrived. */
static int k_datagram_in_flight(lua_State *L) {
  tapio_transport *t = checkopen(L, 1, "testing.datagram_in_flight");
  lua_pushinteger(L, (lua_Integer)tapio_datagram_in_flight(t));
  return 1;
}

/* ---- A seeded generator -------------------------------------------------- */

/* splitmix64, as the core draws chunk sizes: the same draws everywhere. */
static uint64_t next_random(uint64_t *state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* testing._random(seed): a generator; gen(lo, hi) draws an integer in
 * lo..hi (within 0..2^53). */
static int k_random(lua_State *L) {
  uint64_t *state;
  uint64_t seed = checkseed(L, 1, "testing.random", 1);
  state = lua_newuserdata(L, sizeof *state);
  *state = seed;
  luaL_setmetatable(L, TL_RANDOM);
  return 1;
}

static int random_call(lua_State *L) {
  const char *fn = "random";
  uint64_t *state = luaL_checkudata(L, 1, TL_RANDOM);
  lua_Integer lo = tl_checkint(L, 2, fn, 1, "lo", 0, (lua_Integer)1 << 53);
  lua_Integer hi = tl_checkint(L, 3, fn, 2, "hi", lo, (lua_Integer)1 << 53);
  uint64_t span = (uint64_t)(hi - lo) + 1;
  lua_pushinteger(L, lo + (lua_Integer)(next_random(state) % span));
  return 1;
}

static const luaL_Reg functions[] = {
  {"new_loop", k_new_loop},
  {"_advance", k_advance},
  {"is_virtual", k_is_virtual},
  {"_next_timer", k_next_timer},
  {"transport_count", k_transport_count},
  {"server_count", k_server_count},
  {"_pipe_pair", k_pipe_pair},
  {"_chunks", k_chunks},
  {"_splits", k_splits},
  {"_delay", k_delay},
  {"_capacity", k_capacity},
  {"in_flight", k_in_flight},
  {"peer", k_peer},
  {"_fault", k_fault},
  {"_drip", k_drip},
  {"clear_faults", k_clear_faults},
  {"_random", k_random},
  {"_datagram_faults", k_datagram_faults},
  {"_datagram_capacity", k_datagram_capacity},
  {"datagram_in_flight", k_datagram_in_flight},
  {NULL, NULL}
};

int tl_open_testing(lua_State *L) {
  luaL_newmetatable(L, TL_RANDOM);
  lua_pushcfunction(L, random_call);
  lua_setfield(L, -2, "__call");
  lua_pop(L, 1);
  lua_newtable(L);
  luaL_setfuncs(L, functions, 0);
  lua_setfield(L, -2, "testing");
  return 0;
}
