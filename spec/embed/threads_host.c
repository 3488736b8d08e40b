/* Loops in threads: several threads of one process, each with its own
 * tapio loop and its own Lua state, serve one port with reuse_port; the
 * main thread's clients are spread over them by the kernel. Each server
 * thread runs its loop from C (tapio_loop_run) until the main thread stops
 * it with tapio_call_soon_threadsafe, the one call made across threads
 * (besides the jobs of each loop's worker pool). Built plain and with ThreadSanitizer (embed.threads, tsan.threads). */
#include "test.h"

#include <pthread.h>
#include <tapio_host.h>

#include <lauxlib.h>
#include <lualib.h>

#define NTHREADS 4
#define NCONNS 64

/* The script each thread runs: an echo server on the shared port whose
 * every read goes through a job of the loop's worker pool (one thread:
 * the echoes keep their order), so that the binding's jobs cross threads
 * under ThreadSanitizer too; it calls signal() once listening and once
 * per connection lost. */
static const char script[] =
  "local port, signal = ...\n"
  "served = 0\n"
  "loop:set_threadpool_size(1)\n"
  "local function same(s) return s:reverse():reverse() end\n"
  "local Echo = {}\n"
  "Echo.__index = Echo\n"
  "function Echo:connection_made(t) self.t = t end\n"
  "function Echo:data_received(data)\n"
  "  loop:run_in_executor(nil, same, data):add_done_callback(\n"
  "    function(f) self.t:write(f:result()) end)\n"
  "end\n"
  "function Echo:connection_lost(err)\n"
  "  if err == nil then served = served + 1 end\n"
  "  signal()\n"
  "end\n"
  "loop:create_server(function() return setmetatable({}, Echo) end,\n"
  "  '127.0.0.1', port, { reuse_port = true }):add_done_callback(\n"
  "  function(f) f:result(); signal() end)\n";

typedef struct server_thread {
  pthread_t th;
  tapio_loop *loop;  /* made by the main thread, run and freed by this one */
  int port, signal_fd;
  long served;
  int ok;
} server_thread;

static int l_signal(lua_State *L)
{
  server_thread *st = lua_touserdata(L, lua_upvalueindex(1));
  if (write(st->signal_fd, "x", 1) != 1)
    return luaL_error(L, "signal: %s", strerror(errno));
  return 0;
}

static void stop(void *ud) { tapio_loop_stop(ud); }

static void *serve(void *ud)
{
  server_thread *st = ud;
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  if (tapio_lua_open(L) != 0 || tapio_lua_push_loop(L, st->loop) != 0)
    return NULL;
  lua_setglobal(L, "loop");
  if (luaL_loadstring(L, script) != LUA_OK)
    return NULL;
  lua_pushinteger(L, st->port);
  lua_pushlightuserdata(L, st);
  lua_pushcclosure(L, l_signal, 1);
  if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
    fprintf(stderr, "thread: %s\n", lua_tostring(L, -1));
    return NULL;
  }
  st->ok = tapio_loop_run(st->loop) == 0;
  lua_getglobal(L, "served");
  st->served = (long)lua_tointeger(L, -1);
  lua_close(L); /* frees the loop */
  return NULL;
}

/* Waits for n signals from the server threads. */
static void wait_signals(int fd, int n)
{
  char buf[64];
  while (n > 0) {
    ssize_t k;
    if (!raw_wait(NULL, fd, POLLIN))
      FAIL("%d signals from the server threads missing", n);
    k = read(fd, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf);
    CHECK(k > 0);
    n -= (int)k;
  }
}

static void loops_in_threads_share_a_port(void)
{
  server_thread st[NTHREADS];
  int one = 1, port, pipefd[2], i, busy = 0;
  long total = 0;
  /* the port, reserved by a bound socket of the group that never listens */
  int reserve = socket(AF_INET, SOCK_STREAM, 0);
  CHECK(setsockopt(reserve, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) == 0);
  {
    struct sockaddr_storage ss;
    socklen_t len = raw_addr(AF_INET, "127.0.0.1", 0, &ss);
    CHECK(bind(reserve, (struct sockaddr *)&ss, len) == 0);
  }
  port = raw_port(reserve);
  CHECK(pipe(pipefd) == 0);
  for (i = 0; i < NTHREADS; i++) {
    memset(&st[i], 0, sizeof st[i]);
    st[i].port = port;
    st[i].signal_fd = pipefd[1];
    CHECK_OK(tapio_loop_new(&st[i].loop));
    CHECK(pthread_create(&st[i].th, NULL, serve, &st[i]) == 0);
  }
  wait_signals(pipefd[0], NTHREADS); /* all listening */
  for (i = 0; i < NCONNS; i++) {
    char out[4096], in[4096];
    size_t n = 1 + (size_t)i * 61 % sizeof out;
    int fd = raw_connect(AF_INET, "127.0.0.1", port);
    CHECK(fd >= 0);
    pattern_fill(out, n, (size_t)i);
    raw_send_all(NULL, fd, out, n);
    raw_recv_n(NULL, fd, in, n);
    CHECK(memcmp(in, out, n) == 0);
    close(fd);
  }
  wait_signals(pipefd[0], NCONNS); /* every connection_lost ran */
  for (i = 0; i < NTHREADS; i++)
    CHECK_OK(tapio_call_soon_threadsafe(st[i].loop, stop, st[i].loop));
  for (i = 0; i < NTHREADS; i++) {
    CHECK(pthread_join(st[i].th, NULL) == 0);
    CHECK(st[i].ok);
    total += st[i].served;
    busy += st[i].served > 0;
    printf("  thread %d served %ld\n", i, st[i].served);
  }
  CHECK_EQ(total, NCONNS);
  CHECK(busy >= 2); /* the kernel spread them (all on one: odds 4^-63) */
  close(reserve);
  close(pipefd[0]);
  close(pipefd[1]);
}

TEST_MAIN(TEST(loops_in_threads_share_a_port))
