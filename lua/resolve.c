/* The Lua binding's name lookups: loop:_getaddrinfo, loop:_getnameinfo
 * (the Lua layer gives them the async rule), loop:set_resolver, and
 * loop:_cancel, which cancels any pending create call or lookup. A
 * pending lookup is the binding's pending call with a Lua completion:
 * sendfile.c's and sock.c's calls are ones too (tl_pending_new,
 * tl_pending_count, tl_pending_answer). */
#include "tapio_lua.h"

#include <string.h>

#define TL_LOOKUP "tapio.lookup"
#define FN_GAI "loop:getaddrinfo"
#define FN_GNI "loop:getnameinfo"

/* A pending lookup: its address is the core's completion user pointer.
 * A sock_recv's buffer follows it, in the same userdata. */
struct tl_lookup {
  tl_loop *lb;
  int self_ref; /* anchors it while pending */
  int cb_ref;   /* the Lua completion */
};

void tl_pending_release(lua_State *L, tl_lookup *lk) {
  tl_unref(lk->lb, L, &lk->cb_ref);
  tl_unanchor(lk->lb, L, &lk->self_ref);
}

/* Leaves the pending lookup on the stack, holding the callback at cbi. */
tl_lookup *tl_pending_new(lua_State *L, tl_loop *lb, int cbi) {
  return tl_pending_new_buffer(L, lb, cbi, 0);
}

tl_lookup *tl_pending_new_buffer(lua_State *L, tl_loop *lb, int cbi,
                                 size_t size) {
  tl_lookup *lk = tl_newuserdata(L, sizeof *lk + size);
  lk->lb = lb;
  lk->self_ref = lk->cb_ref = LUA_NOREF;
  luaL_setmetatable(L, TL_LOOKUP);
  lua_pushvalue(L, cbi);
  lk->cb_ref = tl_ref(lb, L);
  lua_pushvalue(L, -1);
  lk->self_ref = tl_anchor(lb, L);
  return lk;
}

void *tl_pending_buffer(tl_lookup *lk) {
  return lk + 1;
}

/* ---- Completions ----------------------------------------------------------- */

typedef struct answer {
  tl_lookup *lk;
  int status;
  const tapio_addrinfo *res;    /* getaddrinfo's */
  const char *host, *service;   /* getnameinfo's */
  int counted;                  /* a count's (sendfile's) */
  uint64_t count;
  tl_push_fn push;              /* or the caller's results (sock.c's) */
  const void *ctx;
} answer;

static void push_entry(lua_State *L, const tapio_addrinfo *res, size_t i) {
  static const char *const names[] = {"family", "type", "proto",
                                      "canonname", "addr"};
  const void *addr;
  size_t len;
  int family, type, proto, k;
  tapio_addrinfo_get(res, i, &addr, &len, &family, &type, &proto);
  lua_createtable(L, 5, 5);
  lua_pushinteger(L, family);
  lua_pushinteger(L, type);
  lua_pushinteger(L, proto);
  if (i == 0 && tapio_addrinfo_canonname(res))
    lua_pushstring(L, tapio_addrinfo_canonname(res));
  else
    lua_pushliteral(L, "");
  tl_pushsockaddr(L, addr, len);
  for (k = 5; k >= 1; k--) { /* each as entry[k] and entry.name */
    lua_pushvalue(L, -1);
    lua_setfield(L, -2 - k, names[k - 1]);
    lua_rawseti(L, -1 - k, k);
  }
}

/* [1] answer: cb(err), cb(nil, list) or cb(nil, host, service); a
 * count's: cb(nil, count) or cb(err) with err.count. */
int tl_tr_lookup(lua_State *L) {
  answer *a = lua_touserdata(L, 1);
  size_t i, n;
  lua_rawgeti(L, LUA_REGISTRYINDEX, a->lk->cb_ref);
  if (a->push) {
    if (a->status < 0)
      tl_pusherror(L, a->status, NULL);
    else
      lua_pushnil(L);
    lua_call(L, 1 + a->push(L, a->ctx, a->status), 0);
    return 0;
  }
  if (a->status < 0) {
    tl_pusherror(L, a->status, NULL);
    if (a->counted) {
      lua_pushinteger(L, (lua_Integer)a->count);
      lua_setfield(L, -2, "count");
    }
    lua_call(L, 1, 0);
    return 0;
  }
  lua_pushnil(L);
  if (a->counted) {
    lua_pushinteger(L, (lua_Integer)a->count);
    lua_call(L, 2, 0);
    return 0;
  }
  if (!a->res) {
    lua_pushstring(L, a->host);
    lua_pushstring(L, a->service);
    lua_call(L, 3, 0);
    return 0;
  }
  n = tapio_addrinfo_count(a->res);
  lua_createtable(L, (int)n, 0);
  for (i = 0; i < n; i++) {
    push_entry(L, a->res, i);
    lua_rawseti(L, -2, (int)i + 1);
  }
  lua_call(L, 2, 0);
  return 0;
}

