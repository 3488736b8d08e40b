/* The Lua binding's datagram endpoints: loop:_create_datagram_endpoint
 * (its options as asyncio names them), "tapio.datagram_transport" (sendto
 * and the methods every transport has), and the datagram protocol's
 * callbacks. A datagram's sender is an address value (address.c), taken
 * from the loop's cache so that a peer that keeps sending costs no
 * allocation for its address, and that value given back to sendto right
 * away (an echo) is taken as it is, without a check of its metatable.
 * An error in datagram_received or error_received goes to the exception
 * handler and the endpoint reads on, as asyncio's: one bad datagram from
 * anyone must not end a server. */
#include "tapio_lua.h"

#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#define FN_DGRAM "loop:create_datagram_endpoint"
#define FN_SENDTO "transport:sendto"

/* Filled by tl_open_datagram: BaseProtocol's callbacks are the stream
 * table's (the same four, in the same places), the rest are below. */

/* ---- Trampolines: inside the protected call ---------------------------- */

/* What p_datagram hands its trampoline, as one light userdata. */
typedef struct dgram_args {
  tl_transport *lt;
  const char *data;
  size_t len;
  const void *addr;
  size_t addrlen;
} dgram_args;

/* [1] dgram_args; upvalue 1 "datagram_received", upvalue 2 the loop's
 * cached address values. The hot path: one lookup, the data string, the
 * sender's value (kept from before when it came already), one call. */
int tl_tr_dgram(lua_State *L) {
  const dgram_args *a = lua_touserdata(L, 1);
  tl_transport *lt = a->lt;
  lua_rawgeti(L, LUA_REGISTRYINDEX, lt->proto_ref); /* 2: protocol */
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_gettable(L, 2);
  if (lua_isnil(L, -1))
    return 0;
  lua_pushvalue(L, 2);
  lua_pushlstring(L, a->data, a->len);
  tl_pushcachedaddr(L, lt->lb, lua_upvalueindex(2), a->addr, a->addrlen);
  lua_call(L, 3, 0);
  return 0;
}

/* [1] lt, [2] code, [3] message */
int tl_tr_dgram_err(lua_State *L) {
  tl_transport *lt = lua_touserdata(L, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, lt->proto_ref);
  lua_getfield(L, -1, "error_received");
  if (lua_isnil(L, -1))
    return 0;
  lua_insert(L, -2);
  tl_pusherror(L, (int)lua_tointeger(L, 2), lua_touserdata(L, 3));
  lua_call(L, 2, 0);
  return 0;
}

/* ---- The tapio_datagram_protocol callbacks ----------------------------- */

static int prepare(tl_transport *lt, int which) {
  if (tl_prepare(lt->lb, lt->lb->L, which) == 0)
    return 0;
  tapio_transport_fail(lt->t, TAPIO_ENOMEM, "Lua stack overflow");
  return -1;
}

static void p_datagram(void *ud, tapio_transport *t, const char *data,
                       size_t len, const void *addr, size_t addrlen) {
  dgram_args a;
  lua_State *L;
  (void)t;
  a.lt = ud;
  L = a.lt->lb->L;
  if (prepare(a.lt, TL_T_DGRAM) < 0)
    return;
  a.data = data;
  a.len = len;
  a.addr = addr;
  a.addrlen = addrlen;
  lua_pushlightuserdata(L, &a);
  tl_done(L, 0, tl_proto_call_open(a.lt->lb, L, 1, 0,
                        "error in protocol.datagram_received()", a.lt));
}

static void p_error(void *ud, tapio_transport *t, int code,
                    const char *message) {
  tl_transport *lt = ud;
  lua_State *L = lt->lb->L;
  (void)t;
  if (prepare(lt, TL_T_DGRAM_ERR) < 0)
    return;
  lua_pushlightuserdata(L, lt);
  lua_pushinteger(L, code);
  lua_pushlightuserdata(L, (void *)message);
  tl_done(L, 0, tl_proto_call_open(lt->lb, L, 3, 0,
                                  "error in protocol.error_received()", lt));
}

/* ---- Creating ------------------------------------------------------------ */

static void option_fail(lua_State *L, tapio_options *o, const char *msg) {
  tapio_options_free(o);
  tl_argerror(L, FN_DGRAM, 2, "opts", msg);
}

