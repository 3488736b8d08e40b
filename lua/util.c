/* The Lua binding's small pieces: error values, argument checks, keyword
 * options, "tapio.buffer", and the socketpair helpers the
 * existing-socket example needs. */
#include "tapio_lua.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- Argument errors --------------------------------------------------- */

int tl_error_at(lua_State *L, int level, const char *fn, const char *msg) {
  luaL_where(L, level);
  lua_pushfstring(L, "tapio: %s: %s", fn, msg);
  lua_concat(L, 2);
  return lua_error(L);
}

/* Numbered as the caller sees them: for methods, self is not counted. */
static int argerror_at(lua_State *L, int level, const char *fn, int n,
                       const char *name, const char *msg) {
  if (n == 0)
    return tl_error_at(L, level, fn,
                       lua_pushfstring(L, "bad self (%s)", msg));
  return tl_error_at(L, level, fn,
                     lua_pushfstring(L, "bad argument #%d '%s' (%s)", n,
                                     name, msg));
}

int tl_argerror(lua_State *L, const char *fn, int n, const char *name,
                const char *msg) {
  return argerror_at(L, 1, fn, n, name, msg);
}

/* Every key of the table at idx must be one of names (NULL-ended): a
 * misspelt option would otherwise be ignored. */
void tl_checkkeys(lua_State *L, int idx, const char *fn,
                  const char *const *names) {
  int i;
  idx = tl_absindex(L, idx);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    const char *key = lua_type(L, -2) == LUA_TSTRING
                          ? lua_tostring(L, -2) : NULL;
    for (i = 0; key && names[i] && strcmp(names[i], key) != 0; i++)
      ;
    if (!key || !names[i])
      tl_error_at(L, 1, fn, lua_pushfstring(L, "unknown option '%s'",
                                            tl_tostring(L, -2)));
    lua_pop(L, 1);
  }
}

void *tl_checkself(lua_State *L, int idx, const char *tname,
                   const char *fn) {
  void *p = luaL_testudata(L, idx, tname);
  if (!p)
    tl_typeerror(L, fn, 0, "self", idx, tname);
  return p;
}

int tl_typeerror_at(lua_State *L, int level, const char *fn, int n,
                    const char *name, int idx, const char *expected) {
  const char *got = luaL_typename(L, idx);
  if (luaL_getmetafield(L, idx, "__name") && lua_type(L, -1) == LUA_TSTRING)
    got = lua_tostring(L, -1);
  return argerror_at(L, level, fn, n, name,
                     lua_pushfstring(L, "%s expected, got %s", expected,
                                     got));
}

int tl_typeerror(lua_State *L, const char *fn, int n, const char *name,
                 int idx, const char *expected) {
  return tl_typeerror_at(L, 1, fn, n, name, idx, expected);
}

lua_Integer tl_checkint(lua_State *L, int idx, const char *fn, int n,
                        const char *name, lua_Integer min, lua_Integer max) {
  lua_Integer v = 0;
  if (lua_type(L, idx) != LUA_TNUMBER)
    tl_typeerror(L, fn, n, name, idx, "integer");
  if (!tl_tointeger(L, idx, &v)) /* Lua's own words for 1.5 */
    tl_argerror(L, fn, n, name, "number has no integer representation");
  if (v < min || v > max) {
    char msg[96]; /* %I is 5.3+: format here for both */
    snprintf(msg, sizeof msg, "%lld is out of range %lld..%lld",
             (long long)v, (long long)min, (long long)max);
    tl_argerror(L, fn, n, name, msg);
  }
  return v;
}

int tl_portname(const char *s, const char *proto) {
  struct servent se, *found = NULL;
  char buf[1024];
  if (*s && strspn(s, "0123456789") == strlen(s)) {
    long v = strlen(s) <= 5 ? strtol(s, NULL, 10) : 65536;
    return v > 65535 ? TL_PORT_RANGE : (int)v;
  }
  /* a service's name, as getaddrinfo takes it (/etc/services) */
  getservbyname_r(s, proto, &se, buf, sizeof buf, &found);
  return found ? ntohs((uint16_t)found->s_port) : TL_PORT_UNKNOWN;
}

