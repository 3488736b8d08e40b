/* Blocking work off the loop for Lua: loop:_run_in_executor, to which
 * tapio.loop's loop:run_in_executor and tapio.to_thread give the async
 * rule. A Lua state runs on one thread, so fn crosses to the pool thread
 * as its bytecode (string.dump, as luv's new_work) and runs there in that
 * thread's own Lua state (made at its first job, with the standard
 * libraries; closed when the pool's thread ends with the loop); its
 * arguments and results cross as copies, encoded here into plain bytes.
 *
 * A job is a "tapio.work" userdata, anchored while the pool holds it: the
 * pool thread reads its code and arguments and writes its results, and
 * nothing else of the userdata; the loop's thread frees its buffers in
 * the job's done (or at once when a cancel drops it), and __gc frees them
 * when the job never reached the pool (an argument raised). */
#include "tapio_lua.h"

#include <lualib.h>
#include <pthread.h>
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

typedef struct tl_work {
  tl_loop *lb;
  tapio_work *w;      /* the core's job, until done or dropped */
  int self_ref;       /* anchors this userdata while queued */
  int cb_ref;         /* the Lua completion */
  int queued;         /* the pool holds it: its buffers are the pool's */
  int cancelled;      /* done calls nobody */
  int nargs, nres;
  int failed;         /* out holds fn's error; 2: no memory for it */
  char name[32];      /* "tapio.to_thread" or "loop:run_in_executor" */
  wbuf code, in, out; /* fn's bytecode, its arguments, what came back */
  char *path, *cpath; /* the caller's package.path and package.cpath */
} tl_work;

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
  const char *fn;     /* whose call: "tapio.to_thread" */
  const char *what;   /* "argument #2", "result #1" */
  int seen;           /* the stack index of the tables being copied */
} where;

static void put_value(lua_State *L, wbuf *b, int idx, const where *at,
                      int depth);

/* Raw pairs (no __pairs, no metatable); a table met again inside itself
 * is a cycle (one met twice side by side is copied twice). */
static void put_table(lua_State *L, wbuf *b, int idx, const where *at,
                      int depth) {
  if (depth >= MAX_DEPTH)
    luaL_error(L, "tapio: %s: %s nests tables more than %d deep", at->fn,
               at->what, MAX_DEPTH);
  luaL_checkstack(L, 6, NULL);
  lua_pushvalue(L, idx);
  lua_rawget(L, at->seen);
  if (lua_toboolean(L, -1))
    luaL_error(L, "tapio: %s: %s holds a table that contains itself (a "
               "cycle): it cannot be copied", at->fn, at->what);
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
    luaL_error(L, "tapio: %s: %s %s a %s: only nil, booleans, numbers, "
               "strings and tables of them are copied to another thread",
               at->fn, at->what, depth ? "holds" : "is",
               luaL_typename(L, idx));
  }
}

