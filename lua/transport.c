/* The Lua binding's transports: the lifetime every kind shares, the
 * methods of every kind written once (each kind's metatable holds only
 * its own: tl_transport_class), "tapio.transport" (a stream), and
 * loop:_create_connection and friends (the Lua layer wraps them in the
 * async rule, see tapio/loop.lua: each takes the completion callback
 * first, then the user's arguments, numbered as the user sees them). The
 * protocol side is in protocol.c; the other kinds in pipe.c, process.c and
 * datagram.c. */
#include "tapio_lua.h"

#include <string.h>
#include <sys/socket.h>

#define FN_CONNECT "loop:create_connection"
#define FN_UNIX_CONNECT "loop:create_unix_connection"
#define FN_ACCEPTED "loop:connect_accepted_socket"

/* ---- Lifetime ---------------------------------------------------------- */

tl_transport *tl_newunanchored(lua_State *L, tl_loop *lb,
                               const char *tname) {
  tl_transport *lt = tl_newuserdata(L, sizeof *lt);
  memset(lt, 0, sizeof *lt);
  lt->lb = lb;
  lt->self_ref = lt->proto_ref = lt->factory_ref = LUA_NOREF;
  lt->cb_ref = lt->tls_ref = lt->err_ref = lt->buf_ref = LUA_NOREF;
  lt->ctx_ref = LUA_NOREF;
  tl_list_init(&lt->link);
  luaL_setmetatable(L, tname);
  return lt;
}

tl_transport *tl_newtransport(lua_State *L, tl_loop *lb, const char *tname) {
  tl_transport *lt = tl_newunanchored(L, lb, tname);
  lua_pushvalue(L, -1);
  lt->self_ref = tl_anchor(lb, L);
  tl_list_push(&lb->transports, &lt->link);
  return lt;
}

/* After connection_lost (or a failed connect): everything becomes
 * collectable and the userdata a closed shell. */
void tl_release_transport(lua_State *L, tl_transport *lt) {
  tl_loop *lb = lt->lb;
  if (!lb)
    return;
  tl_unref(lb, L, &lt->proto_ref);
  tl_unref(lb, L, &lt->factory_ref);
  tl_unref(lb, L, &lt->cb_ref);
  tl_unref(lb, L, &lt->tls_ref);
  tl_unref(lb, L, &lt->err_ref);
  tl_unref(lb, L, &lt->buf_ref);
  tl_unref(lb, L, &lt->ctx_ref);
  tl_unanchor(lb, L, &lt->self_ref);
  tl_list_remove(&lt->link);
  lt->t = NULL;
  lt->lb = NULL;
}

/* Also when the loop is freed quietly (its __gc at lua_close): the
 * shell calls nobody, and a finalizer that runs after the loop's still
 * reads the answers every other end gives. */
void tl_end_transport(lua_State *L, tl_transport *lt, int idx) {
  tl_loop *lb = lt->lb;
  idx = idx ? tl_absindex(L, idx) : 0;
  if (lb && lt->t && tl_prepare(lb, L, TL_T_SHELL) == 0) {
    lua_pushlightuserdata(L, lt);
    if (idx)
      lua_pushvalue(L, idx);
    else
      lua_rawgeti(L, LUA_REGISTRYINDEX, lt->self_ref);
    tl_done(L, 0, tl_call_open(lb, L, 2, 0, "error ending a transport", lt));
  }
  tl_release_transport(L, lt);
}

void tl_pushtransport(lua_State *L, tapio_transport *t) {
  const tapio_protocol *p = NULL;
  tl_transport *lt = tapio_transport_get_protocol(t, &p);
  if ((p == &tl_plain_protocol || p == &tl_buffered_protocol ||
       p == (const tapio_protocol *)&tl_datagram_protocol) &&
      lt->self_ref != LUA_NOREF)
    lua_rawgeti(L, LUA_REGISTRYINDEX, lt->self_ref);
  else
    lua_pushnil(L);
}

/* ---- Creating transports ----------------------------------------------- */

/* [1] lt, [2] status: the completion callback of create_connection gets
 * (nil, transport, protocol) or (err). */
int tl_tr_connected(lua_State *L) {
  tl_transport *lt = lua_touserdata(L, 1);
  int status = (int)lua_tointeger(L, 2);
  lua_rawgeti(L, LUA_REGISTRYINDEX, lt->cb_ref);
  if (status < 0) { /* the message says more: what each address did, or
                     * why the TLS handshake failed */
    tl_pusherror(L, status, tapio_loop_error_message(lt->lb->loop));
    lua_call(L, 1, 0);
  } else if (lt->proto_ref == LUA_NOREF) {
    /* the factory raised: create_connection raises that, like asyncio */
    if (lt->err_ref != LUA_NOREF)
      lua_rawgeti(L, LUA_REGISTRYINDEX, lt->err_ref);
    else
      tl_pusherror(L, TAPIO_ECALLBACK, "the protocol factory failed");
    lua_call(L, 1, 0);
  } else {
    lua_pushnil(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, lt->self_ref);
    lua_rawgeti(L, LUA_REGISTRYINDEX, lt->proto_ref);
    lua_call(L, 3, 0);
  }
  return 0;
}