const char *tl_optport(lua_State *L, int idx, const char *proto,
                       lua_Integer *port) {
  const char *s;
  int p;
  if (lua_type(L, idx) != LUA_TSTRING) {
    if (!tl_tointeger(L, idx, port) || *port < 0 || *port > 65535)
      return "{host, port} expected, port 0..65535";
    return NULL;
  }
  s = lua_tostring(L, idx);
  if (tl_hasnul(L, idx))
    return "a NUL byte inside the port";
  p = tl_portname(s, proto);
  if (p == TL_PORT_RANGE)
    return "port out of range 0..65535";
  if (p == TL_PORT_UNKNOWN)
    return lua_pushfstring(L, "unknown service '%s'", s);
  *port = p;
  return NULL;
}

int tl_refuse_named_port(lua_State *L, const char *fn, int port, int opts) {
  lua_Integer flags = 0;
  const char *s;
  if (lua_type(L, port) != LUA_TSTRING || !lua_istable(L, opts))
    return 0;
  s = lua_tostring(L, port);
  if (*s && strspn(s, "0123456789") == strlen(s))
    return 0;
  lua_getfield(L, opts, "flags");
  (void)tl_tointeger(L, -1, &flags);
  lua_pop(L, 1);
  if (!(flags & TAPIO_AI_NUMERICSERV))
    return 0;
  tl_pusherror(L, TAPIO_EAI_NONAME,
               lua_pushfstring(L, "%s: port '%s' is a service's name, and "
                               "flags has AI_NUMERICSERV", fn, s));
  lua_pushnil(L);
  lua_replace(L, -3); /* the message's slot: nil, err */
  return 2;
}

int tl_ai_flags_known(lua_Integer flags) {
  int64_t all = 0;
  tapio_option_info(TAPIO_CALL_CREATE_CONNECTION, "flags", NULL, NULL, &all,
                    NULL);
  return flags >= 0 && (flags & ~(lua_Integer)all) == 0;
}

/* Whether the string at idx has a NUL inside: C would read it only up to
 * there, and "evil.test\0.good.test" would be "evil.test", so that a
 * caller that checked the name it gave reaches another (Python raises
 * ValueError, "embedded null character"). */
int tl_hasnul(lua_State *L, int idx) {
  size_t len;
  const char *s = lua_tolstring(L, idx, &len);
  return strlen(s) != len;
}

const char *tl_checkcstring(lua_State *L, int idx, const char *fn, int n,
                            const char *name) {
  if (tl_hasnul(L, idx))
    tl_argerror(L, fn, n, name, "string with a NUL byte inside");
  return lua_tostring(L, idx);
}

int tl_checkport(lua_State *L, int idx, const char *fn, int n) {
  const char *s;
  int port;
  if (lua_type(L, idx) == LUA_TNUMBER)
    return (int)tl_checkint(L, idx, fn, n, "port", 0, 65535);
  if (lua_type(L, idx) != LUA_TSTRING)
    return tl_typeerror(L, fn, n, "port", idx, "integer or string");
  s = tl_checkcstring(L, idx, fn, n, "port");
  port = tl_portname(s, "tcp");
  if (port == TL_PORT_RANGE)
    return tl_argerror(L, fn, n, "port", "out of range 0..65535");
  if (port == TL_PORT_UNKNOWN)
    return tl_argerror(L, fn, n, "port",
                       lua_pushfstring(L, "unknown service '%s'", s));
  return port;
}

const char *tl_unixpath(lua_State *L, int idx) {
  size_t len;
  const char *s = lua_tolstring(L, idx, &len);
  if (len > 0 && s[0] == '\0') { /* asyncio's spelling of "@name" */
    idx = tl_absindex(L, idx);
    lua_pushfstring(L, "@%s", s + 1);
    lua_replace(L, idx);
    s = lua_tostring(L, idx);
  }
  return strlen(s) == len ? s : NULL;
}

