/* A preloaded library for the counted rows: time() always answers the
 * same second. Lua 5.4 seeds its string hashes with time(NULL) when a
 * state is made, so from one second to the next the same server lays its
 * tables out differently and counts up to 0.7% more or fewer
 * instructions (bench/README.md, "Counted rows"); Python's seed is fixed
 * with PYTHONHASHSEED the same way. Only time() is replaced: the clocks
 * a loop reads (clock_gettime) keep running, and cost what they cost.
 *
 *   LD_PRELOAD=build/bench/libfixtime.so SERVER ... */
#include <time.h>

enum { FIXED_SECOND = 1767225600 }; /* 2026-01-01 00:00:00 UTC */

time_t time(time_t *t)
{
  if (t)
    *t = FIXED_SECOND;
  return FIXED_SECOND;
}