void tl_complete(tl_transport *lt, int status, const char *what) {
  tl_loop *lb = lt->lb;
  lua_State *L = lb->L;
  if (!lb->quiet && tl_prepare(lb, L, TL_T_CONNECTED) == 0) {
    lua_pushlightuserdata(L, lt);
    lua_pushinteger(L, status);
    tl_done(L, 0, tl_call(lb, L, 2, 0, what, NULL));
  }
  tl_unref(lb, L, &lt->cb_ref);
}

void tl_on_connected(void *ud, int status, tapio_transport *t) {
  tl_transport *lt = ud;
  (void)t;
  tl_complete(lt, status, "error in a connect callback");
  if (status < 0) /* no connection_made, no connection_lost */
    tl_release_transport(lt->lb->L, lt);
}

/* The transport for a pending connect: the factory (at fi) runs at
 * connection_made, the callback (at cbi) once the connect is done. */
tl_transport *tl_pending(lua_State *L, tl_loop *lb, const char *tname,
                         int fi, int cbi) {
  tl_transport *lt = tl_newtransport(L, lb, tname);
  lua_pushvalue(L, fi);
  lt->factory_ref = tl_ref(lb, L);
  lua_pushvalue(L, cbi);
  lt->cb_ref = tl_ref(lb, L);
  lt->ctx_ref = tl_context_capture(L, lb, 0); /* the factory's, for now */
  return lt;
}

static const char *optstring(lua_State *L, int idx, const char *fn, int n,
                             const char *name) {
  if (lua_isnil(L, idx))
    return NULL;
  if (lua_type(L, idx) != LUA_TSTRING)
    tl_typeerror(L, fn, n, name, idx, "string or nil");
  return tl_checkcstring(L, idx, fn, n, name);
}

/* After the create call: on a synchronous failure the pending transport
 * is released and nil, err returned; else the pending transport, which
 * loop:_cancel takes. */
int tl_create_done(lua_State *L, tl_transport *lt, int rc) {
  if (rc < 0) {
    tapio_loop *loop = lt->lb->loop;
    tl_release_transport(L, lt);
    return tl_fail_call(L, loop, rc);
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, lt->self_ref);
  return 1;
}

/* loop:_create_connection(cb, factory, host, port, opts), or
 * (cb, factory, opts) for a connected socket given as opts.sock */
static int l_create_connection(lua_State *L) {
  tl_loop *lb = tl_checkloop(L, 1, FN_CONNECT);
  const char *host;
  int port = 0, rc;
  tapio_options *o = NULL;
  tl_transport *lt;
  lua_settop(L, 6);
  if (lua_istable(L, 4) && lua_isnil(L, 5) && lua_isnil(L, 6)) {
    lua_insert(L, 4); /* (factory, opts): host and port nil */
    lua_insert(L, 4);
  }
  tl_checkcallable(L, 3, FN_CONNECT, 1, "protocol_factory");
  host = optstring(L, 4, FN_CONNECT, 2, "host");
  if ((rc = tl_refuse_named_port(L, FN_CONNECT, 5, 6)))
    return rc;
  if (!lua_isnil(L, 5))
    port = tl_checkport(L, 5, FN_CONNECT, 3);
  if (!lua_isnil(L, 6) && !lua_istable(L, 6))
    return tl_typeerror(L, FN_CONNECT, 4, "opts", 6, "table or nil");
  if (!tl_has_sock(L, 6) && (!host || lua_isnil(L, 5)))
    return tl_argerror(L, FN_CONNECT, 2, "host",
                       "host and port are required unless opts.sock is "
                       "given");
  if (tl_has_sock(L, 6) && (host || port))
    return tl_argerror(L, FN_CONNECT, host ? 2 : 3, host ? "host" : "port",
                       TL_SOCK_EXCLUDES);
  o = tl_options(L, 6, FN_CONNECT, 4, TAPIO_CALL_CREATE_CONNECTION, lb->loop);
  lt = tl_pending(L, lb, TL_TRANSPORT, 3, 2);
  rc = tapio_create_connection(lb->loop, host, port, &tl_plain_protocol, lt,
                               o, tl_on_connected, lt);
  tapio_options_free(o);
  return tl_create_done(L, lt, rc);
}

/* loop:_create_unix_connection(cb, factory, path, opts), or (cb, factory,
 * opts) for a connected Unix socket given as opts.sock */
static int l_create_unix_connection(lua_State *L) {
  tl_loop *lb = tl_checkloop(L, 1, FN_UNIX_CONNECT);
  const char *path;
  tapio_options *o = NULL;
  tl_transport *lt;
  int rc;
  tl_checkcallable(L, 3, FN_UNIX_CONNECT, 1, "protocol_factory");
  path = tl_unix_path_or_sock(L, FN_UNIX_CONNECT);
  o = tl_options(L, 5, FN_UNIX_CONNECT, 3, TAPIO_CALL_CREATE_UNIX_CONNECTION,
                 lb->loop);
  lt = tl_pending(L, lb, TL_TRANSPORT, 3, 2);
  rc = tapio_create_unix_connection(lb->loop, path, &tl_plain_protocol, lt,
                                    o, tl_on_connected, lt);
  tapio_options_free(o);
  return tl_create_done(L, lt, rc);
}