const char *tl_checkunixpath(lua_State *L, int idx, const char *fn, int n,
                             const char *name) {
  const char *s;
  if (lua_type(L, idx) != LUA_TSTRING)
    tl_typeerror(L, fn, n, name, idx, "string");
  s = tl_unixpath(L, idx);
  if (!s)
    tl_argerror(L, fn, n, name, "a NUL byte inside the path (an abstract "
                "name is \"\\0name\" or \"@name\", with no other NUL)");
  return s;
}

int tl_has_sock(lua_State *L, int idx) {
  int r;
  if (!lua_istable(L, idx))
    return 0;
  lua_getfield(L, idx, "sock");
  r = !lua_isnil(L, -1);
  lua_pop(L, 1);
  return r;
}

const char *tl_unix_path_or_sock(lua_State *L, const char *fn) {
  lua_settop(L, 5);
  if (lua_istable(L, 4) && lua_isnil(L, 5))
    lua_insert(L, 4); /* (factory, opts): path nil */
  if (!tl_has_sock(L, 5))
    return tl_checkunixpath(L, 4, fn, 2, "path");
  if (!lua_isnil(L, 4))
    tl_argerror(L, fn, 2, "path", "path and opts.sock cannot be given "
                "together");
  return NULL;
}

double tl_checknumber(lua_State *L, int idx, const char *fn, int n,
                      const char *name) {
  double v;
  if (lua_type(L, idx) != LUA_TNUMBER)
    tl_typeerror(L, fn, n, name, idx, "number");
  v = (double)lua_tonumber(L, idx);
  if (v != v)
    tl_argerror(L, fn, n, name, "number expected, got NaN");
  return v;
}

void tl_checkcallable(lua_State *L, int idx, const char *fn, int n,
                      const char *name) {
  if (lua_type(L, idx) == LUA_TFUNCTION)
    return;
  if (luaL_getmetafield(L, idx, "__call")) {
    lua_pop(L, 1);
    return;
  }
  tl_typeerror(L, fn, n, name, idx, "function");
}

const char *tl_tostring(lua_State *L, int idx) {
  idx = idx < 0 && idx > LUA_REGISTRYINDEX ? lua_gettop(L) + idx + 1 : idx;
  if (luaL_callmeta(L, idx, "__tostring")) {
    if (lua_type(L, -1) == LUA_TSTRING)
      return lua_tostring(L, -1);
    lua_pop(L, 1);
  }
  switch (lua_type(L, idx)) {
  case LUA_TSTRING:
  case LUA_TNUMBER:
    lua_pushvalue(L, idx);
    return lua_tostring(L, -1);
  case LUA_TBOOLEAN:
    return lua_toboolean(L, idx) ? "true" : "false";
  case LUA_TNIL:
    return "nil";
  default:
    return lua_pushfstring(L, "%s: %p", luaL_typename(L, idx),
                           lua_topointer(L, idx));
  }
}

/* ---- Error values ------------------------------------------------------ */

/* Every code of enum tapio_error, for tapio.errors (names come from
 * tapio_errname, so nothing is spelled twice). */
static const int codes[] = {
  -1, -2, -3, -4, -5, -6, -7, -8, -9, -10, -11, -12, -13, -14, -15, -16,
  -17, -18, -19, -20, -21, -22, -23, -24, -25, -26, -27, -28, -29, -30,
  -31, -32, -33, -34, -35, -36, -37, -38, -39, -40, -41, -42, -43, -44, -45,
  TAPIO_EOF, TAPIO_ECLOSED, TAPIO_ERUNNING, TAPIO_EBUFFER, TAPIO_ECALLBACK,
  TAPIO_ESYSTEM, TAPIO_EVIRTUAL, TAPIO_ESPIN, TAPIO_EAI_NONAME, TAPIO_EAI_AGAIN,
  TAPIO_EAI_FAIL, TAPIO_EAI_FAMILY, TAPIO_EAI_SERVICE, TAPIO_EAI_SOCKTYPE, TAPIO_ETLS,
  TAPIO_ETLS_EXPIRED,
  TAPIO_ETLS_NOT_YET_VALID, TAPIO_ETLS_HOSTNAME, TAPIO_ETLS_UNKNOWN_CA,
  TAPIO_ETLS_SELF_SIGNED, TAPIO_ETLS_VERIFY, TAPIO_ETLS_NO_CERT,
  TAPIO_ETLS_VERSION, TAPIO_ETLS_CIPHER, TAPIO_EUNKNOWN
};

