/* The Lua binding's server: loop:_create_server, loop:_create_unix_server,
 * the factory the core calls per accepted connection, and "tapio.server".
 * serve_forever and wait_closed are in tapio/loop.lua. */
#include "tapio_lua.h"

#include <stdlib.h>
#include <string.h>

#define FN_SERVER "loop:create_server"
#define FN_UNIX_SERVER "loop:create_unix_server"

static void unanchor(lua_State *L, tl_server *ls) {
  if (!ls->lb)
    return;
  tl_unref(ls->lb, L, &ls->factory_ref);
  tl_unref(ls->lb, L, &ls->cb_ref);
  tl_unref(ls->lb, L, &ls->ctx_ref);
  tl_unanchor(ls->lb, L, &ls->self_ref);
}

void tl_servers_detach(tl_loop *lb, lua_State *L) {
  while (lb->servers.next != &lb->servers) {
    tl_server *ls = (tl_server *)lb->servers.next;
    tl_list_remove(&ls->link);
    unanchor(L, ls);
    ls->s = NULL; /* freed with the loop */
    ls->lb = NULL;
  }
}

/* ---- The core's protocol factory --------------------------------------- */

typedef struct accept_out {
  tl_server *ls;
  tl_transport *lt;
} accept_out;

/* [1] accept_out: a transport userdata and the protocol from the Lua
 * factory, both anchored until connection_lost. The connection's context
 * is a copy of the server's, made before the factory runs in it. */
int tl_tr_accept(lua_State *L) {
  accept_out *o = lua_touserdata(L, 1);
  o->lt = tl_newtransport(L, o->ls->lb, TL_TRANSPORT);
  o->lt->ctx_ref = tl_context_copy(L, o->ls->lb, o->ls->ctx_ref);
  lua_rawgeti(L, LUA_REGISTRYINDEX, o->ls->factory_ref);
  tl_take_protocol(L, o->lt, 0);
  return 0;
}

/* A factory's error is kept aside and the connection rejected: the core
 * then reports TAPIO_ECALLBACK, and the report (callback.c) takes the error
 * and its traceback from the pending slot. */
static int c_factory(void *ud, tapio_server *s, const tapio_protocol **proto,
                     void **proto_ud) {
  tl_server *ls = ud;
  tl_loop *lb = ls->lb;
  lua_State *L;
  accept_out o;
  int base;
  (void)s;
  if (!lb || lb->quiet || ls->factory_ref == LUA_NOREF)
    return TAPIO_ECANCELED;
  L = lb->L;
  if (tl_prepare(lb, L, TL_T_ACCEPT) < 0)
    return TAPIO_ENOMEM;
  o.ls = ls;
  o.lt = NULL;
  lua_pushlightuserdata(L, &o);
  base = lua_gettop(L) - 2;
  if (lua_pcall(L, 1, 0, base) != LUA_OK) {
    lua_rawseti(L, LUA_REGISTRYINDEX, lb->pending_ref);
    lua_settop(L, base - 1);
    if (o.lt)
      tl_release_transport(L, o.lt);
    return TAPIO_ECALLBACK;
  }
  lua_settop(L, base - 1);
  *proto = o.lt->buffered ? &tl_buffered_protocol : &tl_plain_protocol;
  *proto_ud = o.lt;
  return 0;
}

/* ---- Failed handshakes (debug mode) ------------------------------------ */

typedef struct hs_failure {
  tl_server *ls;
  tapio_transport *t;
  int status;
} hs_failure;

/* [1] hs_failure: the context, to the exception handler. */
static int tr_hs_failed(lua_State *L) {
  hs_failure *f = lua_touserdata(L, 1);
  tl_loop *lb = f->ls->lb;
  const char *why = tapio_loop_error_message(lb->loop);
  char host[TAPIO_ADDR_MAX];
  int port, family;
  lua_createtable(L, 0, 4);
  lua_pushfstring(L, "TLS handshake failed on a connection the server "
                  "accepted: %s", why ? why : tapio_strerror(f->status));
  lua_setfield(L, -2, "message");
  tl_pusherror(L, f->status, why);
  lua_setfield(L, -2, "exception");
  if (tapio_transport_get_peername(f->t, host, sizeof host, &port,
                                   &family) == 0) {
    tl_pushaddress(L, host, port, family);
    lua_setfield(L, -2, "peername");
  }
  if (f->ls->self_ref != LUA_NOREF) { /* closed and let go: none */
    lua_rawgeti(L, LUA_REGISTRYINDEX, f->ls->self_ref);
    lua_setfield(L, -2, "server");
  }
  tl_callhandler(lb, L);
  return 0;
}

