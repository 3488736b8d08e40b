/* The Lua binding's loop:_sock_recv and friends (tapio/loop.lua gives
 * them the async rule as loop:sock_recv, ...): the core's tapio_sock_*
 * on a descriptor, each a pending call of the binding's (resolve.c) that
 * loop:_cancel takes; and the small helpers that make such a socket:
 * tapio.socket, tapio.bind, tapio.listen, tapio.getsockname. */
#include "tapio_lua.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

enum kind {
  RECV, RECVFROM, SENDALL, SENDTO, CONNECT, ACCEPT, SENDFILE, RECV_INTO,
  RECVFROM_INTO
};

static const char *const fns[] = {
  "loop:sock_recv", "loop:sock_recvfrom", "loop:sock_sendall",
  "loop:sock_sendto", "loop:sock_connect", "loop:sock_accept",
  "loop:sock_sendfile", "loop:sock_recv_into", "loop:sock_recvfrom_into"
};

/* tapio.SOCK_RAW: the binding's own (the ABI's socket types are
 * getaddrinfo's, stream and datagram). */
#define TL_SOCK_RAW 3

/* ---- Completions --------------------------------------------------------- */

/* What a pending call's buffer starts with; a receive's bytes follow. */
typedef struct op {
  int kind;
} op;

typedef struct result {
  int kind;
  tl_lookup *lk;
  size_t n;
  int fd;
  const void *addr;
  size_t alen;
} result;

/* cb(nil, data), cb(nil, data, addr), cb(nil), cb(nil, count),
 * cb(nil, count, addr), cb(nil, fd, addr); a sendall's error has .count,
 * the bytes sent. */
static int push_result(lua_State *L, const void *ctx, int status) {
  const result *r = ctx;
  if (status < 0) {
    if (r->kind == SENDALL) {
      lua_pushinteger(L, (lua_Integer)r->n);
      lua_setfield(L, -2, "count");
    }
    return 0;
  }
  switch (r->kind) {
  case RECV:
  case RECVFROM:
    lua_pushlstring(L, (const char *)tl_pending_buffer(r->lk) + sizeof(op),
                    r->n);
    if (r->kind == RECV)
      return 1;
    tl_pushsockaddr(L, r->addr, r->alen);
    return 2;
  case SENDTO:
  case RECV_INTO:
    lua_pushinteger(L, (lua_Integer)r->n);
    return 1;
  case RECVFROM_INTO:
    lua_pushinteger(L, (lua_Integer)r->n);
    tl_pushsockaddr(L, r->addr, r->alen);
    return 2;
  case ACCEPT:
    lua_pushinteger(L, r->fd);
    tl_pushsockaddr(L, r->addr, r->alen);
    return 2;
  default:
    return 0;
  }
}

static void on_done(void *ud, int status, size_t n, const void *addr,
                    size_t alen) {
  tl_lookup *lk = ud;
  op *o = tl_pending_buffer(lk);
  result r = {o->kind, lk, n, -1, addr, alen};
  tl_pending_answer(ud, status, push_result, &r);
}

/* An accepted socket nobody can take (the loop is closing) is closed. */
static void on_accept(void *ud, int status, int fd, const void *addr,
                      size_t alen) {
  result r = {ACCEPT, ud, 0, fd, addr, alen};
  if (!tl_pending_answer(ud, status, push_result, &r) && fd >= 0)
    close(fd);
}

/* ---- The calls ----------------------------------------------------------- */

static int call_failed(lua_State *L, tl_loop *lb, int kind, tl_lookup *lk,
                       int rc) {
  const char *why = tapio_loop_error_message(lb->loop);
  tl_pending_release(L, lk);
  if (rc == TAPIO_EBADF && why) /* the fd's has no message: the file's */
    return tl_argerror(L, fns[kind], 2, "file", "not an open descriptor");
  if (rc == TAPIO_EINVAL && why && strstr(why, "stream socket"))
    return tl_argerror(L, fns[kind], 1, "fd",
                       "not a stream socket (asyncio's sock_sendfile: "
                       "only SOCK_STREAM type sockets are supported)");
  tl_fd_refused(L, fns[kind], 1, rc);
  if (rc == TAPIO_EINVAL && why && strstr(why, "blocking"))
    return tl_argerror(L, fns[kind], 1, "fd",
                       "a blocking socket: asyncio requires a non-blocking "
                       "one (tapio.socket makes one)");
  return tl_fail_call(L, lb->loop, rc);
}