/* loop:_connect_accepted_socket(cb, factory, fd, opts): tapio owns fd
 * from here on, also when this fails. */
static int l_connect_accepted_socket(lua_State *L) {
  tl_loop *lb = tl_checkloop(L, 1, FN_ACCEPTED);
  const char *why;
  tapio_options *o = NULL;
  tl_transport *lt;
  int fd, rc;
  tl_checkcallable(L, 3, FN_ACCEPTED, 1, "protocol_factory");
  fd = (int)tl_checkint(L, 4, FN_ACCEPTED, 2, "sock", 0, 0x7fffffff);
  o = tl_options(L, 5, FN_ACCEPTED, 3, TAPIO_CALL_CONNECT_ACCEPTED_SOCKET,
                 lb->loop);
  why = tl_socktype_problem(fd, SOCK_STREAM);
  if (why) {
    tapio_options_free(o);
    return tl_argerror(L, FN_ACCEPTED, 2, "sock", why);
  }
  lt = tl_pending(L, lb, TL_TRANSPORT, 3, 2);
  rc = tapio_connect_accepted_socket(lb->loop, fd, &tl_plain_protocol, lt, o,
                                     tl_on_connected, lt);
  tapio_options_free(o);
  return tl_create_done(L, lt, rc);
}

/* ---- Transport methods ------------------------------------------------- */

/* Methods get the metatable as upvalue 1: checking self compares two
 * addresses, with no registry lookup on the write path. */
static tl_transport *totransport(lua_State *L, const char *fn) {
  if (tl_isclass(L, 1))
    return lua_touserdata(L, 1);
  lua_getfield(L, lua_upvalueindex(1), "__name"); /* the kind expected */
  tl_typeerror(L, fn, 0, "self", 1, lua_tostring(L, -1));
  return NULL;
}

tl_transport *tl_checktransport(lua_State *L, const char *fn) {
  return totransport(L, fn);
}

tl_transport *tl_testtransport(lua_State *L, int idx) {
  int ok = luaL_getmetafield(L, idx, "__transport") != 0;
  if (ok)
    lua_pop(L, 1);
  return ok ? lua_touserdata(L, idx) : NULL;
}

void tl_check_usable(lua_State *L, tl_transport *lt, tl_loop *lb,
                     const char *fn) {
  if (!lt->t)
    luaL_error(L, "tapio: %s: transport is closed", fn);
  if (lt->lb != lb)
    luaL_error(L, "tapio: %s: the transport belongs to another loop", fn);
}

/* ---- The closed shell: what a transport answers after connection_lost,
 * as asyncio's do (kept by tl_tr_shell) -------------------------------- */

/* The table of the userdata at idx (absolute; made if it has none), on
 * top. */
static void push_uv(lua_State *L, tl_transport *lt, int idx) {
  if (lt->has_uv) {
    tl_getuservalue(L, idx);
    return;
  }
  lua_createtable(L, TL_SHELL_N, 2);
  lua_pushvalue(L, -1);
  tl_setuservalue(L, idx);
  lt->has_uv = 1;
}

/* The shell's (self's) slot, or nil, on top. */
static void push_kept(lua_State *L, tl_transport *lt, int slot) {
  if (!lt->has_uv) {
    lua_pushnil(L);
    return;
  }
  tl_getuservalue(L, 1);
  lua_rawgeti(L, -1, slot);
  lua_remove(L, -2);
}

/* Sets the shell's (self's) slot to the value on top (popped). */
static void set_kept(lua_State *L, tl_transport *lt, int slot) {
  push_uv(L, lt, 1);
  lua_insert(L, -2);
  lua_rawseti(L, -2, slot);
  lua_pop(L, 1);
}

static int push_name(lua_State *L, tl_transport *lt, int peer);
static void push_stats(lua_State *L, tapio_transport *t);

/* [1] lt, [2] its userdata, still open, in connection_lost's end: what
 * asyncio's closed transports still answer, and tapio's figures. The
 * descriptor (or pipe) and the SSL object are gone: their keys answer the
 * default. */