void tl_pusherror(lua_State *L, int code, const char *message) {
  lua_createtable(L, 0, 3);
  lua_pushinteger(L, code);
  lua_setfield(L, -2, "code");
  lua_pushstring(L, tapio_errname(code));
  lua_setfield(L, -2, "name");
  lua_pushstring(L, message ? message : tapio_strerror(code));
  lua_setfield(L, -2, "message");
  luaL_setmetatable(L, TL_ERROR);
}

int tl_fail(lua_State *L, int code) {
  lua_pushnil(L);
  tl_pusherror(L, code, NULL);
  return 2;
}

const char *tl_refusal(tapio_loop *loop, const char *dflt) {
  const char *why = tapio_loop_error_message(loop);
  const char *at = why ? strstr(why, ": ") : NULL;
  return at ? at + 2 : why ? why : dflt;
}

int tl_fail_call(lua_State *L, tapio_loop *loop, int code) {
  lua_pushnil(L);
  tl_pusherror(L, code, tapio_loop_error_message(loop));
  return 2;
}

/* "message (NAME)" */
static int e_tostring(lua_State *L) {
  lua_getfield(L, 1, "message");
  lua_getfield(L, 1, "name");
  lua_pushfstring(L, "%s (%s)", tl_tostring(L, 2), tl_tostring(L, 3));
  return 1;
}

/* tapio.error(code or name, [message]): a new error value. */
static int u_error(lua_State *L) {
  int code;
  if (lua_type(L, 1) == LUA_TSTRING) {
    size_t i;
    const char *name = lua_tostring(L, 1);
    for (i = 0; i < sizeof codes / sizeof codes[0]; i++)
      if (strcmp(tapio_errname(codes[i]), name) == 0)
        break;
    if (i == sizeof codes / sizeof codes[0])
      return tl_argerror(L, "error", 1, "code", "unknown error name");
    code = codes[i];
  } else {
    code = (int)tl_checkint(L, 1, "error", 1, "code", -10000, -1);
  }
  if (!lua_isnoneornil(L, 2) && lua_type(L, 2) != LUA_TSTRING)
    return tl_typeerror(L, "error", 2, "message", 2, "string or nil");
  tl_pusherror(L, code, lua_tostring(L, 2));
  return 1;
}

static int u_strerror(lua_State *L) {
  lua_pushstring(L, tapio_strerror((int)luaL_checkinteger(L, 1)));
  return 1;
}

