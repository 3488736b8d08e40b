/* The Lua binding's watches: loop:add_reader, remove_reader, add_writer,
 * remove_writer (asyncio's "watch a file descriptor"), add_signal_handler
 * and remove_signal_handler. Each watch is a userdata holding the callback
 * and its arguments (tl_store_call), anchored while the core calls it. */
#include "tapio_lua.h"

#include <signal.h>
#include <stdint.h>
#include <string.h>

enum { READER, WRITER, SIGNAL };

static const char *const failure[] = {
  "error in a reader callback", "error in a writer callback",
  "error in a signal handler"
};

typedef struct tl_watch {
  tl_link link;      /* lb->watches */
  tl_loop *lb;
  int self_ref;      /* anchors this userdata while the core calls it */
  int kind;
  int key;           /* the descriptor or the signal */
} tl_watch;

/* [1] the tl_watch: fn(args...). The watch is on the stack for the call,
 * so the callback may remove (or replace) it. */
int tl_tr_watch(lua_State *L) {
  tl_watch *w = lua_touserdata(L, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, w->self_ref);
  tl_call_stored(L, -1);
  return 0;
}

/* The core's callback. An error goes to the exception handler and the
 * watch stays, as asyncio's. */
static void run_watch(void *ud) {
  tl_watch *w = ud;
  tl_loop *lb = w->lb;
  lua_State *L = lb->L;
  if (lb->quiet || tl_prepare(lb, L, TL_T_WATCH) < 0)
    return;
  lua_pushlightuserdata(L, w);
  if (tl_call(lb, L, 1, 0, failure[w->kind], NULL) == 0)
    lua_pop(L, 1);
}

static tl_watch *find(tl_loop *lb, int kind, int key) {
  tl_link *l;
  for (l = lb->watches.next; l != &lb->watches; l = l->next) {
    tl_watch *w = (tl_watch *)l;
    if (w->kind == kind && w->key == key)
      return w;
  }
  return NULL;
}

static void release(lua_State *L, tl_watch *w) {
  tl_list_remove(&w->link);
  tl_unanchor(w->lb, L, &w->self_ref);
}

int tl_fd_refused(lua_State *L, const char *fn, int n, int rc) {
  if (rc == TAPIO_EBADF)
    return tl_argerror(L, fn, n, "fd", "not an open descriptor");
  if (rc == TAPIO_EPERM)
    return tl_argerror(L, fn, n, "fd",
                       "a regular file, a directory or a device that cannot "
                       "poll: epoll cannot watch it");
  if (rc == TAPIO_EBUSY)
    return tl_argerror(L, fn, n, "fd",
                       "used by a transport or server of the loop");
  return 0;
}

static int add_error(lua_State *L, tl_loop *lb, const char *fn, int kind,
                     int rc) {
  if (rc == TAPIO_EINVAL && kind == SIGNAL)
    return tl_argerror(L, fn, 1, "signal", tl_refusal(lb->loop, "refused"));
  if (rc == TAPIO_EVIRTUAL && kind == SIGNAL)
    return luaL_error(L, "tapio: %s: %s (a signal comes on real time)", fn,
                      tapio_strerror(rc));
  if (kind != SIGNAL)
    tl_fd_refused(L, fn, 1, rc);
  return luaL_error(L, "tapio: %s: %s", fn, tapio_strerror(rc));
}

static int check_key(lua_State *L, int kind, const char *fn) {
  if (kind == SIGNAL)
    return tl_checksignal(L, 2, fn, 1);
  return (int)tl_checkint(L, 2, fn, 1, "fd", 0, INT32_MAX);
}

/* loop:add_reader(fd, callback, ...) and friends. */
static int add(lua_State *L, int kind, const char *fn) {
  tl_loop *lb = tl_checkloop(L, 1, fn);
  int key = check_key(L, kind, fn), top, rc;
  tl_watch *w, *old;
  tl_checkcallable(L, 3, fn, 2, "callback");
  top = lua_gettop(L);
  w = tl_newuserdata(L, sizeof *w);
  memset(w, 0, sizeof *w);
  w->lb = lb;
  w->self_ref = LUA_NOREF;
  w->kind = kind;
  w->key = key;
  tl_list_init(&w->link);
  tl_store_call(L, 3, top);
  lua_pushvalue(L, -1);
  w->self_ref = tl_anchor(lb, L); /* before the core can call it */
  if (kind == READER)
    rc = tapio_add_reader(lb->loop, key, run_watch, w);
  else if (kind == WRITER)
    rc = tapio_add_writer(lb->loop, key, run_watch, w);
  else
    rc = tapio_add_signal_handler(lb->loop, key, run_watch, w);
  if (rc < 0) {
    tl_unanchor(lb, L, &w->self_ref);
    return add_error(L, lb, fn, kind, rc);
  }
  if ((old = find(lb, kind, key)) != NULL) /* the core replaced it */
    release(L, old);
  tl_list_push(&lb->watches, &w->link);
  return 0;
}

/* loop:remove_reader(fd) and friends: true if it was watched. On a closed
 * loop, false (as asyncio's). */
static int remove_watch(lua_State *L, int kind, const char *fn) {
  tl_loop *lb = tl_toloop(L, 1, fn);
  int key = check_key(L, kind, fn), rc;
  tl_watch *w;
  if (!lb->loop || lb->closing) {
    lua_pushboolean(L, 0);
    return 1;
  }
  if (kind == READER)
    rc = tapio_remove_reader(lb->loop, key);
  else if (kind == WRITER)
    rc = tapio_remove_writer(lb->loop, key);
  else
    rc = tapio_remove_signal_handler(lb->loop, key);
  if (rc < 0)
    return add_error(L, lb, fn, kind, rc);
  if ((w = find(lb, kind, key)) != NULL)
    release(L, w);
  lua_pushboolean(L, rc == 1);
  return 1;
}

static int l_add_reader(lua_State *L) {
  return add(L, READER, "loop:add_reader");
}

static int l_add_writer(lua_State *L) {
  return add(L, WRITER, "loop:add_writer");
}

static int l_add_signal_handler(lua_State *L) {
  return add(L, SIGNAL, "loop:add_signal_handler");
}

static int l_remove_reader(lua_State *L) {
  return remove_watch(L, READER, "loop:remove_reader");
}

static int l_remove_writer(lua_State *L) {
  return remove_watch(L, WRITER, "loop:remove_writer");
}

static int l_remove_signal_handler(lua_State *L) {
  return remove_watch(L, SIGNAL, "loop:remove_signal_handler");
}

/* The loop is closed: the core removed every watch. */
void tl_release_watches(tl_loop *lb, lua_State *L) {
  while (lb->watches.next != &lb->watches)
    release(L, (tl_watch *)lb->watches.next);
}

static const luaL_Reg loop_methods[] = {
  {"add_reader", l_add_reader},
  {"remove_reader", l_remove_reader},
  {"add_writer", l_add_writer},
  {"remove_writer", l_remove_writer},
  {"add_signal_handler", l_add_signal_handler},
  {"remove_signal_handler", l_remove_signal_handler},
  {NULL, NULL}
};

int tl_open_watch(lua_State *L) {
  tl_addmethods(L, TL_LOOP, loop_methods);
  return 0;
}