int tl_tr_shell(lua_State *L) {
  tl_transport *lt = lua_touserdata(L, 1);
  tapio_transport *t = lt->t;
  int kind = tapio_transport_get_kind(t);
  size_t low = 0, high = 0;
  push_uv(L, lt, 2); /* 3 */
  tl_pushloop(L, lt->lb);
  lua_rawseti(L, 3, TL_SHELL_LOOP);
  if (kind == TAPIO_TRANSPORT_SUBPROCESS) {
    lua_pushinteger(L, tapio_subprocess_get_pid(t));
    lua_setfield(L, 3, "subprocess");
    return 0;
  }
  if (push_name(L, lt, 1))
    lua_setfield(L, 3, "peername");
  if (push_name(L, lt, 0))
    lua_setfield(L, 3, "sockname");
  tl_tls_keep(L, t, 3);
  tapio_transport_get_write_buffer_limits(t, &low, &high);
  lua_pushinteger(L, (lua_Integer)low);
  lua_rawseti(L, 3, TL_SHELL_LOW);
  lua_pushinteger(L, (lua_Integer)high);
  lua_rawseti(L, 3, TL_SHELL_HIGH);
  lua_pushboolean(L, tapio_transport_can_write_eof(t));
  lua_rawseti(L, 3, TL_SHELL_EOF);
  push_stats(L, t);
  lua_rawseti(L, 3, TL_SHELL_STATS);
  return 0;
}

#define LOST_WARN 5 /* asyncio's LOG_THRESHOLD_FOR_CONNLOST_WRITES */

/* A write after connection_lost: dropped, as asyncio drops it (a relay
 * writing to a peer that went away must not fail its reading side); the
 * running loop's exception handler hears of it once, at the LOST_WARN-th,
 * where asyncio logs its warning. */
static int lost_write(lua_State *L, tl_transport *lt, const char *fn) {
  tl_loop *lb;
  if (++lt->lost_writes != LOST_WARN || !(lb = tl_running(L)))
    return 0;
  lua_createtable(L, 0, 2);
  lua_pushfstring(L, "%s after connection_lost: data is dropped", fn);
  lua_setfield(L, -2, "message");
  lua_pushvalue(L, 1);
  lua_setfield(L, -2, "transport");
  tl_callhandler(lb, L);
  return 0;
}

/* A write the core refused (ECLOSED aside: dropped, as asyncio drops
 * it), raised as fn's error at the line of the function at level (0:
 * no line, the transport's own methods; 2: a StreamWriter method's
 * caller). writelines may have called pause_writing for a chunk before. */
static int write_refused(lua_State *L, const char *fn, int level, int rc) {
  const char *why;
  if (rc == TAPIO_ESHUTDOWN)
    why = "cannot write after write_eof()";
  else if (rc == TAPIO_EBUSY)
    why = "cannot write while sendfile is in progress";
  else
    return 0;
  luaL_where(L, level);
  lua_pushfstring(L, "tapio: %s: %s", fn, why);
  lua_concat(L, 2);
  return tl_raise_after_calls(L);
}

/* Writes the string at index 2 (checked) through lt, as fn (called at
 * level: see write_refused). */
static void write_string(lua_State *L, tl_transport *lt, const char *fn,
                         int level) {
  size_t len;
  const char *data;
  int rc;
  if (!lt->t) {
    lost_write(L, lt, fn);
    return;
  }
  data = lua_tolstring(L, 2, &len);
  rc = tapio_transport_write(lt->t, data, len); /* may call pause_writing */
  if (rc < 0)
    write_refused(L, fn, level, rc);
}

static int t_write(lua_State *L) {
  tl_transport *lt = totransport(L, "transport:write");
  if (lua_type(L, 2) != LUA_TSTRING)
    return tl_typeerror(L, "transport:write", 1, "data", 2, "string");
  write_string(L, lt, "transport:write", 0);
  return 0;
}

/* transport:_stream_write(data) -> closing: write for a StreamWriter's
 * usual case (tapio/streams.lua), which then needs no type() call of its
 * own (a tenth of the Lua work a streams echo request adds): bad data is
 * writer:write's error, raised at writer:write's caller. Returns whether
 * the transport is closing (the data dropped, or a send failed): the
 * writer's drain then waits for the end. */
static int t_stream_write(lua_State *L) {
  tl_transport *lt = totransport(L, "transport:write");
  if (lua_type(L, 2) != LUA_TSTRING)
    return tl_typeerror_at(L, 2, "writer:write", 1, "data", 2, "string");
  write_string(L, lt, "writer:write", 2);
  lua_pushboolean(L, !lt->t || tapio_transport_is_closing(lt->t));
  return 1;
}

#define LINES_CHUNK 64

/* Writes list[from..to] (strings, checked) in one writev; an entry that
 * is no string (a list whose __len said less than its length to the
 * check) writes nothing of the chunk and is an argument error. */
static int write_chunk(lua_State *L, tl_transport *lt, int from, int to,
                       const char *fn, const char *name) {
  const void *bufs[LINES_CHUNK];
  size_t lens[LINES_CHUNK];
  int i, top = lua_gettop(L), rc;
  for (i = from; i <= to; i++) {
    lua_rawgeti(L, 2, i); /* kept on the stack while written */
    if (lua_type(L, -1) != LUA_TSTRING)
      return tl_argerror(L, fn, 1, name,
                         lua_pushfstring(L, "string expected at index %d, "
                                         "got %s", i, luaL_typename(L, -1)));
    bufs[i - from] = lua_tolstring(L, -1, &lens[i - from]);
  }
  rc = tapio_transport_writelines(lt->t, bufs, lens, (size_t)(to - from + 1));
  lua_settop(L, top);
  return rc;
}