static int check_fd(lua_State *L, int kind) {
  return (int)tl_checkint(L, 3, fns[kind], 1, "fd", 0, INT32_MAX);
}

/* The buffer of a receive follows the kind, in the pending call. */
static tl_lookup *pending(lua_State *L, tl_loop *lb, int kind, size_t n,
                          char **buf) {
  tl_lookup *lk = tl_pending_new_buffer(L, lb, 2, sizeof(op) + n);
  op *o = tl_pending_buffer(lk);
  o->kind = kind;
  if (buf)
    *buf = (char *)(o + 1);
  return lk;
}

/* loop:_sock_recv(cb, fd, n), loop:_sock_recvfrom(cb, fd, n) */
static int recv_call(lua_State *L, int kind) {
  tl_loop *lb = tl_checkloop(L, 1, fns[kind]);
  int fd = check_fd(L, kind), rc;
  size_t n = (size_t)tl_checkint(L, 4, fns[kind], 2, "n", 0, 1 << 24);
  char *buf;
  tl_lookup *lk = pending(L, lb, kind, n, &buf);
  rc = kind == RECV ? tapio_sock_recv(lb->loop, fd, buf, n, on_done, lk)
                    : tapio_sock_recvfrom(lb->loop, fd, buf, n, on_done, lk);
  return rc < 0 ? call_failed(L, lb, kind, lk, rc) : 1;
}

/* The pending call at -1 holds buffer b (at idx) while the kernel may
 * write into it: the buffer lives at least as long as the call. */
static void hold_buffer(lua_State *L, int idx) {
  lua_createtable(L, 1, 0); /* a table: 5.1 keeps no other user value */
  lua_pushvalue(L, idx);
  lua_rawseti(L, -2, 1);
  tl_setuservalue(L, -2);
}

/* loop:_sock_recv_into(cb, fd, buf), loop:_sock_recvfrom_into(cb, fd,
 * buf, nbytes): into the caller's tapio.buffer, from its first byte;
 * nbytes 0 or nil is the buffer's size, more is an error (asyncio's
 * ValueError). */
static int into_call(lua_State *L, int kind) {
  tl_loop *lb = tl_checkloop(L, 1, fns[kind]);
  int fd = check_fd(L, kind), rc;
  tl_buffer *b = luaL_testudata(L, 4, TL_BUFFER);
  size_t n;
  tl_lookup *lk;
  if (!b)
    return tl_typeerror(L, fns[kind], 2, "buf", 4, "tapio.buffer");
  n = lua_isnoneornil(L, 5) ? 0
                            : (size_t)tl_checkint(L, 5, fns[kind], 3,
                                                  "nbytes", 0, INT64_MAX);
  if (n > b->size)
    return tl_argerror(L, fns[kind], 3, "nbytes",
                       "greater than the buffer's size");
  if (n == 0)
    n = b->size;
  lk = pending(L, lb, kind, 0, NULL);
  hold_buffer(L, 4);
  rc = kind == RECV_INTO
           ? tapio_sock_recv(lb->loop, fd, b->data, n, on_done, lk)
           : tapio_sock_recvfrom(lb->loop, fd, b->data, n, on_done, lk);
  return rc < 0 ? call_failed(L, lb, kind, lk, rc) : 1;
}

static int l_sock_recv_into(lua_State *L) {
  lua_settop(L, 4); /* no nbytes: asyncio's sock_recv_into has none */
  return into_call(L, RECV_INTO);
}

static int l_sock_recvfrom_into(lua_State *L) {
  return into_call(L, RECVFROM_INTO);
}

/* loop:_sock_sendall(cb, fd, data), loop:_sock_sendto(cb, fd, data, addr)
 */
