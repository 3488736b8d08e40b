/* The Lua binding's protocol side: the tapio_protocol tables whose
 * callbacks call a Lua protocol table's methods, each through the loop's
 * one protected-call path (callback.c) and a trampoline that does the
 * method lookup, the data string and the error values inside the protected
 * call.
 * A missing method is the reference's default. */
#include "tapio_lua.h"

#include <stdio.h>
#include <stdlib.h>

/* A protocol with get_buffer is a BufferedProtocol, as asyncio decides by
 * class when the protocol is set; the tapio table must say so. Only the
 * stream tables are switched (a socket's, a pipe's): a datagram endpoint
 * and a subprocess keep their own. */
void tl_choose_kind(lua_State *L, int proto, tl_transport *lt) {
  const tapio_protocol *cur = NULL;
  lua_getfield(L, proto, "get_buffer");
  lt->buffered = !lua_isnil(L, -1);
  lua_pop(L, 1);
  tapio_transport_get_protocol(lt->t, &cur);
  if (cur == &tl_plain_protocol || cur == &tl_buffered_protocol)
    tapio_transport_set_protocol(lt->t,
                                 lt->buffered ? &tl_buffered_protocol
                                              : &tl_plain_protocol,
                                 lt);
}

void tl_take_protocol(lua_State *L, tl_transport *lt, int client) {
  tl_context_factory(L, lt, client);
  if (!lua_istable(L, -1))
    luaL_error(L, "tapio: the protocol factory returned %s, not a table",
               luaL_typename(L, -1));
  tl_choose_kind(L, lua_gettop(L), lt);
  lt->proto_ref = tl_ref(lt->lb, L);
}

/* ---- Trampolines: inside the protected call ---------------------------- */

/* proto[name](proto, values at first..top) with nres results; returns 0
 * without calling when the method is missing (the reference's default). */
static int call_method(lua_State *L, tl_transport *lt, const char *name,
                       int first, int nres) {
  int top = lua_gettop(L), i;
  if (lt->proto_ref == LUA_NOREF)
    return 0; /* the factory failed: there is no protocol */
  lua_rawgeti(L, LUA_REGISTRYINDEX, lt->proto_ref);
  lua_getfield(L, -1, name);
  if (lua_isnil(L, -1))
    return 0;
  lua_insert(L, -2);
  for (i = first; i <= top; i++)
    lua_pushvalue(L, i);
  lua_call(L, top - first + 2, nres);
  return 1;
}

/* [1] lt */
int tl_tr_factory(lua_State *L) {
  tl_transport *lt = lua_touserdata(L, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, lt->factory_ref);
  tl_unref(lt->lb, L, &lt->factory_ref);
  tl_take_protocol(L, lt, 1);
  return 0;
}

/* [1] lt */
int tl_tr_made(lua_State *L) {
  tl_transport *lt = lua_touserdata(L, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, lt->self_ref);
  call_method(L, lt, "connection_made", 2, 0);
  return 0;
}

/* What p_data hands its trampoline, as one light userdata. */
typedef struct data_args {
  tl_transport *lt;
  const char *p;
  size_t len;
} data_args;

#if LUA_VERSION_NUM >= 504
/* Reads of at least this many bytes make a string that the collector's
 * pacing notices on its own (a streaming read: 256 KiB). */
#define TL_BIG_READ (64 * 1024)

/* After data_received had a big read's string: collects now if the next
 * read of the same size would, by counting that read's string in advance
 * and then taking the advance back (so the collector's pace is unchanged:
 * the next string's allocation then finds its share paid). In
 * generational mode a string that was only passed on is dead once
 * data_received returns; left to the pacing, the collection comes when
 * the next read's string is allocated, so a stream keeps two such blocks
 * in turn (a read is copied into the one last touched a read ago).
 * Collected here, the next string takes the block just freed (the host's
 * allocator keeps it) and the same memory serves every read, as it does
 * for a Python bytes object freed by its reference count. A stopped
 * collector stays stopped. */
static void collect_ahead(lua_State *L, size_t len) {
  int kb = (int)(len >> 10);
  if (!lua_gc(L, LUA_GCISRUNNING))
    return;
  lua_gc(L, LUA_GCSTEP, kb);
  lua_gc(L, LUA_GCSTEP, -kb);
}
#endif

/* [1] data_args; upvalue 1 "data_received". The hot path: one lookup,
 * one string, one call. */
int tl_tr_data(lua_State *L) {
  const data_args *a = lua_touserdata(L, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, a->lt->proto_ref); /* 2: protocol */
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_gettable(L, 2);
  if (lua_isnil(L, -1))
    return 0;
  lua_pushvalue(L, 2);
  lua_pushlstring(L, a->p, a->len);
  lua_call(L, 2, 0);
#if LUA_VERSION_NUM >= 504
  if (a->len >= TL_BIG_READ)
    collect_ahead(L, a->len);
#endif
  return 0;
}

/* [1] lt, [2] the method's name, [3...] its arguments: returns the
 * method's first result (nothing when the method is missing). */
