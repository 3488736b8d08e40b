#!/usr/bin/env bash
# tapio_loop_backend_timeout takes the next deadline from the loop's heap
# (src/backend.c), not from libev, which keeps its timers private: every
# timer of the core is a tapio__timer (backend.c), which keeps libev's
# timer and its due time together. No other file of the core may start,
# set or stop an ev_timer itself, or a host polling tapio would sleep
# through that timer. Usage: check_timers.sh SOURCE_DIR
cd "$1/src" || exit 2
bad=0
for f in $(grep -l 'ev_timer_\(start\|again\|set\|init\|stop\)' ./*.c); do
  if [ "$f" != ./backend.c ]; then
    echo "FAIL $f uses an ev_timer directly: make it a tapio__timer"
    bad=1
  fi
done
[ $bad -eq 0 ] && echo "1 passed, 0 failed" || echo "0 passed, 1 failed"
exit $bad
