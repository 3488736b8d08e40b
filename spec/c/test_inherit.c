/* What a child inherits from a process whose loop holds one of each kind
 * of descriptor tapio makes: a TCP server and a connection to it, a TLS
 * connection (its context writing a key log), a datagram endpoint, a Unix
 * server, a signal handler, a resolver lookup in flight, a pool job
 * running, the polling host's descriptor, a subprocess's pipes. A child
 * started by tapio, and one the program starts itself (fork and exec,
 * posix_spawn, system, popen), lists its descriptors (a shell's, from
 * /proc/$$/fd: ls's own would show the directory it reads): 0, 1 and 2
 * only, as every descriptor tapio opens is close-on-exec. Also the PEM
 * files and the system store's file, read while another thread starts a
 * child (each served through a FIFO, so the read waits for that child). */
#include "dgram.h"
#include "pipes.h"
#include "tls.h"

#include <dirent.h>
#include <pthread.h>
#include <sched.h>
#include <spawn.h>
#include <sys/syscall.h>

/* The shell's descriptors, not those of the ls it starts (": " keeps the
 * shell from becoming the ls). */
#define LIST_FDS "ls /proc/$$/fd; :"

extern char **environ;

/* The descriptors the test was given (by ctest, a shell) made
 * close-on-exec: a child's list is then what the test itself leaves. */
static void inherit_nothing_given(void)
{
  DIR *dir = opendir("/proc/self/fd");
  struct dirent *e;
  CHECK(dir != NULL);
  while ((e = readdir(dir)) != NULL) {
    int fd = atoi(e->d_name), fl;
    if (fd < 3 || fd == dirfd(dir))
      continue;
    fl = fcntl(fd, F_GETFD);
    if (fl >= 0)
      fcntl(fd, F_SETFD, fl | FD_CLOEXEC); /* valgrind's own: refused */
  }
  closedir(dir);
}

/* The numbers in text, sorted, as "0 1 2 ..." into out. */
static void sorted_fds(const char *text, size_t len, char *out, size_t size)
{
  int seen[1024] = { 0 }, i;
  size_t n = 0, k;
  for (k = 0; k < len; k++)
    if (text[k] >= '0' && text[k] <= '9' &&
        (k == 0 || text[k - 1] < '0' || text[k - 1] > '9'))
      seen[atoi(text + k) & 1023] = 1;
  out[0] = '\0';
  for (i = 0; i < 1024; i++)
    if (seen[i])
      n += (size_t)snprintf(out + n, size - n, n ? " %d" : "%d", i);
}

/* Everything fd gives until its end, sorted as descriptors; closes fd. */
static void read_fds(int fd, char *out, size_t size)
{
  char text[4096];
  size_t len = 0;
  ssize_t n;
  while ((n = read(fd, text + len, sizeof text - 1 - len)) > 0 ||
         (n < 0 && errno == EINTR))
    len += n > 0 ? (size_t)n : 0;
  CHECK(close(fd) == 0);
  sorted_fds(text, len, out, size);
}

static void wait_child(pid_t pid)
{
  int status;
  while (waitpid(pid, &status, 0) < 0)
    CHECK(errno == EINTR);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* The program's own fork and exec of sh. */
static void by_fork(char *out, size_t size)
{
  int p[2];
  pid_t pid;
  CHECK(pipe2(p, O_CLOEXEC) == 0);
  pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    dup2(p[1], 1);
    execl("/bin/sh", "sh", "-c", LIST_FDS, (char *)NULL);
    _exit(127);
  }
  CHECK(close(p[1]) == 0);
  read_fds(p[0], out, size);
  wait_child(pid);
}