/* A failed incoming handshake is told to the exception handler in debug
 * mode only, where asyncio logs it: a scanner's garbage must not fill a
 * server's log otherwise. */
static void on_hs_failed(void *ud, tapio_server *s, tapio_transport *t,
                         int status) {
  hs_failure f;
  lua_State *L;
  (void)s;
  f.ls = ud;
  f.t = t;
  f.status = status;
  if (!f.ls->lb || f.ls->lb->quiet || f.ls->lb->slow <= 0)
    return;
  L = f.ls->lb->L;
  if (!lua_checkstack(L, 8))
    return;
  tl_report_by(L, tr_hs_failed, &f, "a failed handshake");
}

/* ---- Creating ---------------------------------------------------------- */

/* [1] ls, [2] status: cb(nil, server) or cb(err). */
int tl_tr_served(lua_State *L) {
  tl_server *ls = lua_touserdata(L, 1);
  int status = (int)lua_tointeger(L, 2);
  lua_rawgeti(L, LUA_REGISTRYINDEX, ls->cb_ref);
  if (status < 0) { /* the message names the address that did not bind */
    tl_pusherror(L, status, tapio_loop_error_message(ls->lb->loop));
    lua_call(L, 1, 0);
  } else {
    lua_pushnil(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, ls->self_ref);
    lua_call(L, 2, 0);
  }
  return 0;
}

static void on_served(void *ud, int status, tapio_server *s) {
  tl_server *ls = ud;
  tl_loop *lb = ls->lb;
  lua_State *L;
  /* At lua_close the server's __gc may run before its loop's, whose
   * freeing then cancels the creation here: nothing is left to tell (the
   * core frees its server with the loop). */
  if (!lb)
    return;
  L = lb->L;
  if (status == 0) {
    ls->s = s;
    tapio_server_set_handshake_failed(s, on_hs_failed, ls);
  }
  if (!lb->quiet && tl_prepare(lb, L, TL_T_SERVED) == 0) {
    lua_pushlightuserdata(L, ls);
    lua_pushinteger(L, status);
    if (tl_call(lb, L, 2, 0, "error in a create_server callback", NULL) == 0)
      lua_pop(L, 1);
  }
  tl_unref(lb, L, &ls->cb_ref);
  if (status < 0)
    unanchor(L, ls);
}

/* A server userdata, anchored until closed, holding factory and cb. */
static tl_server *newserver(lua_State *L, tl_loop *lb, int fi, int cbi) {
  tl_server *ls = tl_newuserdata(L, sizeof *ls);
  memset(ls, 0, sizeof *ls);
  ls->lb = lb;
  ls->self_ref = ls->factory_ref = ls->cb_ref = ls->ctx_ref = LUA_NOREF;
  tl_list_init(&ls->link);
  luaL_setmetatable(L, TL_SERVER);
  tl_list_push(&lb->servers, &ls->link);
  lua_pushvalue(L, -1);
  ls->self_ref = tl_anchor(lb, L);
  lua_pushvalue(L, fi);
  ls->factory_ref = tl_ref(lb, L);
  lua_pushvalue(L, cbi);
  ls->cb_ref = tl_ref(lb, L);
  ls->ctx_ref = tl_context_capture(L, lb, 1);
  return ls;
}

/* The pending server (loop:_cancel takes it), or nil, err. */
static int finish(lua_State *L, tl_server *ls, int rc) {
  if (rc < 0) {
    tapio_loop *loop = ls->lb->loop;
    unanchor(L, ls);
    return tl_fail_call(L, loop, rc);
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, ls->self_ref);
  return 1;
}

void tl_server_cancelled(lua_State *L, tl_server *ls) {
  unanchor(L, ls);
}

/* host: nil, a string or a list of strings; returns their number and
 * leaves an array of pointers (a userdata, collected later) on top. */