int tl_tr_method(lua_State *L) {
  tl_transport *lt = lua_touserdata(L, 1);
  return call_method(L, lt, lua_touserdata(L, 2), 3, 1);
}

/* [1] lt, [2] code, [3] message. A callback's error reaches
 * connection_lost as the value the protocol raised. */
int tl_tr_lost(lua_State *L) {
  tl_transport *lt = lua_touserdata(L, 1);
  int code = (int)lua_tointeger(L, 2);
  lua_settop(L, 3);
  if (code == 0)
    lua_pushnil(L);
  else if (code == TAPIO_ECALLBACK && lt->err_ref != LUA_NOREF)
    lua_rawgeti(L, LUA_REGISTRYINDEX, lt->err_ref);
  else
    tl_pusherror(L, code, lua_touserdata(L, 3));
  call_method(L, lt, "connection_lost", 4, 0);
  return 0;
}

typedef struct getbuf_out {
  char *p;
  size_t len;
} getbuf_out;

/* Keeps the buffer alive until buffer_updated, in a slot made once. */
static void anchor_buffer(lua_State *L, tl_transport *lt, int idx) {
  lua_pushvalue(L, idx);
  if (lt->buf_ref == LUA_NOREF)
    lt->buf_ref = tl_ref(lt->lb, L);
  else
    lua_rawseti(L, LUA_REGISTRYINDEX, lt->buf_ref);
}

/* [1] lt, [2] sizehint, [3] getbuf_out. get_buffer returns a tapio.buffer
 * and, optionally, the position to receive at (default 1). */
int tl_tr_getbuf(lua_State *L) {
  tl_transport *lt = lua_touserdata(L, 1);
  getbuf_out *out = lua_touserdata(L, 3);
  tl_buffer *b;
  lua_Integer start = 1;
  lua_settop(L, 2);
  if (!call_method(L, lt, "get_buffer", 2, 2))
    return luaL_error(L, "tapio: the protocol has no get_buffer method");
  b = luaL_testudata(L, 3, TL_BUFFER);
  if (!b)
    return luaL_error(L, "tapio: get_buffer returned %s, not a tapio.buffer",
                      luaL_typename(L, 3));
  if (!lua_isnil(L, 4)) {
    if (!tl_tointeger(L, 4, &start))
      return luaL_error(L, "tapio: get_buffer's second result must be an "
                           "integer position");
    if (start < 1 || (size_t)start > b->size + 1) {
      char msg[96]; /* %I is 5.3+: format here for both */
      snprintf(msg, sizeof msg, "%lld is outside the buffer (1..%llu)",
               (long long)start, (unsigned long long)b->size + 1);
      return luaL_error(L, "tapio: get_buffer's position %s", msg);
    }
  }
  anchor_buffer(L, lt, 3);
  out->p = b->data + (start - 1);
  out->len = b->size - (size_t)(start - 1);
  return 0;
}

/* ---- The tapio_protocol callbacks -------------------------------------- */

/* Nothing can be called without stack room: the connection fails. */
static int prepare(tl_transport *lt, lua_State *L, int which) {
  if (tl_prepare(lt->lb, L, which) == 0)
    return 0;
  tapio_transport_fail(lt->t, TAPIO_ENOMEM, "Lua stack overflow");
  return -1;
}

void tl_done(lua_State *L, int nres, int status) {
  if (status == 0)
    lua_pop(L, nres + 1);
}

#define MADE_ERROR "error in protocol.connection_made()"

void tl_base_made(void *ud, tapio_transport *t) {
  tl_transport *lt = ud;
  lua_State *L = lt->lb->L;
  lt->t = t;
  if (lt->proto_ref == LUA_NOREF) {
    if (prepare(lt, L, TL_T_FACTORY) < 0)
      return;
    lua_pushlightuserdata(L, lt);
    /* not to the handler: create_connection raises it (as asyncio) */
    if (tl_call(lt->lb, L, 1, 0, NULL, lt) < 0)
      return;
    lua_pop(L, 1);
  }
  if (prepare(lt, L, TL_T_MADE) < 0)
    return;
  lua_pushlightuserdata(L, lt);
  /* in a copy of lt's context, as asyncio's call_soon makes: what it sets
   * is not seen by the callbacks after it */
  tl_done(L, 0, lt->ctx_ref == LUA_NOREF
                ? tl_call(lt->lb, L, 1, 0, MADE_ERROR, lt)
                : tl_call_in(lt->lb, L, 1, 0, MADE_ERROR, lt,
                             TL_IN_FAIL | TL_IN_OWN));
}

static void p_data(void *ud, tapio_transport *t, const char *data,
                   size_t len) {
  tl_transport *lt = ud;
  lua_State *L = lt->lb->L;
  data_args a;
  (void)t;
  if (prepare(lt, L, TL_T_DATA) < 0)
    return;
  a.lt = lt;
  a.p = data;
  a.len = len;
  lua_pushlightuserdata(L, &a);
  tl_done(L, 0, tl_proto_call(lt->lb, L, 1, 0,
                             "error in protocol.data_received()", lt));
}

/* A method without arguments (or with one integer when n >= 0), in lt's
 * context unless `here` (where it is called from); returns the truth of
 * its result, 1 after an error. */
