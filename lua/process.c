/* The Lua binding's subprocesses: loop:_subprocess_exec and
 * loop:_subprocess_shell (the Lua layer wraps them in the async rule, see
 * tapio/loop.lua), "tapio.subprocess_transport", the SubprocessProtocol
 * whose callbacks call a Lua protocol's methods (each through the loop's
 * one protected-call path), the pipe transports a subprocess hands out,
 * and tapio.PIPE, STDOUT, DEVNULL, INHERIT and tapio.signals. */
#include "tapio_lua.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FN_EXEC "loop:subprocess_exec"
#define FN_SHELL "loop:subprocess_shell"

/* The subprocess userdata's user value: its pipe transports' Lua objects
 * ([0], [1], [2], false where there is no pipe), its pid and its
 * returncode, which answer after connection_lost too (and from
 * TL_SHELL_LOOP on, what its closed shell answers). Every slot exists
 * from the start, so filling one from a callback allocates nothing. */
enum { UV_PID = 3, UV_RETURNCODE = 4 };

static void new_uservalue(lua_State *L) {
  int i;
  lua_createtable(L, UV_RETURNCODE, 1);
  for (i = 0; i <= UV_RETURNCODE; i++) {
    lua_pushboolean(L, 0);
    lua_rawseti(L, -2, i);
  }
  tl_setuservalue(L, -2);
}

/* Pushes the user value of lt's userdata. */
static void push_uservalue(lua_State *L, tl_transport *lt) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, lt->self_ref);
  tl_getuservalue(L, -1);
  lua_remove(L, -2);
}

static void set_slot(lua_State *L, tl_transport *lt, int slot,
                     lua_Integer v) {
  if (lt->self_ref == LUA_NOREF)
    return;
  push_uservalue(L, lt);
  lua_pushinteger(L, v);
  lua_rawseti(L, -2, slot);
  lua_pop(L, 1);
}

/* ---- Trampolines: inside the protected call ---------------------------- */

/* Pushes proto[name] and proto; 0, with nothing pushed, when missing. */
static int push_method(lua_State *L, tl_transport *lt, const char *name) {
  if (lt->proto_ref == LUA_NOREF)
    return 0; /* the factory failed: there is no protocol */
  lua_rawgeti(L, LUA_REGISTRYINDEX, lt->proto_ref);
  lua_getfield(L, -1, name);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 2);
    return 0;
  }
  lua_insert(L, -2);
  return 1;
}

/* [1] lt, [2] fd, [3] the bytes, [4] their count */
int tl_tr_pipe_data(lua_State *L) {
  if (!push_method(L, lua_touserdata(L, 1), "pipe_data_received"))
    return 0;
  lua_pushvalue(L, 2);
  lua_pushlstring(L, lua_touserdata(L, 3), (size_t)lua_tointeger(L, 4));
  lua_call(L, 3, 0);
  return 0;
}

/* [1] lt, [2] fd, [3] code, [4] message: a failure of a callback of the
 * subprocess's reaches each pipe as the very error raised, as it reaches
 * connection_lost. */
int tl_tr_pipe_lost(lua_State *L) {
  tl_transport *lt = lua_touserdata(L, 1);
  int code = (int)lua_tointeger(L, 3);
  if (!push_method(L, lt, "pipe_connection_lost"))
    return 0;
  lua_pushvalue(L, 2);
  if (code == 0)
    lua_pushnil(L);
  else if (code == TAPIO_ECALLBACK && lt->err_ref != LUA_NOREF)
    lua_rawgeti(L, LUA_REGISTRYINDEX, lt->err_ref);
  else
    tl_pusherror(L, code, lua_touserdata(L, 4));
  lua_call(L, 3, 0);
  return 0;
}

/* ---- The tapio_subprocess_protocol callbacks --------------------------- */

/* Nothing can be called without stack room: the subprocess fails. */
static int prepare(tl_transport *lt, lua_State *L, int which) {
  if (lt->lb->quiet)
    return -1;
  if (tl_prepare(lt->lb, L, which) == 0)
    return 0;
  tapio_transport_fail(lt->t, TAPIO_ENOMEM, "Lua stack overflow");
  return -1;
}

/* [1] lt: the Lua objects of its pipes, made with it (not when first
 * asked for) so that each is there to be a closed shell after its pipe's
 * end: asyncio's get_pipe_transport hands out the closed transport. */
