/* The Lua binding's address values: "tapio.address", a userdata holding
 * the socket address itself, so that an address a datagram came from goes
 * back to sendto with no parsing or formatting on the way. It reads as
 * Python's tuple would: addr[1] (host), addr[2] (port), for IPv6 addr[3]
 * (flowinfo) and addr[4] (scope id), addr.host, addr.port, addr.family;
 * it prints as the tuple and compares equal to an address of the same
 * host and port. A Unix address is its path, a string, as in Python. */
#include "tapio_lua.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

typedef struct tl_addr {
  size_t len;
  union {
    struct sockaddr sa;
    struct sockaddr_in in;
    struct sockaddr_in6 in6;
  } u;
} tl_addr;

static int is_ip(const void *sa, size_t len) {
  const struct sockaddr *s = sa;
  return sa && len >= sizeof(sa_family_t) &&
         (s->sa_family == AF_INET || s->sa_family == AF_INET6);
}

/* A new IP address value of sa on top. */
static tl_addr *new_addr(lua_State *L, const void *sa, size_t len) {
  tl_addr *a = tl_newuserdata(L, sizeof *a);
  memset(a, 0, sizeof *a);
  a->len = len < sizeof a->u ? len : sizeof a->u;
  memcpy(&a->u, sa, a->len);
  luaL_setmetatable(L, TL_ADDRESS);
  return a;
}

void tl_pushsockaddr(lua_State *L, const void *sa, size_t len) {
  char path[TAPIO_ADDR_MAX];
  if (is_ip(sa, len))
    new_addr(L, sa, len);
  else if (!sa || len < sizeof(sa_family_t) ||
           tapio_addr_format(sa, len, path, sizeof path, NULL, NULL) < 0)
    lua_pushnil(L); /* an unnamed Unix peer */
  else
    lua_pushstring(L, path);
}

/* ---- The loop's cache of the address values datagrams come from ------- */

/* Direct-mapped: a socket address has one slot, by its hash, and a new
 * one takes the slot from the one there. The values live in a Lua table
 * (the datagram trampoline's upvalue) at slot + 1; in C, each slot points
 * at its value's memory, which the table keeps alive, to compare the
 * bytes there. An address value is immutable (no __newindex), so one
 * value can serve every datagram of a peer, on every endpoint of the
 * loop. */
#define ACACHE 1024

struct tl_acache {
  const tl_addr *last; /* the value pushed last */
  unsigned last_i;     /* its slot */
  const tl_addr *slot[ACACHE];
};

void tl_acache_free(tl_loop *lb) {
  free(lb->acache);
  lb->acache = NULL;
}

static unsigned addr_hash(const void *sa, size_t len) {
  uint32_t h = 2166136261u, w;
  size_t i;
  for (i = 0; i + sizeof w <= len; i += sizeof w) {
    memcpy(&w, (const char *)sa + i, sizeof w);
    h = (h ^ w) * 16777619u;
  }
  return (h ^ (h >> 16)) % ACACHE;
}

static int same_addr(const tl_addr *a, const void *sa, size_t len) {
  return a && a->len == len && memcmp(&a->u, sa, len) == 0;
}

void tl_pushcachedaddr(lua_State *L, tl_loop *lb, int idx, const void *sa,
                       size_t len) {
  const tl_addr *a;
  unsigned i;
  if (!is_ip(sa, len) || len > sizeof a->u) {
    tl_pushsockaddr(L, sa, len); /* nil or a Unix path: no value to keep */
    return;
  }
  if (!lb->acache && !(lb->acache = calloc(1, sizeof *lb->acache))) {
    tl_pushsockaddr(L, sa, len); /* no cache today */
    return;
  }
  a = lb->acache->last; /* a peer that keeps sending: no hash */
  i = lb->acache->last_i;
  if (!same_addr(a, sa, len)) {
    i = addr_hash(sa, len);
    a = lb->acache->slot[i];
  }
  if (same_addr(a, sa, len)) {
    lua_rawgeti(L, idx, (lua_Integer)i + 1);
  } else {
    a = new_addr(L, sa, len);
    lua_pushvalue(L, -1);
    lua_rawseti(L, idx, (lua_Integer)i + 1);
    lb->acache->slot[i] = a;
  }
  lb->acache->last = a;
  lb->acache->last_i = i;
}