static void open_errors(lua_State *L) {
  size_t i;
  luaL_newmetatable(L, TL_ERROR);
  lua_pushcfunction(L, e_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_setfield(L, -2, "error_metatable");
  lua_createtable(L, 0, (int)(sizeof codes / sizeof codes[0]));
  for (i = 0; i < sizeof codes / sizeof codes[0]; i++) {
    lua_pushinteger(L, codes[i]);
    lua_setfield(L, -2, tapio_errname(codes[i]));
  }
  lua_setfield(L, -2, "errors");
}

/* ---- Options ----------------------------------------------------------- */

/* Which options a call takes, their types and what they accept all come
 * from the core (tapio_option_info): the binding keeps no table of its
 * own. Raises with o freed. */
static void option_error(lua_State *L, tapio_options *o, const char *fn,
                         const char *fmt, const char *name,
                         const char *expects) {
  tapio_options_free(o);
  luaL_error(L, fmt, fn, name, expects);
}

const char *tl_not_a_list(lua_State *L, int idx, size_t n) {
  lua_Integer k = 0;
  size_t count = 0;
  int i;
  idx = tl_absindex(L, idx);
  for (lua_pushnil(L); lua_next(L, idx); count++) {
    lua_pop(L, 1); /* the value */
    if (lua_type(L, -1) == LUA_TSTRING)
      return lua_pushfstring(L, "got a table with key '%s'",
                             lua_tostring(L, -1));
    if (!tl_tointeger(L, -1, &k) || k < 1 || (size_t)k > n)
      return lua_pushfstring(L, "got a table with key %s",
                             tl_tostring(L, -1));
  }
  for (i = 1; count < n; i++) { /* some index of 1..n is missing */
    lua_rawgeti(L, idx, i);
    if (lua_isnil(L, -1))
      return lua_pushfstring(L, "got a list with a hole at %d", i);
    lua_pop(L, 1);
  }
  return NULL;
}

/* A list option from the list at -1: strings or integers (ids: either),
 * each added; an empty list is a given, empty one. TAPIO_EINVAL for an
 * entry of the wrong type or range; a table that is no list raises. */
static int set_list(lua_State *L, tapio_options *o, const char *fn,
                    const char *name, int type, const char *expects) {
  int i, n = (int)tl_rawlen(L, -1), rc = 0;
  const char *why = tl_not_a_list(L, -1, (size_t)n);
  if (why)
    option_error(L, o, fn, "tapio: %s: bad option '%s' (%s)", name,
                 lua_pushfstring(L, "%s expected, %s", expects, why));
  int strs = type == TAPIO_OPTION_STR_LIST || type == TAPIO_OPTION_ID_LIST;
  int ints = type == TAPIO_OPTION_INT_LIST || type == TAPIO_OPTION_ID_LIST;
  if (n == 0 && strs)
    rc = tapio_options_add_str(o, name, NULL);
  for (i = 1; i <= n && rc == 0; i++) {
    lua_rawgeti(L, -1, i);
    if (strs && lua_type(L, -1) == LUA_TSTRING && !tl_hasnul(L, -1))
      rc = tapio_options_add_str(o, name, lua_tostring(L, -1));
    else if (ints && tl_isinteger(L, -1))
      rc = tapio_options_add_int(o, name, (int64_t)lua_tointeger(L, -1));
    else
      rc = TAPIO_EINVAL;
    lua_pop(L, 1);
  }
  return rc;
}

/* Sets the option named at -2 to the value at -1. Booleans may also be
 * given as 0 or 1. */
static void set_option(lua_State *L, tapio_options *o, const char *fn,
                       int call) {
  const char *name = NULL, *expects = "";
  int type = 0, rc = TAPIO_EINVAL, str;
  if (lua_type(L, -2) == LUA_TSTRING)
    name = lua_tostring(L, -2);
  if (!name || tapio_option_info(call, name, &type, NULL, NULL,
                                 &expects) < 0)
    option_error(L, o, fn, "tapio: %s: unknown option '%s'",
                 tl_tostring(L, -2), NULL);
  str = type == TAPIO_OPTION_STR || type == TAPIO_OPTION_ID;
  if (lua_type(L, -1) == LUA_TSTRING && str && tl_hasnul(L, -1))
    option_error(L, o, fn, "tapio: %s: bad option '%s' (%s)", name,
                 "string with a NUL byte inside");
  if (lua_type(L, -1) == LUA_TSTRING && str)
    rc = tapio_options_set_str(o, name, lua_tostring(L, -1));
  else if (type == TAPIO_OPTION_TLS && tl_totlsctx(L, -1))
    rc = tapio_options_set_tls(o, name, tl_totlsctx(L, -1));
  else if (type == TAPIO_OPTION_TLS && lua_type(L, -1) == LUA_TBOOLEAN)
    rc = tl_set_default_tls(o, name, lua_toboolean(L, -1));
  else if (lua_type(L, -1) == LUA_TBOOLEAN && type == TAPIO_OPTION_BOOL)
    rc = tapio_options_set_int(o, name, lua_toboolean(L, -1));
  else if (lua_type(L, -1) == LUA_TNUMBER && type == TAPIO_OPTION_DOUBLE)
    rc = tapio_options_set_double(o, name, (double)lua_tonumber(L, -1));
  else if (lua_istable(L, -1) && (type == TAPIO_OPTION_STR_LIST ||
                                  type == TAPIO_OPTION_INT_LIST ||
                                  type == TAPIO_OPTION_ID_LIST))
    rc = set_list(L, o, fn, name, type, expects);
  else if (tl_isinteger(L, -1) && (type == TAPIO_OPTION_INT ||
                                   type == TAPIO_OPTION_BOOL ||
                                   type == TAPIO_OPTION_ID))
    rc = tapio_options_set_int(o, name, (int64_t)lua_tointeger(L, -1));
  if (rc == TAPIO_ENOMEM)
    option_error(L, o, fn, "tapio: %s: option '%s': %s", name,
                 tapio_strerror(rc));
  if (rc < 0)
    option_error(L, o, fn, "tapio: %s: bad option '%s' (%s expected)", name,
                 expects);
}

const char *tl_socktype_problem(int fd, int type) {
  int got = 0;
  socklen_t len = sizeof got;
  int dgram = type == SOCK_DGRAM;
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &got, &len) < 0) {
    if (errno == EBADF)
      return NULL; /* the core's EBADF error value says it */
    return dgram ? "a datagram socket expected, got no socket"
                 : "a stream socket expected, got no socket";
  }
  if (got == type)
    return NULL;
  return dgram ? "a datagram socket expected, got a stream socket"
               : "a stream socket expected, got a datagram socket";
}