int tl_tr_pipes(lua_State *L) {
  tl_transport *lt = lua_touserdata(L, 1), *w;
  tapio_transport *pt;
  int fd;
  push_uservalue(L, lt); /* 2 */
  for (fd = 0; fd <= 2; fd++) {
    pt = tapio_subprocess_get_pipe_transport(lt->t, fd);
    if (!pt)
      continue;
    w = tl_newunanchored(L, lt->lb,
                         fd == 0 ? TL_WRITE_TRANSPORT : TL_READ_TRANSPORT);
    w->t = pt;
    lua_rawseti(L, 2, fd);
  }
  return 0;
}

/* BaseProtocol's four are every kind's (protocol.c); connection_made
 * first keeps the pid, which get_pid answers after the child is gone,
 * and makes the pipes' Lua objects. */
static void s_made(void *ud, tapio_transport *t) {
  tl_transport *lt = ud;
  lua_State *L = lt->lb->L;
  set_slot(L, lt, UV_PID, tapio_subprocess_get_pid(t));
  lt->t = t;
  if (prepare(lt, L, TL_T_PIPES) == 0) {
    lua_pushlightuserdata(L, lt);
    tl_done(L, 0, tl_call_open(lt->lb, L, 1, 0,
                               "error making a subprocess's pipes", lt));
  }
  tl_base_made(ud, t);
}

static void s_pipe_data(void *ud, tapio_transport *t, int fd,
                        const char *data, size_t len) {
  tl_transport *lt = ud;
  lua_State *L = lt->lb->L;
  (void)t;
  if (prepare(lt, L, TL_T_PIPE_DATA) < 0)
    return;
  lua_pushlightuserdata(L, lt);
  lua_pushinteger(L, fd);
  lua_pushlightuserdata(L, (void *)data);
  lua_pushinteger(L, (lua_Integer)len);
  tl_done(L, 0, tl_proto_call(lt->lb, L, 4, 0,
                              "error in protocol.pipe_data_received()", lt));
}

/* The pipe's Lua object becomes a closed shell first. */
static void s_pipe_lost(void *ud, tapio_transport *t, int fd, int code,
                        const char *message) {
  tl_transport *lt = ud, *w;
  lua_State *L = lt->lb->L;
  (void)t;
  if (lt->self_ref != LUA_NOREF) {
    push_uservalue(L, lt);
    lua_rawgeti(L, -1, fd);
    w = lua_touserdata(L, -1);
    if (w)
      tl_end_transport(L, w, -1);
    lua_pop(L, 2);
  }
  if (prepare(lt, L, TL_T_PIPE_LOST) < 0)
    return;
  lua_pushlightuserdata(L, lt);
  lua_pushinteger(L, fd);
  lua_pushinteger(L, code);
  lua_pushlightuserdata(L, (void *)message);
  tl_done(L, 0, tl_proto_call(lt->lb, L, 4, 0,
                              "error in protocol.pipe_connection_lost()", lt));
}

static void s_exited(void *ud, tapio_transport *t) {
  tl_transport *lt = ud;
  lua_State *L = lt->lb->L;
  int rc = 0;
  tapio_subprocess_get_returncode(t, &rc);
  set_slot(L, lt, UV_RETURNCODE, rc);
  if (prepare(lt, L, TL_T_METHOD) < 0)
    return;
  lua_pushlightuserdata(L, lt);
  lua_pushlightuserdata(L, (void *)"process_exited");
  tl_done(L, 1, tl_proto_call(lt->lb, L, 2, 1,
                              "error in protocol.process_exited()", lt));
}

static const tapio_subprocess_protocol sub_proto = {
  .size = sizeof(tapio_subprocess_protocol),
  .connection_made = s_made,
  .connection_lost = tl_base_lost,
  .pause_writing = tl_base_pause,
  .resume_writing = tl_base_resume,
  .pipe_data_received = s_pipe_data,
  .pipe_connection_lost = s_pipe_lost,
  .process_exited = s_exited,
};

/* ---- Arguments --------------------------------------------------------- */

static const struct {
  const char *name;
  int value;
} stdio_names[] = {
  {"pipe", TAPIO_STDIO_PIPE},
  {"stdout", TAPIO_STDIO_STDOUT},
  {"devnull", TAPIO_STDIO_DEVNULL},
  {"inherit", TAPIO_STDIO_INHERIT},
};

