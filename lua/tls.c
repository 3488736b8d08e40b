/* The Lua binding's TLS: "tapio.tls_context" (tapio.tls_context{...}),
 * the "ssl" option's value, loop:_start_tls (tapio/loop.lua wraps it in
 * the async rule) and the TLS keys of transport:get_extra_info. */
#include "tapio_lua.h"

#include <string.h>

#define FN_CTX "tls_context"
#define FN_START "loop:start_tls"

/* Registry key: a weak table from a context's pointer to its userdata, so
 * that get_extra_info("sslcontext") gives the very value the script made. */
static const char contexts_key = 'c';

typedef struct tl_tlsctx {
  tapio_tls_context *ctx; /* our reference; NULL once closed */
} tl_tlsctx;

tapio_tls_context *tl_totlsctx(lua_State *L, int idx) {
  tl_tlsctx *c = luaL_testudata(L, idx, TL_TLSCTX);
  return c ? c->ctx : NULL;
}

/* ssl = true: a new client context with the defaults (the system's CAs,
 * names checked), as asyncio's ssl=True makes one per call; false: none. */
int tl_set_default_tls(tapio_options *o, const char *name, int on) {
  tapio_tls_context *ctx = NULL;
  int rc;
  if (!on)
    return tapio_options_set_tls(o, name, NULL);
  rc = tapio_tls_context_new(TAPIO_TLS_CLIENT, &ctx);
  if (rc == 0)
    rc = tapio_options_set_tls(o, name, ctx);
  tapio_tls_context_release(ctx);
  return rc;
}

/* ---- Building a context from a table ------------------------------------ */

/* Raises the context's failure as an error value (the userdata being made
 * releases the context when collected). */
static int ctx_fail(lua_State *L, tapio_tls_context *ctx, int rc,
                    const char *what) {
  const char *why = tapio_tls_context_error(ctx);
  lua_pushfstring(L, "tapio: tls_context: %s: %s", what,
                  *why ? why : tapio_strerror(rc));
  tl_pusherror(L, rc, lua_tostring(L, -1));
  return lua_error(L);
}

/* opts[name] as a string or NULL; len gets its length. */
static const char *field_str(lua_State *L, int opts, const char *name,
                             size_t *len) {
  const char *s = NULL;
  lua_getfield(L, opts, name);
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TSTRING)
      luaL_error(L, "tapio: tls_context: bad option '%s' (string expected, "
                    "got %s)", name, luaL_typename(L, -1));
    s = lua_tolstring(L, -1, len);
  }
  lua_pop(L, 1); /* the table keeps the string alive */
  return s;
}

static int word(lua_State *L, int opts, const char *name,
                const char *const words[], const int values[], int dflt) {
  const char *s = field_str(L, opts, name, NULL);
  luaL_Buffer b;
  int i;
  if (!s)
    return dflt;
  for (i = 0; words[i]; i++)
    if (strcmp(words[i], s) == 0)
      return values[i];
  luaL_buffinit(L, &b); /* the words it takes, for the message */
  for (i = 0; words[i]; i++) {
    luaL_addstring(&b, i == 0 ? "\"" : words[i + 1] ? ", \"" : " or \"");
    luaL_addstring(&b, words[i]);
    luaL_addchar(&b, '"');
  }
  luaL_pushresult(&b);
  return luaL_error(L, "tapio: tls_context: bad option '%s' ('%s': %s "
                    "expected)", name, s, lua_tostring(L, -1));
}

/* Every key of opts must be an option of tls_context: a misspelt one
 * (Python's certfile) would otherwise leave a context without it. */
static void check_names(lua_State *L, int opts) {
  static const char *const names[] = {
      "side", "cafile", "capath", "cadata", "cert_file", "key_file",
      "password", "cert_pem", "key_pem", "verify", "check_hostname",
      "min_version", "max_version", "ciphers", "ciphersuites", "alpn",
      "sni", "keylog_file", "session_cache", NULL};
  tl_checkkeys(L, opts, "tls_context", names);
}

static const char *const versions[] = {"TLSv1.2", "TLSv1.3", NULL};
static const int version_values[] = {TAPIO_TLS_1_2, TAPIO_TLS_1_3};