/* The Unix calls' sock must be a Unix socket (asyncio: "A UNIX Domain
 * Stream Socket was expected"). */
static const char *family_problem(int fd, int call) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if (call != TAPIO_CALL_CREATE_UNIX_CONNECTION &&
      call != TAPIO_CALL_CREATE_UNIX_SERVER)
    return NULL;
  if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0 ||
      ss.ss_family == AF_UNIX)
    return NULL; /* the core says what else is wrong */
  return "a Unix stream socket expected, got an IP one";
}

/* opts.sock, set already, must be a socket of the call's type (and
 * family): checked once every option is read, so a misspelt name is said
 * first. */
static void check_sock(lua_State *L, tapio_options *o, int idx,
                       const char *fn, int call) {
  lua_Integer fd = -1;
  const char *why = NULL;
  lua_getfield(L, idx, "sock");
  if (tl_tointeger(L, -1, &fd))
    why = tl_socktype_problem((int)fd,
                              call == TAPIO_CALL_CREATE_DATAGRAM_ENDPOINT
                                  ? SOCK_DGRAM : SOCK_STREAM);
  if (!why && fd >= 0)
    why = family_problem((int)fd, call);
  if (why)
    option_error(L, o, fn, "tapio: %s: bad option '%s' (%s)", "sock", why);
  lua_pop(L, 1);
}

tapio_options *tl_options(lua_State *L, int idx, const char *fn, int n,
                          int call, tapio_loop *loop) {
  tapio_options *o = NULL;
  int rc;
  if (lua_isnoneornil(L, idx))
    return NULL;
  if (!lua_istable(L, idx))
    tl_typeerror(L, fn, n, "opts", idx, "table or nil");
  rc = tapio_options_new(loop, &o);
  if (rc < 0)
    luaL_error(L, "tapio: %s: %s", fn, tapio_strerror(rc));
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    set_option(L, o, fn, call);
    lua_pop(L, 1);
  }
  check_sock(L, o, idx, fn, call);
  return o;
}

/* ---- Buffers ----------------------------------------------------------- */

static tl_buffer *checkbuffer(lua_State *L, const char *fn) {
  return tl_checkself(L, 1, TL_BUFFER, fn);
}

/* tapio.buffer(size): size bytes, zeroed, for get_buffer to return. */
static int u_buffer(lua_State *L) {
  lua_Integer n = tl_checkint(L, 1, "buffer", 1, "size", 1,
                              (lua_Integer)1 << 40);
  tl_buffer *b = tl_newuserdata(L, offsetof(tl_buffer, data) + (size_t)n);
  b->size = (size_t)n;
  memset(b->data, 0, (size_t)n);
  luaL_setmetatable(L, TL_BUFFER);
  return 1;
}

/* Positions as string.sub counts them: negative from the end. */
static size_t position(lua_Integer i, size_t len) {
  if (i > 0)
    return (size_t)i;
  if (i == 0)
    return 1;
  if ((size_t)-i > len)
    return 1;
  return len + (size_t)i + 1;
}

