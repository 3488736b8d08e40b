/* Blocking work off the loop for Lua: loop:_run_in_executor, to which
 * tapio.loop's loop:run_in_executor and tapio.to_thread give the async
 * rule. A Lua state runs on one thread, so fn crosses to the pool thread
 * as its bytecode (string.dump, as luv's new_work) and runs there in that
 * thread's own Lua state (made at its first job, with the standard
 * libraries; closed when the pool's thread ends with the loop); its
 * arguments and results cross as copies, encoded here into plain bytes.
 *
 * A job is a "tapio.work" userdata, anchored while the pool holds it.
 * Its user values hold its completion, the completion's first argument,
 * fn's bytecode and its arguments' bytes (Lua strings: they neither move
 * nor change, so the pool thread reads them while the loop's thread goes
 * on). The pool thread reads those and writes the job's results (out),
 * nothing else of the userdata; the loop's thread frees out after the
 * job's completion (work_results took them, or nobody wanted them). No
 * job has a __gc: nothing is allocated for it before it is queued. */
#include "tapio_lua.h"

#include <lualib.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TL_WORK "tapio.work"
#define MAX_DEPTH 100 /* tables nested deeper are refused */
#define MAX_RESULTS 10000

typedef struct wbuf {
  char *p;
  size_t n, cap;
} wbuf;

/* The caller's package.path and package.cpath as the jobs took them: a
 * job holds the version it was queued with, and a pool thread's state
 * sets them only when it meets a version it has not set. Immutable but
 * for refs, which only the loop's thread touches. */
typedef struct paths {
  unsigned refs;      /* the loop's (until it changes) and its jobs' */
  unsigned version;   /* 1, 2, ... per loop */
  char *path, *cpath; /* NULL: not a string */
  size_t path_n, cpath_n;
} paths;

/* The jobs' share of a Lua state: a "tapio.work_shared" userdata, an
 * upvalue of loop:_run_in_executor (U_SHARED). */
typedef struct shared {
  struct tl_work *current; /* the job whose completion runs: work_results
                              answers for it alone */
  paths *now;         /* what the next job takes, unless they changed */
  unsigned version;
  wbuf scratch;       /* a job's arguments, encoded before they are
                         copied into a string of their own */
} shared;

/* loop:_run_in_executor's upvalues: the job metatable, the weak table of
 * fn's bytecode by fn, the loop metatable, the shared userdata, the
 * package table require reads (package.loaded.package, or nil), the keys
 * "path" and "cpath", and the values of package.path and package.cpath
 * that now was made from. */
enum { U_JOBMT = 1, U_DUMPS, U_LOOPMT, U_SHARED, U_PACKAGE, U_KPATH,
       U_KCPATH, U_PATH, U_CPATH, U_N = U_CPATH };

/* The user values of a job. */
enum { UV_CB = 1, UV_ARG, UV_CODE, UV_IN, UV_N };

typedef struct tl_work {
  tl_loop *lb;
  shared *sh;
  tapio_work *w;      /* the core's job, until done or dropped */
  struct tl_work *next_spare; /* lb->spare_jobs */
  int slot;           /* its index in the loop's table of jobs */
  int status;         /* the core's, in the completion */
  uint8_t cancelled;  /* done calls nobody */
  uint8_t taken;      /* work_results ran */
  uint8_t failed;     /* out holds fn's error; 2: no memory for it */
  int nargs, nres;
  const char *code;   /* fn's bytecode: the UV_CODE string's */
  size_t code_n;
  const char *in;     /* the arguments' bytes: the UV_IN string's */
  paths *paths;       /* the caller's package.path and cpath */
  wbuf out;           /* what came back: the pool thread's, then ours */
  char name[32];      /* "tapio.to_thread" or "loop:run_in_executor" */
} tl_work;

/* Errors of loop:_run_in_executor's arguments name the line of whoever
 * called tapio.to_thread or loop:run_in_executor: tapio.loop's
 * work_in_task or queue_work calls it (level 1), tail-called from
 * there (level 2). On a pool thread, level 0: no line. */
enum { CALLER = 2, NO_LINE = 0 };

static int raise_at(lua_State *L, int level, const char *fmt, ...) {
  va_list ap;
  luaL_where(L, level);
  va_start(ap, fmt);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  lua_concat(L, 2);
  return lua_error(L);
}