/* local_addr/remote_addr (at idx, not nil): {host, port [, flowinfo,
 * scope_id]}, an address value, or a Unix path. which is "local" or
 * "remote". */
static void set_addr(lua_State *L, tapio_options *o, int idx,
                     const char *which) {
  char name[20];
  size_t len = 0;
  int rc = 0;
  if (lua_type(L, idx) == LUA_TSTRING) {
    const char *path = tl_unixpath(L, idx);
    snprintf(name, sizeof name, "%s_path", which);
    rc = path ? tapio_options_set_str(o, name, path) : TAPIO_EINVAL;
  } else if (tl_addrbytes(L, idx, &len) || lua_istable(L, idx)) {
    const char *err = tl_addrparts(L, idx); /* host, port, flowinfo */
    lua_Integer p = -1;
    int named;
    if (err)
      option_fail(L, o, lua_pushfstring(L, "%s_addr: %s", which, err));
    snprintf(name, sizeof name, "%s_flowinfo", which);
    if (!lua_isnil(L, -1))
      rc = tapio_options_set_int(o, name, (int64_t)lua_tointeger(L, -1));
    lua_pop(L, 1);
    named = lua_type(L, -1) == LUA_TSTRING; /* digits or a service */
    if ((named && tl_hasnul(L, -1)) ||
        (lua_type(L, -2) == LUA_TSTRING && tl_hasnul(L, -2)))
      option_fail(L, o, lua_pushfstring(L, "%s_addr: a NUL byte inside the "
                                        "host or port", which));
    if (!lua_isnil(L, -2) && lua_type(L, -2) != LUA_TSTRING)
      option_fail(L, o, lua_pushfstring(L, "%s_addr: {host, port} expected, "
                                        "port 0..65535", which));
    if ((err = tl_optport(L, -1, "udp", &p)))
      option_fail(L, o, lua_pushfstring(L, "%s_addr: %s", which, err));
    snprintf(name, sizeof name, "%s_port", which);
    if (rc == 0)
      rc = tapio_options_set_int(o, name, p);
    snprintf(name, sizeof name, "%s_host", which);
    if (rc == 0 && !lua_isnil(L, -2))
      rc = tapio_options_set_str(o, name, lua_tostring(L, -2));
    lua_pop(L, 2);
  } else {
    option_fail(L, o, lua_pushfstring(L, "%s_addr: {host, port} or a path "
                                      "expected, got %s", which,
                                      luaL_typename(L, idx)));
  }
  if (rc < 0)
    option_fail(L, o, tapio_strerror(rc));
}

/* sock excludes the options that make a socket, as the core checks too;
 * raised here, before the call, the descriptor stays the caller's. The
 * words are the core's, with the names of the options here. */
static void check_sock(lua_State *L, int idx) {
  static const char *const made[] = {"local_addr", "remote_addr", "family",
                                     "reuse_port", "allow_broadcast",
                                     "proto", "flags", NULL};
  int i, n = 0, sock;
  lua_getfield(L, idx, "sock");
  sock = !lua_isnil(L, -1);
  lua_pop(L, 1);
  for (i = 0; sock && made[i]; i++) {
    lua_getfield(L, idx, made[i]);
    if (lua_isnil(L, -1)) {
      lua_pop(L, 1);
    } else { /* its name in the value's place: joined below */
      lua_pushfstring(L, n++ ? ", '%s'" : "'%s'", made[i]);
      lua_replace(L, -2);
    }
  }
  if (n == 0)
    return;
  lua_concat(L, n);
  tl_argerror(L, FN_DGRAM, 2, "opts",
              lua_pushfstring(L, "'sock' cannot be given with %s (asyncio: "
                              "socket modifier keyword arguments can not be "
                              "used when sock is specified)",
                              lua_tostring(L, -1)));
}

/* family AF_UNIX, which the core takes from the paths alone: the
 * addresses must be paths (asyncio: "string is expected"), and one must
 * be given (asyncio makes an unnamed socket then; the core cannot). */
static void check_unix_family(lua_State *L, int idx) {
  static const char *const which[] = {"local_addr", "remote_addr"};
  int i, paths = 0;
  for (i = 0; i < 2; i++) {
    lua_getfield(L, idx, which[i]);
    if (lua_type(L, -1) == LUA_TSTRING)
      paths++;
    else if (!lua_isnil(L, -1))
      tl_argerror(L, FN_DGRAM, 2, "opts",
                  lua_pushfstring(L, "family AF_UNIX with a %s that is not a "
                                  "path (asyncio: string is expected)",
                                  which[i]));
    lua_pop(L, 1);
  }
  if (paths == 0)
    tl_argerror(L, FN_DGRAM, 2, "opts", "family AF_UNIX with no path: give "
                "local_addr or remote_addr as a path, or a socketpair's end "
                "as sock (tapio makes no unnamed Unix endpoint)");
}

