/* The Lua binding of the testing kit (capi/tapio.h's Testing section):
 * tapio.core.testing, a table the Lua module tapio.testing builds on.
 * Virtual-clock loops, advancing them, memory pairs of Lua protocols,
 * how a side's bytes reach the other, faults, fake programs, and a seeded
 * generator that gives the same draws under Lua 5.4 and LuaJIT. */
#include "tapio_lua.h"

#include <stdint.h>
#include <string.h>

#define TL_RANDOM "tapio.random"
#define TL_FAKE_CHILD "tapio.fake_child"

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
  if (rc < 0) {
    tl_push_run_error(L, lb->loop, fn, rc);
    return tl_raise_after_calls(L); /* callbacks ran on the loop's thread */
  }
  return 0;
}

/* The loop's step limit; with n, sets it first. */
static int k_step_limit(lua_State *L) {
  const char *fn = "testing.step_limit";
  tl_loop *lb = tl_checkloop(L, 1, fn);
  if (!tapio_loop_is_virtual(lb->loop))
    return luaL_error(L, "tapio: %s: the loop has no virtual clock "
                      "(tapio.testing.new_loop makes one)", fn);
  if (!lua_isnoneornil(L, 2)) {
    double n = tl_checknumber(L, 2, fn, 2, "n");
    if (!(n >= 0 && n <= 2147483647 && n == (double)(int64_t)n))
      return luaL_error(L, "tapio: %s: bad argument #2 'n' (an integer "
                        ">= 0 expected, got %s)", fn, lua_tostring(L, 2));
    tapio_loop_set_step_limit(lb->loop, (uint64_t)n);
  }
  lua_pushinteger(L, (lua_Integer)tapio_loop_step_limit(lb->loop));
  return 1;
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

/* ---- Datagram endpoints' faults ------------------------------------------ */

#define ENDPOINT "a datagram endpoint expected"

/* rc of a call on datagram endpoint t; EINVAL: what it expected. */
static int datagram_result(lua_State *L, const char *fn, int rc,
                           const char *expected) {
  if (rc == TAPIO_EINVAL)
    return tl_error_at(L, 2, fn, expected);
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
    return datagram_result(L, fn, tapio_datagram_set_faults(t, NULL),
                           ENDPOINT);
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
  return datagram_result(L, fn, tapio_datagram_set_faults(t, &f), ENDPOINT);
}

static int k_datagram_capacity(lua_State *L) {
  const char *fn = "testing.datagram_faults";
  tapio_transport *t = checkopen_at(L, 2, 1, fn);
  lua_Integer n = tl_checkint(L, 2, fn, 2, "capacity", 1, INT32_MAX);
  return datagram_result(L, fn, tapio_datagram_set_capacity(t, (size_t)n),
                         "capacity: a virtual loop's datagram endpoint "
                         "expected");
}

/* testing.datagram_in_flight(t): bytes t sent that have not arrived. */
static int k_datagram_in_flight(lua_State *L) {
  tapio_transport *t = checkopen(L, 1, "testing.datagram_in_flight");
  lua_pushinteger(L, (lua_Integer)tapio_datagram_in_flight(t));
  return 1;
}

/* registry[&ended_key]: a datagram endpoint's userdata (a weak key) ->
 * a copy of its fault counts at its connection_lost. */
static const char ended_key = 'e';


void tl_keep_fault_counts(lua_State *L, tl_transport *lt) {
  tapio_datagram_fault_counts c, *copy;
  if (lt->self_ref == LUA_NOREF || lt->lb->quiet ||
      tapio_datagram_get_fault_counts(lt->t, &c) < 0 || c.sent == 0 ||
      !lua_checkstack(L, 4))
    return; /* not a datagram endpoint, or nothing counted (a real one
               never given faults): reads as zeros */
  tl_push_weak(L, &ended_key, "k");
  lua_rawgeti(L, LUA_REGISTRYINDEX, lt->self_ref);
  copy = lua_newuserdata(L, sizeof *copy);
  *copy = c;
  lua_rawset(L, -3);
  lua_pop(L, 1);
}

/* testing.datagram_fault_counts(t): a table of how many datagrams each
 * fault hit; after connection_lost, the counts then. */
static int k_datagram_fault_counts(lua_State *L) {
  static const char *const names[] = {"sent", "lost", "dropped",
                                      "duplicated", "reordered", "delayed"};
  const char *fn = "testing.datagram_fault_counts";
  tl_transport *lt = tl_testtransport(L, 1);
  tapio_datagram_fault_counts c = {0, 0, 0, 0, 0, 0};
  uint64_t values[6];
  size_t i;
  if (!lt)
    return tl_typeerror(L, fn, 1, "transport", 1, "transport");
  if (!luaL_testudata(L, 1, TL_DGRAM_TRANSPORT) ||
      (lt->t && tapio_datagram_get_fault_counts(lt->t, &c) < 0))
    return luaL_error(L, "tapio: %s: bad argument #1 't' (a datagram "
                      "endpoint expected)", fn);
  if (!lt->t) { /* ended: its counts then (none kept: it sent nothing) */
    tl_push_weak(L, &ended_key, "k");
    lua_pushvalue(L, 1);
    lua_rawget(L, -2);
    if (lua_touserdata(L, -1))
      c = *(tapio_datagram_fault_counts *)lua_touserdata(L, -1);
  }
  values[0] = c.sent, values[1] = c.lost, values[2] = c.dropped;
  values[3] = c.duplicated, values[4] = c.reordered, values[5] = c.delayed;
  lua_createtable(L, 0, 6);
  for (i = 0; i < 6; i++) {
    lua_pushinteger(L, (lua_Integer)values[i]);
    lua_setfield(L, -2, names[i]);
  }
  return 1;
}

/* ---- Fake programs -------------------------------------------------------
 * testing._fake_program(loop, name, handler) registers a fake program
 * whose children tapio.testing plays in Lua: at each start,
 * handler(child, program, args, env, cwd, t0, t1, t2) gets the child (a
 * "tapio.fake_child") and the transports of its ends (nil where not
 * piped; t2 is t1 when stderr is stdout) and returns their protocols and
 * an events function, called as events("signal", sig) -> caught and
 * events("ended", returncode). The loop's table of fakes (lb->fakes_ref)
 * holds, by light userdata, each registration's handler and each running
 * child's events; by name, each registration's userdata. */

typedef struct tl_fake {
  tl_loop *lb;
} tl_fake;

typedef struct tl_child {
  tapio_fake_child *c; /* NULL once ended */
  tl_loop *lb;
  int self_ref;        /* anchors the userdata until ended */
} tl_child;

/* Pushes the loop's table of fakes (made on first use). */
static void push_fakes(lua_State *L, tl_loop *lb) {
  if (lb->fakes_ref == LUA_NOREF) {
    lua_newtable(L);
    lb->fakes_ref = tl_ref(lb, L);
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, lb->fakes_ref);
}

/* fakes[light key] = value on top (popped). */
static void set_fake(lua_State *L, tl_loop *lb, void *key) {
  push_fakes(L, lb);
  lua_insert(L, -2);
  tl_rawsetp(L, -2, key);
  lua_pop(L, 1);
}

/* Pushes fakes[light key]. */
static void get_fake(lua_State *L, tl_loop *lb, void *key) {
  push_fakes(L, lb);
  tl_rawgetp(L, -1, key);
  lua_remove(L, -2);
}

/* The transport of the child's end fd, its protocol yet to come. */
static void push_end(lua_State *L, tl_loop *lb, tapio_fake_child *c,
                     int fd) {
  tapio_transport *t = tapio_fake_child_pipe(c, fd);
  tl_transport *lt;
  if (!t) {
    lua_pushnil(L);
    return;
  }
  if (fd == 2 && t == tapio_fake_child_pipe(c, 1)) {
    lua_pushvalue(L, -1); /* stderr is stdout */
    return;
  }
  lt = tl_newtransport(L, lb, fd == 0 ? TL_READ_TRANSPORT
                                      : TL_WRITE_TRANSPORT);
  lt->t = t;
  tapio_transport_set_protocol(t, &tl_plain_protocol, lt);
}

static void push_strings(lua_State *L, const char *const *list, size_t n) {
  size_t i;
  lua_createtable(L, (int)n, 0);
  for (i = 0; i < n; i++) {
    lua_pushstring(L, list[i]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
}

/* The protocols the handler returned (at first) go to the ends (at
 * ends); an end without one gets an empty table. */
static void give_protocols(lua_State *L, tapio_fake_child *c, int ends,
                           int first) {
  int fd;
  for (fd = 0; fd < 3; fd++) {
    tl_transport *lt = lua_touserdata(L, ends + fd);
    if (!lt || (fd == 2 && lua_rawequal(L, ends + 1, ends + 2)))
      continue;
    if (first && lua_istable(L, first + fd))
      lua_pushvalue(L, first + fd);
    else
      lua_newtable(L);
    take(L, lt, tapio_fake_child_pipe(c, fd), lua_gettop(L));
    lua_pop(L, 1);
  }
}

static void fake_started(void *ud, tapio_fake_child *c, const char *program,
                         const char *const *args, size_t nargs) {
  tl_loop *lb = ((tl_fake *)ud)->lb;
  lua_State *L = lb->L;
  const char *const *env;
  size_t nenv;
  tl_child *ch;
  int top, fd, ok;
  if (lb->quiet || !L || !lua_checkstack(L, 20))
    return; /* ends with no protocol: the child runs unplayed */
  top = lua_gettop(L);
  for (fd = 0; fd < 3; fd++) /* top+1..top+3 */
    push_end(L, lb, c, fd);
  lua_rawgeti(L, LUA_REGISTRYINDEX, lb->msgh_ref);
  get_fake(L, lb, ud);
  ch = tl_newuserdata(L, sizeof *ch);
  ch->c = c;
  ch->lb = lb;
  luaL_setmetatable(L, TL_FAKE_CHILD);
  lua_pushvalue(L, -1);
  ch->self_ref = tl_ref(lb, L);
  tapio_fake_child_set_data(c, ch);
  lua_pushstring(L, program);
  push_strings(L, args, nargs);
  env = tapio_fake_child_env(c, &nenv);
  if (env)
    push_strings(L, env, nenv);
  else
    lua_pushnil(L);
  lua_pushstring(L, tapio_fake_child_cwd(c)); /* nil for NULL */
  for (fd = 0; fd < 3; fd++)
    lua_pushvalue(L, top + 1 + fd);
  /* the msgh stays at top+4; p0, p1, p2, events come at top+5.. */
  ok = tl_call(lb, L, 8, 4, "error in a fake program's start", NULL) == 0;
  give_protocols(L, c, top + 1, ok ? top + 5 : 0);
  if (ok) {
    lua_pushvalue(L, top + 8);
    set_fake(L, lb, ch);
  } else {
    tapio_fake_child_exit(c, 1);
  }
  lua_settop(L, top);
}

/* Calls the child's events(what, arg), leaving nres results; -1 (nothing
 * pushed) when it cannot be called or raised. */
static int child_event(tl_child *ch, const char *what, int arg, int nres) {
  tl_loop *lb = ch->lb;
  lua_State *L = lb->L;
  if (lb->quiet || !L || !lua_checkstack(L, 8))
    return -1;
  lua_rawgeti(L, LUA_REGISTRYINDEX, lb->msgh_ref);
  get_fake(L, lb, ch);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 2);
    return -1;
  }
  lua_pushstring(L, what);
  lua_pushinteger(L, arg);
  if (tl_call(lb, L, 2, nres, "error in a fake program's signal handler",
              NULL) < 0)
    return -1;
  lua_remove(L, -1 - nres); /* the msgh */
  return 0;
}

static int fake_signal(void *ud, tapio_fake_child *c, int sig) {
  tl_child *ch = tapio_fake_child_get_data(c);
  int caught;
  (void)ud;
  if (!ch || child_event(ch, "signal", sig, 1) < 0)
    return 0;
  caught = lua_toboolean(ch->lb->L, -1);
  lua_pop(ch->lb->L, 1);
  return caught;
}

/* The child is over: the Lua side hears of it, then lets go of it. */
static void fake_ended(void *ud, tapio_fake_child *c, int returncode) {
  tl_child *ch = tapio_fake_child_get_data(c);
  lua_State *L;
  (void)ud;
  if (!ch)
    return;
  ch->c = NULL;
  child_event(ch, "ended", returncode, 0);
  L = ch->lb->L;
  if (L && lua_checkstack(L, 4)) {
    lua_pushnil(L);
    set_fake(L, ch->lb, ch);
  }
  if (L)
    tl_unref(ch->lb, L, &ch->self_ref);
}

static const tapio_fake_program lua_program = {
  sizeof(tapio_fake_program), fake_started, fake_signal, fake_ended
};

/* testing._fake_program(loop, name, handler): tapio.testing checked the
 * arguments; handler nil removes the program. */
static int k_fake_program(lua_State *L) {
  const char *fn = "testing.fake_program";
  tl_loop *lb = tl_checkloop(L, 1, fn);
  const char *name = luaL_checkstring(L, 2);
  tl_fake *f;
  int rc;
  int on = !lua_isnil(L, 3);
  if (on)
    luaL_checktype(L, 3, LUA_TFUNCTION);
  lua_settop(L, 3);
  f = tl_newuserdata(L, sizeof *f); /* 4 */
  f->lb = lb;
  rc = tapio_loop_add_fake_program(lb->loop, name, on ? &lua_program : NULL,
                                   f);
  if (rc == TAPIO_ENOTSUP)
    return luaL_error(L, "tapio: %s: the loop has no virtual clock "
                      "(testing.new_loop makes one)", fn);
  if (rc < 0)
    return luaL_error(L, "tapio: %s: %s", fn, tapio_strerror(rc));
  push_fakes(L, lb); /* 5 */
  lua_pushvalue(L, 2);
  lua_rawget(L, 5); /* the registration this one replaces, if any: a child
                       spawned with it may not have started yet, so it
                       stays (and its handler) while the loop is open */
  if (lua_touserdata(L, -1)) {
    lua_pushboolean(L, 1);
    lua_rawset(L, 5);
  } else {
    lua_pop(L, 1);
  }
  lua_pushvalue(L, 2);
  lua_pushvalue(L, on ? 4 : 3);
  lua_rawset(L, 5); /* fakes[name] = its userdata, which stays */
  lua_pushvalue(L, 3);
  tl_rawsetp(L, 5, f); /* fakes[f] = handler */
  return 0;
}

/* testing._child_exit(child, status): true, or nil and an ESRCH error
 * once it exited or was killed. */
static int k_child_exit(lua_State *L) {
  const char *fn = "child:exit";
  tl_child *ch = luaL_checkudata(L, 1, TL_FAKE_CHILD);
  int status = (int)tl_checkint(L, 2, fn, 1, "status", 0, 255);
  int rc = ch->c ? tapio_fake_child_exit(ch->c, status) : TAPIO_ESRCH;
  if (rc < 0) {
    lua_pushnil(L);
    tl_pusherror(L, rc, "child:exit: the child has ended");
    return 2;
  }
  lua_pushboolean(L, 1);
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
  {"step_limit", k_step_limit},
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
  {"datagram_fault_counts", k_datagram_fault_counts},
  {"_fake_program", k_fake_program},
  {"_child_exit", k_child_exit},
  {NULL, NULL}
};

int tl_open_testing(lua_State *L) {
  luaL_newmetatable(L, TL_RANDOM);
  lua_pushcfunction(L, random_call);
  lua_setfield(L, -2, "__call");
  lua_pop(L, 1);
  luaL_newmetatable(L, TL_FAKE_CHILD);
  lua_pop(L, 1);
  lua_newtable(L);
  luaL_setfuncs(L, functions, 0);
  lua_setfield(L, -2, "testing");
  return 0;
}
