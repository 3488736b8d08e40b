/* Keyword options for the create_* calls: one table declares every option
 * once, with the calls that take it, its type and its range; the set
 * functions, the create calls and the bindings (tapio_option_info) all
 * read it. A new option is one row here and one enum tapio__opt value. */
#include "tapio_int.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#define CONN (1u << TAPIO_CALL_CREATE_CONNECTION)
#define UCONN (1u << TAPIO_CALL_CREATE_UNIX_CONNECTION)
#define ACCEPTED (1u << TAPIO_CALL_CONNECT_ACCEPTED_SOCKET)
#define SERVER (1u << TAPIO_CALL_CREATE_SERVER)
#define USERVER (1u << TAPIO_CALL_CREATE_UNIX_SERVER)
#define DGRAM (1u << TAPIO_CALL_CREATE_DATAGRAM_ENDPOINT)
#define SPAWN ((1u << TAPIO_CALL_SUBPROCESS_EXEC) | \
               (1u << TAPIO_CALL_SUBPROCESS_SHELL))
#define STARTTLS (1u << TAPIO_CALL_START_TLS)
#define TLS_CALLS (CONN | UCONN | ACCEPTED | SERVER | USERVER)
#define NCALLS 13 /* one past the last enum tapio_call */

typedef struct optdef {
  const char *name;
  int type;                /* enum tapio_option_type */
  int64_t min, max;
  int (*valid)(double v);  /* a rule beyond the range, or NULL */
  const char *expects;     /* what it accepts, in words */
  unsigned calls;          /* bit per enum tapio_call */
} optdef;

static int is_family(double v) { return v == 0 || v == 4 || v == 6; }
static int positive(double v) { return v > 0; }
static int ai_flags(double v) {
  return ((int64_t)v & ~(int64_t)TAPIO__AI_ALL_FLAGS) == 0;
}

/* stdin, stdout, stderr: a descriptor or a TAPIO_STDIO_* value (STDOUT
 * for stderr only, which the create call checks). */
#define STDIO_OPT(name) \
  {name, TAPIO_OPTION_INT, TAPIO_STDIO_INHERIT, 2147483647, NULL, \
   "descriptor or TAPIO_STDIO_* value", SPAWN}