static int load_files(lua_State *L, int opts, tapio_tls_context *ctx) {
  size_t clen = 0, klen = 0, alen = 0;
  const char *cert = field_str(L, opts, "cert_file", NULL);
  const char *key = field_str(L, opts, "key_file", NULL);
  const char *pw = field_str(L, opts, "password", NULL);
  const char *cpem = field_str(L, opts, "cert_pem", &clen);
  const char *kpem = field_str(L, opts, "key_pem", &klen);
  const char *cafile = field_str(L, opts, "cafile", NULL);
  const char *capath = field_str(L, opts, "capath", NULL);
  const char *cadata = field_str(L, opts, "cadata", &alen);
  int rc = 0;
  if (cert)
    rc = tapio_tls_context_load_cert_chain(ctx, cert, key, pw);
  else if (cpem)
    rc = tapio_tls_context_load_cert_chain_pem(ctx, cpem, clen, kpem, klen,
                                               pw);
  if (rc < 0)
    return ctx_fail(L, ctx, rc, "the certificate chain");
  if ((cafile || capath || cadata) &&
      (rc = tapio_tls_context_load_verify_locations(ctx, cafile, capath,
                                                    cadata, alen)) < 0)
    return ctx_fail(L, ctx, rc, "the trusted CAs");
  return 0;
}

static int set_policy(lua_State *L, int opts, tapio_tls_context *ctx) {
  static const char *const verify_words[] = {"none", "optional", "required",
                                             NULL};
  static const int verify_values[] = {TAPIO_TLS_VERIFY_NONE,
                                      TAPIO_TLS_VERIFY_OPTIONAL,
                                      TAPIO_TLS_VERIFY_REQUIRED};
  int v = word(L, opts, "verify", verify_words, verify_values, -1);
  int lo = word(L, opts, "min_version", versions, version_values, 0);
  int hi = word(L, opts, "max_version", versions, version_values, 0);
  const char *c12 = field_str(L, opts, "ciphers", NULL);
  const char *c13 = field_str(L, opts, "ciphersuites", NULL);
  const char *keylog = field_str(L, opts, "keylog_file", NULL);
  const char *what = "verify"; /* the setting that failed, for the error */
  int rc = 0;
  if (v >= 0)
    rc = tapio_tls_context_set_verify(ctx, v);
  lua_getfield(L, opts, "check_hostname");
  if (!lua_isnil(L, -1) && !lua_isboolean(L, -1))
    return luaL_error(L, "tapio: tls_context: bad option 'check_hostname' "
                         "(boolean expected, got %s)", luaL_typename(L, -1));
  if (v == TAPIO_TLS_VERIFY_NONE && lua_toboolean(L, -1)) /* as Python */
    return luaL_error(L, "tapio: tls_context: check_hostname = true with "
                         "verify = 'none' (nothing verified, no name "
                         "checked): set one or the other");
  if (rc == 0 && lua_isboolean(L, -1) && (what = "check_hostname"))
    rc = tapio_tls_context_set_check_hostname(ctx, lua_toboolean(L, -1));
  lua_pop(L, 1);
  if (rc == 0 && (lo || hi) && (what = "min_version/max_version"))
    rc = tapio_tls_context_set_versions(ctx, lo, hi);
  if (rc == 0 && (c12 || c13) && (what = "ciphers/ciphersuites"))
    rc = tapio_tls_context_set_ciphers(ctx, c12, c13);
  if (rc == 0 && keylog && (what = "keylog_file"))
    rc = tapio_tls_context_set_keylog_file(ctx, keylog);
  lua_getfield(L, opts, "session_cache");
  if (rc == 0 && !lua_isnil(L, -1) && (what = "session_cache"))
    rc = tapio_tls_context_set_session_cache(
        ctx, (size_t)tl_checkint(L, -1, FN_CTX, 1, "session_cache", 0, 65536));
  lua_pop(L, 1);
  return rc < 0 ? ctx_fail(L, ctx, rc, what) : 0;
}

