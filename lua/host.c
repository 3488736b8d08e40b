/* tapio: a Lua 5.4 interpreter with tapio built in, and the project's
 * example of embedding tapio in an application.
 *
 *   tapio script.lua [args...]   runs the script; `arg` is set as the
 *                                standalone lua sets it, and the script
 *                                gets args... as its `...`
 *   tapio -e 'chunk' [args...]   runs a string instead
 *   tapio - [args...]            runs standard input
 *   tapio -v, --version          prints the versions
 *   tapio -h, --help             prints the usage (the manual: doc/tapio.1)
 *
 * Standard output is line-buffered, also into a pipe, so that a server's
 * prints are seen as they happen. An error ends the program with its
 * message and traceback on stderr and exit status 1; when the error came
 * out of a task (through tapio.run), the task's own traceback is printed
 * as well.
 *
 * Embedding, in short: open a lua_State, tapio_lua_open(L) (tapio_host.h:
 * package.preload gets tapio.core and the pure-Lua layer, compiled in by
 * embed.cmake), and run scripts through one protected call with a message
 * handler. examples/host/ has hosts that own their main loop. */
#include "tapio_host.h"

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *progname = "tapio";

/* ---- Errors ------------------------------------------------------------ */

/* tapio._traceback(err): a task's traceback when err came from one. */
static const char *task_traceback(lua_State *L, int err) {
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_getfield(L, -1, "tapio");
  lua_remove(L, -2);
  if (!lua_istable(L, -1)) {
    lua_pop(L, 1);
    return NULL;
  }
  lua_getfield(L, -1, "_traceback");
  lua_remove(L, -2);
  lua_pushvalue(L, err);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK || lua_type(L, -1) != LUA_TSTRING) {
    lua_pop(L, 1);
    return NULL;
  }
  return lua_tostring(L, -1);
}

/* As lua.c's: the error as a string, with a traceback; a task's traceback
 * goes first when the error was raised again by tapio.run. */
static int msghandler(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  const char *tb;
  if (msg == NULL) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
      msg = lua_tostring(L, -1);
    else
      msg = lua_pushfstring(L, "(error object is a %s value)",
                            luaL_typename(L, 1));
  }
  tb = task_traceback(L, 1);
  if (tb)
    msg = lua_pushfstring(L, "%s\n(raised again by tapio.run)", tb);
  luaL_traceback(L, L, msg, 1);
  return 1;
}

static void l_message(const char *msg) {
  fprintf(stderr, "%s: %s\n", progname, msg);
  fflush(stderr);
}

static int report(lua_State *L, int status) {
  if (status != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    l_message(msg ? msg : "(error object is not a string)");
    lua_pop(L, 1);
  }
  return status;
}

static int docall(lua_State *L, int narg, int nres) {
  int base = lua_gettop(L) - narg;
  int status;
  lua_pushcfunction(L, msghandler);
  lua_insert(L, base);
  status = lua_pcall(L, narg, nres, base);
  lua_remove(L, base);
  return status;
}

/* ---- Set-up ------------------------------------------------------------ */

/* arg[0] is the script, arg[1..] its arguments, arg[-1] this program. */
static void create_arg_table(lua_State *L, char **argv, int argc,
                             int script) {
  int i;
  lua_createtable(L, argc - script - 1, script + 1);
  for (i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - script);
  }
  lua_setglobal(L, "arg");
}

static int push_args(lua_State *L) {
  int i, n;
  if (lua_getglobal(L, "arg") != LUA_TTABLE)
    luaL_error(L, "'arg' is not a table");
  n = (int)luaL_len(L, -1);
  luaL_checkstack(L, n + 3, "too many arguments to script");
  for (i = 1; i <= n; i++)
    lua_rawgeti(L, -i, i);
  lua_remove(L, -i);
  return n;
}

static void usage(FILE *out) {
  fprintf(out,
          "usage: %s script.lua [args...]\n"
          "       %s -e 'chunk' [args...]\n"
          "       %s - [args...]    (the script from standard input)\n"
          "       %s -v | --version\n"
          "       %s -h | --help\n",
          progname, progname, progname, progname, progname);
}

/* --help: the usage and what the manual (tapio(1)) says in short. */
static void help(void) {
  usage(stdout);
  printf("\n"
         "Runs a Lua 5.4 script with tapio built in: require \"tapio\" needs\n"
         "no search path. The script gets its arguments as ... and in the\n"
         "global arg (arg[0] the script, arg[-1] this program).\n"
         "\n"
         "  script.lua   run the file\n"
         "  -e 'chunk'   run the string\n"
         "  -            run standard input\n"
         "  -v           print tapio's and Lua's versions\n"
         "  -h, --help   print this\n"
         "\n"
         "Standard output is line-buffered. An error ends the program with\n"
         "its message and traceback on stderr and exit status 1 (a task's\n"
         "traceback first when tapio.run raised it again); os.exit(n) exits\n"
         "with n. LUA_PATH and LUA_CPATH are read as lua5.4 reads them.\n"
         "\n"
         "Manual: man tapio. The Lua API: lua/README.md in tapio's sources.\n");
}

/* Runs argv[script] (or the chunk after -e) with the rest as arguments. */
static int pmain(lua_State *L) {
  int argc = (int)lua_tointeger(L, 1);
  char **argv = lua_touserdata(L, 2);
  int script = 1, status, n;
  luaL_openlibs(L);
  /* lua5.4's own interpreter runs its scripts with the generational
   * collector: so does this one. Data arriving as short-lived strings
   * (a pipe's 64 KiB reads) costs half as much as in incremental mode. */
  lua_gc(L, LUA_GCGEN, 0, 0);
  if (tapio_lua_open(L) != 0)
    return luaL_error(L, "not enough memory");
  if (strcmp(argv[1], "-e") == 0) {
    if (argc < 3) {
      usage(stderr);
      lua_pushboolean(L, 0);
      return 1;
    }
    script = 2;
    create_arg_table(L, argv, argc, script);
    status = luaL_loadbuffer(L, argv[2], strlen(argv[2]), "=(command line)");
  } else {
    const char *fname = strcmp(argv[1], "-") == 0 ? NULL : argv[1];
    create_arg_table(L, argv, argc, script);
    status = luaL_loadfile(L, fname);
  }
  if (status == LUA_OK) {
    n = push_args(L);
    status = docall(L, n, 0);
  }
  lua_pushboolean(L, report(L, status) == LUA_OK);
  return 1;
}

int main(int argc, char **argv) {
  lua_State *L;
  int status, ok;
  if (argv[0] && argv[0][0])
    progname = argv[0];
  /* A server's prints show as they happen, also through a pipe. */
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
    help();
    return 0;
  }
  if (strcmp(argv[1], "-v") == 0 || strcmp(argv[1], "--version") == 0) {
    printf("tapio %s, %s\n", tapio_version_string(), LUA_RELEASE);
    return 0;
  }
  L = luaL_newstate();
  if (!L) {
    l_message("cannot create state: not enough memory");
    return 1;
  }
  lua_pushcfunction(L, pmain);
  lua_pushinteger(L, argc);
  lua_pushlightuserdata(L, argv);
  status = lua_pcall(L, 2, 1, 0);
  ok = lua_toboolean(L, -1);
  report(L, status);
  lua_close(L); /* finalizers: loops and servers left open are freed */
  return (status == LUA_OK && ok) ? 0 : 1;
}