/* `expects` reads as "<expects> expected" in an error message. */
#define INT_OPT(name, lo, hi, calls) \
  {name, TAPIO_OPTION_INT, lo, hi, NULL, "integer " #lo ".." #hi, calls}
#define BOOL_OPT(name, calls) \
  {name, TAPIO_OPTION_BOOL, 0, 1, NULL, "boolean", calls}
#define STR_OPT(name, calls) \
  {name, TAPIO_OPTION_STR, 0, 0, NULL, "string", calls}
/* user, group: a name or a number; never (uid_t)-1, which the kernel
 * takes for "unchanged". */
#define ID_OPT(name, expects) \
  {name, TAPIO_OPTION_ID, 0, 4294967294, NULL, expects, SPAWN}
/* Seconds, 0 or more (the bounds are whole seconds). */
#define SECONDS_OPT(name, calls) \
  {name, TAPIO_OPTION_DOUBLE, 0, INT32_MAX, NULL, "number of seconds >= 0", \
   calls}
/* Seconds, more than 0 (asyncio's "a positive number"). */
#define TIMEOUT_OPT(name, calls) \
  {name, TAPIO_OPTION_DOUBLE, 0, INT32_MAX, positive, \
   "number of seconds > 0", calls}

/* `set` in tapio_options and `calls` below hold a bit per option and per
 * call; OPT is an option's. */
#define OPT(i) ((uint64_t)1 << (i))
_Static_assert(TAPIO__OPT_COUNT <= 64, "tapio_options.set has 64 bits");
_Static_assert(NCALLS <= 32, "optdef.calls has 32 bits");

static const optdef optdefs[TAPIO__OPT_COUNT] = {
  [TAPIO__OPT_LOCAL_HOST] = STR_OPT("local_host", CONN | DGRAM),
  [TAPIO__OPT_LOCAL_PORT] = INT_OPT("local_port", 0, 65535, CONN | DGRAM),
  [TAPIO__OPT_FAMILY] = {"family", TAPIO_OPTION_INT, 0, 6, is_family,
                         "0, 4 or 6", CONN | SERVER | DGRAM},
  [TAPIO__OPT_SOCK] = INT_OPT("sock", 0, 2147483647,
                              CONN | UCONN | SERVER | USERVER | DGRAM),
  [TAPIO__OPT_NODELAY] = BOOL_OPT("nodelay", CONN | ACCEPTED | SERVER),
  [TAPIO__OPT_BACKLOG] = INT_OPT("backlog", 0, 2147483647, SERVER | USERVER),
  [TAPIO__OPT_REUSE_ADDRESS] = BOOL_OPT("reuse_address", SERVER),
  [TAPIO__OPT_REUSE_PORT] = BOOL_OPT("reuse_port", SERVER | DGRAM),
  [TAPIO__OPT_KEEP_ALIVE] = BOOL_OPT("keep_alive", SERVER),
  [TAPIO__OPT_START_SERVING] = BOOL_OPT("start_serving", SERVER | USERVER),
  [TAPIO__OPT_CLEANUP_SOCKET] = BOOL_OPT("cleanup_socket", USERVER),
  [TAPIO__OPT_STDIN] = STDIO_OPT("stdin"),
  [TAPIO__OPT_STDOUT] = STDIO_OPT("stdout"),
  [TAPIO__OPT_STDERR] = STDIO_OPT("stderr"),
  [TAPIO__OPT_CWD] = STR_OPT("cwd", SPAWN),
  [TAPIO__OPT_ENV] = {"env", TAPIO_OPTION_STR_LIST, 0, 0, NULL,
                      "list of strings", SPAWN},
  [TAPIO__OPT_EXTEND_ENV] = BOOL_OPT("extend_env", SPAWN),
  [TAPIO__OPT_START_NEW_SESSION] = BOOL_OPT("start_new_session", SPAWN),
  [TAPIO__OPT_PROCESS_GROUP] = INT_OPT("process_group", 0, 2147483647, SPAWN),
  [TAPIO__OPT_PASS_FDS] = {"pass_fds", TAPIO_OPTION_INT_LIST, 0, 2147483647,
                           NULL, "list of descriptors", SPAWN},
  [TAPIO__OPT_CLOSE_FDS] = BOOL_OPT("close_fds", SPAWN),
  [TAPIO__OPT_EXECUTABLE] = STR_OPT("executable", SPAWN),
  [TAPIO__OPT_PIPESIZE] = INT_OPT("pipesize", -1, 2147483647, SPAWN),
  [TAPIO__OPT_USER] = ID_OPT("user", "user name or uid"),
  [TAPIO__OPT_GROUP] = ID_OPT("group", "group name or gid"),
  [TAPIO__OPT_EXTRA_GROUPS] = {"extra_groups", TAPIO_OPTION_ID_LIST, 0,
                               4294967294, NULL,
                               "list of group names or gids", SPAWN},
  [TAPIO__OPT_UMASK] = {"umask", TAPIO_OPTION_INT, -1, 0777, NULL,
                        "integer -1..511 (0o777)", SPAWN},
  [TAPIO__OPT_HAPPY_EYEBALLS_DELAY] = SECONDS_OPT("happy_eyeballs_delay",
                                                  CONN),
  [TAPIO__OPT_INTERLEAVE] = INT_OPT("interleave", 0, 2147483647, CONN),
  [TAPIO__OPT_REMOTE_HOST] = STR_OPT("remote_host", DGRAM),
  [TAPIO__OPT_REMOTE_PORT] = INT_OPT("remote_port", 0, 65535, DGRAM),
  [TAPIO__OPT_LOCAL_PATH] = STR_OPT("local_path", DGRAM),
  [TAPIO__OPT_REMOTE_PATH] = STR_OPT("remote_path", DGRAM),
  [TAPIO__OPT_ALLOW_BROADCAST] = BOOL_OPT("allow_broadcast", DGRAM),
  [TAPIO__OPT_SSL] = {"ssl", TAPIO_OPTION_TLS, 0, 0, NULL, "TLS context",
                      TLS_CALLS},
  [TAPIO__OPT_SERVER_HOSTNAME] = STR_OPT("server_hostname",
                                         CONN | UCONN | STARTTLS),
  [TAPIO__OPT_SSL_HANDSHAKE_TIMEOUT] = TIMEOUT_OPT("ssl_handshake_timeout",
                                                   TLS_CALLS | STARTTLS),
  [TAPIO__OPT_SSL_SHUTDOWN_TIMEOUT] = TIMEOUT_OPT("ssl_shutdown_timeout",
                                                  TLS_CALLS | STARTTLS),
  [TAPIO__OPT_PROTO] = INT_OPT("proto", 0, 255, CONN | DGRAM),
  [TAPIO__OPT_FLAGS] = {"flags", TAPIO_OPTION_INT, 0, TAPIO__AI_ALL_FLAGS,
                        ai_flags, "AI_* flags", CONN | SERVER | DGRAM},
  [TAPIO__OPT_LOCAL_FLOWINFO] = INT_OPT("local_flowinfo", 0, 1048575,
                                        CONN | DGRAM),
  [TAPIO__OPT_REMOTE_FLOWINFO] = INT_OPT("remote_flowinfo", 0, 1048575,
                                         DGRAM),
};

/* The entries of a list option: char *, int64_t or tapio__id. */
typedef struct optlist {
  void *items;
  size_t n, cap, size; /* size: of one entry */
} optlist;

struct tapio_options {
  tapio_loop *loop;
  uint64_t set;                        /* bit per enum tapio__opt */
  int64_t ints[TAPIO__OPT_COUNT];
  double nums[TAPIO__OPT_COUNT];
  char *strs[TAPIO__OPT_COUNT];
  optlist lists[TAPIO__OPT_COUNT];
  tapio_tls_context *tls;              /* "ssl", referenced */
};

/* The calls' names, for the words of a refusal; NULL for a value of the
 * enum that names no call (7, unassigned). */
static const char *const call_names[NCALLS] = {
  [TAPIO_CALL_CREATE_CONNECTION] = "create_connection",
  [TAPIO_CALL_CREATE_UNIX_CONNECTION] = "create_unix_connection",
  [TAPIO_CALL_CONNECT_ACCEPTED_SOCKET] = "connect_accepted_socket",
  [TAPIO_CALL_CREATE_SERVER] = "create_server",
  [TAPIO_CALL_CREATE_UNIX_SERVER] = "create_unix_server",
  [TAPIO_CALL_CREATE_DATAGRAM_ENDPOINT] = "create_datagram_endpoint",
  [TAPIO_CALL_CONNECT_READ_PIPE] = "connect_read_pipe",
  [TAPIO_CALL_CONNECT_WRITE_PIPE] = "connect_write_pipe",
  [TAPIO_CALL_SUBPROCESS_EXEC] = "subprocess_exec",
  [TAPIO_CALL_SUBPROCESS_SHELL] = "subprocess_shell",
  [TAPIO_CALL_START_TLS] = "start_tls",
};

static int known_call(int call) {
  return call > 0 && call < NCALLS && call_names[call] != NULL;
}

/* The option called name that call takes (call 0: any call), or -1. */
static int find(const char *name, int call) {
  int i;
  if (!name || call < 0 || call >= NCALLS)
    return -1;
  for (i = 0; i < TAPIO__OPT_COUNT; i++)
    if (strcmp(optdefs[i].name, name) == 0 &&
        (call == 0 || (optdefs[i].calls & (1u << call))))
      return i;
  return -1;
}

int tapio_option_info(int call, const char *name, int *type, int64_t *min,
                      int64_t *max, const char **expects) {
  int i = find(name, call);
  if (!known_call(call) || !name)
    return TAPIO_EINVAL;
  if (i < 0)
    return TAPIO_ENOENT;
  if (type)
    *type = optdefs[i].type;
  if (min)
    *min = optdefs[i].min;
  if (max)
    *max = optdefs[i].max;
  if (expects)
    *expects = optdefs[i].expects;
  return 0;
}

const char *tapio__opt_name(enum tapio__opt which) {
  return optdefs[which].name;
}

const char *tapio_option_name(int call, size_t n) {
  int i;
  if (!known_call(call))
    return NULL;
  for (i = 0; i < TAPIO__OPT_COUNT; i++)
    if ((optdefs[i].calls & (1u << call)) && n-- == 0)
      return optdefs[i].name;
  return NULL;
}

int tapio_options_new(tapio_loop *loop, tapio_options **out) {
  tapio_options *o;
  if (out)
    *out = NULL;
  if (!loop || !out)
    return TAPIO_EINVAL;
  o = tapio__calloc(loop, sizeof *o);
  *out = o;
  if (!o)
    return TAPIO_ENOMEM;
  o->loop = loop;
  return 0;
}

void tapio_options_free(tapio_options *o) {
  int i;
  size_t j;
  if (!o)
    return;
  for (i = 0; i < TAPIO__OPT_COUNT; i++) {
    optlist *l = &o->lists[i];
    tapio__strfree(o->loop, o->strs[i]);
    for (j = 0; optdefs[i].type == TAPIO_OPTION_STR_LIST && j < l->n; j++)
      tapio__strfree(o->loop, ((char **)l->items)[j]);
    for (j = 0; optdefs[i].type == TAPIO_OPTION_ID_LIST && j < l->n; j++)
      tapio__strfree(o->loop, (char *)((tapio__id *)l->items)[j].name);
    tapio__free(o->loop, l->items, l->cap * l->size);
  }
  tapio_tls_context_release(o->tls);
  tapio__free(o->loop, o, sizeof *o);
}

int tapio_options_set_int(tapio_options *o, const char *name, int64_t value) {
  int i = find(name, 0);
  const optdef *d = i >= 0 ? &optdefs[i] : NULL;
  if (d && d->type == TAPIO_OPTION_DOUBLE)
    return tapio_options_set_double(o, name, (double)value);
  if (!o || !d || (d->type != TAPIO_OPTION_INT &&
                   d->type != TAPIO_OPTION_BOOL &&
                   d->type != TAPIO_OPTION_ID) || value < d->min ||
      value > d->max || (d->valid && !d->valid(value)))
    return TAPIO_EINVAL;
  tapio__strfree(o->loop, o->strs[i]); /* an id's name, now a number */
  o->strs[i] = NULL;
  o->ints[i] = value;
  o->set |= OPT(i);
  return 0;
}

/* NaN fails both comparisons, so it is refused too. */
int tapio_options_set_double(tapio_options *o, const char *name,
                             double value) {
  int i = find(name, 0);
  const optdef *d = i >= 0 ? &optdefs[i] : NULL;
  if (!o || !d || d->type != TAPIO_OPTION_DOUBLE ||
      !(value >= (double)d->min && value <= (double)d->max) ||
      (d->valid && !d->valid(value)))
    return TAPIO_EINVAL;
  o->nums[i] = value;
  o->set |= OPT(i);
  return 0;
}

int tapio_options_set_str(tapio_options *o, const char *name,
                          const char *value) {
  int i = find(name, 0);
  char *copy;
  if (!o || !value || i < 0 || (optdefs[i].type != TAPIO_OPTION_STR &&
                                optdefs[i].type != TAPIO_OPTION_ID))
    return TAPIO_EINVAL;
  copy = tapio__strdup(o->loop, value);
  if (!copy)
    return TAPIO_ENOMEM;
  tapio__strfree(o->loop, o->strs[i]);
  o->strs[i] = copy;
  o->set |= OPT(i);
  return 0;
}

/* Room for one more entry in list i, whose entries are size bytes. */
static void *list_slot(tapio_options *o, int i, size_t size) {
  optlist *l = &o->lists[i];
  if (l->n == l->cap) {
    size_t cap = l->cap ? 2 * l->cap : 8;
    void *items = tapio__alloc(o->loop, cap * size);
    if (!items)
      return NULL;
    if (l->n)
      memcpy(items, l->items, l->n * size);
    tapio__free(o->loop, l->items, l->cap * size);
    l->items = items;
    l->cap = cap;
    l->size = size;
  }
  return (char *)l->items + l->n * size;
}

/* An id list's entry: a name (copied) or a number. */
static int add_id(tapio_options *o, int i, const char *name, int64_t id) {
  tapio__id *slot = list_slot(o, i, sizeof *slot);
  char *copy = slot && name ? tapio__strdup(o->loop, name) : NULL;
  if (!slot || (name && !copy))
    return TAPIO_ENOMEM;
  slot->name = copy;
  slot->id = id;
  o->lists[i].n++;
  o->set |= OPT(i);
  return 0;
}

int tapio_options_add_str(tapio_options *o, const char *name,
                          const char *value) {
  int i = find(name, 0);
  char **slot, *copy;
  if (!o || i < 0 || (optdefs[i].type != TAPIO_OPTION_STR_LIST &&
                      optdefs[i].type != TAPIO_OPTION_ID_LIST))
    return TAPIO_EINVAL;
  o->set |= OPT(i);
  if (!value)
    return 0;
  if (optdefs[i].type == TAPIO_OPTION_ID_LIST)
    return add_id(o, i, value, 0);
  slot = list_slot(o, i, sizeof *slot);
  copy = slot ? tapio__strdup(o->loop, value) : NULL;
  if (!copy)
    return TAPIO_ENOMEM;
  *slot = copy;
  o->lists[i].n++;
  return 0;
}

int tapio_options_add_int(tapio_options *o, const char *name, int64_t value) {
  int i = find(name, 0);
  int64_t *slot;
  if (!o || i < 0 || (optdefs[i].type != TAPIO_OPTION_INT_LIST &&
                      optdefs[i].type != TAPIO_OPTION_ID_LIST) ||
      value < optdefs[i].min || value > optdefs[i].max)
    return TAPIO_EINVAL;
  if (optdefs[i].type == TAPIO_OPTION_ID_LIST)
    return add_id(o, i, NULL, value);
  slot = list_slot(o, i, sizeof *slot);
  if (!slot)
    return TAPIO_ENOMEM;
  *slot = value;
  o->lists[i].n++;
  o->set |= OPT(i);
  return 0;
}

const void *tapio__opt_list(const tapio_options *o, enum tapio__opt which,
                            size_t *n) {
  *n = tapio__opt_is_set(o, which) ? o->lists[which].n : 0;
  return *n ? o->lists[which].items : NULL;
}

int tapio_options_set_tls(tapio_options *o, const char *name,
                          tapio_tls_context *ctx) {
  int i = find(name, 0);
  if (!o || i < 0 || optdefs[i].type != TAPIO_OPTION_TLS)
    return TAPIO_EINVAL;
  tapio__tls_context_retain(ctx);
  tapio_tls_context_release(o->tls);
  o->tls = ctx;
  if (ctx)
    o->set |= OPT(i);
  else
    o->set &= ~OPT(i);
  return 0;
}

/* The TLS options mean nothing without "ssl" (start_tls takes its
 * context as an argument), and the context must be made for the side the
 * call takes: clients connect, servers and connect_accepted_socket
 * accept. */
static const char *side_name(int side) {
  return side == TAPIO_TLS_SERVER ? "server" : "client";
}

static int tls_check(tapio_loop *loop, const tapio_options *o, int call) {
  uint64_t tls_only = OPT(TAPIO__OPT_SERVER_HOSTNAME) |
                      OPT(TAPIO__OPT_SSL_HANDSHAKE_TIMEOUT) |
                      OPT(TAPIO__OPT_SSL_SHUTDOWN_TIMEOUT);
  int server = call == TAPIO_CALL_CREATE_SERVER ||
               call == TAPIO_CALL_CREATE_UNIX_SERVER ||
               call == TAPIO_CALL_CONNECT_ACCEPTED_SOCKET;
  int want = server ? TAPIO_TLS_SERVER : TAPIO_TLS_CLIENT, i;
  if (o->set & OPT(TAPIO__OPT_SSL)) {
    if (tapio_tls_context_get_side(o->tls) == want)
      return 0;
    tapio__refuse(loop, "%s: option 'ssl' is a %s TLS context; this call "
                  "needs a %s one", call_names[call],
                  side_name(tapio_tls_context_get_side(o->tls)),
                  side_name(want));
    return TAPIO_EINVAL;
  }
  if (call == TAPIO_CALL_START_TLS || !(o->set & tls_only))
    return 0;
  for (i = 0; !(o->set & tls_only & OPT(i)); i++)
    ;
  tapio__refuse(loop, "%s: option '%s' is for TLS: give 'ssl' too",
                call_names[call], optdefs[i].name);
  return TAPIO_EINVAL;
}

/* "proto" must be a protocol of the call's socket type, as getaddrinfo
 * (and so asyncio) checks it. */
static int proto_check(tapio_loop *loop, int proto, int call) {
  int dgram = call == TAPIO_CALL_CREATE_DATAGRAM_ENDPOINT;
  int rc = tapio__ipproto_check(dgram ? TAPIO_SOCK_DGRAM : TAPIO_SOCK_STREAM,
                              proto);
  if (rc < 0)
    tapio__refuse(loop, "%s: option 'proto' %d is no %s socket's protocol "
                  "(getaddrinfo: ai_socktype not supported)",
                  call_names[call], proto, dgram ? "datagram" : "stream");
  return rc;
}

int tapio__opts_check(tapio_loop *loop, const tapio_options *o, int call) {
  int i;
  for (i = 0; o && i < TAPIO__OPT_COUNT; i++)
    if ((o->set & OPT(i)) && !(optdefs[i].calls & (1u << call))) {
      tapio__refuse(loop, "%s does not take option '%s'", call_names[call],
                    optdefs[i].name);
      return TAPIO_EINVAL;
    }
  if (o && (o->set & OPT(TAPIO__OPT_PROTO)) &&
      proto_check(loop, (int)o->ints[TAPIO__OPT_PROTO], call) < 0)
    return TAPIO_EAI_SOCKTYPE;
  return o ? tls_check(loop, o, call) : 0;
}

static const char *type_name(int type) {
  return type == SOCK_STREAM ? "stream" : type == SOCK_DGRAM ? "datagram"
                                                             : "other";
}

/* The Unix calls' "sock" must be a Unix socket (asyncio's "A UNIX Domain
 * Stream Socket was expected"). */
static int unix_check(tapio_loop *loop, int fd, int call) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if (call != TAPIO_CALL_CREATE_UNIX_CONNECTION &&
      call != TAPIO_CALL_CREATE_UNIX_SERVER)
    return 0;
  if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0 &&
      ss.ss_family == AF_UNIX)
    return 0;
  tapio__refuse(loop, "%s: 'sock' is not a Unix socket; a Unix stream "
                "socket was expected", call_names[call]);
  return TAPIO_EINVAL;
}