static size_t hosts_arg(lua_State *L, int idx, const char ***out) {
  size_t n, i;
  const char **hosts;
  if (lua_isnil(L, idx)) {
    *out = NULL;
    lua_pushnil(L);
    return 0;
  }
  if (lua_type(L, idx) == LUA_TSTRING) {
    hosts = lua_newuserdata(L, sizeof *hosts);
    hosts[0] = tl_checkcstring(L, idx, FN_SERVER, 2, "host");
    *out = hosts;
    return 1;
  }
  if (!lua_istable(L, idx))
    tl_typeerror(L, FN_SERVER, 2, "host", idx, "string, list or nil");
  n = tl_rawlen(L, idx);
  if (tl_not_a_list(L, idx, n))
    tl_argerror(L, FN_SERVER, 2, "host", lua_pushfstring(L, "list of strings "
                "expected, %s", lua_tostring(L, -1)));
  hosts = lua_newuserdata(L, (n ? n : 1) * sizeof *hosts);
  for (i = 0; i < n; i++) {
    lua_rawgeti(L, idx, (int)i + 1);
    if (lua_type(L, -1) != LUA_TSTRING)
      tl_argerror(L, FN_SERVER, 2, "host", "list of strings expected");
    /* kept alive by the list */
    hosts[i] = tl_checkcstring(L, -1, FN_SERVER, 2, "host");
    lua_pop(L, 1);
  }
  *out = hosts;
  return n;
}

/* loop:_create_server(cb, factory, host, port, opts) */
static int l_create_server(lua_State *L) {
  tl_loop *lb = tl_checkloop(L, 1, FN_SERVER);
  const char **hosts;
  size_t nhosts;
  int port = 0, rc, has_sock;
  tapio_options *o = NULL;
  tl_server *ls;
  lua_settop(L, 6);
  tl_checkcallable(L, 3, FN_SERVER, 1, "protocol_factory");
  if ((rc = tl_refuse_named_port(L, FN_SERVER, 5, 6)))
    return rc;
  if (!lua_isnil(L, 5))
    port = tl_checkport(L, 5, FN_SERVER, 3);
  if (!lua_isnil(L, 6) && !lua_istable(L, 6))
    return tl_typeerror(L, FN_SERVER, 4, "opts", 6, "table or nil");
  has_sock = tl_has_sock(L, 6);
  if (!has_sock && lua_isnil(L, 5))
    return tl_argerror(L, FN_SERVER, 3, "port",
                       "a port is required unless opts.sock is given");
  if (has_sock && (!lua_isnil(L, 4) || port))
    return tl_argerror(L, FN_SERVER, port ? 3 : 2, port ? "port" : "host",
                       TL_SOCK_EXCLUDES);
  nhosts = hosts_arg(L, 4, &hosts); /* 7 */
  o = tl_options(L, 6, FN_SERVER, 4, TAPIO_CALL_CREATE_SERVER, lb->loop);
  ls = newserver(L, lb, 3, 2);
  rc = tapio_create_server(lb->loop, hosts, nhosts, port, c_factory, ls, o,
                           on_served, ls);
  tapio_options_free(o);
  return finish(L, ls, rc);
}

/* loop:_create_unix_server(cb, factory, path, opts), or (cb, factory,
 * opts) for a listening Unix socket given as opts.sock */
static int l_create_unix_server(lua_State *L) {
  tl_loop *lb = tl_checkloop(L, 1, FN_UNIX_SERVER);
  tapio_options *o = NULL;
  tl_server *ls;
  const char *path;
  int rc;
  tl_checkcallable(L, 3, FN_UNIX_SERVER, 1, "protocol_factory");
  path = tl_unix_path_or_sock(L, FN_UNIX_SERVER);
  o = tl_options(L, 5, FN_UNIX_SERVER, 3, TAPIO_CALL_CREATE_UNIX_SERVER,
                 lb->loop);
  ls = newserver(L, lb, 3, 2);
  rc = tapio_create_unix_server(lb->loop, path, c_factory, ls, o, on_served,
                                ls);
  tapio_options_free(o);
  return finish(L, ls, rc);
}

/* ---- Server methods ---------------------------------------------------- */