static void by_posix_spawn(char *out, size_t size)
{
  char *argv[] = { "sh", "-c", LIST_FDS, NULL };
  posix_spawn_file_actions_t fa;
  pid_t pid;
  int p[2];
  CHECK(pipe2(p, O_CLOEXEC) == 0);
  CHECK(posix_spawn_file_actions_init(&fa) == 0);
  CHECK(posix_spawn_file_actions_adddup2(&fa, p[1], 1) == 0);
  CHECK(posix_spawn(&pid, "/bin/sh", &fa, NULL, argv, environ) == 0);
  posix_spawn_file_actions_destroy(&fa);
  CHECK(close(p[1]) == 0);
  read_fds(p[0], out, size);
  wait_child(pid);
}

/* system() with the program's stdout a pipe for the while. */
static void by_system(char *out, size_t size)
{
  int p[2], saved = fcntl(1, F_DUPFD_CLOEXEC, 3);
  CHECK(saved >= 0 && pipe2(p, O_CLOEXEC) == 0);
  fflush(stdout);
  CHECK(dup2(p[1], 1) == 1 && close(p[1]) == 0);
  CHECK_EQ(system(LIST_FDS), 0);
  CHECK(dup2(saved, 1) == 1 && close(saved) == 0);
  read_fds(p[0], out, size);
}

static void by_popen(char *out, size_t size)
{
  FILE *f = popen(LIST_FDS, "r");
  char text[4096];
  size_t len;
  CHECK(f != NULL);
  len = fread(text, 1, sizeof text, f);
  CHECK_EQ(pclose(f), 0);
  sorted_fds(text, len, out, size);
}

/* tapio's own child (stdout a pipe), with options o (freed). */
static void by_tapio(tapio_loop *loop, tapio_options *o, char *out,
                     size_t size)
{
  prec p;
  prec_init(&p);
  CHECK_OK(tapio_options_set_int(o, "stdin", TAPIO_STDIO_DEVNULL));
  run_script(loop, &p, LIST_FDS, o);
  sorted_fds(p.out[1], p.nout[1], out, size);
  prec_free(&p);
}

/* What each descriptor above 2 in got (a child's list) is in this
 * process, as " fd: file ...". */
static void describe_extra(const char *got, char *what, size_t size)
{
  char path[64], target[256];
  const char *p = got;
  size_t n = 0;
  what[0] = '\0';
  while ((p = strchr(p, ' ')) != NULL) {
    int fd = atoi(++p);
    ssize_t len;
    if (fd < 3)
      continue;
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    len = readlink(path, target, sizeof target - 1);
    target[len < 0 ? 0 : len] = '\0';
    n += (size_t)snprintf(what + n, size - n, " %d: %s", fd, target);
  }
}

/* Fails unless a child (started by how) had 0, 1 and 2 only (got). */
static void check_only_stdio(const char *how, const char *got)
{
  char what[1024];
  if (strcmp(got, "0 1 2") == 0)
    return;
  describe_extra(got, what, sizeof what);
  FAIL("a child started by %s had %s;%s", how, got, what);
}

/* Every way of starting a child gives it 0, 1, 2 and no more. */
static void check_children(tapio_loop *loop)
{
  char got[256];
  tapio_options *o;
  by_fork(got, sizeof got);
  check_only_stdio("fork and exec", got);
  by_posix_spawn(got, sizeof got);
  check_only_stdio("posix_spawn", got);
  by_system(got, sizeof got);
  check_only_stdio("system", got);
  by_popen(got, sizeof got);
  check_only_stdio("popen", got);
  by_tapio(loop, new_options(loop), got, sizeof got);
  check_only_stdio("tapio", got);
  o = new_options(loop); /* nothing closed for it: close-on-exec only */
  CHECK_OK(tapio_options_set_int(o, "close_fds", 0));
  by_tapio(loop, o, got, sizeof got);
  check_only_stdio("tapio, close_fds 0", got);
}

/* ---- What the loop holds -------------------------------------------------- */

static void on_signal(void *ud) { (void)ud; }

static void on_lookup(void *ud, int status, const tapio_addrinfo *res)
{
  (void)res;
  *(int *)ud = status ? status : 1;
}