/* opts.alpn: a list of protocol names. */
static int set_alpn(lua_State *L, int opts, tapio_tls_context *ctx) {
  const char *names[64];
  size_t n, i;
  int rc;
  lua_getfield(L, opts, "alpn"); /* kept on the stack while used */
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return 0;
  }
  n = lua_istable(L, -1) ? tl_rawlen(L, -1) : 0;
  if (!lua_istable(L, -1) || n > 64 || tl_not_a_list(L, -1, n))
    return luaL_error(L, "tapio: tls_context: option 'alpn' must be a list "
                         "of at most 64 strings");
  for (i = 0; i < n; i++) {
    lua_rawgeti(L, -1, (int)i + 1);
    names[i] = lua_tostring(L, -1);
    lua_pop(L, 1); /* the list keeps it */
    if (!names[i])
      return luaL_error(L, "tapio: tls_context: option 'alpn' must be a "
                           "list of strings");
  }
  rc = tapio_tls_context_set_alpn(ctx, names, n);
  lua_pop(L, 1);
  return rc < 0 ? ctx_fail(L, ctx, rc, "alpn") : 0;
}

/* opts.sni: {["host.example"] = context, ...} (servers). */
static int set_sni(lua_State *L, int opts, tapio_tls_context *ctx) {
  lua_getfield(L, opts, "sni");
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return 0;
  }
  if (!lua_istable(L, -1))
    return luaL_error(L, "tapio: tls_context: option 'sni' must be a table "
                         "of names to contexts");
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    tapio_tls_context *use = tl_totlsctx(L, -1);
    int rc;
    if (lua_type(L, -2) != LUA_TSTRING || !use)
      return luaL_error(L, "tapio: tls_context: option 'sni' must map "
                           "names to tls contexts");
    rc = tapio_tls_context_add_sni(ctx, lua_tostring(L, -2), use);
    if (rc < 0)
      return ctx_fail(L, ctx, rc, "sni");
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return 0;
}

static void remember(lua_State *L, tapio_tls_context *ctx) {
  tl_rawgetp(L, LUA_REGISTRYINDEX, &contexts_key);
  lua_pushvalue(L, -2);
  tl_rawsetp(L, -2, ctx);
  lua_pop(L, 1);
}

/* A server context is fixed at its making: without a certificate (or
 * contexts to pick by name) it would fail every handshake, its clients
 * seeing only a cipher mismatch. */
static void check_serves(lua_State *L, int opts) {
  static const char *const gives[] = {"cert_file", "cert_pem", "sni", NULL};
  int i, found = 0;
  for (i = 0; gives[i] && !found; i++) {
    lua_getfield(L, opts, gives[i]);
    found = !lua_isnil(L, -1);
    lua_pop(L, 1);
  }
  if (!found)
    luaL_error(L, "tapio: %s: a server context needs a certificate "
               "(cert_file or cert_pem), or sni", FN_CTX);
}

/* tapio.tls_context{side = "client" | "server", ...}: see lua/README.md. */
static int u_tls_context(lua_State *L) {
  static const char *const sides[] = {"client", "server", NULL};
  static const int side_values[] = {TAPIO_TLS_CLIENT, TAPIO_TLS_SERVER};
  tapio_tls_context *ctx = NULL;
  tl_tlsctx *c;
  int side, rc;
  lua_settop(L, 1);
  if (lua_isnil(L, 1)) { /* tls_context(nil) as tls_context() */
    lua_newtable(L);
    lua_replace(L, 1);
  } else if (!lua_istable(L, 1))
    return tl_typeerror(L, FN_CTX, 1, "opts", 1, "table or nil");
  check_names(L, 1);
  side = word(L, 1, "side", sides, side_values, TAPIO_TLS_CLIENT);
  if (side == TAPIO_TLS_SERVER)
    check_serves(L, 1);
  c = tl_newuserdata(L, sizeof *c); /* first: no leak if anything raises */
  c->ctx = NULL;
  luaL_setmetatable(L, TL_TLSCTX);
  rc = tapio_tls_context_new(side, &ctx);
  if (rc < 0)
    return luaL_error(L, "tapio: tls_context: %s", tapio_strerror(rc));
  c->ctx = ctx;
  load_files(L, 1, ctx);
  set_policy(L, 1, ctx);
  set_alpn(L, 1, ctx);
  set_sni(L, 1, ctx);
  remember(L, ctx);
  return 1;
}

static tl_tlsctx *checkctx(lua_State *L, const char *fn) {
  return tl_checkself(L, 1, TL_TLSCTX, fn);
}