static tl_server *toserver(lua_State *L, const char *fn) {
  return tl_checkself(L, 1, TL_SERVER, fn);
}

static void let_go(lua_State *L, tl_server *ls) {
  tl_unref(ls->lb, L, &ls->factory_ref);
  tl_unref(ls->lb, L, &ls->ctx_ref);
  tl_unanchor(ls->lb, L, &ls->self_ref);
}

/* The core's server closed and its connections gone: found by its
 * pointer, as __gc (at lua_close) may have taken the userdata already. */
static void on_gone(void *ud, tapio_server *s) {
  tl_loop *lb = ud;
  tl_link *l;
  for (l = lb->servers.next; l != &lb->servers; l = l->next)
    if (((tl_server *)l)->s == s) {
      let_go(lb->L, (tl_server *)l);
      return;
    }
}

/* A closed server anchors itself and keeps its factory until its
 * connections are gone: a TLS connection accepted before the close gets
 * its protocol when its handshake ends, maybe after. The reference to the
 * core's server goes with __gc, so queries keep working until then. */
static int s_close(lua_State *L) {
  tl_server *ls = toserver(L, "server:close");
  if (ls->closed || !ls->lb)
    return 0;
  ls->closed = 1;
  if (ls->s)
    tapio_server_close(ls->s);
  if (!ls->s || tapio_server_wait_closed(ls->s, on_gone, ls->lb) < 0)
    let_go(L, ls);
  return 0;
}

static int s_close_clients(lua_State *L) {
  tl_server *ls = toserver(L, "server:close_clients");
  if (ls->s)
    tapio_server_close_clients(ls->s);
  return 0;
}

static int s_abort_clients(lua_State *L) {
  tl_server *ls = toserver(L, "server:abort_clients");
  if (ls->s)
    tapio_server_abort_clients(ls->s);
  return 0;
}

static int s_is_serving(lua_State *L) {
  tl_server *ls = toserver(L, "server:is_serving");
  lua_pushboolean(L, ls->s && tapio_server_is_serving(ls->s));
  return 1;
}

/* A server that starts serving now copies the context now, as asyncio's
 * (its connections copy that). */
static void recapture(lua_State *L, tl_server *ls) {
  int ref = tl_context_capture(L, ls->lb, 1);
  if (ref == LUA_NOREF)
    return;
  tl_unref(ls->lb, L, &ls->ctx_ref);
  ls->ctx_ref = ref;
}

static int s_start_serving(lua_State *L) {
  tl_server *ls = toserver(L, "server:start_serving");
  int was = ls->s && tapio_server_is_serving(ls->s);
  int rc = ls->s ? tapio_server_start_serving(ls->s) : TAPIO_ECLOSED;
  if (rc < 0)
    return luaL_error(L, "tapio: server:start_serving: %s",
                      rc == TAPIO_ECLOSED ? "the server is closed"
                                          : tapio_strerror(rc));
  if (!was)
    recapture(L, ls);
  return 0;
}

static int s_client_count(lua_State *L) {
  tl_server *ls = toserver(L, "server:client_count");
  lua_pushinteger(L, ls->s ? (lua_Integer)tapio_server_client_count(ls->s)
                           : 0);
  return 1;
}

/* server:sockets(): the listening descriptors (tapio owns them); none
 * on a virtual loop, whose listeners have none. */
static int s_sockets(lua_State *L) {
  tl_server *ls = toserver(L, "server:sockets");
  size_t n = ls->s ? tapio_server_socket_count(ls->s) : 0, i;
  int k = 0;
  lua_createtable(L, (int)n, 0);
  for (i = 0; i < n; i++) {
    int fd = tapio_server_get_fd(ls->s, i);
    if (fd < 0)
      continue;
    lua_pushinteger(L, fd);
    lua_rawseti(L, -2, ++k);
  }
  return 1;
}

/* server:addresses(): the listening addresses, as get_extra_info's. */
static int s_addresses(lua_State *L) {
  tl_server *ls = toserver(L, "server:addresses");
  size_t n = ls->s ? tapio_server_socket_count(ls->s) : 0, i;
  int k = 0;
  lua_createtable(L, (int)n, 0);
  for (i = 0; i < n; i++) {
    char host[256];
    int port = 0, family = 0;
    if (tapio_server_get_address(ls->s, i, host, sizeof host, &port,
                                 &family) < 0)
      continue;
    tl_pushaddress(L, host, port, family);
    lua_rawseti(L, -2, ++k);
  }
  return 1;
}