/* A pool job that says it started (a byte on started) and waits for a
 * byte on its pipe. */
typedef struct job {
  int fds[2], started[2];
  int done;
} job;

static void job_work(void *ud)
{
  job *j = ud;
  char c;
  CHECK(write(j->started[1], "s", 1) == 1);
  while (read(j->fds[0], &c, 1) < 0 && errno == EINTR)
    ;
}

static void job_done(void *ud, int status)
{
  job *j = ud;
  CHECK_EQ(status, 0);
  j->done = 1;
}

/* A resolver lookup whose query waits at a server that never answers
 * (udp, bound here): c-ares holds its socket. */
static int lookup_in_flight(tapio_loop *loop, int *answered)
{
  struct sockaddr_in a;
  socklen_t len = sizeof a;
  char servers[64];
  int udp = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  CHECK(udp >= 0 && bind(udp, (struct sockaddr *)&a, len) == 0);
  CHECK(getsockname(udp, (struct sockaddr *)&a, &len) == 0);
  snprintf(servers, sizeof servers, "127.0.0.1:%d", ntohs(a.sin_port));
  CHECK_OK(tapio_loop_set_resolver(loop, servers, 30, 1));
  CHECK_OK(tapio_getaddrinfo(loop, "nowhere.tapio.test", "80", 0, 0, 0,
                             on_lookup, answered));
  CHECK(raw_wait(loop, udp, POLLIN)); /* the query came: sent */
  return udp;
}

static void every_kind_held(void)
{
  static const char *const cat_argv[] = { "cat", NULL };
  char keylog[] = "/tmp/tapio-inherit-keylog-XXXXXX";
  char upath[64];
  tapio_loop *loop;
  tapio_tls_context *sctx;
  srv tcp, tls, un;
  rec c, tc, uc;
  drec d;
  job j = { .done = 0 };
  prec cat;
  int answered = 0, udp, kfd;
  inherit_nothing_given();
  loop = new_loop();
  srv_start_pair(&tcp, loop, &c);
  sctx = server_ctx("server");
  kfd = mkstemp(keylog);
  CHECK(kfd >= 0 && close(kfd) == 0);
  CHECK_OK(tapio_tls_context_set_keylog_file(sctx, keylog));
  tls_srv_start(&tls, loop, sctx);
  rec_init(&tc);
  CHECK_OK(tls_connect(loop, tls.port, &tc, client_ctx(), "localhost"));
  srv_wait_conn(&tls, 0);
  drec_init(&d);
  {
    tapio_options *o = new_options(loop);
    CHECK_OK(tapio_options_set_str(o, "local_host", "127.0.0.1"));
    CHECK_EQ(endpoint(loop, &d, o), 0);
    tapio_options_free(o);
  }
  snprintf(upath, sizeof upath, "/tmp/tapio-inherit-%d.sock", (int)getpid());
  srv_init(&un, loop);
  CHECK_OK(tapio_create_unix_server(loop, upath, srv_factory, &un, NULL,
                                    on_server, &un));
  WAIT_FOR(loop, un.done);
  CHECK_EQ(un.status, 0);
  rec_init(&uc);
  {
    conn_wait w = { 0 };
    w.r = &uc;
    CHECK_OK(tapio_create_unix_connection(loop, upath, &rec_proto, &uc, NULL,
                                          on_connected, &w));
    CHECK_EQ(connect_wait(loop, &w), 0);
  }
  CHECK_OK(tapio_add_signal_handler(loop, SIGUSR1, on_signal, NULL));
  udp = lookup_in_flight(loop, &answered);
  CHECK(pipe2(j.fds, O_CLOEXEC) == 0 && pipe2(j.started, O_CLOEXEC) == 0);
  CHECK_OK(tapio_queue_work(loop, job_work, job_done, &j, NULL));
  CHECK(raw_wait(NULL, j.started[0], POLLIN));
  CHECK(tapio_loop_backend_fd(loop) >= 3);
  prec_init(&cat);
  CHECK_OK(spawn_wait(loop, &cat, cat_argv, NULL));

  check_children(loop);

  CHECK_EQ(answered, 0); /* all of it still held */
  CHECK(!j.done && !cat.lost);
  CHECK(write(j.fds[1], "x", 1) == 1);
  WAIT_FOR(loop, j.done);
  CHECK_OK(tapio_transport_close(cat.t));
  WAIT_FOR(loop, cat.lost);
  tapio_server_release(tcp.s);
  tapio_server_release(tls.s);
  tapio_server_release(un.s);
  free_loop(loop);
  srv_free(&tcp);
  srv_free(&tls);
  srv_free(&un);
  rec_free(&c);
  rec_free(&tc);
  rec_free(&uc);
  prec_free(&cat);
  CHECK(close(udp) == 0 && close(j.fds[0]) == 0 && close(j.fds[1]) == 0);
  CHECK(close(j.started[0]) == 0 && close(j.started[1]) == 0);
  unlink(keylog);
  unlink(upath);
}