/* ---- Values as bytes -------------------------------------------------------
 * One tag byte each: n nil, f false, t true, i an integer (Lua 5.4), d a
 * float, s a string (its length, then its bytes), { a table: its pairs,
 * then }. Numbers and lengths in the machine's own order: both ends are
 * this process. */

static int grow(wbuf *b, size_t n) {
  size_t cap = b->cap ? b->cap : 256; /* a small fn's bytecode */
  char *p;
  while (cap - b->n < n) {
    if (cap > SIZE_MAX / 2)
      return -1;
    cap *= 2;
  }
  p = realloc(b->p, cap);
  if (!p)
    return -1;
  b->p = p;
  b->cap = cap;
  return 0;
}

static void put(lua_State *L, wbuf *b, const void *src, size_t n) {
  if (n > b->cap - b->n && grow(b, n) < 0)
    luaL_error(L, "not enough memory");
  memcpy(b->p + b->n, src, n);
  b->n += n;
}

static void put_tag(lua_State *L, wbuf *b, char tag) { put(L, b, &tag, 1); }

static void put_string(lua_State *L, wbuf *b, const char *s, size_t len) {
  uint64_t n = len;
  put_tag(L, b, 's');
  put(L, b, &n, sizeof n);
  put(L, b, s, len);
}

static void put_number(lua_State *L, wbuf *b, int idx) {
#if LUA_VERSION_NUM >= 503
  if (lua_isinteger(L, idx)) {
    int64_t v = (int64_t)lua_tointeger(L, idx);
    put_tag(L, b, 'i');
    put(L, b, &v, sizeof v);
    return;
  }
#endif
  {
    double v = (double)lua_tonumber(L, idx);
    put_tag(L, b, 'd');
    put(L, b, &v, sizeof v);
  }
}

typedef struct where {
  int level;          /* whose line errors name: CALLER, NO_LINE */
  const char *fn;     /* whose call: "tapio.to_thread" */
  const char *what;   /* "fn's argument", "result": named what #n */
  int n;
  int seen;           /* the stack index of the tables being copied */
} where;

static void put_value(lua_State *L, wbuf *b, int idx, const where *at,
                      int depth);

/* Raw pairs (no __pairs, no metatable); a table met again inside itself
 * is a cycle (one met twice side by side is copied twice). */
static void put_table(lua_State *L, wbuf *b, int idx, const where *at,
                      int depth) {
  if (depth >= MAX_DEPTH)
    raise_at(L, at->level, "tapio: %s: %s #%d nests tables more than %d "
             "deep", at->fn, at->what, at->n, MAX_DEPTH);
  luaL_checkstack(L, 6, NULL);
  lua_pushvalue(L, idx);
  lua_rawget(L, at->seen);
  if (lua_toboolean(L, -1))
    raise_at(L, at->level, "tapio: %s: %s #%d holds a table that contains "
             "itself (a cycle): it cannot be copied", at->fn, at->what, at->n);
  lua_pop(L, 1);
  lua_pushvalue(L, idx);
  lua_pushboolean(L, 1);
  lua_rawset(L, at->seen);
  put_tag(L, b, '{');
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    put_value(L, b, -2, at, depth + 1);
    put_value(L, b, -1, at, depth + 1);
    lua_pop(L, 1);
  }
  put_tag(L, b, '}');
  lua_pushvalue(L, idx);
  lua_pushnil(L);
  lua_rawset(L, at->seen);
}

static void put_value(lua_State *L, wbuf *b, int idx, const where *at,
                      int depth) {
  size_t len;
  const char *s;
  idx = tl_absindex(L, idx);
  switch (lua_type(L, idx)) {
  case LUA_TNIL:
    put_tag(L, b, 'n');
    break;
  case LUA_TBOOLEAN:
    put_tag(L, b, lua_toboolean(L, idx) ? 't' : 'f');
    break;
  case LUA_TNUMBER:
    put_number(L, b, idx);
    break;
  case LUA_TSTRING: /* a string, never converted: lua_next is safe */
    s = lua_tolstring(L, idx, &len);
    put_string(L, b, s, len);
    break;
  case LUA_TTABLE:
    put_table(L, b, idx, at, depth);
    break;
  default:
    raise_at(L, at->level, "tapio: %s: %s #%d %s a %s: only nil, booleans, "
             "numbers, strings and tables of them are copied to another "
             "thread",
               at->fn, at->what, at->n, depth ? "holds" : "is",
               luaL_typename(L, idx));
  }
}