/* 1 when the Lua completion was called. */
static int answered(answer *a) {
  tl_loop *lb = a->lk->lb;
  lua_State *L = lb->L;
  int called = 0;
  if (!lb->quiet && tl_prepare(lb, L, TL_T_LOOKUP) == 0) {
    lua_pushlightuserdata(L, a);
    called = 1;
    tl_done(L, 0, tl_call(lb, L, 1, 0, "error in a lookup callback", NULL));
  }
  tl_pending_release(L, a->lk);
  return called;
}

static void on_addrinfo(void *ud, int status, const tapio_addrinfo *res) {
  answer a = {ud, status, res, NULL, NULL, 0, 0, NULL, NULL};
  answered(&a);
}

static void on_nameinfo(void *ud, int status, const char *host,
                        const char *service) {
  answer a = {ud, status, NULL, host, service, 0, 0, NULL, NULL};
  answered(&a);
}

void tl_pending_count(void *ud, int status, uint64_t count) {
  answer a = {ud, status, NULL, NULL, NULL, 1, count, NULL, NULL};
  answered(&a);
}

int tl_pending_answer(void *ud, int status, tl_push_fn push,
                      const void *ctx) {
  answer a = {ud, status, NULL, NULL, NULL, 0, 0, push, ctx};
  return answered(&a);
}

/* ---- The calls ---------------------------------------------------------- */

/* opts.name, an integer 0..max (nil: 0); opts is argument n. */
static int int_field(lua_State *L, int idx, const char *name, const char *fn,
                     int n, lua_Integer max) {
  lua_Integer v = 0;
  lua_getfield(L, idx, name);
  if (!lua_isnil(L, -1)) {
    char what[48];
    snprintf(what, sizeof what, "opts.%s", name);
    v = tl_checkint(L, -1, fn, n, what, 0, max);
  }
  lua_pop(L, 1);
  return (int)v;
}

/* loop:_getaddrinfo(cb, host, port, opts): port a number, a service name
 * or nil; opts.family, opts.type, opts.proto (tapio.IPPROTO_*),
 * opts.flags (tapio.AI_*). */
static int l_getaddrinfo(lua_State *L) {
  tl_loop *lb = tl_checkloop(L, 1, FN_GAI);
  const char *host = NULL, *service = NULL;
  int family = 0, type = 0, proto = 0, flags = 0, rc;
  char port[16];
  tl_lookup *lk;
  lua_settop(L, 5);
  if (!lua_isnil(L, 3) && lua_type(L, 3) != LUA_TSTRING)
    return tl_typeerror(L, FN_GAI, 1, "host", 3, "string or nil");
  if (!lua_isnil(L, 3))
    host = tl_checkcstring(L, 3, FN_GAI, 1, "host");
  if (lua_type(L, 4) == LUA_TNUMBER) {
    snprintf(port, sizeof port, "%d",
             (int)tl_checkint(L, 4, FN_GAI, 2, "port", 0, 65535));
    service = port;
  } else if (lua_type(L, 4) == LUA_TSTRING) {
    service = tl_checkcstring(L, 4, FN_GAI, 2, "port");
  } else if (!lua_isnil(L, 4)) {
    return tl_typeerror(L, FN_GAI, 2, "port", 4, "integer, string or nil");
  }
  if (lua_istable(L, 5)) {
    static const char *const names[] = {"family", "type", "proto", "flags",
                                        NULL};
    tl_checkkeys(L, 5, FN_GAI, names);
    family = int_field(L, 5, "family", FN_GAI, 3, 6);
    type = int_field(L, 5, "type", FN_GAI, 3, 2);
    proto = int_field(L, 5, "proto", FN_GAI, 3, 255);
    flags = int_field(L, 5, "flags", FN_GAI, 3, 0x7fffffff);
  } else if (!lua_isnil(L, 5)) {
    return tl_typeerror(L, FN_GAI, 3, "opts", 5, "table or nil");
  }
  if (family != 0 && family != 4 && family != 6)
    return tl_argerror(L, FN_GAI, 3, "opts.family", "0, 4 or 6 expected");
  if (!tl_ai_flags_known(flags))
    return tl_argerror(L, FN_GAI, 3, "opts.flags", "tapio.AI_* flags "
                       "expected");
  if (!host && !service)
    return tl_argerror(L, FN_GAI, 1, "host", "host and port are both nil");
  lk = tl_pending_new(L, lb, 2);
  rc = tapio_getaddrinfo_proto(lb->loop, host, service, family, type, proto,
                               flags, on_addrinfo, lk);
  if (rc < 0) {
    tl_pending_release(L, lk);
    return tl_fail(L, rc);
  }
  return 1; /* the pending lookup, for loop:_cancel */
}