const void *tl_lastaddr(lua_State *L, tl_loop *lb, int idx, size_t *len) {
  const tl_addr *a = lb->acache ? lb->acache->last : NULL;
  if (!a || lua_touserdata(L, idx) != a)
    return NULL;
  *len = a->len;
  return &a->u;
}

void tl_pushaddress(lua_State *L, const char *host, int port, int family) {
  char buf[TAPIO_ADDR_MAX];
  size_t len = sizeof buf;
  if (family == TAPIO_AF_UNIX || tapio_addr_parse(host, port, buf, &len) < 0)
    lua_pushstring(L, host);
  else
    tl_pushsockaddr(L, buf, len);
}

static tl_addr *toaddr(lua_State *L, int idx) {
  return luaL_testudata(L, idx, TL_ADDRESS);
}

/* msg pushed, as Lua 5.4's lua_pushstring returns it (5.1's does not). */
static const char *push_msg(lua_State *L, const char *msg) {
  lua_pushstring(L, msg);
  return lua_tostring(L, -1);
}

/* An IPv6 table's flowinfo and scope id ([3] and [4], Python's 4-tuple),
 * when given, into the address: the scope id replaces a "%scope" of the
 * host. 0, or -1 when either is not an integer in range. */
static int six_extras(lua_State *L, int idx, void *out) {
  struct sockaddr_in6 *s6 = out;
  lua_Integer flow = 0, scope = 0;
  int ok;
  lua_rawgeti(L, idx, 3);
  lua_rawgeti(L, idx, 4);
  ok = (lua_isnil(L, -2) ||
        (tl_tointeger(L, -2, &flow) && flow >= 0 && flow <= 0xFFFFF)) &&
       (lua_isnil(L, -1) ||
        (tl_tointeger(L, -1, &scope) && scope >= 0 && scope <= 0xFFFFFFFF));
  if (ok && !lua_isnil(L, -2))
    s6->sin6_flowinfo = htonl((uint32_t)flow);
  if (ok && !lua_isnil(L, -1))
    s6->sin6_scope_id = (uint32_t)scope;
  lua_pop(L, 2);
  return ok ? 0 : -1;
}

/* A table {host, port [, flowinfo, scope_id]} of a numeric host as a
 * socket address: the one reading of such a table (sendto, the sock_*
 * calls, getnameinfo, local_addr and remote_addr with [3] or [4]). NULL,
 * or what is wrong with it (that message pushed). */
static const char *table_addr(lua_State *L, int idx, void *out,
                              size_t *len) {
  const char *host;
  lua_Integer port = -1;
  int rc;
  lua_rawgeti(L, idx, 1);
  lua_rawgeti(L, idx, 2);
  if (lua_type(L, -2) != LUA_TSTRING || !tl_tointeger(L, -1, &port) ||
      port < 0 || port > 65535) {
    lua_pop(L, 2);
    return push_msg(L, "{host, port} expected, with a port of "
                          "0..65535");
  }
  if (tl_hasnul(L, -2)) { /* as tl_checkcstring says it */
    lua_pop(L, 2);
    return push_msg(L, "string with a NUL byte inside");
  }
  host = lua_tostring(L, -2);
  rc = tapio_addr_parse(host, (int)port, out, len);
  if (rc == TAPIO_EAI_NONAME)
    host = lua_pushfstring(L, "'%s' is not a numeric address (no DNS "
                           "lookup is made here; resolve it with "
                           "loop:getaddrinfo)", host);
  else
    host = rc < 0 ? push_msg(L, tapio_strerror(rc)) : NULL;
  if (host) {
    lua_replace(L, -3);
    lua_pop(L, 1);
    return host;
  }
  lua_pop(L, 2);
  if (((struct sockaddr *)out)->sa_family == AF_INET6 &&
      six_extras(L, idx, out) < 0)
    return push_msg(L, "{host, port, flowinfo, scope_id} expected, "
                          "with a flowinfo 0..1048575 and a scope_id "
                          "0..4294967295");
  return NULL;
}