/* The values at first..last into b, each named what #k. The table of
 * the tables being copied is made only when one is among them. */
static void put_values(lua_State *L, wbuf *b, int first, int last,
                       int level, const char *fn, const char *what) {
  where at;
  int i, tables = 0;
  for (i = first; i <= last && !tables; i++)
    tables = lua_type(L, i) == LUA_TTABLE;
  if (tables)
    lua_newtable(L);
  at.level = level;
  at.fn = fn;
  at.what = what;
  at.seen = lua_gettop(L);
  for (i = first; i <= last; i++) {
    at.n = i - first + 1;
    put_value(L, b, i, &at, 0);
  }
  if (tables)
    lua_pop(L, 1);
}

typedef struct reader {
  const char *p;
} reader;

static void take(reader *r, void *dst, size_t n) {
  memcpy(dst, r->p, n);
  r->p += n;
}

/* Pushes the next value (the bytes are put_value's own). */
static void push_value(lua_State *L, reader *r) {
  int64_t i;
  double d;
  uint64_t len;
  luaL_checkstack(L, 4, NULL);
  switch (*r->p++) {
  case 'n':
    lua_pushnil(L);
    break;
  case 'f':
  case 't':
    lua_pushboolean(L, r->p[-1] == 't');
    break;
  case 'i':
    take(r, &i, sizeof i);
    lua_pushinteger(L, (lua_Integer)i);
    break;
  case 'd':
    take(r, &d, sizeof d);
    lua_pushnumber(L, (lua_Number)d);
    break;
  case 's':
    take(r, &len, sizeof len);
    lua_pushlstring(L, r->p, (size_t)len);
    r->p += len;
    break;
  default: /* '{' */
    lua_newtable(L);
    while (*r->p != '}') {
      push_value(L, r);
      push_value(L, r);
      lua_rawset(L, -3);
    }
    r->p++;
  }
}

static void push_values(lua_State *L, const char *p, int n) {
  reader r;
  r.p = p;
  while (n-- > 0)
    push_value(L, &r);
}

static void wbuf_free(wbuf *b) {
  free(b->p);
  b->p = NULL;
  b->n = b->cap = 0;
}

/* ---- On the pool's thread ----------------------------------------------- */

/* The functions a thread's state loaded, by their bytecode: a job of
 * the same fn loads it once. Direct-mapped by where the loop's copy of
 * the bytecode lives; the bytes themselves are compared, since another
 * function's may later live there. */
#define FN_SLOTS 64

typedef struct fn_slot {
  const char *p;      /* the loop's bytecode string it was loaded from */
  size_t n;
  char *copy;         /* its bytes */
  int ref;            /* the function, in the state's registry */
} fn_slot;

/* A pool thread's: its Lua state, the version of the paths set in it,
 * the functions loaded. */
typedef struct wstate {
  lua_State *L;
  unsigned version;
  fn_slot fns[FN_SLOTS];
} wstate;

static pthread_key_t state_key;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;
static int key_status;

static void state_close(void *p) {
  wstate *ws = p;
  int i;
  lua_close(ws->L);
  for (i = 0; i < FN_SLOTS; i++)
    free(ws->fns[i].copy);
  free(ws);
}

static void make_key(void) {
  key_status = pthread_key_create(&state_key, state_close);
}

/* This pool thread's state, made at its first job; it goes with the
 * thread (the key's destructor), when the loop is freed. */
static wstate *worker_state(void) {
  wstate *ws;
  int i;
  pthread_once(&key_once, make_key);
  if (key_status != 0)
    return NULL;
  ws = pthread_getspecific(state_key);
  if (ws)
    return ws;
  if (!(ws = calloc(1, sizeof *ws)))
    return NULL;
  if (!(ws->L = luaL_newstate())) {
    free(ws);
    return NULL;
  }
  luaL_openlibs(ws->L);
  for (i = 0; i < FN_SLOTS; i++)
    ws->fns[i].ref = LUA_NOREF;
  if (pthread_setspecific(state_key, ws) != 0) {
    state_close(ws);
    return NULL;
  }
  return ws;
}

/* package[key] = value (a NULL value leaves it). */
static void set_path(lua_State *L, const char *key, const char *value,
                     size_t n) {
  if (!value)
    return;
  lua_getglobal(L, "package");
  if (lua_istable(L, -1)) {
    lua_pushlstring(L, value, n);
    lua_setfield(L, -2, key);
  }
  lua_pop(L, 1);
}