/* The list at index 2 checked, as transport:writelines's argument (fn's
 * #1 'list_of_data'): strings, no hole, no other key. Its length. */
static int check_lines(lua_State *L, const char *fn) {
  int n, i;
  const char *why;
  if (!lua_istable(L, 2))
    return tl_typeerror(L, fn, 1, "list_of_data", 2, "table");
  n = (int)tl_rawlen(L, 2);
  why = tl_not_a_list(L, 2, (size_t)n);
  if (why)
    return tl_argerror(L, fn, 1, "list_of_data",
                       lua_pushfstring(L, "list expected, %s", why));
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, 2, i);
    if (lua_type(L, -1) != LUA_TSTRING) {
      const char *msg = lua_pushfstring(L, "string expected at index %d, "
                                        "got %s", i, luaL_typename(L, -1));
      return tl_argerror(L, fn, 1, "list_of_data", msg);
    }
    lua_pop(L, 1);
  }
  return n;
}

/* Writes the n strings of the list at index 2, as fn (its argument
 * named name; called at level: see write_refused). */
static int write_lines(lua_State *L, tl_transport *lt, int n,
                       const char *fn, const char *name, int level) {
  int i, rc = 0;
  if (!lt->t)
    return n ? lost_write(L, lt, fn) : 0; /* no data, none lost (asyncio) */
  if (n == 0) /* the state is checked all the same (asyncio's) */
    rc = tapio_transport_writelines(lt->t, NULL, NULL, 0);
  luaL_checkstack(L, LINES_CHUNK + 2, "writelines");
  /* pause_writing may close the transport, or the loop, between chunks */
  for (i = 1; i <= n && rc == 0 && lt->t; i += LINES_CHUNK)
    rc = write_chunk(L, lt, i, i + LINES_CHUNK - 1 < n ? i + LINES_CHUNK - 1
                                                      : n, fn, name);
  return write_refused(L, fn, level, rc);
}

static int t_writelines(lua_State *L) {
  tl_transport *lt = totransport(L, "transport:writelines");
  int n = check_lines(L, "transport:writelines");
  return write_lines(L, lt, n, "transport:writelines", "list_of_data", 0);
}

/* transport:_stream_writelines(list) -> closing: writelines for a
 * StreamWriter (tapio/streams.lua), answering as _stream_write. The list
 * is checked already, once: writer:writelines checked it with its own
 * words (or it is the writer's queue of strings). */
static int t_stream_writelines(lua_State *L) {
  tl_transport *lt = totransport(L, "transport:writelines");
  luaL_checktype(L, 2, LUA_TTABLE);
  write_lines(L, lt, (int)tl_rawlen(L, 2), "writer:writelines", "data", 2);
  lua_pushboolean(L, !lt->t || tapio_transport_is_closing(lt->t));
  return 1;
}

#define FLUSH_HOOK "tapio.flush_batched"

/* transport:_batched(fn): the transport is a StreamWriter's, which holds
 * a task's writes back while its reader holds input (tapio/streams.lua);
 * close, abort, write_eof and loop:sendfile call fn(transport) first
 * (tl_flush_batched), which sends them: they were written before, and
 * asyncio's transport would have them. */
static int t_batched(lua_State *L) {
  tl_transport *lt = totransport(L, "transport:_batched");
  luaL_checktype(L, 2, LUA_TFUNCTION);
  lua_pushvalue(L, 2);
  lua_setfield(L, LUA_REGISTRYINDEX, FLUSH_HOOK);
  lt->batched = 1;
  return 0;
}

void tl_flush_batched(lua_State *L, tl_transport *lt, int idx) {
  if (!lt->batched)
    return;
  idx = tl_absindex(L, idx);
  lua_getfield(L, LUA_REGISTRYINDEX, FLUSH_HOOK);
  lua_pushvalue(L, idx);
  lua_call(L, 1, 0);
}

static int t_close(lua_State *L) {
  tl_transport *lt = totransport(L, "transport:close");
  if (lt->t)
    tl_flush_batched(L, lt, 1);
  if (lt->t)
    tapio_transport_close(lt->t);
  return 0;
}

static int t_abort(lua_State *L) {
  tl_transport *lt = totransport(L, "transport:abort");
  if (lt->t)
    tl_flush_batched(L, lt, 1);
  if (lt->t)
    tapio_transport_abort(lt->t);
  return 0;
}

static int t_is_closing(lua_State *L) {
  tl_transport *lt = totransport(L, "transport:is_closing");
  lua_pushboolean(L, !lt->t || tapio_transport_is_closing(lt->t));
  return 1;
}

static int t_is_reading(lua_State *L) {
  tl_transport *lt = totransport(L, "transport:is_reading");
  lua_pushboolean(L, lt->t && tapio_transport_is_reading(lt->t));
  return 1;
}

static int t_pause_reading(lua_State *L) {
  tl_transport *lt = totransport(L, "transport:pause_reading");
  if (lt->t)
    tapio_transport_pause_reading(lt->t);
  return 0;
}

