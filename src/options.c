/* Keyword options for the create_* calls. */
#include "tapio_int.h"

#include <string.h>

struct tapio_options {
  tapio_loop *loop;
  uint32_t set;                 /* bit per enum tapio__opt */
  int64_t ints[TAPIO__OPT_NINT];
  char *local_host;
};

static const struct {
  const char *name;
  int64_t min, max;
} int_options[TAPIO__OPT_NINT] = {
  [TAPIO__OPT_LOCAL_PORT] = {"local_port", 0, 65535},
  [TAPIO__OPT_FAMILY] = {"family", 0, 6},
  [TAPIO__OPT_SOCK] = {"sock", 0, INT32_MAX},
  [TAPIO__OPT_NODELAY] = {"nodelay", 0, 1},
  [TAPIO__OPT_BACKLOG] = {"backlog", 0, INT32_MAX},
  [TAPIO__OPT_REUSE_ADDRESS] = {"reuse_address", 0, 1},
  [TAPIO__OPT_REUSE_PORT] = {"reuse_port", 0, 1},
  [TAPIO__OPT_START_SERVING] = {"start_serving", 0, 1},
  [TAPIO__OPT_CLEANUP_SOCKET] = {"cleanup_socket", 0, 1},
};

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
  if (!o)
    return;
  tapio__strfree(o->loop, o->local_host);
  tapio__free(o->loop, o, sizeof *o);
}

int tapio_options_set_int(tapio_options *o, const char *name, int64_t value) {
  int i;
  if (!o || !name)
    return TAPIO_EINVAL;
  for (i = 0; i < TAPIO__OPT_NINT; i++) {
    if (strcmp(name, int_options[i].name) != 0)
      continue;
    if (value < int_options[i].min || value > int_options[i].max)
      return TAPIO_EINVAL;
    if (i == TAPIO__OPT_FAMILY && value != 0 && value != 4 && value != 6)
      return TAPIO_EINVAL;
    o->ints[i] = value;
    o->set |= 1u << i;
    return 0;
  }
  return TAPIO_EINVAL;
}

int tapio_options_set_str(tapio_options *o, const char *name,
                          const char *value) {
  char *copy;
  if (!o || !name || !value || strcmp(name, "local_host") != 0)
    return TAPIO_EINVAL;
  copy = tapio__strdup(o->loop, value);
  if (!copy)
    return TAPIO_ENOMEM;
  tapio__strfree(o->loop, o->local_host);
  o->local_host = copy;
  return 0;
}

int tapio__opt_is_set(const tapio_options *o, enum tapio__opt which) {
  return o && (o->set & (1u << which));
}

int64_t tapio__opt_int(const tapio_options *o, enum tapio__opt which,
                       int64_t dflt) {
  return tapio__opt_is_set(o, which) ? o->ints[which] : dflt;
}

const char *tapio__opt_local_host(const tapio_options *o) {
  return o ? o->local_host : NULL;
}