static int c_side(lua_State *L) {
  tl_tlsctx *c = checkctx(L, "tls_context:side");
  lua_pushstring(L, !c->ctx ? "closed"
                    : tapio_tls_context_get_side(c->ctx) == TAPIO_TLS_SERVER
                        ? "server" : "client");
  return 1;
}

/* Connections made from the context keep it; this gives ours back. */
static int c_close(lua_State *L) {
  tl_tlsctx *c = checkctx(L, "tls_context:close");
  tapio_tls_context_release(c->ctx);
  c->ctx = NULL;
  return 0;
}

static int c_tostring(lua_State *L) {
  lua_pushfstring(L, "tapio.tls_context (%s)", (c_side(L), lua_tostring(L, -1)));
  return 1;
}

static const luaL_Reg ctx_methods[] = {
  {"side", c_side},
  {"close", c_close},
  {NULL, NULL}
};

/* ---- start_tls ------------------------------------------------------------ */

/* The completion: the same trampoline as create_connection's, without
 * letting the transport go on a failure (connection_lost still comes).
 * The trampoline calls cb_ref: tls_ref takes its place for the call, and
 * a connect's own completion, if still to come, gets it back. */
static void on_started(void *ud, int status, tapio_transport *t) {
  tl_transport *lt = ud;
  int connect_ref = lt->cb_ref;
  (void)t;
  lt->cb_ref = lt->tls_ref;
  lt->tls_ref = LUA_NOREF;
  tl_complete(lt, status, "error in a start_tls callback");
  if (lt->lb) /* not released meanwhile */
    lt->cb_ref = connect_ref;
}

/* loop:_start_tls(cb, transport, protocol, context, opts, buffered) */
static int l_start_tls(lua_State *L) {
  tl_loop *lb = tl_checkloop(L, 1, FN_START);
  tl_transport *lt = luaL_testudata(L, 3, TL_TRANSPORT);
  tapio_tls_context *ctx = tl_totlsctx(L, 5);
  const char *buffered = NULL;
  size_t len = 0;
  tapio_options *o;
  int buffer_kind, rc;
  lua_settop(L, 7);
  if (!lt)
    return tl_typeerror(L, FN_START, 1, "transport", 3, TL_TRANSPORT);
  if (!lua_istable(L, 4))
    return tl_typeerror(L, FN_START, 2, "protocol", 4, "table");
  if (!ctx)
    return tl_typeerror(L, FN_START, 3, "sslcontext", 5, TL_TLSCTX);
  if (!lua_isnil(L, 7) && lua_type(L, 7) != LUA_TSTRING)
    return tl_typeerror(L, FN_START, 5, "buffered", 7, "string or nil");
  buffered = lua_tolstring(L, 7, &len);
  tl_check_usable(L, lt, lb, FN_START);
  lua_getfield(L, 4, "get_buffer");
  buffer_kind = !lua_isnil(L, -1);
  lua_pop(L, 1);
  o = tl_options(L, 6, FN_START, 4, TAPIO_CALL_START_TLS, lb->loop);
  rc = tapio_transport_start_tls(lt->t, buffer_kind ? &tl_buffered_protocol
                                                    : &tl_plain_protocol,
                                 lt, ctx, o, buffered, len, on_started, lt);
  tapio_options_free(o);
  if (rc < 0)
    return tl_fail_call(L, lb->loop, rc);
  lt->buffered = buffer_kind;
  lua_pushvalue(L, 4); /* the protocol from now on */
  lua_rawseti(L, LUA_REGISTRYINDEX, lt->proto_ref);
  lua_pushvalue(L, 2);
  lt->tls_ref = tl_ref(lb, L);
  lua_pushboolean(L, 1);
  return 1;
}

/* ---- get_extra_info --------------------------------------------------------- */

/* A value longer than the room on the stack (a certificate's DER may be
 * tens of KiB) is asked for again in a buffer of its length, which
 * ENOBUFS tells. */