/* asyncio's close_fds: a descriptor the program opened without
 * close-on-exec reaches a child of tapio's only through pass_fds, and
 * pass_fds passes one with close-on-exec too. */
static void own_descriptors_only_when_passed(void)
{
  tapio_loop *loop;
  tapio_options *o;
  char got[256], want[64];
  int mine, passed;
  inherit_nothing_given();
  mine = open("/dev/null", O_RDONLY); /* no close-on-exec */
  passed = open("/dev/null", O_RDONLY | O_CLOEXEC); /* pass_fds clears it */
  loop = new_loop();
  CHECK(mine >= 3 && passed >= 3);
  CHECK(!(fcntl(mine, F_GETFD) & FD_CLOEXEC));
  by_tapio(loop, new_options(loop), got, sizeof got);
  CHECK_STR(got, "0 1 2");
  o = new_options(loop);
  CHECK_OK(tapio_options_add_int(o, "pass_fds", passed));
  by_tapio(loop, o, got, sizeof got);
  snprintf(want, sizeof want, "0 1 2 %d", passed);
  CHECK_STR(got, want);
  free_loop(loop);
  CHECK(close(mine) == 0 && close(passed) == 0);
}

/* ---- Files read while another thread starts a child ------------------------ */

/* A file the context reads, served through a FIFO: the reader blocks on
 * it until the feeder, another thread, has seen the reading thread
 * waiting in read() on a descriptor of the FIFO's, started a child and
 * fed it the file's bytes. OpenSSL's own reads (fopen without "e") left
 * that descriptor to the child. */
typedef struct feeder {
  char fifo[64];
  const char *content;   /* the file the FIFO gives */
  pid_t reader;          /* the thread that reads the FIFO */
  int rw;                /* ours: a writer that is always there */
  char got[256];         /* the child's descriptors */
  char what[1024];       /* what they were, at the fork */
} feeder;

/* The descriptor the reader waits on in read(), or -1. */
static int reading_fd(pid_t tid)
{
  char path[64], line[256];
  long nr = -1;
  unsigned long fd = 0;
  FILE *f;
  snprintf(path, sizeof path, "/proc/self/task/%d/syscall", (int)tid);
  f = fopen(path, "re");
  CHECK(f != NULL);
  if (!fgets(line, sizeof line, f) || sscanf(line, "%ld %lx", &nr, &fd) != 2)
    nr = -1;
  fclose(f);
  return nr == SYS_read ? (int)fd : -1;
}

static int is_fifo_fd(int fd, const char *fifo)
{
  char path[64], target[256];
  ssize_t n;
  snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  n = readlink(path, target, sizeof target - 1);
  if (n < 0)
    return 0;
  target[n] = '\0';
  return strcmp(target, fifo) == 0;
}