/* opts.stdin, .stdout or .stderr given by name, as its number. */
static void stdio_by_name(lua_State *L, int opts, const char *key,
                          const char *fn) {
  size_t i;
  lua_getfield(L, opts, key);
  if (lua_type(L, -1) == LUA_TSTRING) {
    for (i = 0; i < sizeof stdio_names / sizeof stdio_names[0]; i++)
      if (strcmp(lua_tostring(L, -1), stdio_names[i].name) == 0)
        break;
    if (i == sizeof stdio_names / sizeof stdio_names[0])
      luaL_error(L, "tapio: %s: bad option '%s' (\"pipe\", \"devnull\", "
                    "\"inherit\", \"stdout\" or a descriptor expected)",
                 fn, key);
    lua_pushinteger(L, stdio_names[i].value);
    lua_setfield(L, opts, key);
  }
  lua_pop(L, 1);
}

static int by_name(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Whether the table at -1 has a key that is a string. */
static int has_name(lua_State *L) {
  for (lua_pushnil(L); lua_next(L, -2); lua_pop(L, 1))
    if (lua_type(L, -2) == LUA_TSTRING) {
      lua_pop(L, 2);
      return 1;
    }
  return 0;
}

/* The name (-2) and value (-1) of an env map's entry as C will read them:
 * a NUL inside would cut the string there, and an '=' in the name would
 * set another variable ({["A=B"] = "c"} sets A), both silently (Python's
 * subprocess raises ValueError for each). */
static void env_entry_check(lua_State *L, const char *fn) {
  if (tl_hasnul(L, -2) || tl_hasnul(L, -1))
    luaL_error(L, "tapio: %s: bad option 'env' (a NUL byte inside the name "
                  "or value of '%s')", fn, lua_tostring(L, -2));
  if (strchr(lua_tostring(L, -2), '='))
    luaL_error(L, "tapio: %s: bad option 'env' (illegal environment "
                  "variable name '%s')", fn, lua_tostring(L, -2));
}

/* opts.env given as a map (Python's dict) as the list the core takes,
 * sorted so that the child's environment has an order. A list goes as it
 * is (tl_options checks it is one); a table that is both raises. */
static void env_as_list(lua_State *L, int opts, const char *fn) {
  const char **names;
  int n = 0, i;
  lua_getfield(L, opts, "env");
  if (lua_istable(L, -1) && tl_rawlen(L, -1) > 0 && has_name(L))
    luaL_error(L, "tapio: %s: bad option 'env' (a map or a list of strings "
                  "expected, got a table that has both names and a list)",
               fn);
  if (!lua_istable(L, -1) || tl_rawlen(L, -1) > 0) {
    lua_pop(L, 1);
    return;
  }
  lua_newtable(L); /* the list */
  for (lua_pushnil(L); lua_next(L, -3); lua_pop(L, 1)) {
    if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
      luaL_error(L, "tapio: %s: bad option 'env' (a table of strings "
                    "expected)", fn);
    env_entry_check(L, fn);
    lua_pushfstring(L, "%s=%s", lua_tostring(L, -2), lua_tostring(L, -1));
    lua_rawseti(L, -4, ++n);
  }
  names = lua_newuserdata(L, (size_t)n * sizeof *names + 1);
  for (i = 0; i < n; i++) {
    lua_rawgeti(L, -2, i + 1);
    names[i] = lua_tostring(L, -1);
    lua_pop(L, 1); /* still in the list */
  }
  qsort(names, (size_t)n, sizeof *names, by_name);
  lua_newtable(L);
  for (i = 0; i < n; i++) {
    lua_pushstring(L, names[i]);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, opts, "env");
  lua_pop(L, 3);
}

/* The options at idx as the core takes them, in a copy on top (nil
 * stays nil): stdio by name, env as a map. */
static void core_options(lua_State *L, int idx, const char *fn, int n) {
  int copy;
  if (lua_isnoneornil(L, idx)) {
    lua_pushnil(L);
    return;
  }
  if (!lua_istable(L, idx))
    tl_typeerror(L, fn, n, "opts", idx, "table or nil");
  lua_newtable(L);
  copy = lua_gettop(L);
  for (lua_pushnil(L); lua_next(L, idx); lua_pop(L, 1)) {
    lua_pushvalue(L, -2);
    lua_pushvalue(L, -2);
    lua_rawset(L, copy);
  }
  stdio_by_name(L, copy, "stdin", fn);
  stdio_by_name(L, copy, "stdout", fn);
  stdio_by_name(L, copy, "stderr", fn);
  env_as_list(L, copy, fn);
}

/* The arguments at idx (nil or a list of strings) as an array on top. */
static const char **check_args(lua_State *L, int idx, const char *fn,
                               size_t *n) {
  const char **args;
  size_t i;
  *n = 0;
  if (lua_isnil(L, idx)) {
    lua_pushnil(L);
    return NULL;
  }
  if (!lua_istable(L, idx))
    tl_typeerror(L, fn, 3, "args", idx, "table or nil");
  *n = tl_rawlen(L, idx);
  if (tl_not_a_list(L, idx, *n))
    tl_argerror(L, fn, 3, "args", lua_pushfstring(L, "list of strings "
                "expected, %s", lua_tostring(L, -1)));
  args = lua_newuserdata(L, *n * sizeof *args + 1);
  for (i = 0; i < *n; i++) {
    lua_rawgeti(L, idx, (int)i + 1);
    if (lua_type(L, -1) != LUA_TSTRING)
      tl_argerror(L, fn, 3, "args",
                  lua_pushfstring(L, "string expected at index %d, got %s",
                                  (int)i + 1, luaL_typename(L, -1)));
    if (tl_hasnul(L, -1)) /* C would read it only up to there */
      tl_argerror(L, fn, 3, "args",
                  lua_pushfstring(L, "string with a NUL byte inside at "
                                  "index %d", (int)i + 1));
    args[i] = lua_tostring(L, -1); /* the list keeps it */
    lua_pop(L, 1);
  }
  return args;
}

/* ---- Creating ---------------------------------------------------------- */

/* A program that cannot start: nil and an error value that names it (its
 * "executable" when given) and the cwd it was to run in; where the core
 * said why (on a virtual loop: which program and how to register a fake
 * one; options that do not go together), the core's words. */
static int spawn_error(lua_State *L, tl_transport *lt, int rc,
                       const char *program, int opts) {
  const char *cwd = NULL, *msg;
  tapio_loop *loop = lt->lb->loop;
  tl_release_transport(L, lt);
  if (tapio_loop_error_message(loop))
    return tl_fail_call(L, loop, rc);
  if (lua_istable(L, opts)) {
    lua_getfield(L, opts, "cwd");
    cwd = lua_tostring(L, -1);
    lua_getfield(L, opts, "executable"); /* the file run, as Python's */
    if (lua_type(L, -1) == LUA_TSTRING)
      program = lua_tostring(L, -1);
  }
  if (cwd)
    msg = lua_pushfstring(L, "cannot run '%s' in '%s': %s", program, cwd,
                          tapio_strerror(rc));
  else
    msg = lua_pushfstring(L, "cannot run '%s': %s", program,
                          tapio_strerror(rc));
  lua_pushnil(L);
  tl_pusherror(L, rc, msg);
  return 2;
}

/* The transport for a subprocess about to start, on top. */
static tl_transport *pending(lua_State *L, tl_loop *lb) {
  tl_transport *lt = tl_pending(L, lb, TL_SUBPROCESS, 3, 2);
  new_uservalue(L);
  lt->has_uv = 1;
  return lt;
}

/* loop:_subprocess_exec(cb, factory, program, args, opts) */
static int l_subprocess_exec(lua_State *L) {
  tl_loop *lb = tl_checkloop(L, 1, FN_EXEC);
  const char *program, **args;
  tapio_options *o;
  tl_transport *lt;
  size_t nargs;
  int rc;
  lua_settop(L, 6);
  tl_checkcallable(L, 3, FN_EXEC, 1, "protocol_factory");
  if (lua_type(L, 4) != LUA_TSTRING)
    return tl_typeerror(L, FN_EXEC, 2, "program", 4, "string");
  program = tl_checkcstring(L, 4, FN_EXEC, 2, "program");
  args = check_args(L, 5, FN_EXEC, &nargs);
  core_options(L, 6, FN_EXEC, 4);
  o = tl_options(L, lua_gettop(L), FN_EXEC, 4, TAPIO_CALL_SUBPROCESS_EXEC,
                 lb->loop);
  lt = pending(L, lb);
  rc = tapio_subprocess_exec(lb->loop, program, args, nargs, &sub_proto, lt,
                             o, tl_on_connected, lt);
  tapio_options_free(o);
  if (rc < 0)
    return spawn_error(L, lt, rc, program, 6);
  return tl_create_done(L, lt, rc);
}

/* loop:_subprocess_shell(cb, factory, cmd, opts) */
static int l_subprocess_shell(lua_State *L) {
  tl_loop *lb = tl_checkloop(L, 1, FN_SHELL);
  tapio_options *o;
  tl_transport *lt;
  int rc;
  lua_settop(L, 5);
  tl_checkcallable(L, 3, FN_SHELL, 1, "protocol_factory");
  if (lua_type(L, 4) != LUA_TSTRING) /* asyncio: a command, not a list */
    return tl_typeerror(L, FN_SHELL, 2, "cmd", 4, "string");
  tl_checkcstring(L, 4, FN_SHELL, 2, "cmd");
  core_options(L, 5, FN_SHELL, 3);
  o = tl_options(L, lua_gettop(L), FN_SHELL, 3, TAPIO_CALL_SUBPROCESS_SHELL,
                 lb->loop);
  lt = pending(L, lb);
  rc = tapio_subprocess_shell(lb->loop, lua_tostring(L, 4), &sub_proto, lt,
                              o, tl_on_connected, lt);
  tapio_options_free(o);
  if (rc < 0)
    return spawn_error(L, lt, rc, "/bin/sh", 5);
  return tl_create_done(L, lt, rc);
}

/* ---- Methods ----------------------------------------------------------- */

static tl_transport *tosub(lua_State *L, const char *fn) {
  return tl_checktransport(L, fn);
}

/* The slot's value, kept for after connection_lost; nil if none. */
static int push_slot(lua_State *L, tl_transport *lt, int slot) {
  (void)lt;
  tl_getuservalue(L, 1);
  lua_rawgeti(L, -1, slot);
  if (!lua_toboolean(L, -1))
    lua_pushnil(L);
  return 1;
}

static int s_get_pid(lua_State *L) {
  return push_slot(L, tosub(L, "transport:get_pid"), UV_PID);
}

/* transport:get_returncode(): nil while the child runs; then its exit
 * status, or minus the signal that killed it. */
static int s_get_returncode(lua_State *L) {
  tl_transport *lt = tosub(L, "transport:get_returncode");
  int rc;
  if (lt->t && tapio_subprocess_get_returncode(lt->t, &rc) == 1) {
    lua_pushinteger(L, rc);
    return 1;
  }
  return push_slot(L, lt, UV_RETURNCODE);
}

/* transport:get_pipe_transport(fd): the pipe transport of fd (0, 1, 2),
 * a closed shell once its pipe has ended (as asyncio's), or nil when fd
 * is not a pipe. */
static int s_get_pipe_transport(lua_State *L) {
  const char *fn = "transport:get_pipe_transport";
  lua_Integer fd;
  tosub(L, fn);
  fd = tl_checkint(L, 2, fn, 1, "fd", INT32_MIN, INT32_MAX);
  if (fd < 0 || fd > 2)
    return 0;
  tl_getuservalue(L, 1);
  lua_rawgeti(L, -1, (int)fd);
  if (!lua_touserdata(L, -1))
    lua_pushnil(L);
  return 1;
}

static const struct {
  const char *name;
  int sig;
} signals[] = {
  {"SIGHUP", SIGHUP}, {"SIGINT", SIGINT}, {"SIGQUIT", SIGQUIT},
  {"SIGILL", SIGILL}, {"SIGTRAP", SIGTRAP}, {"SIGABRT", SIGABRT},
  {"SIGBUS", SIGBUS}, {"SIGFPE", SIGFPE}, {"SIGKILL", SIGKILL},
  {"SIGUSR1", SIGUSR1}, {"SIGSEGV", SIGSEGV}, {"SIGUSR2", SIGUSR2},
  {"SIGPIPE", SIGPIPE}, {"SIGALRM", SIGALRM}, {"SIGTERM", SIGTERM},
  {"SIGCHLD", SIGCHLD}, {"SIGCONT", SIGCONT}, {"SIGSTOP", SIGSTOP},
  {"SIGTSTP", SIGTSTP}, {"SIGTTIN", SIGTTIN}, {"SIGTTOU", SIGTTOU},
  {"SIGURG", SIGURG}, {"SIGXCPU", SIGXCPU}, {"SIGXFSZ", SIGXFSZ},
  {"SIGVTALRM", SIGVTALRM}, {"SIGPROF", SIGPROF}, {"SIGWINCH", SIGWINCH},
  {"SIGIO", SIGIO}, {"SIGSYS", SIGSYS},
};

#define NSIGNALS (sizeof signals / sizeof signals[0])

int tl_checksignal(lua_State *L, int idx, const char *fn, int n) {
  size_t i;
  const char *name;
  if (lua_type(L, idx) != LUA_TSTRING)
    return (int)tl_checkint(L, idx, fn, n, "signal", 0, SIGRTMAX);
  name = tl_checkcstring(L, idx, fn, n, "signal"); /* not cut at a NUL */
  for (i = 0; i < NSIGNALS; i++)
    if (strcmp(signals[i].name, name) == 0 ||
        strcmp(signals[i].name + 3, name) == 0)
      return signals[i].sig;
  return tl_argerror(L, fn, n, "signal",
                     lua_pushfstring(L, "unknown signal name '%s'", name));
}

/* tapio.signal_name(sig) -> "SIGTERM" for 15, or nil for a number tapio
 * has no name for (Python's signal.Signals(sig).name) */
static int l_signal_name(lua_State *L) {
  lua_Integer sig = tl_checkint(L, 1, "signal_name", 1, "signal", 0,
                                SIGRTMAX);
  size_t i;
  for (i = 0; i < NSIGNALS; i++)
    if (signals[i].sig == sig) {
      lua_pushstring(L, signals[i].name);
      return 1;
    }
  lua_pushnil(L);
  return 1;
}

/* tapio.killpg(pgid, sig) -> true, or nil and an error value (ESRCH: no
 * process is in that group; EPERM: none may be signalled by us), as
 * Python's os.killpg. pgid 0 (our own group) is refused: a supervisor
 * that passes a pid it has not got would signal itself. */
static int l_killpg(lua_State *L) {
  lua_Integer pgid = tl_checkint(L, 1, "killpg", 1, "pgid", 1, INT_MAX);
  int sig = tl_checksignal(L, 2, "killpg", 2);
  if (killpg((pid_t)pgid, sig) < 0)
    return tl_fail(L, tapio_error_from_errno(errno));
  lua_pushboolean(L, 1);
  return 1;
}

/* true, or nil and an error value: ESRCH once the child is reaped (it
 * could not have been prevented: the child may exit at any moment). */
static int signal_result(lua_State *L, tl_transport *lt, int sig) {
  int rc = lt->t ? tapio_subprocess_send_signal(lt->t, sig) : TAPIO_ESRCH;
  if (rc < 0)
    return tl_fail(L, rc);
  lua_pushboolean(L, 1);
  return 1;
}

static int s_send_signal(lua_State *L) {
  const char *fn = "transport:send_signal";
  tl_transport *lt = tosub(L, fn);
  return signal_result(L, lt, tl_checksignal(L, 2, fn, 1));
}

static int s_terminate(lua_State *L) {
  return signal_result(L, tosub(L, "transport:terminate"), SIGTERM);
}

static int s_kill(lua_State *L) {
  return signal_result(L, tosub(L, "transport:kill"), SIGKILL);
}

static const luaL_Reg methods[] = {
  {"get_pid", s_get_pid},
  {"get_returncode", s_get_returncode},
  {"get_pipe_transport", s_get_pipe_transport},
  {"send_signal", s_send_signal},
  {"terminate", s_terminate},
  {"kill", s_kill},
  {NULL, NULL}
};

static const luaL_Reg loop_methods[] = {
  {"_subprocess_exec", l_subprocess_exec},
  {"_subprocess_shell", l_subprocess_shell},
  {NULL, NULL}
};

int tl_open_process(lua_State *L) {
  size_t i;
  /* asyncio's SubprocessTransport: BaseTransport's and its own */
  tl_transport_class(L, TL_SUBPROCESS, TL_M_BASE, methods);
  lua_setfield(L, -2, "subprocess_transport_methods");
  tl_addmethods(L, TL_LOOP, loop_methods);
  for (i = 0; i < sizeof stdio_names / sizeof stdio_names[0]; i++) {
    char upper[16];
    size_t k;
    for (k = 0; stdio_names[i].name[k] && k < sizeof upper - 1; k++)
      upper[k] = (char)(stdio_names[i].name[k] - 'a' + 'A');
    upper[k] = '\0';
    lua_pushinteger(L, stdio_names[i].value);
    lua_setfield(L, -2, upper); /* tapio.PIPE, as subprocess.PIPE */
  }
  lua_createtable(L, 0, (int)NSIGNALS);
  for (i = 0; i < NSIGNALS; i++) {
    lua_pushinteger(L, signals[i].sig);
    lua_setfield(L, -2, signals[i].name);
  }
  lua_setfield(L, -2, "signals");
  lua_pushcfunction(L, l_signal_name);
  lua_setfield(L, -2, "signal_name");
  lua_pushcfunction(L, l_killpg);
  lua_setfield(L, -2, "killpg");
  return 0;
}