/* The values at first..last into b, each named what #k. */
static void put_values(lua_State *L, wbuf *b, int first, int last,
                       const char *fn, const char *what) {
  char name[48];
  where at;
  int i;
  lua_newtable(L); /* the tables being copied */
  at.fn = fn;
  at.what = name;
  at.seen = lua_gettop(L);
  for (i = first; i <= last; i++) {
    snprintf(name, sizeof name, "%s #%d", what, i - first + 1);
    put_value(L, b, i, &at, 0);
  }
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

static void push_values(lua_State *L, const wbuf *b, int n) {
  reader r;
  r.p = b->p;
  while (n-- > 0)
    push_value(L, &r);
}

static void wbuf_free(wbuf *b) {
  free(b->p);
  b->p = NULL;
  b->n = b->cap = 0;
}

static void work_free_buffers(tl_work *lw) {
  wbuf_free(&lw->code);
  wbuf_free(&lw->in);
  wbuf_free(&lw->out);
  free(lw->path);
  free(lw->cpath);
  lw->path = lw->cpath = NULL;
}

/* ---- On the pool's thread ------------------------------------------------ */

static pthread_key_t state_key;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;
static int key_status;

static void state_close(void *L) { lua_close(L); }

static void make_key(void) {
  key_status = pthread_key_create(&state_key, state_close);
}

/* This pool thread's Lua state, made at its first job; it goes with the
 * thread (the key's destructor), when the loop is freed. */
static lua_State *worker_state(void) {
  lua_State *L;
  pthread_once(&key_once, make_key);
  if (key_status != 0)
    return NULL;
  L = pthread_getspecific(state_key);
  if (L)
    return L;
  L = luaL_newstate();
  if (!L)
    return NULL;
  luaL_openlibs(L);
  if (pthread_setspecific(state_key, L) != 0) {
    lua_close(L);
    return NULL;
  }
  return L;
}

/* package[key] = value, unless it holds it already. */
static void set_path(lua_State *L, const char *key, const char *value) {
  const char *now;
  if (!value)
    return;
  lua_getglobal(L, "package");
  if (!lua_istable(L, -1)) {
    lua_pop(L, 1);
    return;
  }
  lua_getfield(L, -1, key);
  now = lua_tostring(L, -1);
  if (!now || strcmp(now, value) != 0) {
    lua_pushstring(L, value);
    lua_setfield(L, -3, key);
  }
  lua_pop(L, 2);
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
  put_values(L, &lw->out, 1, 1, lw->name, "its error");
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

/* The functions this thread's state loaded, by their bytecode: a job of
 * the same fn loads it once. At most LOADED_MAX (then the table starts
 * again); "n" counts them. */
static const char LOADED_KEY = 0;
#define LOADED_MAX 64

static void push_loaded(lua_State *L, const wbuf *code) {
  lua_Integer n = LOADED_MAX;
  tl_rawgetp(L, LUA_REGISTRYINDEX, &LOADED_KEY);
  if (lua_istable(L, -1)) {
    lua_getfield(L, -1, "n");
    n = lua_tointeger(L, -1);
    lua_pop(L, 1);
  }
  if (n >= LOADED_MAX) { /* none yet, or too many: a new table */
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    tl_rawsetp(L, LUA_REGISTRYINDEX, &LOADED_KEY);
    n = 0;
  }
  lua_pushlstring(L, code->p, code->n);
  lua_pushvalue(L, -1);
  lua_rawget(L, -3); /* the table, the bytecode, fn or nil */
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    if (luaL_loadbufferx(L, code->p, code->n, "=fn", "b") != LUA_OK)
      lua_error(L);
    lua_pushvalue(L, -2);
    lua_pushvalue(L, -2);
    lua_rawset(L, -5);
    lua_pushinteger(L, n + 1);
    lua_setfield(L, -4, "n");
  }
  lua_replace(L, -3); /* fn where the table was */
  lua_pop(L, 1);
}

/* [1] the job: loads fn, pushes its arguments, calls it; its results go
 * to out, or its error. */
static int job_body(lua_State *L) {
  tl_work *lw = lua_touserdata(L, 1);
  int top;
  set_path(L, "path", lw->path);
  set_path(L, "cpath", lw->cpath);
  push_loaded(L, &lw->code);
  top = lua_gettop(L) - 1; /* below fn */
  push_values(L, &lw->in, lw->nargs);
  if (lua_pcall(L, lw->nargs, LUA_MULTRET, 0) != LUA_OK) {
    keep_error(L, lw, -1);
    return 0;
  }
  lw->nres = lua_gettop(L) - top;
  if (lw->nres > MAX_RESULTS) /* more than a task's stack takes back */
    return luaL_error(L, "tapio: %s: fn returned %d results: at most %d "
                      "come back (return a table)", lw->name, lw->nres,
                      MAX_RESULTS);
  put_values(L, &lw->out, top + 1, lua_gettop(L), lw->name, "result");
  return 0;
}

/* The core's work function: runs on a pool thread. */
static void run_job(void *ud) {
  tl_work *lw = ud;
  lua_State *L = worker_state();
  if (!L) {
    lw->failed = 2;
    return;
  }
  lua_pushcfunction(L, job_body);
  lua_pushlightuserdata(L, lw);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) /* a result that cannot be copied */
    keep_error(L, lw, -1);
  lua_settop(L, 0);
}