/* Why path is no Unix socket's address (tapio__unix_addr's rc), in
 * words naming the call and the argument. */
static int bad_unix_path(tapio_loop *loop, const char *path, int rc,
                         int call) {
  const char *fn = call_names[call];
  size_t n = path ? strlen(path) : 0;
  if (!path)
    tapio__refuse(loop, "%s: 'path' is NULL (and no 'sock' given)", fn);
  else if (n == 0)
    tapio__refuse(loop, "%s: 'path' is empty", fn);
  else if (rc == TAPIO_EINVAL) /* "@" alone */
    tapio__refuse(loop, "%s: 'path' \"@\" names no abstract socket "
                  "(\"@name\")", fn);
  else if (tapio__unix_abstract(path))
    tapio__refuse(loop, "%s: 'path' is an abstract name of %zu bytes; one "
                  "holds 107", fn, n - 1);
  else
    tapio__refuse(loop, "%s: 'path' is %zu bytes long; a socket's path "
                  "holds 107", fn, n);
  return rc;
}

int tapio__unix_path_or_sock(tapio_loop *loop, const char *path,
                             const tapio_options *o, int call) {
  tapio__addr probe;
  int rc;
  if (!tapio__opt_is_set(o, TAPIO__OPT_SOCK)) {
    rc = path && *path ? tapio__unix_addr(path, &probe) : TAPIO_EINVAL;
    return rc < 0 ? bad_unix_path(loop, path, rc, call) : 0;
  }
  if (!path)
    return 0;
  tapio__refuse(loop, "%s: path and sock can not be specified at the same "
                "time", call_names[call]);
  return TAPIO_EINVAL;
}

