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
 * as well. Ctrl-C (SIGINT) during tapio.run cancels its main task: a
 * script waiting in serve_forever stops, its cleanup (a pcall around the
 * await) runs, the traceback of where main waited is printed and the
 * exit status is 130; a second Ctrl-C ends the program at once (SIGINT's
 * default action). Outside tapio.run, SIGINT has its default action; a
 * SIGINT ignored when the program starts stays ignored.
 *
 * Embedding, in short: open a lua_State, tapio_lua_open(L) (tapio_host.h:
 * package.preload gets tapio.core and the pure-Lua layer, compiled in by
 * embed.cmake), and run scripts through one protected call with a message
 * handler. examples/host/ has hosts that own their main loop. */
#include "tapio_host.h"

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *progname = "tapio";
static int interrupted; /* the error was tapio.run's for a SIGINT */

/* ---- Errors ------------------------------------------------------------ */

/* Calls tapio.<fn>(err) if tapio is loaded: 1 and its result on top, or
 * 0 and nothing pushed. */
static int ask_tapio(lua_State *L, const char *fn, int err) {
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_getfield(L, -1, "tapio");
  lua_remove(L, -2);
  if (!lua_istable(L, -1)) {
    lua_pop(L, 1);
    return 0;
  }
  lua_getfield(L, -1, fn);
  lua_remove(L, -2);
  lua_pushvalue(L, err);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
    lua_pop(L, 1);
    return 0;
  }
  return 1;
}

/* tapio._traceback(err): a task's traceback when err came from one. */
static const char *task_traceback(lua_State *L, int err) {
  if (!ask_tapio(L, "_traceback", err))
    return NULL;
  if (lua_type(L, -1) != LUA_TSTRING) {
    lua_pop(L, 1);
    return NULL;
  }
  return lua_tostring(L, -1);
}

/* tapio._interrupted(err): err is what tapio.run raised for a SIGINT. */
static int was_interrupted(lua_State *L, int err) {
  int yes;
  if (!ask_tapio(L, "_interrupted", err))
    return 0;
  yes = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return yes;
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
  interrupted = was_interrupted(L, 1);
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

/* ---- Memory ------------------------------------------------------------ */

/* Lua's allocator in the host: the C library's, with a cache in front of it
 * for the medium blocks (above 1 KiB, up to 512 KiB) that a server's data
 * strings take. glibc keeps freed blocks of up to 1,032 bytes per thread
 * for the next malloc of their size; a larger one goes back to its sorted
 * bins and is split off again, several hundred instructions a malloc and
 * free (a fifth of a 1 KiB Lua echo request; see bench/README.md). Here a
 * medium block is rounded up to one of four sizes per power of two, and a
 * freed one waits in its size's list, up to CACHE_LIMIT bytes in all. */
#define CACHE_MIN_LOG 10 /* blocks above 2^10 bytes */
#define CACHE_MAX_LOG 19 /* up to 2^19 */
#define CACHE_CLASSES ((CACHE_MAX_LOG - CACHE_MIN_LOG) * 4)
#define CACHE_LIMIT ((size_t)4 << 20)

typedef struct free_block {
  struct free_block *next;
} free_block;

typedef struct block_cache {
  free_block *list[CACHE_CLASSES];
  size_t bytes; /* what the lists hold */
} block_cache;

static block_cache cache;

/* The size class of n bytes, or -1 outside the cached range: class c
 * holds blocks of (5 + c % 4) << (k - 2) bytes, k = 10 + c / 4 (1,280,
 * 1,536, 1,792, 2,048, 2,560, ...). */
static int class_of(size_t n) {
  int k;
  if (n <= (size_t)1 << CACHE_MIN_LOG || n > (size_t)1 << CACHE_MAX_LOG)
    return -1;
  k = 63 - __builtin_clzll((unsigned long long)(n - 1)); /* 2^k < n */
  return (k - CACHE_MIN_LOG) * 4 + (int)(((n - 1) >> (k - 2)) & 3);
}

static size_t class_size(int c) {
  return (size_t)(5 + c % 4) << (CACHE_MIN_LOG + c / 4 - 2);
}

static void cache_free(void) {
  int c;
  for (c = 0; c < CACHE_CLASSES; c++)
    while (cache.list[c]) {
      free_block *b = cache.list[c];
      cache.list[c] = b->next;
      free(b);
    }
  cache.bytes = 0;
}

/* realloc, which gets the cached blocks back before it fails. */
static void *sys_realloc(void *ptr, size_t n) {
  void *p = ptr ? realloc(ptr, n) : malloc(n); /* malloc: a step less */
  if (!p && cache.bytes) {
    cache_free();
    p = realloc(ptr, n);
  }
  return p;
}

static void *take(int c) {
  free_block *b = cache.list[c];
  if (!b)
    return sys_realloc(NULL, class_size(c));
  cache.list[c] = b->next;
  cache.bytes -= class_size(c);
  return b;
}

static void keep(void *p, int c) {
  free_block *b = p;
  if (cache.bytes + class_size(c) > CACHE_LIMIT) {
    free(p);
    return;
  }
  b->next = cache.list[c];
  cache.list[c] = b;
  cache.bytes += class_size(c);
}

/* Lua's lua_Alloc contract: nsize 0 frees; otherwise the block of nsize
 * bytes (ptr's contents kept), or NULL with ptr untouched. osize is ptr's
 * size when ptr is not NULL. */
static void *host_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  int oc = ptr ? class_of(osize) : -1, nc = class_of(nsize);
  void *p;
  (void)ud;
  if (nsize == 0) {
    if (oc >= 0)
      keep(ptr, oc);
    else
      free(ptr);
    return NULL;
  }
  if (oc < 0 && nc < 0)
    return sys_realloc(ptr, nsize);
  if (oc == nc)
    return ptr; /* the block is its class's size: it fits */
  p = nc >= 0 ? take(nc) : sys_realloc(NULL, nsize);
  if (p && ptr) {
    memcpy(p, ptr, osize < nsize ? osize : nsize);
    host_alloc(ud, ptr, osize, 0);
  }
  return p;
}