static int simple(tl_transport *lt, const char *name, const char *what,
                  lua_Integer n, int here) {
  lua_State *L = lt->lb->L;
  int r;
  if (prepare(lt, L, TL_T_METHOD) < 0)
    return 1;
  lua_pushlightuserdata(L, lt);
  lua_pushlightuserdata(L, (void *)name);
  if (n >= 0)
    lua_pushinteger(L, n);
  if ((here ? tl_call(lt->lb, L, n >= 0 ? 3 : 2, 1, what, lt)
           : tl_proto_call(lt->lb, L, n >= 0 ? 3 : 2, 1, what, lt)) < 0)
    return 1;
  r = lua_toboolean(L, -1);
  lua_pop(L, 2);
  return r;
}

/* A true result keeps the transport half-open, as in asyncio. */
static int p_eof(void *ud, tapio_transport *t) {
  (void)t;
  return simple(ud, "eof_received", "error in protocol.eof_received()", -1,
                0);
}

/* write calls it, in its caller's context (asyncio's too) */
void tl_base_pause(void *ud, tapio_transport *t) {
  (void)t;
  simple(ud, "pause_writing", "error in protocol.pause_writing()", -1, 1);
}

void tl_base_resume(void *ud, tapio_transport *t) {
  (void)t;
  simple(ud, "resume_writing", "error in protocol.resume_writing()", -1, 0);
}

void tl_base_lost(void *ud, tapio_transport *t, int code,
                   const char *message) {
  tl_transport *lt = ud;
  tl_loop *lb = lt->lb;
  lua_State *L = lb->L;
  (void)t;
  if (!lb->quiet && tl_prepare(lb, L, TL_T_LOST) == 0) {
    lua_pushlightuserdata(L, lt);
    lua_pushinteger(L, code);
    lua_pushlightuserdata(L, (void *)message);
    tl_done(L, 0, tl_proto_call(lb, L, 3, 0,
                                "error in protocol.connection_lost()", lt));
  }
  tl_end_transport(L, lt, 0);
}

static void *p_get_buffer(void *ud, tapio_transport *t, int64_t sizehint,
                          size_t *len) {
  tl_transport *lt = ud;
  lua_State *L = lt->lb->L;
  getbuf_out out = {NULL, 0};
  (void)t;
  *len = 0;
  if (prepare(lt, L, TL_T_GETBUF) < 0)
    return NULL;
  lua_pushlightuserdata(L, lt);
  lua_pushinteger(L, (lua_Integer)sizehint);
  lua_pushlightuserdata(L, &out);
  if (tl_proto_call(lt->lb, L, 3, 0, "error in protocol.get_buffer()", lt) < 0)
    return NULL; /* the transport is failing already */
  lua_pop(L, 1);
  *len = out.len;
  return out.p;
}

static void p_buffer_updated(void *ud, tapio_transport *t, size_t nbytes) {
  (void)t;
  simple(ud, "buffer_updated", "error in protocol.buffer_updated()",
         (lua_Integer)nbytes, 0);
}

#if LUA_VERSION_NUM == 501
/* LuaJIT's allocator takes a block of 128 KiB or more straight from the
 * system and gives it back when freed: a string made from one of the
 * core's 256 KiB reads would cost an mmap, an munmap and 64 fresh pages.
 * Under LuaJIT a plain protocol reads through get_buffer into a buffer of
 * the loop's, small enough for LuaJIT's heap; each read then hands
 * data_received its bytes as the core's own buffer would. */
#define TL_JIT_READ_SIZE (120 * 1024)

static void *p_read_buffer(void *ud, tapio_transport *t, int64_t sizehint,
                           size_t *len) {
  tl_loop *lb = ((tl_transport *)ud)->lb;
  (void)t;
  (void)sizehint;
  if (!lb->rbuf)
    lb->rbuf = malloc(TL_JIT_READ_SIZE);
  *len = lb->rbuf ? TL_JIT_READ_SIZE : 0; /* none: the core reports it */
  return lb->rbuf;
}

static void p_read_done(void *ud, tapio_transport *t, size_t nbytes) {
  p_data(ud, t, ((tl_transport *)ud)->lb->rbuf, nbytes);
}
#endif

const tapio_protocol tl_plain_protocol = {
  .size = sizeof(tapio_protocol),
  .connection_made = tl_base_made,
  .connection_lost = tl_base_lost,
  .pause_writing = tl_base_pause,
  .resume_writing = tl_base_resume,
  .eof_received = p_eof,
#if LUA_VERSION_NUM == 501
  .get_buffer = p_read_buffer,
  .buffer_updated = p_read_done,
#else
  .data_received = p_data,
#endif
};

const tapio_protocol tl_buffered_protocol = {
  .size = sizeof(tapio_protocol),
  .connection_made = tl_base_made,
  .connection_lost = tl_base_lost,
  .pause_writing = tl_base_pause,
  .resume_writing = tl_base_resume,
  .eof_received = p_eof,
  .get_buffer = p_get_buffer,
  .buffer_updated = p_buffer_updated,
};