/* ---- On the loop's thread ------------------------------------------------ */

static void work_release(lua_State *L, tl_work *lw) {
  work_free_buffers(lw);
  tl_unref(lw->lb, L, &lw->cb_ref);
  tl_unanchor(lw->lb, L, &lw->self_ref);
}

/* [1] the job, [2] the status: cb(nil, results...), or cb(err): fn's
 * error as it raised it, or ECANCELED (the loop closed). The job's
 * anchors and buffers go before cb runs: cb may resume a task directly
 * (tapio.to_thread's), which runs on from there and may count them. */
int tl_tr_work(lua_State *L) {
  tl_work *lw = lua_touserdata(L, 1);
  int status = (int)lua_tointeger(L, 2), nargs = 1;
  lua_rawgeti(L, LUA_REGISTRYINDEX, lw->cb_ref);
  if (status < 0) {
    tl_pusherror(L, status, NULL);
  } else if (lw->failed == 2) {
    lua_pushfstring(L, "tapio: %s: not enough memory for fn's state or "
                    "error", lw->name);
  } else if (lw->failed) {
    push_values(L, &lw->out, 1);
  } else {
    lua_pushnil(L);
    push_values(L, &lw->out, lw->nres);
    nargs += lw->nres;
  }
  work_release(L, lw);
  lua_call(L, nargs, 0);
  return 0;
}

/* The core's done: the completion, unless the job was cancelled or the
 * loop is closing from __gc. The job is on the stack meanwhile: its
 * anchor goes inside. */
static void on_done(void *ud, int status) {
  tl_work *lw = ud;
  tl_loop *lb = lw->lb;
  lua_State *L = lb->L;
  tapio_work_release(lw->w);
  lw->w = NULL;
  lw->queued = 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, lw->self_ref);
  if (!lb->quiet && !lw->cancelled && tl_prepare(lb, L, TL_T_WORK) == 0) {
    lua_pushvalue(L, -3);
    lua_pushinteger(L, status);
    tl_done(L, 0, tl_call(lb, L, 2, 0, "error in a to_thread callback",
                          NULL));
  }
  work_release(L, lw); /* if the completion did not run, or failed first */
  lua_pop(L, 1);
}

/* loop:_cancel's part: true if the job was still to come. A job not
 * started is dropped at once; a running one ends unseen. */
int tl_work_cancel(lua_State *L, void *p) {
  tl_work *lw = p;
  int rc = lw->w && !lw->cancelled ? tapio_work_cancel(lw->w) : -1;
  if (rc == 1) {
    tapio_work_release(lw->w);
    lw->w = NULL;
    lw->queued = 0;
    work_release(L, lw);
  } else if (rc == 0) {
    lw->cancelled = 1;
  }
  lua_pushboolean(L, rc >= 0);
  return 1;
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
  if (lua_type(L, idx) != LUA_TFUNCTION)
    luaL_error(L, "tapio: %s: bad argument #%d 'fn' (function expected, "
               "got %s)", fn, n, luaL_typename(L, idx));
  if (lua_iscfunction(L, idx))
    luaL_error(L, "tapio: %s: bad argument #%d 'fn' (a Lua function "
               "expected: a C function cannot be copied to another "
               "thread)", fn, n);
  for (i = 1; (up = lua_getupvalue(L, idx, i)) != NULL; i++) {
    lua_pop(L, 1);
#if LUA_VERSION_NUM >= 502
    if (strcmp(up, "_ENV") == 0)
      continue;
#endif
    luaL_error(L, "tapio: %s: bad argument #%d 'fn' (it uses upvalue "
               "'%s', a local of the code around it: fn runs in another "
               "Lua state, without it; pass its value as an argument)",
               fn, n, *up ? up : "?");
  }
}

/* fn's bytecode, dumped once: the registry's weak table of the dumps
 * (a function to its bytecode), made at the first job. */
static const char DUMPS_KEY = 0;

/* Appends the bytecode of the function at idx to code (a job's: its
 * __gc frees it, should the cache's string raise); 0, or -1 when out of
 * memory. */