/* [1] the job's error value, [2] the job, [3] true to copy its tostring
 * instead: into the job's out (pcall'd by keep_error). */
static int put_error(lua_State *L) {
  tl_work *lw = lua_touserdata(L, 2);
  lua_settop(L, 3);
  if (lua_toboolean(L, 3)) {
    lua_getglobal(L, "tostring");
    lua_pushvalue(L, 1);
    lua_call(L, 1, 1);
    lua_replace(L, 1);
  }
  lw->out.n = 0;
  put_values(L, &lw->out, 1, 1, NO_LINE, lw->name, "its error");
  return 0;
}

/* The error value at idx as the job's error: copied when it can be (a
 * string, an error table), else its tostring. */
static void keep_error(lua_State *L, tl_work *lw, int idx) {
  int as_string;
  idx = tl_absindex(L, idx);
  lw->failed = 1;
  for (as_string = 0; as_string < 2; as_string++) {
    lua_pushcfunction(L, put_error);
    if (lua_isnil(L, idx))
      lua_pushliteral(L, "nil"); /* error(nil): still an error */
    else
      lua_pushvalue(L, idx);
    lua_pushlightuserdata(L, lw);
    lua_pushboolean(L, as_string);
    if (lua_pcall(L, 3, 0, 0) == LUA_OK)
      return;
    lua_pop(L, 1);
  }
  lw->failed = 2;
}

/* Pushes the job's fn: loaded, or loaded before from the same bytes. */
static void push_fn(lua_State *L, wstate *ws, const tl_work *lw) {
  fn_slot *s = &ws->fns[((uintptr_t)lw->code >> 4 ^ lw->code_n) % FN_SLOTS];
  char *copy;
  if (s->p == lw->code && s->n == lw->code_n &&
      memcmp(s->copy, lw->code, lw->code_n) == 0) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->ref);
    return;
  }
  if (luaL_loadbufferx(L, lw->code, lw->code_n, "=fn", "b") != LUA_OK)
    lua_error(L);
  if (!(copy = realloc(s->copy, lw->code_n ? lw->code_n : 1)))
    return; /* not kept: loaded again next time */
  s->copy = copy;
  memcpy(copy, lw->code, lw->code_n);
  s->p = lw->code;
  s->n = lw->code_n;
  luaL_unref(L, LUA_REGISTRYINDEX, s->ref);
  lua_pushvalue(L, -1);
  s->ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

/* [1] the job, [2] the thread's wstate: sets the paths if they changed,
 * loads fn, pushes its arguments, calls it; its results go to out, or its
 * error. */
static int job_body(lua_State *L) {
  tl_work *lw = lua_touserdata(L, 1);
  wstate *ws = lua_touserdata(L, 2);
  const paths *ps = lw->paths;
  int top = lua_gettop(L);
  if (ps && ps->version != ws->version) {
    set_path(L, "path", ps->path, ps->path_n);
    set_path(L, "cpath", ps->cpath, ps->cpath_n);
    ws->version = ps->version;
  }
  push_fn(L, ws, lw);
  push_values(L, lw->in, lw->nargs);
  if (lua_pcall(L, lw->nargs, LUA_MULTRET, 0) != LUA_OK) {
    keep_error(L, lw, -1);
    return 0;
  }
  lw->nres = lua_gettop(L) - top;
  if (lw->nres > MAX_RESULTS) /* more than a task's stack takes back */
    return luaL_error(L, "tapio: %s: fn returned %d results: at most %d "
                      "come back (return a table)", lw->name, lw->nres,
                      MAX_RESULTS);
  put_values(L, &lw->out, top + 1, lua_gettop(L), NO_LINE, lw->name,
             "result");
  return 0;
}

/* The core's work function: runs on a pool thread. */
static void run_job(void *ud) {
  tl_work *lw = ud;
  wstate *ws = worker_state();
  lua_State *L;
  if (!ws) {
    lw->failed = 2;
    return;
  }
  L = ws->L;
  lua_pushcfunction(L, job_body);
  lua_pushlightuserdata(L, lw);
  lua_pushlightuserdata(L, ws);
  if (lua_pcall(L, 2, 0, 0) != LUA_OK) /* a result that cannot be copied */
    keep_error(L, lw, -1);
  lua_settop(L, 0);
}

/* ---- The caller's paths ------------------------------------------------- */

static void paths_unref(paths *ps) {
  if (ps && --ps->refs == 0) {
    free(ps->path);
    free(ps->cpath);
    free(ps);
  }
}