int tl_toaddr(lua_State *L, int idx, void *out, size_t *len, const char *fn,
              int n) {
  tl_addr *a = toaddr(L, idx);
  int rc = 0;
  if (a) {
    memcpy(out, &a->u, a->len);
    *len = a->len;
  } else if (lua_type(L, idx) == LUA_TSTRING) {
    const char *path = tl_unixpath(L, idx);
    rc = path ? tapio_addr_unix(path, out, len) : TAPIO_EINVAL;
  } else if (lua_istable(L, idx)) {
    const char *err = table_addr(L, idx, out, len);
    if (err)
      return tl_argerror(L, fn, n, "addr", err);
  } else {
    return tl_typeerror(L, fn, n, "addr", idx,
                        "address, {host, port} or path");
  }
  if (rc < 0)
    return tl_argerror(L, fn, n, "addr", tapio_strerror(rc));
  return 0;
}

/* An IP address given as an option (local_addr, remote_addr) at idx: an
 * address value or a {host, port, flowinfo, scope_id} (table_addr's) as
 * its parts, the host with "%scope" when it has a scope id; a {host,
 * port} as it is (a name, a port's digits or service: looked up by the
 * core). Pushes host, port and flowinfo (nil: none); NULL, or what is
 * wrong (that message pushed instead). */
const char *tl_addrparts(lua_State *L, int idx) {
  char buf[TAPIO_ADDR_MAX], host[TAPIO_ADDR_MAX];
  size_t len = sizeof buf;
  const struct sockaddr_in6 *s6 = (const void *)buf;
  tl_addr *a = toaddr(L, idx);
  int port = 0;
  if (!a && !lua_istable(L, idx))
    return push_msg(L, "{host, port} expected");
  if (a) {
    memcpy(buf, &a->u, a->len);
    len = a->len;
  } else {
    const char *err;
    lua_rawgeti(L, idx, 3);
    lua_rawgeti(L, idx, 4);
    if (lua_isnil(L, -1) && lua_isnil(L, -2)) { /* {host, port} */
      lua_pop(L, 2);
      lua_rawgeti(L, idx, 1);
      lua_rawgeti(L, idx, 2);
      lua_pushnil(L);
      return NULL;
    }
    lua_pop(L, 2);
    if ((err = table_addr(L, idx, buf, &len)))
      return err;
  }
  if (tapio_addr_format(buf, len, host, sizeof host, &port, NULL) < 0)
    return push_msg(L, "an IP address expected");
  lua_pushstring(L, host);
  lua_pushinteger(L, port);
  if (s6->sin6_family == AF_INET6 && s6->sin6_flowinfo)
    lua_pushinteger(L, (lua_Integer)ntohl(s6->sin6_flowinfo));
  else
    lua_pushnil(L);
  return NULL;
}

/* tapio._address_parts(addr): host, port (a TCP service's name looked
 * up), flowinfo; or nil and what is wrong (loop.lua's local_addr, for
 * create_connection). */
static int u_address_parts(lua_State *L) {
  const char *err;
  lua_Integer port = 0;
  lua_settop(L, 1);
  err = tl_addrparts(L, 1); /* host (2), port (3), flowinfo (4) */
  if (!err && lua_type(L, 2) != LUA_TSTRING)
    err = "{host, port} expected";
  else if (!err && !(err = tl_optport(L, 3, "tcp", &port))) {
    lua_pushinteger(L, port);
    lua_replace(L, 3);
    return 3;
  }
  lua_pushnil(L);
  lua_pushstring(L, err);
  return 2;
}

const void *tl_addrbytes(lua_State *L, int idx, size_t *len) {
  tl_addr *a = toaddr(L, idx);
  if (!a)
    return NULL;
  *len = a->len;
  return &a->u;
}

static int family_of(const tl_addr *a) {
  return a->u.sa.sa_family == AF_INET6 ? TAPIO_AF_INET6 : TAPIO_AF_INET;
}

static void push_host(lua_State *L, const tl_addr *a) {
  char host[TAPIO_ADDR_MAX];
  if (tapio_addr_format(&a->u, a->len, host, sizeof host, NULL, NULL) < 0)
    host[0] = '\0';
  lua_pushstring(L, host);
}

static int port_of(const tl_addr *a) {
  return ntohs(a->u.sa.sa_family == AF_INET6 ? a->u.in6.sin6_port
                                             : a->u.in.sin_port);
}

