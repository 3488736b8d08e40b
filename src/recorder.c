/* The recorder: a stream protocol that writes down each callback with its
 * arguments, as text a test compares ("data_received:abc"), then passes
 * it on to an inner protocol. The events are kept back to back in one
 * buffer, separated by '\n', so that the whole sequence is one C string
 * and an event is a slice of it. */
#include "tapio_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { NO_DATA, DATA, BUFFER }; /* what the last event is, for merging */

struct tapio_recorder {
  const tapio_protocol *inner;
  void *inner_ud;
  int flags;
  tapio_protocol table;  /* ours: a BufferedProtocol's when inner is one */
  char *text;            /* the events, '\n' between them, NUL after */
  size_t len, cap;
  size_t *starts;        /* where event i starts in text */
  size_t count, scap;
  int last;              /* NO_DATA, DATA or BUFFER */
  char *buf;             /* what the inner get_buffer gave last */
  tapio_transport *t;
};

/* ---- The events ---------------------------------------------------------- */

/* A recorder belongs to no loop (it may outlive one, which calls it as
 * it is freed): plain malloc. */
static int reserve(tapio_recorder *r, size_t more) {
  size_t cap = r->cap ? r->cap : 256;
  char *text;
  if (r->len + more + 1 <= r->cap)
    return 0;
  while (cap < r->len + more + 1)
    cap *= 2;
  if (!(text = realloc(r->text, cap)))
    return TAPIO_ENOMEM;
  r->text = text;
  r->cap = cap;
  return 0;
}

static int new_start(tapio_recorder *r) {
  size_t *starts;
  size_t cap = r->scap ? 2 * r->scap : 16;
  if (r->count < r->scap)
    return 0;
  if (!(starts = realloc(r->starts, cap * sizeof *starts)))
    return TAPIO_ENOMEM;
  r->starts = starts;
  r->scap = cap;
  return 0;
}

static void append(tapio_recorder *r, const char *p, size_t n) {
  memcpy(r->text + r->len, p, n);
  r->len += n;
  r->text[r->len] = '\0';
}

/* A new event: name, then ':' and n bytes of arg when arg is given. One
 * that cannot get memory is left out (a callback cannot fail). */
static void record(tapio_recorder *r, const char *name, const char *arg,
                   size_t n, int kind) {
  size_t nlen = strlen(name);
  if (reserve(r, nlen + n + 2) < 0 || new_start(r) < 0)
    return;
  if (r->count)
    append(r, "\n", 1);
  r->starts[r->count++] = r->len;
  append(r, name, nlen);
  if (arg) {
    append(r, ":", 1);
    append(r, arg, n);
  }
  r->last = kind;
}

/* Bytes received: one event, or more of the last one when merging. */
static void record_data(tapio_recorder *r, const char *name, int kind,
                        const char *data, size_t n) {
  if ((r->flags & TAPIO_RECORDER_MERGE) && r->last == kind) {
    if (reserve(r, n) == 0)
      append(r, data, n);
    return;
  }
  record(r, name, data, n, kind);
}

/* ---- The protocol -------------------------------------------------------- */

static void on_made(void *ud, tapio_transport *t) {
  tapio_recorder *r = ud;
  r->t = t;
  record(r, "connection_made", NULL, 0, NO_DATA);
  if (r->inner && r->inner->connection_made)
    r->inner->connection_made(r->inner_ud, t);
}

static void on_lost(void *ud, tapio_transport *t, int code,
                    const char *message) {
  tapio_recorder *r = ud;
  const char *what = code ? tapio_errname(code) : "nil";
  record(r, "connection_lost", what, strlen(what), NO_DATA);
  r->t = NULL;
  if (r->inner && r->inner->connection_lost)
    r->inner->connection_lost(r->inner_ud, t, code, message);
}

static void on_pause(void *ud, tapio_transport *t) {
  tapio_recorder *r = ud;
  record(r, "pause_writing", NULL, 0, NO_DATA);
  if (r->inner && r->inner->pause_writing)
    r->inner->pause_writing(r->inner_ud, t);
}