static int put_code(lua_State *L, int idx, wbuf *code) {
  size_t n;
  const char *p;
  int rc = 0;
  tl_push_weak(L, &DUMPS_KEY, "k");
  lua_pushvalue(L, idx);
  lua_rawget(L, -2);
  p = lua_tolstring(L, -1, &n);
  if (p) {
    rc = n > code->cap - code->n && grow(code, n) < 0 ? -1 : 0;
    if (rc == 0) {
      memcpy(code->p + code->n, p, n);
      code->n += n;
    }
  } else {
    lua_pushvalue(L, idx);
#if LUA_VERSION_NUM >= 503
    rc = lua_dump(L, writer, code, 0);
#else
    rc = lua_dump(L, writer, code);
#endif
    lua_pop(L, 1);
    if (rc == 0) {
      lua_pushvalue(L, idx);
      lua_pushlstring(L, code->p, code->n);
      lua_rawset(L, -4);
    }
  }
  lua_pop(L, 2);
  return rc;
}

/* The caller's package[key], copied, or NULL. */
static char *get_path(lua_State *L, const char *key) {
  const char *s = NULL;
  char *copy = NULL;
  lua_getglobal(L, "package");
  if (lua_istable(L, -1)) {
    lua_getfield(L, -1, key);
    s = lua_tostring(L, -1);
    if (s && !(copy = strdup(s))) {
      lua_pop(L, 2);
      luaL_error(L, "not enough memory");
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return copy;
}

/* loop:_run_in_executor(cb, name, fnpos, fn, ...): the job, queued, for
 * loop:_cancel; or nil, err when the pool has no thread to give. */
static int l_run_in_executor(lua_State *L) {
  tl_loop *lb = tl_checkloop(L, 1, "loop:run_in_executor");
  const char *name = luaL_checkstring(L, 3);
  int fnpos = (int)luaL_checkinteger(L, 4), top = lua_gettop(L), rc, self;
  tl_work *lw;
  check_fn(L, 5, name, fnpos);
  lw = tl_newuserdata(L, sizeof *lw);
  memset(lw, 0, sizeof *lw);
  lw->self_ref = lw->cb_ref = LUA_NOREF;
  luaL_setmetatable(L, TL_WORK);
  self = lua_gettop(L);
  lw->lb = lb;
  snprintf(lw->name, sizeof lw->name, "%s", name);
  if (put_code(L, 5, &lw->code) != 0)
    return luaL_error(L, "not enough memory");
  lw->nargs = top - 5;
  put_values(L, &lw->in, 6, top, name, "fn's argument");
  lw->path = get_path(L, "path");
  lw->cpath = get_path(L, "cpath");
  lua_pushvalue(L, 2);
  lw->cb_ref = tl_ref(lb, L);
  lua_pushvalue(L, self);
  lw->self_ref = tl_anchor(lb, L);
  rc = tapio_queue_work(lb->loop, run_job, on_done, lw, &lw->w);
  if (rc < 0) {
    work_release(L, lw);
    if (rc == TAPIO_EVIRTUAL)
      return luaL_error(L, "tapio: %s: a virtual-clock loop (tapio."
                        "testing's) runs no threads", name);
    return tl_fail(L, rc);
  }
  lw->queued = 1;
  lua_pushvalue(L, self);
  return 1;
}

/* A job that never reached the pool (an argument raised); a queued one
 * is anchored, and at lua_close its done comes later, from the loop's
 * __gc: its buffers are the pool's until then. */
static int l_work_gc(lua_State *L) {
  tl_work *lw = lua_touserdata(L, 1);
  if (!lw->queued)
    work_free_buffers(lw);
  return 0;
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

static const luaL_Reg loop_methods[] = {
  {"_run_in_executor", l_run_in_executor},
  {"set_threadpool_size", l_set_threadpool_size},
  {NULL, NULL}
};

int tl_open_work(lua_State *L) {
  luaL_newmetatable(L, TL_WORK);
  lua_pushcfunction(L, l_work_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  tl_addmethods(L, TL_LOOP, loop_methods);
  return 0;
}

int tl_is_work(lua_State *L, int idx) {
  return luaL_testudata(L, idx, TL_WORK) != NULL;
}