/* luaL_newstate's panic and warning functions are its own; these do as
 * they do (and as lua5.4 shows them): warnings are off until "@on". */
static int panic(lua_State *L) {
  const char *msg = lua_tostring(L, -1);
  fprintf(stderr, "PANIC: unprotected error in call to Lua API (%s)\n",
          msg ? msg : "error object is not a string");
  fflush(stderr);
  return 0; /* Lua aborts */
}

static int warn_on;   /* "@on" seen */
static int warn_cont; /* the last piece asked for a continuation */

static void warning(void *ud, const char *msg, int tocont) {
  (void)ud;
  if (!warn_cont && !tocont && msg[0] == '@') { /* a control message */
    if (strcmp(msg, "@on") == 0)
      warn_on = 1;
    else if (strcmp(msg, "@off") == 0)
      warn_on = 0;
    return;
  }
  if (warn_on) {
    fprintf(stderr, "%s%s%s", warn_cont ? "" : "Lua warning: ", msg,
            tocont ? "" : "\n");
    fflush(stderr);
  }
  warn_cont = tocont;
}

static lua_State *new_state(void) {
  lua_State *L = lua_newstate(host_alloc, NULL);
  if (L) {
    lua_atpanic(L, panic);
    lua_setwarnf(L, warning, NULL);
  }
  return L;
}

/* ---- Set-up ------------------------------------------------------------ */

#define GEN_MAJOR_MUL 400

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
         "with n. Ctrl-C cancels tapio.run's main task (its cleanup runs,\n"
         "then exit status 130); a second Ctrl-C ends the program at once.\n"
         "LUA_PATH and LUA_CPATH are read as lua5.4 reads them.\n"
         "\n"
         "Manual: man tapio. The Lua API: lua/README.md in tapio's sources.\n");
}

/* The host's choice: tapio.run turns Ctrl-C into cancelling main; unless
 * SIGINT was ignored when the program started (a background job of a
 * shell without job control, nohup), which it leaves so, as Python does. */
static void handle_sigint(lua_State *L) {
  struct sigaction sa;
  if (sigaction(SIGINT, NULL, &sa) != 0 || sa.sa_handler != SIG_DFL)
    return;
  lua_getglobal(L, "require");
  lua_pushliteral(L, "tapio");
  lua_call(L, 1, 1);
  lua_pushboolean(L, 1);
  lua_setfield(L, -2, "handle_sigint");
  lua_pop(L, 1);
}

/* Runs argv[script] (or the chunk after -e) with the rest as arguments. */
static int pmain(lua_State *L) {
  int argc = (int)lua_tointeger(L, 1);
  char **argv = lua_touserdata(L, 2);
  int script = 1, status, n;
  luaL_openlibs(L);
  /* The collector in generational mode, as the standalone lua5.4 runs it:
   * a server's data strings die young, and the incremental collector
   * would mark the whole live heap again for every few hundred of them
   * (a third of a 1 KiB echo request's instructions; see bench/README.md).
   * A major collection waits for the heap to grow by GEN_MAJOR_MUL percent
   * (lua5.4: 100): one read makes a string of up to 256 KiB, which by
   * itself doubled the heap of a small server, so that every read of a
   * stream paid a major collection (a sixth of the server's CPU). The
   * host's choice, not the module's: how a program collects is its own
   * business. */
  lua_gc(L, LUA_GCGEN, 0, GEN_MAJOR_MUL);
  if (tapio_lua_open(L) != 0)
    return luaL_error(L, "not enough memory");
  handle_sigint(L);
  if (strcmp(argv[1], "-e") == 0) {
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
  if (argc < 2 || (strcmp(argv[1], "-e") == 0 && argc < 3)) {
    usage(stderr); /* no script, or -e without its chunk */
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
  L = new_state();
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
  cache_free();
  if (status == LUA_OK && ok)
    return 0;
  return interrupted ? 130 : 1; /* 128 + SIGINT, as a shell reports it */
}