static int send_call(lua_State *L, int kind) {
  tl_loop *lb = tl_checkloop(L, 1, fns[kind]);
  int fd = check_fd(L, kind), rc;
  char addr[TAPIO_ADDR_MAX];
  size_t len, alen = sizeof addr;
  const char *data;
  tl_lookup *lk;
  if (lua_type(L, 4) != LUA_TSTRING)
    return tl_typeerror(L, fns[kind], 2, "data", 4, "string");
  data = lua_tolstring(L, 4, &len);
  if (kind == SENDTO)
    tl_toaddr(L, 5, addr, &alen, fns[kind], 3);
  lk = pending(L, lb, kind, 0, NULL);
  rc = kind == SENDALL
           ? tapio_sock_sendall(lb->loop, fd, data, len, on_done, lk)
           : tapio_sock_sendto(lb->loop, fd, data, len, addr, alen, on_done,
                               lk);
  return rc < 0 ? call_failed(L, lb, kind, lk, rc) : 1;
}

static int l_sock_recv(lua_State *L) {
  return recv_call(L, RECV);
}

static int l_sock_recvfrom(lua_State *L) {
  return recv_call(L, RECVFROM);
}

static int l_sock_sendall(lua_State *L) {
  return send_call(L, SENDALL);
}

static int l_sock_sendto(lua_State *L) {
  return send_call(L, SENDTO);
}

/* loop:_sock_connect(cb, fd, addr) */
static int l_sock_connect(lua_State *L) {
  tl_loop *lb = tl_checkloop(L, 1, fns[CONNECT]);
  int fd = check_fd(L, CONNECT), rc;
  char addr[TAPIO_ADDR_MAX];
  size_t alen = sizeof addr;
  tl_lookup *lk;
  tl_toaddr(L, 4, addr, &alen, fns[CONNECT], 2);
  lk = pending(L, lb, CONNECT, 0, NULL);
  rc = tapio_sock_connect(lb->loop, fd, addr, alen, on_done, lk);
  return rc < 0 ? call_failed(L, lb, CONNECT, lk, rc) : 1;
}

/* loop:_sock_accept(cb, fd) */
static int l_sock_accept(lua_State *L) {
  tl_loop *lb = tl_checkloop(L, 1, fns[ACCEPT]);
  int fd = check_fd(L, ACCEPT), rc;
  tl_lookup *lk = pending(L, lb, ACCEPT, 0, NULL);
  rc = tapio_sock_accept(lb->loop, fd, on_accept, lk);
  return rc < 0 ? call_failed(L, lb, ACCEPT, lk, rc) : 1;
}

/* loop:_sock_sendfile(cb, fd, file, offset, count, fallback) */
static int l_sock_sendfile(lua_State *L) {
  tl_loop *lb = tl_checkloop(L, 1, fns[SENDFILE]);
  int fd = check_fd(L, SENDFILE), file, fallback = 1, rc;
  lua_Integer offset, count;
  tl_lookup *lk;
  lua_settop(L, 7);
  file = tl_file_fd(L, 4, fns[SENDFILE], 2);
  tl_check_range(L, 5, fns[SENDFILE], 3, &offset, &count);
  if (lua_type(L, 7) == LUA_TBOOLEAN)
    fallback = lua_toboolean(L, 7);
  else if (!lua_isnil(L, 7))
    return tl_typeerror(L, fns[SENDFILE], 5, "fallback", 7,
                        "boolean or nil");
  lk = tl_pending_new(L, lb, 2);
  rc = tapio_sock_sendfile(lb->loop, fd, file, (uint64_t)offset,
                           (uint64_t)count, fallback, tl_pending_count, lk);
  return rc < 0 ? call_failed(L, lb, SENDFILE, lk, rc) : 1;
}

/* ---- Small helpers: making the socket ------------------------------------ */

static int os_family(int family) {
  switch (family) {
  case TAPIO_AF_INET:
    return AF_INET;
  case TAPIO_AF_INET6:
    return AF_INET6;
  case TAPIO_AF_UNIX:
    return AF_UNIX;
  default:
    return -1;
  }
}

static int os_type(int type) {
  switch (type) {
  case TAPIO_SOCK_STREAM:
    return SOCK_STREAM;
  case TAPIO_SOCK_DGRAM:
    return SOCK_DGRAM;
  case TL_SOCK_RAW:
    return SOCK_RAW;
  default:
    return -1;
  }
}