static char *dup_path(lua_State *L, int idx, size_t *n) {
  const char *s;
  char *copy;
  *n = 0;
  if (lua_type(L, idx) != LUA_TSTRING)
    return NULL;
  s = lua_tolstring(L, idx, n);
  if (!(copy = malloc(*n + 1)))
    return NULL;
  memcpy(copy, s, *n + 1);
  return copy;
}

/* A new version of the paths, from package.path and package.cpath at
 * -2, -1; NULL when out of memory. */
static paths *paths_new(lua_State *L, unsigned version) {
  paths *ps = calloc(1, sizeof *ps);
  if (!ps)
    return NULL;
  ps->refs = 1;
  ps->version = version;
  ps->path = dup_path(L, -2, &ps->path_n);
  ps->cpath = dup_path(L, -1, &ps->cpath_n);
  if ((!ps->path && lua_type(L, -2) == LUA_TSTRING) ||
      (!ps->cpath && lua_type(L, -1) == LUA_TSTRING)) {
    paths_unref(ps);
    return NULL;
  }
  return ps;
}

/* The paths for a job queued now, by loop:_run_in_executor: the ones
 * made last, unless package.path or package.cpath is another value
 * since (then a new version, and their values become upvalues: a value
 * kept cannot be collected and another made at its address, so the same
 * string is the same value). Raw reads, of the package table require
 * uses; NULL without one. Raises when out of memory. */
static paths *current_paths(lua_State *L, shared *sh) {
  paths *ps;
  if (lua_type(L, lua_upvalueindex(U_PACKAGE)) != LUA_TTABLE)
    return NULL;
  lua_pushvalue(L, lua_upvalueindex(U_KPATH));
  lua_rawget(L, lua_upvalueindex(U_PACKAGE));
  lua_pushvalue(L, lua_upvalueindex(U_KCPATH));
  lua_rawget(L, lua_upvalueindex(U_PACKAGE));
  if (sh->now && lua_rawequal(L, -2, lua_upvalueindex(U_PATH)) &&
      lua_rawequal(L, -1, lua_upvalueindex(U_CPATH))) {
    lua_pop(L, 2);
    return sh->now;
  }
  if (!(ps = paths_new(L, sh->version + 1)))
    luaL_error(L, "not enough memory");
  sh->version++;
  paths_unref(sh->now);
  sh->now = ps;
  lua_replace(L, lua_upvalueindex(U_CPATH));
  lua_replace(L, lua_upvalueindex(U_PATH));
  return ps;
}

/* The shared userdata's __gc: the jobs in flight keep their paths. */
static int l_shared_gc(lua_State *L) {
  shared *sh = lua_touserdata(L, 1);
  paths_unref(sh->now);
  sh->now = NULL;
  wbuf_free(&sh->scratch);
  return 0;
}

/* ---- On the loop's thread ----------------------------------------------- */

/* A loop's job objects live in its table of jobs (lb->jobs_ref), from
 * their first job to the loop's end, and are used again: a job costs no
 * userdata, no anchor of its own and no collection. One in flight holds
 * the loop (tl_hold: the collector never frees the loop under it). */

/* Pushes the loop's table of jobs, made at its first job. */
static void push_jobs(lua_State *L, tl_loop *lb) {
  if (lb->jobs_ref == LUA_NOREF) {
    lua_newtable(L);
    lb->jobs_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, lb->jobs_ref);
}

/* Pushes a job object of the loop not in flight (zeroed but for its slot),
 * spare or new. */
static tl_work *job_take(lua_State *L, tl_loop *lb) {
  tl_work *lw = lb->spare_jobs;
  int slot;
  push_jobs(L, lb);
  if (lw) {
    lua_rawgeti(L, -1, lw->slot);
    lb->spare_jobs = lw->next_spare;
    lb->nspare--;
    slot = lw->slot;
  } else {
    lw = tl_newuserdata_n(L, sizeof *lw, UV_N - 1);
    lua_pushvalue(L, lua_upvalueindex(U_JOBMT));
    lua_setmetatable(L, -2);
    slot = lb->njobs + 1;
    lua_pushvalue(L, -1);
    lua_rawseti(L, -3, slot);
    lb->njobs++;
  }
  lua_remove(L, -2);
  memset(lw, 0, sizeof *lw);
  lw->slot = slot;
  lw->lb = lb;
  return lw;
}