/* addr[1..4], addr.host, .port, .family, .flowinfo, .scope_id */
static int a_index(lua_State *L) {
  tl_addr *a = lua_touserdata(L, 1);
  int six = family_of(a) == TAPIO_AF_INET6;
  lua_Integer i = 0;
  const char *k = lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : "";
  if (!tl_tointeger(L, 2, &i)) {
    i = strcmp(k, "host") == 0 ? 1 : strcmp(k, "port") == 0 ? 2
        : strcmp(k, "flowinfo") == 0 && six ? 3
        : strcmp(k, "scope_id") == 0 && six ? 4 : 0;
    if (strcmp(k, "family") == 0) {
      lua_pushinteger(L, family_of(a));
      return 1;
    }
  }
  if (i == 1)
    push_host(L, a);
  else if (i == 2)
    lua_pushinteger(L, port_of(a));
  else if (i == 3 && six)
    lua_pushinteger(L, (lua_Integer)ntohl(a->u.in6.sin6_flowinfo));
  else if (i == 4 && six)
    lua_pushinteger(L, (lua_Integer)a->u.in6.sin6_scope_id);
  else
    lua_pushnil(L);
  return 1;
}

static int a_len(lua_State *L) {
  tl_addr *a = lua_touserdata(L, 1);
  lua_pushinteger(L, family_of(a) == TAPIO_AF_INET6 ? 4 : 2);
  return 1;
}

/* ('127.0.0.1', 9999) or ('::1', 9999, 0, 0), as Python prints them. */
static int a_tostring(lua_State *L) {
  tl_addr *a = lua_touserdata(L, 1);
  push_host(L, a);
  if (family_of(a) == TAPIO_AF_INET6)
    lua_pushfstring(L, "('%s', %d, %d, %d)", lua_tostring(L, -1), port_of(a),
                    (int)ntohl(a->u.in6.sin6_flowinfo),
                    (int)a->u.in6.sin6_scope_id);
  else
    lua_pushfstring(L, "('%s', %d)", lua_tostring(L, -1), port_of(a));
  return 1;
}

static int a_eq(lua_State *L) {
  tl_addr *a = toaddr(L, 1), *b = toaddr(L, 2);
  int eq = a && b && family_of(a) == family_of(b) &&
           port_of(a) == port_of(b);
  if (eq && family_of(a) == TAPIO_AF_INET6)
    eq = memcmp(&a->u.in6.sin6_addr, &b->u.in6.sin6_addr, 16) == 0 &&
         a->u.in6.sin6_scope_id == b->u.in6.sin6_scope_id;
  else if (eq)
    eq = a->u.in.sin_addr.s_addr == b->u.in.sin_addr.s_addr;
  lua_pushboolean(L, eq);
  return 1;
}

/* tapio.address(host, port, flowinfo, scope_id): an address value of a
 * numeric host, for sendto; a name is an error (no lookup is made). The
 * last two, for IPv6, as Python's 4-tuple has them. */
static int u_address(lua_State *L) {
  char buf[TAPIO_ADDR_MAX];
  size_t len = sizeof buf;
  int i;
  lua_settop(L, 4);
  if (lua_type(L, 1) != LUA_TSTRING)
    return tl_typeerror(L, "address", 1, "host", 1, "string");
  tl_checkint(L, 2, "address", 2, "port", 0, 65535);
  if (!lua_isnil(L, 3))
    tl_checkint(L, 3, "address", 3, "flowinfo", 0, 0xFFFFF);
  if (!lua_isnil(L, 4))
    tl_checkint(L, 4, "address", 4, "scope_id", 0, 0xFFFFFFFF);
  lua_createtable(L, 4, 0);
  for (i = 1; i <= 4; i++) {
    lua_pushvalue(L, i);
    lua_rawseti(L, 5, i);
  }
  tl_toaddr(L, 5, buf, &len, "address", 1);
  tl_pushsockaddr(L, buf, len);
  return 1;
}

static const luaL_Reg metamethods[] = {
  {"__tostring", a_tostring},
  {"__index", a_index},
  {"__eq", a_eq},
  {"__len", a_len},
  {NULL, NULL}
};

int tl_open_address(lua_State *L) {
  luaL_newmetatable(L, TL_ADDRESS);
  lua_pushliteral(L, TL_ADDRESS); /* 5.4 sets __name, 5.1 does not */
  lua_setfield(L, -2, "__name");
  luaL_setfuncs(L, metamethods, 0);
  lua_pop(L, 1);
  lua_pushcfunction(L, u_address);
  lua_setfield(L, -2, "address");
  lua_pushcfunction(L, u_address_parts);
  lua_setfield(L, -2, "_address_parts");
  return 0;
}
