/* The Lua binding's pipe transports: loop:_connect_read_pipe and
 * loop:_connect_write_pipe (the Lua layer wraps them in the async rule,
 * see tapio/loop.lua), "tapio.read_transport" and "tapio.write_transport"
 * (asyncio's ReadTransport and WriteTransport: each has only its own
 * methods), and tapio.pipe() and tapio.openpty() for making pipes. */
#define _GNU_SOURCE /* pipe2, posix_openpt */
#include "tapio_lua.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#define FN_READ "loop:connect_read_pipe"
#define FN_WRITE "loop:connect_write_pipe"

/* The EINVAL value of a descriptor the pipe transports refuse (a regular
 * file, a directory, a block device), saying so. */
static int not_a_pipe(lua_State *L, tl_transport *lt, const char *fn,
                      int fd) {
  char msg[200];
  snprintf(msg, sizeof msg, "%s: descriptor %d is not a pipe, a socket or "
           "a character device (a regular file is always ready: asyncio "
           "refuses it too)", fn, fd);
  tl_release_transport(L, lt);
  lua_pushnil(L);
  tl_pusherror(L, TAPIO_EINVAL, msg);
  return 2;
}

/* loop:_connect_read_pipe(cb, factory, fd, opts) and the write one: tapio
 * owns fd from here on, also when this fails. */
static int connect_pipe(lua_State *L, int writing) {
  const char *fn = writing ? FN_WRITE : FN_READ;
  tl_loop *lb = tl_checkloop(L, 1, fn);
  tapio_options *o;
  tl_transport *lt;
  int fd, rc;
  tl_checkcallable(L, 3, fn, 1, "protocol_factory");
  fd = (int)tl_checkint(L, 4, fn, 2, "pipe", 0, 0x7fffffff);
  o = tl_options(L, 5, fn, 3, writing ? TAPIO_CALL_CONNECT_WRITE_PIPE
                                      : TAPIO_CALL_CONNECT_READ_PIPE,
                 lb->loop);
  lt = tl_pending(L, lb, writing ? TL_WRITE_TRANSPORT : TL_READ_TRANSPORT,
                  3, 2);
  rc = writing ? tapio_connect_write_pipe(lb->loop, fd, &tl_plain_protocol,
                                          lt, o, tl_on_connected, lt)
               : tapio_connect_read_pipe(lb->loop, fd, &tl_plain_protocol,
                                         lt, o, tl_on_connected, lt);
  tapio_options_free(o);
  if (rc == TAPIO_EINVAL) /* the arguments are checked: fd is what is not */
    return not_a_pipe(L, lt, fn, fd);
  return tl_create_done(L, lt, rc);
}

static int l_connect_read_pipe(lua_State *L) { return connect_pipe(L, 0); }

static int l_connect_write_pipe(lua_State *L) { return connect_pipe(L, 1); }

/* ---- Making pipes ------------------------------------------------------ */

/* tapio.pipe(): the read and write ends of a new pipe, close-on-exec (as
 * Python's os.pipe()). */
static int u_pipe(lua_State *L) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) < 0)
    return tl_oserror(L, errno, "pipe", 0);
  lua_pushinteger(L, fds[0]);
  lua_pushinteger(L, fds[1]);
  return 2;
}

/* tapio.openpty(): a pty's master and slave, close-on-exec, the slave in
 * raw mode (bytes pass as they are, no echo). */
static int u_openpty(lua_State *L) {
  struct termios tio;
  int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC), s = -1, err;
  if (m >= 0 && grantpt(m) == 0 && unlockpt(m) == 0)
    s = open(ptsname(m), O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (s >= 0 && tcgetattr(s, &tio) == 0) {
    cfmakeraw(&tio);
    if (tcsetattr(s, TCSANOW, &tio) == 0) {
      lua_pushinteger(L, m);
      lua_pushinteger(L, s);
      return 2;
    }
  }
  err = errno;
  if (m >= 0)
    close(m);
  if (s >= 0)
    close(s);
  return tl_oserror(L, err, "openpty", 0);
}

static const luaL_Reg loop_methods[] = {
  {"_connect_read_pipe", l_connect_read_pipe},
  {"_connect_write_pipe", l_connect_write_pipe},
  {NULL, NULL}
};

static const luaL_Reg functions[] = {
  {"pipe", u_pipe},
  {"openpty", u_openpty},
  {NULL, NULL}
};

int tl_open_pipe(lua_State *L) {
  /* asyncio's ReadTransport and WriteTransport, with tapio's figures */
  tl_transport_class(L, TL_READ_TRANSPORT, TL_M_BASE | TL_M_READ | TL_M_STATS,
                     NULL);
  lua_setfield(L, -2, "read_transport_methods");
  tl_transport_class(L, TL_WRITE_TRANSPORT,
                     TL_M_BASE | TL_M_WRITE | TL_M_FLOW | TL_M_STATS, NULL);
  lua_setfield(L, -2, "write_transport_methods");
  tl_addmethods(L, TL_LOOP, loop_methods);
  luaL_setfuncs(L, functions, 0);
  return 0;
}