static void on_resume(void *ud, tapio_transport *t) {
  tapio_recorder *r = ud;
  record(r, "resume_writing", NULL, 0, NO_DATA);
  if (r->inner && r->inner->resume_writing)
    r->inner->resume_writing(r->inner_ud, t);
}

static void on_data(void *ud, tapio_transport *t, const char *data,
                    size_t len) {
  tapio_recorder *r = ud;
  record_data(r, "data_received", DATA, data, len);
  if (r->inner && r->inner->data_received)
    r->inner->data_received(r->inner_ud, t, data, len);
}

static int on_eof(void *ud, tapio_transport *t) {
  tapio_recorder *r = ud;
  record(r, "eof_received", NULL, 0, NO_DATA);
  if (r->inner && r->inner->eof_received)
    return r->inner->eof_received(r->inner_ud, t);
  return 0;
}

static void *on_get_buffer(void *ud, tapio_transport *t, int64_t sizehint,
                           size_t *len) {
  tapio_recorder *r = ud;
  char hint[24];
  if (!(r->flags & TAPIO_RECORDER_MERGE)) {
    snprintf(hint, sizeof hint, "%lld", (long long)sizehint);
    record(r, "get_buffer", hint, strlen(hint), NO_DATA);
  }
  r->buf = r->inner->get_buffer(r->inner_ud, t, sizehint, len);
  return r->buf;
}

static void on_buffer_updated(void *ud, tapio_transport *t, size_t n) {
  tapio_recorder *r = ud;
  record_data(r, "buffer_updated", BUFFER, r->buf, n);
  if (r->inner->buffer_updated)
    r->inner->buffer_updated(r->inner_ud, t, n);
}

int tapio_recorder_new(const tapio_protocol *inner, void *inner_ud,
                       int flags, tapio_recorder **out) {
  tapio_recorder *r;
  if (out)
    *out = NULL;
  if (!out || (flags & ~TAPIO_RECORDER_MERGE) ||
      (inner && tapio__proto_check(inner, sizeof *inner) < 0))
    return TAPIO_EINVAL;
  if (!(r = calloc(1, sizeof *r)))
    return TAPIO_ENOMEM;
  r->inner = inner;
  r->inner_ud = inner_ud;
  r->flags = flags;
  r->table.size = sizeof r->table;
  r->table.connection_made = on_made;
  r->table.connection_lost = on_lost;
  r->table.pause_writing = on_pause;
  r->table.resume_writing = on_resume;
  r->table.eof_received = on_eof;
  if (inner && inner->get_buffer) {
    r->table.get_buffer = on_get_buffer;
    r->table.buffer_updated = on_buffer_updated;
  } else {
    r->table.data_received = on_data;
  }
  *out = r;
  return 0;
}

const tapio_protocol *tapio_recorder_protocol(tapio_recorder *r) {
  return r ? &r->table : NULL;
}

size_t tapio_recorder_count(tapio_recorder *r) { return r ? r->count : 0; }

const char *tapio_recorder_event(tapio_recorder *r, size_t i, size_t *len) {
  size_t end;
  if (len)
    *len = 0;
  if (!r || i >= r->count)
    return NULL;
  end = i + 1 < r->count ? r->starts[i + 1] - 1 : r->len;
  if (len)
    *len = end - r->starts[i];
  return r->text + r->starts[i];
}

const char *tapio_recorder_events(tapio_recorder *r) {
  return r && r->text ? r->text : "";
}

void tapio_recorder_clear(tapio_recorder *r) {
  if (!r)
    return;
  r->count = r->len = 0;
  r->last = NO_DATA;
  if (r->text)
    r->text[0] = '\0';
}

tapio_transport *tapio_recorder_transport(tapio_recorder *r) {
  return r ? r->t : NULL;
}

void tapio_recorder_free(tapio_recorder *r) {
  if (!r)
    return;
  free(r->text);
  free(r->starts);
  free(r);
}