static int t_resume_reading(lua_State *L) {
  tl_transport *lt = totransport(L, "transport:resume_reading");
  if (lt->t)
    tapio_transport_resume_reading(lt->t);
  return 0;
}

/* After the end: what it answered before. */
static int t_can_write_eof(lua_State *L) {
  tl_transport *lt = totransport(L, "transport:can_write_eof");
  if (lt->t)
    lua_pushboolean(L, tapio_transport_can_write_eof(lt->t));
  else {
    push_kept(L, lt, TL_SHELL_EOF);
    lua_pushboolean(L, lua_toboolean(L, -1));
  }
  return 1;
}

/* TLS has no half-close: asyncio raises NotImplementedError (also after
 * the end), and doing nothing would leave a peer waiting for an end that
 * never comes. After the end, other kinds do nothing, as asyncio's. */
static int t_write_eof(lua_State *L) {
  tl_transport *lt = totransport(L, "transport:write_eof");
  int rc = TAPIO_ENOTSUP;
  if (lt->t) {
    tl_flush_batched(L, lt, 1);
    if (!lt->t)
      return 0; /* the flush ended it */
    rc = tapio_transport_write_eof(lt->t);
  } else {
    push_kept(L, lt, TL_SHELL_EOF);
    if (lua_toboolean(L, -1) || !lt->has_uv)
      return 0;
  }
  if (rc == TAPIO_ENOTSUP)
    return luaL_error(L, "tapio: transport:write_eof: TLS has no "
                         "half-close (can_write_eof() is false)");
  return 0;
}

/* 0 after the end: the buffer went with the connection. */
static int t_get_write_buffer_size(lua_State *L) {
  tl_transport *lt = totransport(L, "transport:get_write_buffer_size");
  lua_pushinteger(L, lt->t ? (lua_Integer)tapio_transport_get_write_buffer_size(
                                 lt->t)
                           : 0);
  return 1;
}

/* Returns low, high: asyncio's (low, high) tuple; after the end, the
 * last ones. */
static int t_get_write_buffer_limits(lua_State *L) {
  tl_transport *lt = totransport(L, "transport:get_write_buffer_limits");
  size_t low = 0, high = 0;
  if (lt->t) {
    tapio_transport_get_write_buffer_limits(lt->t, &low, &high);
    lua_pushinteger(L, (lua_Integer)low);
    lua_pushinteger(L, (lua_Integer)high);
    return 2;
  }
  push_kept(L, lt, TL_SHELL_LOW);
  push_kept(L, lt, TL_SHELL_HIGH);
  lua_pushinteger(L, lua_tointeger(L, -2));
  lua_pushinteger(L, lua_tointeger(L, -2));
  return 2;
}

static int64_t limit_arg(lua_State *L, int idx, const char *name) {
  if (lua_isnoneornil(L, idx))
    return -1; /* asyncio's None */
  return tl_checkint(L, idx, "transport:set_write_buffer_limits", idx - 1,
                     name, 0, (lua_Integer)1 << 52);
}

/* After the end: checked and kept, as asyncio's does. */
static int t_set_write_buffer_limits(lua_State *L) {
  const char *fn = "transport:set_write_buffer_limits";
  tl_transport *lt = totransport(L, fn);
  int64_t high = limit_arg(L, 2, "high"), low = limit_arg(L, 3, "low");
  int rc;
  if (lt->t)
    rc = tapio_transport_set_write_buffer_limits(lt->t, high, low);
  else /* the core's rule, for the limits the shell keeps */
    rc = tapio_write_buffer_limits(&high, &low);
  if (rc == TAPIO_EINVAL)
    return tl_argerror(L, fn, 2, "low", "must not be greater than high");
  if (!lt->t) {
    lua_pushinteger(L, (lua_Integer)low);
    set_kept(L, lt, TL_SHELL_LOW);
    lua_pushinteger(L, (lua_Integer)high);
    set_kept(L, lt, TL_SHELL_HIGH);
  }
  return 0;
}

/* The socket address itself: an IPv6 one's flowinfo and scope id too. */
static int push_name(lua_State *L, tl_transport *lt, int peer) {
  char addr[TAPIO_ADDR_MAX];
  size_t len = sizeof addr;
  int rc = peer ? tapio_transport_get_peeraddr(lt->t, addr, &len)
                : tapio_transport_get_sockaddr(lt->t, addr, &len);
  if (rc < 0)
    return 0;
  tl_pushsockaddr(L, addr, len);
  return 1;
}

/* The key of get_extra_info that gives a kind's descriptor (or pid). */
static const char *handle_key(int kind) {
  switch (kind) {
  case TAPIO_TRANSPORT_STREAM:
  case TAPIO_TRANSPORT_DATAGRAM:
    return "socket";
  case TAPIO_TRANSPORT_READ_PIPE:
  case TAPIO_TRANSPORT_WRITE_PIPE:
    return "pipe";
  default:
    return "subprocess";
  }
}

/* transport:get_extra_info(name, default): "peername" and "sockname" are
 * address values, "socket" (a stream or datagram endpoint) and "pipe" (a
 * pipe) the descriptor (tapio still owns it; none, the default, for a
 * transport of the testing kit), "subprocess" the child's pid. */