static int push_info(lua_State *L, tapio_transport *t, int which) {
  char buf[8192], *p = buf;
  size_t len = 0;
  int rc = tapio_transport_get_tls_info(t, which, buf, sizeof buf, &len);
  if (rc == TAPIO_ENOBUFS) {
    p = tl_newuserdata(L, len);
    rc = tapio_transport_get_tls_info(t, which, p, len, &len);
  }
  if (rc < 0) {
    if (p != buf)
      lua_pop(L, 1);
    return 0;
  }
  lua_pushlstring(L, p, len);
  if (p != buf)
    lua_remove(L, -2);
  return 1;
}

/* {{name, value}, ...}: the entries of a certificate's name, as pairs. */
#define MAX_CERT_VALUE (1u << 20)

/* The list of which's {name, value} pairs. A value longer than the room
 * on the stack is asked for again with more (ENOBUFS tells no length),
 * in a buffer kept below the list until the end. */
static void push_names(lua_State *L, tapio_transport *t, int which) {
  char name[128], small[1024], *value = small;
  size_t i, cap = sizeof small;
  int rc;
  lua_pushnil(L); /* the grown buffer's place */
  lua_newtable(L);
  for (i = 0;; i++) {
    while ((rc = tapio_transport_get_peercert_entry(t, which, i, name,
                                                    sizeof name, value,
                                                    cap)) == TAPIO_ENOBUFS &&
           cap < MAX_CERT_VALUE) {
      cap *= 2;
      value = tl_newuserdata(L, cap);
      lua_replace(L, -3);
    }
    if (rc != 0)
      break;
    lua_createtable(L, 2, 0);
    lua_pushstring(L, name);
    lua_rawseti(L, -2, 1);
    lua_pushstring(L, value);
    lua_rawseti(L, -2, 2);
    lua_rawseti(L, -2, (int)i + 1);
  }
  lua_remove(L, -2);
}

/* peercert: the fields of Python's getpeercert() (subject and issuer as flat
 * {name, value} pairs: lua/README.md says so), plus der (the certificate). */
static int push_peercert(lua_State *L, tapio_transport *t) {
  static const struct { const char *key; int which; } strs[] = {
    {"notBefore", TAPIO_TLS_INFO_PEER_NOT_BEFORE},
    {"notAfter", TAPIO_TLS_INFO_PEER_NOT_AFTER},
    {"serialNumber", TAPIO_TLS_INFO_PEER_SERIAL},
    {"der", TAPIO_TLS_INFO_PEER_CERT},
  };
  size_t i;
  if (!push_info(L, t, TAPIO_TLS_INFO_PEER_CERT))
    return 0;
  lua_pop(L, 1);
  lua_createtable(L, 0, 7);
  push_names(L, t, TAPIO_TLS_SUBJECT);
  lua_setfield(L, -2, "subject");
  push_names(L, t, TAPIO_TLS_ISSUER);
  lua_setfield(L, -2, "issuer");
  push_names(L, t, TAPIO_TLS_SUBJECT_ALT_NAME);
  lua_setfield(L, -2, "subjectAltName");
  for (i = 0; i < sizeof strs / sizeof strs[0]; i++)
    if (push_info(L, t, strs[i].which))
      lua_setfield(L, -2, strs[i].key);
  return 1;
}

/* cipher: {name, version, bits}, Python's (name, protocol, secret bits). */
static int push_cipher(lua_State *L, tapio_transport *t) {
  if (!push_info(L, t, TAPIO_TLS_INFO_CIPHER))
    return 0;
  lua_createtable(L, 3, 0);
  lua_insert(L, -2);
  lua_rawseti(L, -2, 1);
  if (push_info(L, t, TAPIO_TLS_INFO_VERSION))
    lua_rawseti(L, -2, 2);
  lua_pushinteger(L, (lua_Integer)tapio_transport_get_tls_num(
                         t, TAPIO_TLS_NUM_SECRET_BITS));
  lua_rawseti(L, -2, 3);
  return 1;
}

static int push_context(lua_State *L, tapio_transport *t) {
  tapio_tls_context *ctx = tapio_transport_get_tls_context(t);
  tl_rawgetp(L, LUA_REGISTRYINDEX, &contexts_key);
  tl_rawgetp(L, -1, ctx);
  lua_remove(L, -2);
  return !lua_isnil(L, -1) || (lua_pop(L, 1), 0);
}

static const char *const end_names[] = {"open", "clean", "truncated",
                                        "timeout", "aborted"};