/* buf:sub([i [, j]]): bytes i..j as a string, like string.sub. */
static int b_sub(lua_State *L) {
  tl_buffer *b = checkbuffer(L, "buffer:sub");
  lua_Integer i = lua_isnoneornil(L, 2) ? 1 : tl_checkint(L, 2, "buffer:sub",
                                                  1, "i", INT64_MIN / 2,
                                                  INT64_MAX / 2);
  lua_Integer j = lua_isnoneornil(L, 3) ? -1 : tl_checkint(L, 3, "buffer:sub",
                                                   2, "j", INT64_MIN / 2,
                                                   INT64_MAX / 2);
  size_t from = position(i, b->size), to;
  if (j < 0 && (size_t)-j > b->size)
    to = 0;
  else
    to = j < 0 ? b->size + (size_t)j + 1 : (size_t)j;
  if (to > b->size)
    to = b->size;
  if (from > to)
    lua_pushliteral(L, "");
  else
    lua_pushlstring(L, b->data + from - 1, to - from + 1);
  return 1;
}

/* buf:byte(i): the byte at i, or nil outside the buffer. */
static int b_byte(lua_State *L) {
  tl_buffer *b = checkbuffer(L, "buffer:byte");
  lua_Integer i = tl_checkint(L, 2, "buffer:byte", 1, "i", INT64_MIN / 2,
                              INT64_MAX / 2);
  size_t p = i < 0 ? position(i, b->size) : (size_t)i;
  if (p < 1 || p > b->size)
    return 0;
  lua_pushinteger(L, (unsigned char)b->data[p - 1]);
  return 1;
}

/* buf:set(i, s): copies s into the buffer at i (it must fit). */
static int b_set(lua_State *L) {
  tl_buffer *b = checkbuffer(L, "buffer:set");
  lua_Integer i = tl_checkint(L, 2, "buffer:set", 1, "i", 1,
                              (lua_Integer)b->size + 1);
  size_t len;
  const char *s;
  if (lua_type(L, 3) != LUA_TSTRING)
    return tl_typeerror(L, "buffer:set", 2, "s", 3, "string");
  s = lua_tolstring(L, 3, &len);
  if (len > b->size - (size_t)(i - 1))
    return tl_argerror(L, "buffer:set", 2, "s", "does not fit");
  memcpy(b->data + i - 1, s, len);
  return 0;
}

static int b_len(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)checkbuffer(L, "buffer:__len")->size);
  return 1;
}

static int b_tostring(lua_State *L) {
  lua_pushfstring(L, "tapio.buffer (%d bytes)",
                  (int)checkbuffer(L, "buffer:__tostring")->size);
  return 1;
}

static const luaL_Reg buffer_methods[] = {
  {"sub", b_sub},
  {"byte", b_byte},
  {"set", b_set},
  {NULL, NULL}
};

static void open_buffer(lua_State *L) {
  tl_newclass(L, TL_BUFFER, buffer_methods);
  lua_setfield(L, -2, "buffer_methods");
  luaL_getmetatable(L, TL_BUFFER);
  lua_pushcfunction(L, b_len);
  lua_setfield(L, -2, "__len");
  lua_pushcfunction(L, b_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
}

/* ---- Plain sockets: what the existing-socket example needs ------------ */

int tl_oserror(lua_State *L, int err, const char *fn, int n) {
  int code = tapio_error_from_errno(err);
  const char *why = NULL;
  if (n > 0 && code == TAPIO_EBADF)
    why = "not an open descriptor";
  else if (n > 0 && code == TAPIO_ENOTSOCK)
    why = "not a socket";
  lua_pushnil(L);
  if (why) /* the words an argument error would have (sock.c's) */
    lua_pushfstring(L, "tapio: %s: bad argument #%d 'fd' (%s)", fn, n, why);
  else
    lua_pushfstring(L, "tapio: %s: %s", fn, tapio_strerror(code));
  tl_pusherror(L, code, lua_tostring(L, -1));
  lua_remove(L, -2);
  return 2;
}

/* tapio.socketpair([type]): two connected sockets (descriptors), as
 * Python's socket.socketpair(); stream ones (hand one to
 * create_connection's sock), or datagram ones with type "dgram" (for
 * create_datagram_endpoint's). */
static int u_socketpair(lua_State *L) {
  int sv[2], type = SOCK_STREAM;
  if (!lua_isnoneornil(L, 1)) {
    const char *t = lua_tostring(L, 1);
    if (lua_type(L, 1) != LUA_TSTRING ||
        (strcmp(t, "stream") != 0 && strcmp(t, "dgram") != 0))
      return tl_argerror(L, "socketpair", 1, "type",
                         "\"stream\" or \"dgram\" expected");
    type = strcmp(t, "dgram") == 0 ? SOCK_DGRAM : SOCK_STREAM;
  }
  if (socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, sv) < 0)
    return tl_oserror(L, errno, "socketpair", 0);
  lua_pushinteger(L, sv[0]);
  lua_pushinteger(L, sv[1]);
  return 2;
}