static int t_get_extra_info(lua_State *L) {
  const char *fn = "transport:get_extra_info";
  tl_transport *lt = totransport(L, fn);
  const char *name;
  int found = 0, kind;
  if (lua_type(L, 2) != LUA_TSTRING)
    return tl_typeerror(L, fn, 1, "name", 2, "string");
  lua_settop(L, 3);
  if (!lt->t) { /* the shell's: what was kept */
    if (lt->has_uv) {
      tl_getuservalue(L, 1);
      lua_pushvalue(L, 2);
      lua_rawget(L, -2);
      found = !lua_isnil(L, -1);
    }
    if (!found)
      lua_pushvalue(L, 3);
    return 1;
  }
  name = lua_tostring(L, 2);
  kind = tapio_transport_get_kind(lt->t);
  if (strcmp(name, "peername") == 0)
    found = push_name(L, lt, 1);
  else if (strcmp(name, "sockname") == 0)
    found = push_name(L, lt, 0);
  else if (strcmp(name, handle_key(kind)) == 0) {
    int h = kind == TAPIO_TRANSPORT_SUBPROCESS
                ? tapio_subprocess_get_pid(lt->t)
                : tapio_transport_get_fd(lt->t);
    found = h >= 0; /* none (a memory pair's, a virtual endpoint): the
                       default, which must stay argument 3 */
    if (found)
      lua_pushinteger(L, h);
  } else
    found = tl_tls_extra_info(L, lt->t, name);
  if (!found)
    lua_pushvalue(L, 3);
  return 1;
}

static int t_set_protocol(lua_State *L) {
  const char *fn = "transport:set_protocol";
  tl_transport *lt = totransport(L, fn);
  if (!lua_istable(L, 2))
    return tl_typeerror(L, fn, 1, "protocol", 2, "table");
  lua_settop(L, 2);
  if (!lt->t) { /* kept, as asyncio's: nothing calls it any more */
    set_kept(L, lt, TL_SHELL_PROTOCOL);
    return 0;
  }
  if (lt->self_ref == LUA_NOREF) /* a subprocess's pipe: see tapio_lua.h */
    return luaL_error(L, "tapio: %s: a subprocess's pipe keeps the "
                         "subprocess's protocol", fn);
  tl_choose_kind(L, 2, lt);
  if (lt->proto_ref == LUA_NOREF)
    lt->proto_ref = tl_ref(lt->lb, L);
  else
    lua_rawseti(L, LUA_REGISTRYINDEX, lt->proto_ref);
  return 0;
}

/* After the end: nil, as asyncio's (the protocol is let go), unless
 * set_protocol set one since. */
static int t_get_protocol(lua_State *L) {
  tl_transport *lt = totransport(L, "transport:get_protocol");
  if (lt->t)
    lua_rawgeti(L, LUA_REGISTRYINDEX, lt->proto_ref);
  else
    push_kept(L, lt, TL_SHELL_PROTOCOL);
  return 1;
}

static int t_get_loop(lua_State *L) {
  tl_transport *lt = totransport(L, "transport:get_loop");
  if (lt->t)
    tl_pushloop(L, lt->lb);
  else
    push_kept(L, lt, TL_SHELL_LOOP);
  return 1;
}

static const struct {
  const char *name;
  int which;
} stats[] = {
  {"bytes_received", TAPIO_STAT_BYTES_RECEIVED},
  {"bytes_sent", TAPIO_STAT_BYTES_SENT},
  {"write_buffer_size", TAPIO_STAT_WRITE_BUFFER_SIZE},
  {"write_buffer_peak", TAPIO_STAT_WRITE_BUFFER_PEAK},
  {"write_paused_usec", TAPIO_STAT_WRITE_PAUSED_USEC},
  {"read_paused_usec", TAPIO_STAT_READ_PAUSED_USEC},
  {"write_pauses", TAPIO_STAT_WRITE_PAUSES},
  {"datagrams_dropped", TAPIO_STAT_DATAGRAMS_DROPPED},
};

/* The core's figures in a new table; one the core cannot tell
 * (UINT64_MAX: datagrams_dropped of a stream) is left out (nil). */
static void push_stats(lua_State *L, tapio_transport *t) {
  size_t i;
  lua_createtable(L, 0, (int)(sizeof stats / sizeof stats[0]));
  for (i = 0; i < sizeof stats / sizeof stats[0]; i++) {
    uint64_t v = tapio_transport_get_stat(t, stats[i].which);
    if (v == UINT64_MAX)
      continue;
    lua_pushinteger(L, (lua_Integer)v);
    lua_setfield(L, -2, stats[i].name);
  }
  tl_tls_stats(L, t);
}

/* transport:get_stats(): the core's figures in a table; after the end,
 * those at the end (a copy: the caller may change it). */
