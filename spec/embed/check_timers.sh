#!/usr/bin/env bash
# tapio_loop_backend_timeout takes the next deadline from the loop's heap
# (src/backend.c), not from libev, which keeps its timers private: a file
# of the core that starts an ev_timer must also put its due time in the
# heap (tapio__deadline_set), or a host polling tapio would sleep through
# that timer. Usage: check_timers.sh SOURCE_DIR
cd "$1/src" || exit 2
bad=0
for f in $(grep -l 'ev_timer_start\|ev_timer_again' ./*.c); do
  if ! grep -q 'tapio__deadline_set' "$f"; then
    echo "FAIL $f starts an ev_timer without tapio__deadline_set"
    bad=1
  fi
done
[ $bad -eq 0 ] && echo "1 passed, 0 failed" || echo "0 passed, 1 failed"
exit $bad