static void *feed(void *ud)
{
  feeder *fe = ud;
  double end = now_sec() + test_timeout();
  char buf[65536];
  ssize_t n;
  int fd, in;
  while ((fd = reading_fd(fe->reader)) < 0 || fd == fe->rw ||
         !is_fifo_fd(fd, fe->fifo)) {
    if (now_sec() > end)
      FAIL("%s was never read", fe->fifo);
    sched_yield();
  }
  by_fork(fe->got, sizeof fe->got);
  describe_extra(fe->got, fe->what, sizeof fe->what);
  in = open(fe->content, O_RDONLY | O_CLOEXEC);
  CHECK(in >= 0);
  while ((n = read(in, buf, sizeof buf)) > 0)
    CHECK(write(fe->rw, buf, (size_t)n) == n);
  CHECK(close(in) == 0 && close(fe->rw) == 0); /* the reader's end */
  return NULL;
}

static void feeder_start(feeder *fe, pthread_t *th, const char *content)
{
  snprintf(fe->fifo, sizeof fe->fifo, "/tmp/tapio-inherit-%d.fifo",
           (int)getpid());
  unlink(fe->fifo);
  CHECK(mkfifo(fe->fifo, 0600) == 0);
  fe->rw = open(fe->fifo, O_RDWR | O_CLOEXEC);
  CHECK(fe->rw >= 0);
  fe->content = content;
  fe->reader = gettid();
  fe->got[0] = '\0';
  CHECK(pthread_create(th, NULL, feed, fe) == 0);
}

static void feeder_end(feeder *fe, pthread_t th)
{
  CHECK(pthread_join(th, NULL) == 0);
  CHECK(unlink(fe->fifo) == 0);
  if (strcmp(fe->got, "0 1 2") != 0)
    FAIL("a child started while %s was read had %s;%s", fe->content,
         fe->got, fe->what);
}

/* The certificate chain, the key and the CAs, each read from a file while
 * another thread forks and execs: the child has none of their
 * descriptors. */
static void files_read_not_inherited(void)
{
  tapio_tls_context *c;
  pthread_t th;
  feeder fe;
  inherit_nothing_given();
  CHECK_OK(tapio_tls_context_new(TAPIO_TLS_SERVER, &c));
  feeder_start(&fe, &th, cert("server.pem"));
  if (tapio_tls_context_load_cert_chain(c, fe.fifo, cert("server.key"),
                                        NULL) != 0)
    FAIL("load_cert_chain: %s", tapio_tls_context_error(c));
  feeder_end(&fe, th);
  feeder_start(&fe, &th, cert("server.key"));
  if (tapio_tls_context_load_cert_chain(c, cert("server.pem"), fe.fifo,
                                        NULL) != 0)
    FAIL("load_cert_chain: %s", tapio_tls_context_error(c));
  feeder_end(&fe, th);
  feeder_start(&fe, &th, cert("ca.pem"));
  if (tapio_tls_context_load_verify_locations(c, fe.fifo, NULL, NULL, 0) != 0)
    FAIL("load_verify_locations: %s", tapio_tls_context_error(c));
  feeder_end(&fe, th);
  tapio_tls_context_release(c);
}

/* The system store (SSL_CERT_FILE here), read on the loop's thread as a
 * client's first connection that verifies starts. */
static void system_store_read_not_inherited(void)
{
  tapio_tls_context *c;
  tls_pair p;
  pthread_t th;
  feeder fe;
  inherit_nothing_given();
  feeder_start(&fe, &th, cert("ca.pem"));
  CHECK(setenv("SSL_CERT_FILE", fe.fifo, 1) == 0);
  CHECK_OK(tapio_tls_context_new(TAPIO_TLS_CLIENT, &c));
  tls_pair_init(&p);
  tls_pair_up(&p, server_ctx("server"), c, "localhost");
  feeder_end(&fe, th);
  tls_pair_end(&p);
}

TEST_MAIN(TEST(every_kind_held), TEST(own_descriptors_only_when_passed),
          TEST(files_read_not_inherited),
          TEST(system_store_read_not_inherited))