/* The job at idx, its flight over: spare again, without the values of
 * its call (its completion's argument, fn's arguments). */
static void job_back(lua_State *L, tl_work *lw, int idx) {
  tl_loop *lb = lw->lb;
  idx = tl_absindex(L, idx);
  lua_pushnil(L);
  tl_setiuservalue(L, idx, UV_ARG);
  lua_pushnil(L);
  tl_setiuservalue(L, idx, UV_IN);
  lw->next_spare = lb->spare_jobs;
  lb->spare_jobs = lw;
  lb->nspare++;
}

void tl_work_free(tl_loop *lb, lua_State *L) {
  luaL_unref(L, LUA_REGISTRYINDEX, lb->jobs_ref);
  lb->jobs_ref = LUA_NOREF;
  lb->spare_jobs = NULL;
  lb->njobs = lb->nspare = 0;
}

/* What a job in flight holds: the loop, its paths. */
static void work_release(lua_State *L, tl_work *lw) {
  paths_unref(lw->paths);
  lw->paths = NULL;
  tl_unhold(lw->lb, L);
}

/* The core's done: cb(arg, job) from the loop, unless the job was
 * cancelled or the loop is closing from __gc; work_results(job) gives fn's
 * results there. The job's anchor goes before cb runs: cb may resume a
 * task directly (tapio.to_thread's), which runs on from there and may
 * count the anchors. Its results go after. */
static void on_done(void *ud, int status) {
  tl_work *lw = ud;
  tl_loop *lb = lw->lb;
  lua_State *L = lb->L;
  tapio_work_release(lw->w);
  lw->w = NULL;
  lw->status = status;
  push_jobs(L, lb);
  lua_rawgeti(L, -1, lw->slot);
  lua_remove(L, -2);
  work_release(L, lw);
  if (!lb->quiet && !lw->cancelled && lua_checkstack(L, 8)) {
    tl_work *was = lw->sh->current; /* a completion inside another's */
    lw->sh->current = lw;
    lua_rawgeti(L, LUA_REGISTRYINDEX, lb->msgh_ref);
    tl_getiuservalue(L, -2, UV_CB);
    tl_getiuservalue(L, -3, UV_ARG);
    lua_pushvalue(L, -4);
    tl_done(L, 0, tl_call(lb, L, 2, 0, "error in a to_thread callback",
                          NULL));
    lw->sh->current = was;
  }
  wbuf_free(&lw->out);
  job_back(L, lw, -1);
  lua_pop(L, 1);
}

/* The job at idx, checked against the job metatable (upvalue 1). */
static tl_work *check_job(lua_State *L, int idx, const char *fn) {
  tl_work *lw = lua_touserdata(L, idx);
  int ok = lw && lua_getmetatable(L, idx);
  if (ok) {
    ok = lua_rawequal(L, -1, lua_upvalueindex(1));
    lua_pop(L, 1);
  }
  if (!ok)
    tl_typeerror(L, fn, 1, "job", idx, TL_WORK);
  return lw;
}

/* core.work_results(job), in its completion (cb): fn's results, or
 * raises its error as fn raised it, or ECANCELED (the loop closed).
 * Once. The shared userdata (upvalue 1) knows the job completing: no
 * other check. */
static int l_job_results(lua_State *L) {
  shared *sh = lua_touserdata(L, lua_upvalueindex(1));
  tl_work *lw = sh->current;
  if (!lw || lua_touserdata(L, 1) != lw || lw->taken)
    return luaL_error(L, "tapio: work_results: only once, in the job's "
                      "completion");
  lw->taken = 1;
  if (lw->status < 0) {
    tl_pusherror(L, lw->status, NULL);
  } else if (lw->failed == 2) {
    lua_pushfstring(L, "tapio: %s: not enough memory for fn's state or "
                    "error", lw->name);
  } else if (lw->failed) {
    push_values(L, lw->out.p, 1);
  } else {
    push_values(L, lw->out.p, lw->nres);
    return lw->nres;
  }
  return lua_error(L);
}

/* loop:_cancel's part: true if the job was still to come. A job not
 * started is dropped at once; a running one ends unseen. */
int tl_work_cancel(lua_State *L, int idx) {
  tl_work *lw = lua_touserdata(L, idx);
  int rc = lw->w && !lw->cancelled ? tapio_work_cancel(lw->w) : -1;
  if (rc == 1) {
    tapio_work_release(lw->w);
    lw->w = NULL;
    work_release(L, lw);
    job_back(L, lw, idx);
  } else if (rc == 0) {
    lw->cancelled = 1;
  }
  lua_pushboolean(L, rc >= 0);
  return 1;
}