/* The options at idx as the core takes them: local_addr and remote_addr
 * as asyncio gives them, family AF_UNIX implied by paths, reuse_address
 * refused, true or false (asyncio 3.11 took it away; uvloop raises for
 * true and warns for false); the rest, as the core names them, go to
 * tl_options in a copy of the table without those. */
static tapio_options *dgram_options(lua_State *L, int idx, tapio_loop *loop) {
  static const char *const special[] = {"local_addr", "remote_addr",
                                        "reuse_address", "family"};
  tapio_options *o;
  lua_Integer family = 0;
  int copy, i, unix_family;
  if (lua_isnil(L, idx))
    return NULL;
  if (!lua_istable(L, idx))
    tl_typeerror(L, FN_DGRAM, 2, "opts", idx, "table or nil");
  lua_getfield(L, idx, "reuse_address");
  if (!lua_isnil(L, -1))
    tl_argerror(L, FN_DGRAM, 2, "opts", "reuse_address is not supported on "
                "UDP: another process could take the port's datagrams (use "
                "reuse_port)");
  lua_pop(L, 1);
  check_sock(L, idx);
  lua_getfield(L, idx, "family");
  unix_family = tl_tointeger(L, -1, &family) && family == TAPIO_AF_UNIX;
  lua_pop(L, 1);
  if (unix_family)
    check_unix_family(L, idx);
  lua_newtable(L);
  copy = lua_gettop(L);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pushvalue(L, -2);
    lua_insert(L, -2);
    lua_rawset(L, copy);
  }
  for (i = 0; i < 4; i++) {
    if (i == 3 && !unix_family)
      break; /* an IP family goes to the core */
    lua_pushnil(L);
    lua_setfield(L, copy, special[i]);
  }
  o = tl_options(L, copy, FN_DGRAM, 2, TAPIO_CALL_CREATE_DATAGRAM_ENDPOINT,
                 loop);
  for (i = 0; i < 2; i++) {
    lua_getfield(L, idx, special[i]);
    if (!lua_isnil(L, -1))
      set_addr(L, o, lua_gettop(L), i == 0 ? "local" : "remote");
    lua_pop(L, 1);
  }
  lua_remove(L, copy);
  return o;
}

/* 0, or nil and EAI_NONAME (2) for a {host, port} of opts (at idx) whose
 * port is a service's name while flags has AI_NUMERICSERV. */
