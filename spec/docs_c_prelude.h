/* What the READMEs' C fragments take as given (spec/docs_c.sh compiles
 * each as the body of a function after this). */
#include <stdio.h>

#include <lauxlib.h>
#include <lualib.h>

#include "tapio.h"
#include "tapio_host.h"

extern tapio_loop *loop;
extern tapio_options *opts;
extern const tapio_protocol proto;
extern void *ud, *cb_ud;
void cb(void *ud, int status, tapio_transport *t);
void *my_alloc(void *ud, void *ptr, size_t osize, size_t nsize);