/* job:_on_cancel(): what task:cancel calls of the object a task is
 * parked on (tapio.to_thread's task parks on its job). */
static int l_job_cancel(lua_State *L) {
  check_job(L, 1, "job:_on_cancel");
  return tl_work_cancel(L, 1);
}

static int writer(lua_State *L, const void *p, size_t n, void *ud) {
  wbuf *b = ud;
  (void)L;
  if (n > b->cap - b->n && grow(b, n) < 0)
    return 1;
  memcpy(b->p + b->n, p, n);
  b->n += n;
  return 0;
}

/* fn at idx: a Lua function whose only upvalue is _ENV (Lua 5.4), or with
 * none (LuaJIT, whose functions reach globals without one). */
static void check_fn(lua_State *L, int idx, const char *fn, int n) {
  const char *up;
  int i;
  if (lua_iscfunction(L, idx))
    raise_at(L, CALLER, "tapio: %s: bad argument #%d 'fn' (a Lua function "
             "expected: a C function cannot be copied to another thread)",
             fn, n);
  for (i = 1; (up = lua_getupvalue(L, idx, i)) != NULL; i++) {
    lua_pop(L, 1);
#if LUA_VERSION_NUM >= 502
    if (strcmp(up, "_ENV") == 0)
      continue;
#endif
    raise_at(L, CALLER, "tapio: %s: bad argument #%d 'fn' (it uses "
             "upvalue '%s', a local of the code around it: fn runs in "
             "another Lua state, without it; pass its value as an "
             "argument)", fn, n, *up ? up : "?");
  }
}

static const char DUMPS_KEY = 0;

/* Pushes the bytecode of the function at idx, a string: dumped once, at
 * its first job (fn checked then), and kept while fn lives in the weak
 * table U_DUMPS (a function to its bytecode). */
static void push_code(lua_State *L, int idx, wbuf *scratch,
                      const char *fn, int n) {
  int rc;
  if (lua_type(L, idx) != LUA_TFUNCTION)
    raise_at(L, CALLER, "tapio: %s: bad argument #%d 'fn' (function "
             "expected, got %s)", fn, n, luaL_typename(L, idx));
  lua_pushvalue(L, idx);
  lua_rawget(L, lua_upvalueindex(U_DUMPS));
  if (!lua_isnil(L, -1))
    return;
  lua_pop(L, 1);
  check_fn(L, idx, fn, n);
  scratch->n = 0;
  lua_pushvalue(L, idx);
#if LUA_VERSION_NUM >= 503
  rc = lua_dump(L, writer, scratch, 0);
#else
  rc = lua_dump(L, writer, scratch);
#endif
  lua_pop(L, 1);
  if (rc != 0)
    luaL_error(L, "not enough memory");
  lua_pushlstring(L, scratch->p, scratch->n);
  lua_pushvalue(L, idx);
  lua_pushvalue(L, -2);
  lua_rawset(L, lua_upvalueindex(U_DUMPS));
}

/* The loop at 1, unless closed: the loop metatable is upvalue 3. */
static tl_loop *check_loop(lua_State *L, const char *fn) {
  tl_loop *lb = lua_touserdata(L, 1);
  int ok = lb && lua_getmetatable(L, 1);
  if (ok) {
    ok = lua_rawequal(L, -1, lua_upvalueindex(U_LOOPMT));
    lua_pop(L, 1);
  }
  if (!ok)
    return tl_checkloop(L, 1, fn); /* raises, saying why */
  if (!lb->loop || lb->closing)
    raise_at(L, CALLER, "tapio: %s: the loop is closed", fn);
  return lb;
}

/* loop:_run_in_executor(cb, arg, name, fnpos, fn, ...): the job, queued,
 * for loop:_cancel; or nil, err when the pool has no thread to give. Its
 * completion is cb(arg, job). */