static int refuse_named_ports(lua_State *L, int idx) {
  static const char *const which[] = {"local_addr", "remote_addr"};
  int i, rc;
  for (i = 0; i < 2 && lua_istable(L, idx); i++) {
    lua_getfield(L, idx, which[i]);
    if (lua_istable(L, -1)) {
      lua_rawgeti(L, -1, 2);
      if ((rc = tl_refuse_named_port(L, FN_DGRAM, lua_gettop(L), idx)))
        return rc;
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  return 0;
}

/* loop:_create_datagram_endpoint(cb, factory, opts) */
static int l_create_datagram_endpoint(lua_State *L) {
  tl_loop *lb = tl_checkloop(L, 1, FN_DGRAM);
  tapio_options *o;
  tl_transport *lt;
  int rc;
  lua_settop(L, 4);
  tl_checkcallable(L, 3, FN_DGRAM, 1, "protocol_factory");
  if ((rc = refuse_named_ports(L, 4)))
    return rc;
  o = dgram_options(L, 4, lb->loop);
  lt = tl_pending(L, lb, TL_DGRAM_TRANSPORT, 3, 2);
  rc = tapio_create_datagram_endpoint(lb->loop, &tl_datagram_protocol, lt, o,
                                      tl_on_connected, lt);
  tapio_options_free(o);
  if (rc == TAPIO_EINVAL) { /* asyncio's checks: the core says which */
    lua_pushstring(L, tl_refusal(lb->loop, tapio_strerror(rc)));
    tl_release_transport(L, lt);
    return tl_argerror(L, FN_DGRAM, 2, "opts", lua_tostring(L, -1));
  }
  return tl_create_done(L, lt, rc);
}

/* ---- sendto -------------------------------------------------------------- */

static int sendto_error(lua_State *L, tl_transport *lt, int rc, size_t len) {
  char peer[TAPIO_ADDR_MAX];
  int port = 0, family = 0;
  switch (rc) {
  case TAPIO_EMSGSIZE:
    return tl_argerror(L, FN_SENDTO, 1, "data",
                       lua_pushfstring(L, "a datagram of %d bytes is too "
                                       "large (%s)", (int)len,
                                       tapio_strerror(rc)));
  case TAPIO_EISCONN:
    tapio_transport_get_peername(lt->t, peer, sizeof peer, &port, &family);
    return tl_argerror(L, FN_SENDTO, 2, "addr",
                       family == TAPIO_AF_UNIX /* a path, as peername */
                           ? lua_pushfstring(L, "must be nil or the "
                                             "connected peer's '%s'", peer)
                           : lua_pushfstring(L, "must be nil or the "
                                             "connected peer's ('%s', %d)",
                                             peer, port));
  case TAPIO_EAFNOSUPPORT:
    return tl_argerror(L, FN_SENDTO, 2, "addr", "socket family mismatch");
  case TAPIO_EINVAL:
    return tl_argerror(L, FN_SENDTO, 2, "addr", "an address is required: "
                       "the endpoint has no remote address");
  default:
    return luaL_error(L, "tapio: %s: %s", FN_SENDTO, tapio_strerror(rc));
  }
}

/* transport:sendto(data [, addr]): never blocks; after close the
 * datagram is dropped, as asyncio drops it. */
static int d_sendto(lua_State *L) {
  tl_transport *lt = tl_checktransport(L, FN_SENDTO);
  char buf[TAPIO_ADDR_MAX];
  const void *addr = NULL;
  size_t len, alen = 0;
  const char *data;
  int rc;
  if (lua_type(L, 2) != LUA_TSTRING)
    return tl_typeerror(L, FN_SENDTO, 1, "data", 2, "string");
  data = lua_tolstring(L, 2, &len);
  if (lua_isnoneornil(L, 3))
    ; /* the default destination */
  else if (lt->lb && (addr = tl_lastaddr(L, lt->lb, 3, &alen)))
    ; /* the sender of the datagram delivered last: an echo */
  else if (!(addr = tl_addrbytes(L, 3, &alen))) {
    alen = sizeof buf;
    tl_toaddr(L, 3, buf, &alen, FN_SENDTO, 2);
    addr = buf;
  }
  if (!lt->t)
    return 0;
  rc = tapio_transport_sendto(lt->t, data, len, addr, alen);
  if (rc < 0 && rc != TAPIO_ECLOSED)
    return sendto_error(L, lt, rc, len);
  return 0;
}

/* An endpoint's fault counts are kept as it ends, for a test to read
 * after close (testing.datagram_fault_counts). */
static void p_lost(void *ud, tapio_transport *t, int code,
                   const char *message) {
  tl_transport *lt = ud;
  tl_keep_fault_counts(lt->lb->L, lt);
  tl_base_lost(ud, t, code, message);
}

const tapio_datagram_protocol tl_datagram_protocol = {
  .size = sizeof(tapio_datagram_protocol),
  .connection_made = tl_base_made,
  .connection_lost = p_lost,
  .pause_writing = tl_base_pause,
  .resume_writing = tl_base_resume,
  .datagram_received = p_datagram,
  .error_received = p_error,
};

static const luaL_Reg dgram_methods[] = {
  {"sendto", d_sendto},
  {NULL, NULL}
};

static const luaL_Reg loop_methods[] = {
  {"_create_datagram_endpoint", l_create_datagram_endpoint},
  {NULL, NULL}
};

int tl_open_datagram(lua_State *L) {
  /* asyncio's DatagramTransport, with tapio's figures, and the reading
   * pauses its selector transport has (from _SelectorTransport) */
  tl_transport_class(L, TL_DGRAM_TRANSPORT,
                     TL_M_BASE | TL_M_READ | TL_M_FLOW | TL_M_STATS,
                     dgram_methods);
  lua_setfield(L, -2, "datagram_transport_methods");
  tl_addmethods(L, TL_LOOP, loop_methods);
  return 0;
}