/* tapio.send(fd, data): one blocking send; the count sent or nil, err. */
static int u_send(lua_State *L) {
  int fd = (int)tl_checkint(L, 1, "send", 1, "fd", 0, INT32_MAX);
  size_t len;
  const char *s;
  ssize_t n;
  if (lua_type(L, 2) != LUA_TSTRING)
    return tl_typeerror(L, "send", 2, "data", 2, "string");
  s = lua_tolstring(L, 2, &len);
  do
    n = send(fd, s, len, MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  if (n < 0)
    return tl_oserror(L, errno, "send", 1);
  lua_pushinteger(L, (lua_Integer)n);
  return 1;
}

/* tapio.recv(fd, n): one recv of at most n bytes: the data ("" at the end
 * of the stream), or nil, err (EAGAIN when nothing is there: it never
 * waits, blocking socket or not, so a loop cannot hang in it). For the
 * "watch a file descriptor" example. */
static int u_recv(lua_State *L) {
  int fd = (int)tl_checkint(L, 1, "recv", 1, "fd", 0, INT32_MAX);
  size_t n = (size_t)tl_checkint(L, 2, "recv", 2, "n", 0, 1 << 24);
  ssize_t got;
  char *p = lua_newuserdata(L, n ? n : 1); /* scratch, for both Luas */
  do
    got = recv(fd, p, n, MSG_DONTWAIT);
  while (got < 0 && errno == EINTR);
  if (got < 0)
    return tl_oserror(L, errno, "recv", 1);
  lua_pushlstring(L, p, (size_t)got);
  return 1;
}

/* tapio.close_fd(fd) */
static int u_close_fd(lua_State *L) {
  int fd = (int)tl_checkint(L, 1, "close_fd", 1, "fd", 0, INT32_MAX);
  if (close(fd) < 0)
    return tl_oserror(L, errno, "close_fd", 1);
  lua_pushboolean(L, 1);
  return 1;
}

/* core._not_a_list(t) -> nil, or words saying why t is no list (a map,
 * or a list with holes): the Lua layer's list arguments say it as the C
 * side's do. */
static int u_not_a_list(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  if (!tl_not_a_list(L, 1, tl_rawlen(L, 1)))
    lua_pushnil(L);
  return 1;
}

static const luaL_Reg functions[] = {
  {"_not_a_list", u_not_a_list},
  {"error", u_error},
  {"strerror", u_strerror},
  {"buffer", u_buffer},
  {"socketpair", u_socketpair},
  {"send", u_send},
  {"recv", u_recv},
  {"close_fd", u_close_fd},
  {NULL, NULL}
};

int tl_open_util(lua_State *L) {
  luaL_setfuncs(L, functions, 0);
  open_errors(L);
  tl_open_address(L);
  open_buffer(L);
  lua_pushinteger(L, TAPIO_AF_UNSPEC);
  lua_setfield(L, -2, "AF_UNSPEC");
  lua_pushinteger(L, TAPIO_AF_INET);
  lua_setfield(L, -2, "AF_INET");
  lua_pushinteger(L, TAPIO_AF_INET6);
  lua_setfield(L, -2, "AF_INET6");
  return 0;
}