static int l_run_in_executor(lua_State *L) {
  tl_loop *lb = check_loop(L, "loop:run_in_executor");
  size_t name_n;
  const char *name = luaL_checklstring(L, 4, &name_n);
  int fnpos = (int)luaL_checkinteger(L, 5), top = lua_gettop(L), rc;
  shared *sh = lua_touserdata(L, lua_upvalueindex(U_SHARED));
  tl_work *lw;
  paths *ps;
  if (name_n >= sizeof lw->name)
    name_n = sizeof lw->name - 1;
  push_code(L, 6, &sh->scratch, name, fnpos);
  if (top > 6) {
    sh->scratch.n = 0;
    put_values(L, &sh->scratch, 7, top, CALLER, name, "fn's argument");
    lua_pushlstring(L, sh->scratch.p, sh->scratch.n);
  } else {
    lua_pushnil(L);
  }
  ps = current_paths(L, sh);
  lw = job_take(L, lb);
  lw->sh = sh;
  memcpy(lw->name, name, name_n);
  lw->nargs = top - 6;
  lw->in = lua_tostring(L, -2);
  lua_insert(L, -2);
  tl_setiuservalue(L, -2, UV_IN);
  lw->code = lua_tolstring(L, -2, &lw->code_n);
  lua_insert(L, -2);
  tl_setiuservalue(L, -2, UV_CODE);
  lua_pushvalue(L, 2);
  tl_setiuservalue(L, -2, UV_CB);
  lua_pushvalue(L, 3);
  tl_setiuservalue(L, -2, UV_ARG);
  if ((lw->paths = ps) != NULL)
    ps->refs++;
  tl_hold(lb, L);
  rc = tapio_queue_work(lb->loop, run_job, on_done, lw, &lw->w);
  if (rc < 0) {
    work_release(L, lw);
    job_back(L, lw, -1);
    if (rc == TAPIO_EVIRTUAL)
      return raise_at(L, CALLER, "tapio: %s: a virtual-clock loop (tapio."
                        "testing's) runs no threads", name);
    return tl_fail(L, rc);
  }
  return 1;
}

/* loop:set_threadpool_size(n): at most n jobs at once (1..128), before
 * the loop's first job. */
static int l_set_threadpool_size(lua_State *L) {
  const char *fn = "loop:set_threadpool_size";
  tl_loop *lb = tl_checkloop(L, 1, fn);
  int rc = tapio_loop_set_threadpool_size(
      lb->loop, (int)tl_checkint(L, 2, fn, 1, "size", 1, 128));
  if (rc == TAPIO_EBUSY)
    return luaL_error(L, "tapio: %s: the loop's pool has had jobs "
                      "already", fn);
  return 0;
}

/* The job metatable: __index holds _on_cancel, with the metatable as
 * its upvalue (check_job). core.work_results has the shared userdata as
 * its; it is also loop:_run_in_executor's U_SHARED. */
int tl_open_work(lua_State *L) {
  luaL_newmetatable(L, TL_WORK);
  lua_createtable(L, 0, 1);
  lua_pushvalue(L, -2);
  lua_pushcclosure(L, l_job_cancel, 1);
  lua_setfield(L, -2, "_on_cancel");
  lua_setfield(L, -2, "__index");
  luaL_getmetatable(L, TL_LOOP);
  lua_getfield(L, -1, "__index");
  lua_pushvalue(L, -3);                       /* U_JOBMT */
  tl_push_weak(L, &DUMPS_KEY, "k");           /* U_DUMPS */
  lua_pushvalue(L, -4);                       /* U_LOOPMT */
  memset(tl_newuserdata(L, sizeof(shared)), 0, sizeof(shared));
  lua_createtable(L, 0, 1);                   /* U_SHARED */
  lua_pushcfunction(L, l_shared_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_pushvalue(L, -1);
  lua_pushcclosure(L, l_job_results, 1);
  lua_setfield(L, -9, "work_results"); /* the module table */
  tl_getsubtable(L, LUA_REGISTRYINDEX, "_LOADED");
  lua_getfield(L, -1, "package");             /* U_PACKAGE */
  lua_remove(L, -2);
  lua_pushliteral(L, "path");                 /* U_KPATH */
  lua_pushliteral(L, "cpath");                /* U_KCPATH */
  lua_pushnil(L);                             /* U_PATH */
  lua_pushnil(L);                             /* U_CPATH */
  lua_pushcclosure(L, l_run_in_executor, U_N);
  lua_setfield(L, -2, "_run_in_executor");
  lua_pushcfunction(L, l_set_threadpool_size);
  lua_setfield(L, -2, "set_threadpool_size");
  lua_pop(L, 3);
  return 0;
}

int tl_is_work(lua_State *L, int idx) {
  return luaL_testudata(L, idx, TL_WORK) != NULL;
}