static int t_get_stats(lua_State *L) {
  tl_transport *lt = totransport(L, "transport:get_stats");
  if (lt->t) {
    push_stats(L, lt->t);
    return 1;
  }
  lua_newtable(L);
  push_kept(L, lt, TL_SHELL_STATS);
  if (lua_istable(L, -1))
    for (lua_pushnil(L); lua_next(L, -2);) {
      lua_pushvalue(L, -2);
      lua_insert(L, -2);
      lua_rawset(L, -5); /* the key stays, for next */
    }
  lua_pop(L, 1);
  return 1;
}

/* "tapio.transport (fd 7)", "tapio.transport (memory)" (a memory pair's:
 * no descriptor), "tapio.subprocess_transport (pid 42, closing)",
 * "tapio.read_transport (closed)" */
static int t_tostring(lua_State *L) {
  tl_transport *lt = totransport(L, "transport:__tostring");
  const char *name;
  lua_getfield(L, lua_upvalueindex(1), "__name");
  name = lua_tostring(L, -1);
  if (!lt->t)
    lua_pushfstring(L, "%s (closed)", name);
  else if (tapio_transport_get_kind(lt->t) == TAPIO_TRANSPORT_SUBPROCESS)
    lua_pushfstring(L, "%s (pid %d%s)", name,
                    tapio_subprocess_get_pid(lt->t),
                    tapio_transport_is_closing(lt->t) ? ", closing" : "");
  else if (tapio_transport_get_fd(lt->t) < 0) /* a memory pair's */
    lua_pushfstring(L, "%s (memory%s)", name,
                    tapio_transport_is_closing(lt->t) ? ", closing" : "");
  else
    lua_pushfstring(L, "%s (fd %d%s)", name, tapio_transport_get_fd(lt->t),
                    tapio_transport_is_closing(lt->t) ? ", closing" : "");
  return 1;
}

/* The methods of every kind, written once, in groups as asyncio's
 * classes have them (enum in tapio_lua.h); a kind's metatable takes its
 * groups. */
static const luaL_Reg base_methods[] = { /* BaseTransport */
  {"close", t_close},
  {"is_closing", t_is_closing},
  {"get_extra_info", t_get_extra_info},
  {"set_protocol", t_set_protocol},
  {"get_protocol", t_get_protocol},
  {"get_loop", t_get_loop},
  {NULL, NULL}
};

static const luaL_Reg read_methods[] = { /* ReadTransport */
  {"is_reading", t_is_reading},
  {"pause_reading", t_pause_reading},
  {"resume_reading", t_resume_reading},
  {NULL, NULL}
};

static const luaL_Reg write_methods[] = { /* WriteTransport's bytes */
  {"write", t_write},
  {"_stream_write", t_stream_write},
  {"_stream_writelines", t_stream_writelines},
  {"_batched", t_batched},
  {"writelines", t_writelines},
  {"can_write_eof", t_can_write_eof},
  {"write_eof", t_write_eof},
  {NULL, NULL}
};

/* WriteTransport's and DatagramTransport's: abort and the write buffer */
static const luaL_Reg flow_methods[] = {
  {"abort", t_abort},
  {"get_write_buffer_size", t_get_write_buffer_size},
  {"get_write_buffer_limits", t_get_write_buffer_limits},
  {"set_write_buffer_limits", t_set_write_buffer_limits},
  {NULL, NULL}
};

static const luaL_Reg stats_methods[] = {
  {"get_stats", t_get_stats},
  {NULL, NULL}
};

static const luaL_Reg *const groups[] = {
  base_methods, read_methods, write_methods, flow_methods, stats_methods
};

static const luaL_Reg loop_methods[] = {
  {"_create_connection", l_create_connection},
  {"_create_unix_connection", l_create_unix_connection},
  {"_connect_accepted_socket", l_connect_accepted_socket},
  {NULL, NULL}
};

/* Adds methods to the methods table on top, each with the metatable
 * tname as upvalue 1 (totransport). */
static void add_methods(lua_State *L, const char *tname,
                        const luaL_Reg *methods) {
  luaL_getmetatable(L, tname);
  luaL_setfuncs(L, methods, 1);
}

/* Leaves the methods table on the stack, as tl_newclass does. */
void tl_transport_class(lua_State *L, const char *tname, unsigned which,
                        const luaL_Reg *own) {
  static const luaL_Reg none[] = {{NULL, NULL}};
  size_t i;
  tl_newclass(L, tname, none);
  for (i = 0; i < sizeof groups / sizeof groups[0]; i++)
    if (which & (1u << i))
      add_methods(L, tname, groups[i]);
  if (own)
    add_methods(L, tname, own);
  luaL_getmetatable(L, tname);
  lua_pushboolean(L, 1);
  lua_setfield(L, -2, "__transport"); /* tl_testtransport */
  lua_pushvalue(L, -1);
  lua_pushcclosure(L, t_tostring, 1);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
}

int tl_open_transport(lua_State *L) {
  tl_transport_class(L, TL_TRANSPORT,
                     TL_M_BASE | TL_M_READ | TL_M_WRITE | TL_M_FLOW |
                         TL_M_STATS,
                     NULL);
  lua_setfield(L, -2, "transport_methods");
  tl_addmethods(L, TL_LOOP, loop_methods);
  return 0;
}