/* server:_wait_closed(fn, ...): fn(...) once closed with every connection
 * gone; false when the loop is closed already (nothing will run). */
static int s_wait_closed(lua_State *L) {
  tl_server *ls = toserver(L, "server:wait_closed");
  int rc;
  tl_checkcallable(L, 2, "server:wait_closed", 1, "callback");
  if (!ls->s || !ls->lb || ls->lb->closing) {
    lua_pushboolean(L, 0);
    return 1;
  }
  rc = tl_wait_closed(L, ls->lb, ls->s, 2);
  if (rc < 0)
    return luaL_error(L, "tapio: server:wait_closed: %s", tapio_strerror(rc));
  lua_pushboolean(L, 1);
  return 1;
}

static int s_get_loop(lua_State *L) {
  tl_server *ls = toserver(L, "server:get_loop");
  if (!ls->lb)
    return 0;
  tl_pushloop(L, ls->lb);
  return 1;
}

static int s_gc(lua_State *L) {
  tl_server *ls = lua_touserdata(L, 1);
  if (ls->s)
    tapio_server_release(ls->s); /* closes it if still open */
  ls->s = NULL;
  if (ls->lb) {
    unanchor(L, ls); /* only at lua_close can an anchored one get here */
    tl_list_remove(&ls->link);
    ls->lb = NULL;
  }
  return 0;
}

static int s_tostring(lua_State *L) {
  tl_server *ls = toserver(L, "server:__tostring");
  lua_pushfstring(L, "tapio.server (%s)",
                  ls->s && tapio_server_is_serving(ls->s) ? "serving"
                  : ls->s && !ls->closed ? "not serving"
                                                        : "closed");
  return 1;
}

static const luaL_Reg server_methods[] = {
  {"close", s_close},
  {"close_clients", s_close_clients},
  {"abort_clients", s_abort_clients},
  {"is_serving", s_is_serving},
  {"start_serving", s_start_serving},
  {"client_count", s_client_count},
  {"sockets", s_sockets},
  {"addresses", s_addresses},
  {"_wait_closed", s_wait_closed},
  {"get_loop", s_get_loop},
  {NULL, NULL}
};

/* loop:_open(): a list of the servers still listening and one of the
 * transports made and not yet lost, for tapio.run's clean exit. */
static int l_open(lua_State *L) {
  tl_loop *lb = tl_toloop(L, 1, "loop:_open");
  tl_link *l;
  int n = 0;
  lua_newtable(L);
  for (l = lb->servers.next; l != &lb->servers; l = l->next) {
    tl_server *ls = (tl_server *)l;
    if (ls->s && tapio_server_socket_count(ls->s) > 0 &&
        ls->self_ref != LUA_NOREF) {
      lua_rawgeti(L, LUA_REGISTRYINDEX, ls->self_ref);
      lua_rawseti(L, -2, ++n);
    }
  }
  lua_newtable(L);
  n = 0;
  for (l = lb->transports.next; l != &lb->transports; l = l->next) {
    tl_transport *lt = (tl_transport *)l; /* link is its first member */
    if (lt->t && lt->self_ref != LUA_NOREF) {
      lua_rawgeti(L, LUA_REGISTRYINDEX, lt->self_ref);
      lua_rawseti(L, -2, ++n);
    }
  }
  return 2;
}

static const luaL_Reg loop_methods[] = {
  {"_open", l_open},
  {"_create_server", l_create_server},
  {"_create_unix_server", l_create_unix_server},
  {NULL, NULL}
};

int tl_open_server(lua_State *L) {
  tl_newclass(L, TL_SERVER, server_methods);
  lua_setfield(L, -2, "server_methods");
  tl_lifecycle(L, TL_SERVER, s_gc, NULL, s_tostring);
  lua_setfield(L, -2, "server_metatable"); /* the Lua layer checks self */
  tl_addmethods(L, TL_LOOP, loop_methods);
  return 0;
}
