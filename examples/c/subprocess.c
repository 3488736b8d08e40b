/* Child processes on tapio's C ABI: runs sh -c 'cat; echo done >&2',
 * writes to its stdin, collects its stdout and stderr and its exit
 * status; then starts a child that hangs (sleep 30) and kills it after
 * 0.2 seconds. Prints what it got and exits 0.
 * Usage: subprocess */
#include <tapio.h>

#include <stdio.h>
#include <string.h>

typedef struct child {
  const char *name;
  double timeout;        /* seconds before it is killed; 0: never */
  tapio_transport *t;
  tapio_handle *deadline;
  char out[2][256];      /* what came on stdout, stderr */
  size_t len[2];
} child;

static tapio_loop *loop;
static int running = 2;

static void connection_made(void *ud, tapio_transport *t) {
  child *c = ud;
  tapio_transport *in = tapio_subprocess_get_pipe_transport(t, 0);
  c->t = t;
  tapio_transport_write(in, "hello\n", 6);
  tapio_transport_write_eof(in); /* cat ends at the end of its input */
}

static void pipe_data_received(void *ud, tapio_transport *t, int fd,
                               const char *data, size_t len) {
  child *c = ud;
  size_t *n = &c->len[fd - 1];
  (void)t;
  if (len > sizeof c->out[0] - *n)
    len = sizeof c->out[0] - *n;
  memcpy(c->out[fd - 1] + *n, data, len);
  *n += len;
}

static void process_exited(void *ud, tapio_transport *t) {
  child *c = ud;
  int rc;
  tapio_subprocess_get_returncode(t, &rc);
  /* The pipes may still hold output: connection_lost comes once they
   * are read to their end (a grandchild holding them delays it, as in
   * asyncio; closing the transport here would drop what is left). */
  printf("%s: exit status %d\n", c->name, rc); /* -9: killed by SIGKILL */
}

/* One line of output, without its newline. */
static void show(const child *c, const char *what, const char *s, size_t n) {
  if (n > 0 && s[n - 1] == '\n')
    n--;
  printf("%s: %s '%.*s'\n", c->name, what, (int)n, s);
}

static void connection_lost(void *ud, tapio_transport *t, int code,
                            const char *msg) {
  child *c = ud;
  (void)t;
  if (code)
    printf("%s: %s\n", c->name, msg);
  show(c, "stdout", c->out[0], c->len[0]);
  show(c, "stderr", c->out[1], c->len[1]);
  if (c->deadline) { /* harmless once it has run; the handle is ours */
    tapio_handle_cancel(c->deadline);
    tapio_handle_release(c->deadline);
  }
  if (--running == 0)
    tapio_loop_stop(loop);
}

static const tapio_subprocess_protocol child_protocol = {
  .size = sizeof(tapio_subprocess_protocol),
  .connection_made = connection_made,
  .pipe_data_received = pipe_data_received,
  .process_exited = process_exited,
  .connection_lost = connection_lost,
};

static void kill_child(void *ud) {
  child *c = ud;
  printf("%s: killed after %.1f s\n", c->name, c->timeout);
  tapio_subprocess_kill(c->t);
}

/* The transport, once connection_made has run. */
static void started(void *ud, int status, tapio_transport *t) {
  child *c = ud;
  (void)t;
  if (status < 0) {
    fprintf(stderr, "%s: %s\n", c->name, tapio_strerror(status));
    tapio_loop_stop(loop);
  } else if (c->timeout > 0) {
    tapio_call_later(loop, c->timeout, kill_child, c, &c->deadline);
  }
}

int main(void) {
  static child cat = { .name = "cat" };
  static child hang = { .name = "sleep", .timeout = 0.2 };
  static const char *const sleep_args[] = { "30" }; /* after argv[0] */
  int rc = tapio_loop_new(&loop);
  if (rc == 0)
    rc = tapio_subprocess_shell(loop, "cat; echo done >&2", &child_protocol,
                                &cat, NULL, started, &cat);
  if (rc == 0)
    rc = tapio_subprocess_exec(loop, "sleep", sleep_args, 1, &child_protocol,
                               &hang, NULL, started, &hang);
  if (rc == 0)
    rc = tapio_loop_run(loop);
  if (rc < 0)
    fprintf(stderr, "subprocess: %s\n", tapio_strerror(rc));
  tapio_loop_free(loop);
  return rc < 0 ? 1 : 0;
}