/* The TLS keys of transport:get_extra_info: 1 with the value pushed, 0
 * when name is not one (or the transport has no TLS). */
int tl_tls_extra_info(lua_State *L, tapio_transport *t, const char *name) {
  int64_t end;
  if (tapio_transport_get_tls_num(t, TAPIO_TLS_NUM_END) < 0)
    return 0; /* no TLS */
  if (strcmp(name, "peercert") == 0)
    return push_peercert(L, t);
  if (strcmp(name, "cipher") == 0)
    return push_cipher(L, t);
  if (strcmp(name, "compression") == 0)
    return push_info(L, t, TAPIO_TLS_INFO_COMPRESSION);
  if (strcmp(name, "alpn_protocol") == 0)
    return push_info(L, t, TAPIO_TLS_INFO_ALPN);
  if (strcmp(name, "server_hostname") == 0)
    return push_info(L, t, TAPIO_TLS_INFO_SERVER_HOSTNAME);
  if (strcmp(name, "tls_version") == 0)
    return push_info(L, t, TAPIO_TLS_INFO_VERSION);
  if (strcmp(name, "sslcontext") == 0)
    return push_context(L, t);
  if (strcmp(name, "ssl_object") == 0) {
    lua_pushlightuserdata(L, tapio_transport_get_ssl(t));
    return 1;
  }
  if (strcmp(name, "session_reused") == 0) {
    lua_pushboolean(L, tapio_transport_get_tls_num(
                           t, TAPIO_TLS_NUM_SESSION_REUSED) == 1);
    return 1;
  }
  if (strcmp(name, "tls_end") == 0) {
    end = tapio_transport_get_tls_num(t, TAPIO_TLS_NUM_END);
    lua_pushstring(L, end >= 0 && end <= 4 ? end_names[end] : "open");
    return 1;
  }
  return 0;
}

/* What a TLS shell keeps at the end, as asyncio's keeps peercert,
 * cipher, compression and the context (not ssl_object: OpenSSL's object
 * goes with the connection). */
void tl_tls_keep(lua_State *L, tapio_transport *t, int idx) {
  static const char *const keys[] = {
    "peercert", "cipher", "compression", "alpn_protocol", "server_hostname",
    "tls_version", "sslcontext", "session_reused", "tls_end"};
  size_t i;
  if (tapio_transport_get_tls_num(t, TAPIO_TLS_NUM_END) < 0)
    return; /* no TLS */
  for (i = 0; i < sizeof keys / sizeof keys[0]; i++)
    if (tl_tls_extra_info(L, t, keys[i]))
      lua_setfield(L, idx, keys[i]);
}

/* The TLS figures of transport:get_stats. */
void tl_tls_stats(lua_State *L, tapio_transport *t) {
  static const struct { const char *key; int which; } nums[] = {
    {"tls_handshake_usec", TAPIO_TLS_NUM_HANDSHAKE_USEC},
    {"tls_wire_bytes_received", TAPIO_TLS_NUM_WIRE_BYTES_RECEIVED},
    {"tls_wire_bytes_sent", TAPIO_TLS_NUM_WIRE_BYTES_SENT},
  };
  size_t i;
  for (i = 0; i < sizeof nums / sizeof nums[0]; i++) {
    int64_t v = tapio_transport_get_tls_num(t, nums[i].which);
    if (v < 0)
      return;
    lua_pushinteger(L, (lua_Integer)v);
    lua_setfield(L, -2, nums[i].key);
  }
}

/* ---- Module -------------------------------------------------------------- */

static const luaL_Reg loop_methods[] = {
  {"_start_tls", l_start_tls},
  {NULL, NULL}
};

int tl_open_tls(lua_State *L) {
  tl_newclass(L, TL_TLSCTX, ctx_methods);
  lua_setfield(L, -2, "tls_context_methods");
  tl_lifecycle(L, TL_TLSCTX, c_close, c_close, c_tostring);
  lua_pop(L, 1);
  tl_weak_registry(L, &contexts_key);
  lua_pushcfunction(L, u_tls_context);
  lua_setfield(L, -2, "tls_context");
  tl_addmethods(L, TL_LOOP, loop_methods);
  return 0;
}