/* loop:_getnameinfo(cb, addr, flags) */
static int l_getnameinfo(lua_State *L) {
  tl_loop *lb = tl_checkloop(L, 1, FN_GNI);
  char buf[TAPIO_ADDR_MAX];
  size_t len = sizeof buf;
  int flags, rc;
  tl_lookup *lk;
  lua_settop(L, 4);
  tl_toaddr(L, 3, buf, &len, FN_GNI, 1);
  flags = lua_isnil(L, 4) ? 0
                          : (int)tl_checkint(L, 4, FN_GNI, 2, "flags", 0, 31);
  lk = tl_pending_new(L, lb, 2);
  rc = tapio_getnameinfo(lb->loop, buf, len, flags, on_nameinfo, lk);
  if (rc < 0) {
    tl_pending_release(L, lk);
    if (rc == TAPIO_EAFNOSUPPORT)
      return tl_argerror(L, FN_GNI, 1, "addr", "an IP address expected");
    return tl_fail(L, rc);
  }
  return 1;
}

/* loop:set_resolver{servers = "127.0.0.1:5353", timeout = s, tries = n} */
static int l_set_resolver(lua_State *L) {
  static const char *const names[] = {"servers", "timeout", "tries", NULL};
  const char *fn = "loop:set_resolver";
  tl_loop *lb = tl_checkloop(L, 1, fn);
  const char *servers = NULL;
  double timeout = 0;
  int tries, rc;
  if (!lua_istable(L, 2))
    return tl_typeerror(L, fn, 1, "opts", 2, "table");
  tl_checkkeys(L, 2, fn, names);
  lua_getfield(L, 2, "servers");
  if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TSTRING)
    return tl_typeerror(L, fn, 1, "opts.servers", -1, "string or nil");
  servers = lua_tostring(L, -1);
  lua_getfield(L, 2, "timeout");
  if (!lua_isnil(L, -1))
    timeout = tl_checknumber(L, -1, fn, 1, "opts.timeout");
  tries = int_field(L, 2, "tries", fn, 1, 100);
  rc = tapio_loop_set_resolver(lb->loop, servers, timeout, tries);
  if (rc == TAPIO_EBUSY)
    return luaL_error(L, "tapio: %s: lookups are in flight", fn);
  if (rc < 0)
    return tl_argerror(L, fn, 1, "opts",
                       rc == TAPIO_EINVAL ? "a server list such as "
                       "'127.0.0.1:53,[::1]:53', a timeout of 0 or more "
                       "seconds and tries of 0 or more expected"
                                          : tapio_strerror(rc));
  return 0;
}

/* loop:_cancel(pending): the pending create call, lookup or job (work.c)
 * a method returned is cancelled; true if it still was pending. */
static int l_cancel(lua_State *L) {
  tl_loop *lb = tl_toloop(L, 1, "loop:_cancel");
  void *p = lua_touserdata(L, 2);
  int n;
  if (!lb->loop || lb->closing || !p)
    return 0;
  if (tl_is_work(L, 2))
    return tl_work_cancel(L, 2);
  n = tapio_cancel_pending(lb->loop, p);
  if (n > 0) { /* the core calls nobody: the anchors go here */
    if (luaL_testudata(L, 2, TL_LOOKUP))
      tl_pending_release(L, p);
    else if (luaL_testudata(L, 2, TL_SERVER))
      tl_server_cancelled(L, p);
    else if (tl_testtransport(L, 2))
      tl_release_transport(L, p);
  }
  lua_pushboolean(L, n > 0);
  return 1;
}

static const luaL_Reg loop_methods[] = {
  {"_getaddrinfo", l_getaddrinfo},
  {"_getnameinfo", l_getnameinfo},
  {"set_resolver", l_set_resolver},
  {"_cancel", l_cancel},
  {NULL, NULL}
};

int tl_open_resolve(lua_State *L) {
  luaL_newmetatable(L, TL_LOOKUP);
  lua_pop(L, 1);
  tl_addmethods(L, TL_LOOP, loop_methods);
  tl_setint(L, "AF_UNIX", TAPIO_AF_UNIX);
  tl_setint(L, "SOCK_STREAM", TAPIO_SOCK_STREAM);
  tl_setint(L, "SOCK_DGRAM", TAPIO_SOCK_DGRAM);
  tl_setint(L, "AI_PASSIVE", TAPIO_AI_PASSIVE);
  tl_setint(L, "AI_CANONNAME", TAPIO_AI_CANONNAME);
  tl_setint(L, "AI_NUMERICHOST", TAPIO_AI_NUMERICHOST);
  tl_setint(L, "AI_V4MAPPED", TAPIO_AI_V4MAPPED);
  tl_setint(L, "AI_ALL", TAPIO_AI_ALL);
  tl_setint(L, "AI_ADDRCONFIG", TAPIO_AI_ADDRCONFIG);
  tl_setint(L, "AI_NUMERICSERV", TAPIO_AI_NUMERICSERV);
  tl_setint(L, "NI_NUMERICHOST", TAPIO_NI_NUMERICHOST);
  tl_setint(L, "NI_NUMERICSERV", TAPIO_NI_NUMERICSERV);
  tl_setint(L, "NI_NAMEREQD", TAPIO_NI_NAMEREQD);
  tl_setint(L, "NI_DGRAM", TAPIO_NI_DGRAM);
  tl_setint(L, "NI_NOFQDN", TAPIO_NI_NOFQDN);
  return 0;
}