int tapio__sock_check(tapio_loop *loop, int fd, int type, int call) {
  int got = 0;
  socklen_t len = sizeof got;
  /* first: one a pipe transport owns is no socket, and is not closed */
  if (tapio__fd_owned(loop, fd)) { /* two owners would close it twice */
    tapio__refuse(loop, "%s: 'sock' is in use by a transport or server of "
                  "the loop", call_names[call]);
    return TAPIO_EBUSY;
  }
  if (tapio__sock_pending(loop, fd)) { /* it would take their data */
    tapio__refuse(loop, "%s: 'sock' is in use by a pending sock_* call of "
                  "the loop", call_names[call]);
    return TAPIO_EBUSY;
  }
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &got, &len) < 0) {
    int rc = tapio__from_errno(errno);
    tapio__refuse(loop, "%s: 'sock' is %s", call_names[call],
                  rc == TAPIO_EBADF ? "not an open descriptor"
                                    : "not a socket");
    return rc;
  }
  if (got != type) {
    tapio__refuse(loop, "%s: 'sock' is a %s socket; a %s socket was "
                  "expected", call_names[call], type_name(got),
                  type_name(type));
    return TAPIO_EINVAL;
  }
  if (unix_check(loop, fd, call) < 0)
    return TAPIO_EINVAL;
  return tapio__socket_nonblock(fd);
}

/* EBUSY: a descriptor another owner keeps (tapio__sock_check) */
int tapio__opts_fail(const tapio_options *o, int code) {
  if (tapio__opt_is_set(o, TAPIO__OPT_SOCK) && code != TAPIO_EBUSY)
    close((int)o->ints[TAPIO__OPT_SOCK]);
  return code;
}

int tapio__opt_is_set(const tapio_options *o, enum tapio__opt which) {
  return o && (o->set & OPT(which));
}

int64_t tapio__opt_int(const tapio_options *o, enum tapio__opt which,
                       int64_t dflt) {
  return tapio__opt_is_set(o, which) ? o->ints[which] : dflt;
}

const char *tapio__opt_str(const tapio_options *o, enum tapio__opt which) {
  return tapio__opt_is_set(o, which) ? o->strs[which] : NULL;
}

double tapio__opt_double(const tapio_options *o, enum tapio__opt which,
                         double dflt) {
  return tapio__opt_is_set(o, which) ? o->nums[which] : dflt;
}

tapio_tls_context *tapio__opt_tls(const tapio_options *o) {
  return tapio__opt_is_set(o, TAPIO__OPT_SSL) ? o->tls : NULL;
}