/* tapio.socket(family, type [, proto]): a new socket, non-blocking and
 * close-on-exec; the descriptor, or nil, err. */
static int u_socket(lua_State *L) {
  int family = os_family((int)tl_checkint(L, 1, "socket", 1, "family", 0,
                                          INT32_MAX));
  int type = os_type((int)tl_checkint(L, 2, "socket", 2, "type", 0,
                                      INT32_MAX));
  int proto = lua_isnoneornil(L, 3)
                  ? 0
                  : (int)tl_checkint(L, 3, "socket", 3, "proto", 0, 255);
  int fd;
  if (family < 0)
    return tl_argerror(L, "socket", 1, "family",
                       "tapio.AF_INET, AF_INET6 or AF_UNIX expected");
  if (type < 0)
    return tl_argerror(L, "socket", 2, "type",
                       "tapio.SOCK_STREAM, SOCK_DGRAM or SOCK_RAW expected");
  fd = socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, proto);
  if (fd < 0)
    return tl_oserror(L, errno, "socket", 0);
  lua_pushinteger(L, fd);
  return 1;
}

/* tapio.bind(fd, addr): true, or nil, err. */
static int u_bind(lua_State *L) {
  int fd = (int)tl_checkint(L, 1, "bind", 1, "fd", 0, INT32_MAX);
  char addr[TAPIO_ADDR_MAX];
  size_t alen = sizeof addr;
  tl_toaddr(L, 2, addr, &alen, "bind", 2);
  if (bind(fd, (const struct sockaddr *)addr, (socklen_t)alen) < 0)
    return tl_oserror(L, errno, "bind", 1);
  lua_pushboolean(L, 1);
  return 1;
}

/* tapio.listen(fd [, backlog]): true, or nil, err (backlog 100, as
 * asyncio's servers). */
static int u_listen(lua_State *L) {
  int fd = (int)tl_checkint(L, 1, "listen", 1, "fd", 0, INT32_MAX);
  int backlog = lua_isnoneornil(L, 2)
                    ? 100
                    : (int)tl_checkint(L, 2, "listen", 2, "backlog", 0,
                                       INT32_MAX);
  if (listen(fd, backlog) < 0)
    return tl_oserror(L, errno, "listen", 1);
  lua_pushboolean(L, 1);
  return 1;
}

/* tapio.getsockname(fd): its address value, or nil, err. */
static int u_getsockname(lua_State *L) {
  int fd = (int)tl_checkint(L, 1, "getsockname", 1, "fd", 0, INT32_MAX);
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
    return tl_oserror(L, errno, "getsockname", 1);
  tl_pushsockaddr(L, &ss, len);
  return 1;
}

static const luaL_Reg functions[] = {
  {"socket", u_socket},
  {"bind", u_bind},
  {"listen", u_listen},
  {"getsockname", u_getsockname},
  {NULL, NULL}
};

static const luaL_Reg loop_methods[] = {
  {"_sock_recv", l_sock_recv},
  {"_sock_recvfrom", l_sock_recvfrom},
  {"_sock_sendall", l_sock_sendall},
  {"_sock_sendto", l_sock_sendto},
  {"_sock_connect", l_sock_connect},
  {"_sock_accept", l_sock_accept},
  {"_sock_sendfile", l_sock_sendfile},
  {"_sock_recv_into", l_sock_recv_into},
  {"_sock_recvfrom_into", l_sock_recvfrom_into},
  {NULL, NULL}
};

/* With the module table on top. */
int tl_open_sock(lua_State *L) {
  luaL_setfuncs(L, functions, 0);
  tl_addmethods(L, TL_LOOP, loop_methods);
  tl_setint(L, "SOCK_RAW", TL_SOCK_RAW);
  tl_setint(L, "IPPROTO_ICMP", 1); /* IANA's numbers, every system's */
  tl_setint(L, "IPPROTO_TCP", 6);
  tl_setint(L, "IPPROTO_UDP", 17);
  tl_setint(L, "IPPROTO_ICMPV6", 58);
  tl_setint(L, "IPPROTO_SCTP", 132); /* a stream socket's other protocol */
  tl_setint(L, "IPPROTO_UDPLITE", 136); /* a datagram socket's */
  return 0;
}
