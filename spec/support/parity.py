"""Scenarios of asyncio's task and sync API, each writing down what
happens, in order: spec/parity_spec.lua runs the same scenarios on tapio
and compares the two lists line by line. Prints "scenario|event" lines.
Written for the Python 3.11 in Debian 12: only what 3.11 and tapio agree
on by design (lua/README.md says where tapio follows 3.13)."""
import asyncio
import sys

SCENARIOS = {}


def scenario(fn):
    SCENARIOS[fn.__name__] = fn
    return fn


@scenario
async def callbacks_in_order(out):
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    loop.call_later(0.02, out.append, "later 0.02")
    loop.call_later(0.01, out.append, "later 0.01")
    for name in ("soon a", "soon b", "soon c"):
        loop.call_soon(out.append, name)
    fut = loop.create_future()
    fut.add_done_callback(lambda f: out.append("done 1"))
    fut.add_done_callback(lambda f: out.append("done 2"))
    fut.set_result(None)
    out.append("set")
    loop.call_later(0.03, done.set_result, None)
    await done


@scenario
async def gather_first_error(out):
    async def a():
        await asyncio.sleep(0.01)
        raise ValueError("boom")

    async def b():
        await asyncio.sleep(0.03)
        out.append("b finished")

    tb = asyncio.ensure_future(b())
    try:
        await asyncio.gather(a(), tb)
    except ValueError as e:
        out.append("gather raised " + str(e))
    out.append("b cancelled: %s" % tb.cancelled())
    await tb
    out.append("b done")


@scenario
async def gather_cancelled(out):
    async def child(name):
        try:
            await asyncio.sleep(1)
        except asyncio.CancelledError:
            out.append(name + " cancelled")
            raise

    g = asyncio.gather(child("a"), child("b"))
    await asyncio.sleep(0.01)
    g.cancel()
    try:
        await g
    except asyncio.CancelledError:
        out.append("gather cancelled")


@scenario
async def wait_for_timeout(out):
    async def inner():
        try:
            await asyncio.sleep(1)
        except asyncio.CancelledError:
            out.append("inner cleans up")
            await asyncio.sleep(0.01)
            out.append("inner cleaned up")
            raise

    t = asyncio.ensure_future(inner())
    try:
        await asyncio.wait_for(t, 0.01)
    except asyncio.TimeoutError:
        out.append("timed out")
    out.append("inner cancelled: %s" % t.cancelled())


@scenario
async def shield_keeps_inner(out):
    async def inner():
        await asyncio.sleep(0.02)
        out.append("inner finished")
        return 7

    it = asyncio.ensure_future(inner())

    async def outer():
        try:
            await asyncio.shield(it)
        except asyncio.CancelledError:
            out.append("outer cancelled")
            raise

    o = asyncio.ensure_future(outer())
    await asyncio.sleep(0.01)
    o.cancel()
    await asyncio.sleep(0.03)
    out.append("inner result %d" % it.result())


@scenario
async def cancel_caught(out):
    async def stubborn():
        try:
            await asyncio.sleep(1)
        except asyncio.CancelledError:
            out.append("caught")
        return "ok"

    t = asyncio.ensure_future(stubborn())
    await asyncio.sleep(0)
    out.append("cancel: %s" % t.cancel())
    res = await t
    out.append("result %s, cancelled %s, cancel again %s"
               % (res, t.cancelled(), t.cancel()))


@scenario
async def lock_first_come(out):
    lock = asyncio.Lock()
    await lock.acquire()

    async def worker(name):
        out.append(name + " waits")
        async with lock:
            out.append(name + " holds")
            await asyncio.sleep(0)
        out.append(name + " released")

    ts = [asyncio.ensure_future(worker(n)) for n in ("w1", "w2", "w3")]
    await asyncio.sleep(0)
    out.append("main releases")
    lock.release()
    await asyncio.gather(*ts)


@scenario
async def lock_woken_then_cancelled(out):
    lock = asyncio.Lock()
    await lock.acquire()

    async def worker(name):
        try:
            async with lock:
                out.append(name + " holds")
        except asyncio.CancelledError:
            out.append(name + " cancelled")

    t1 = asyncio.ensure_future(worker("w1"))
    t2 = asyncio.ensure_future(worker("w2"))
    await asyncio.sleep(0)
    lock.release()  # w1 is woken
    t1.cancel()     # and cancelled before it runs: w2 gets its turn
    await asyncio.gather(t1, t2)
    out.append("locked: %s" % lock.locked())


@scenario
async def semaphore_order(out):
    sem = asyncio.Semaphore(2)

    async def worker(name, delay):
        async with sem:
            out.append(name + " in")
            await asyncio.sleep(delay)
        out.append(name + " out")

    await asyncio.gather(worker("a", 0.05), worker("b", 0.01),
                         worker("c", 0.01), worker("d", 0.01))


@scenario
async def event_wakes_all(out):
    ev = asyncio.Event()

    async def waiter(name):
        out.append(name + " waits")
        await ev.wait()
        out.append(name + " woken")

    ts = [asyncio.ensure_future(waiter(n)) for n in ("a", "b", "c")]
    await asyncio.sleep(0)
    ev.set()
    out.append("set")
    await asyncio.gather(*ts)


@scenario
async def condition_notify(out):
    cond = asyncio.Condition()

    async def waiter(name):
        async with cond:
            await cond.wait()
            out.append(name + " notified")

    ts = [asyncio.ensure_future(waiter(n)) for n in ("a", "b", "c")]
    await asyncio.sleep(0)
    async with cond:
        cond.notify(1)
    await asyncio.sleep(0.01)
    async with cond:
        cond.notify(2)
    await asyncio.gather(*ts)


@scenario
async def queue_bounded(out):
    q = asyncio.Queue(1)

    async def producer():
        for i in (1, 2, 3):
            await q.put(i)
            out.append("put %d" % i)

    async def consumer():
        for _ in range(3):
            out.append("got %d" % await q.get())
            q.task_done()

    await asyncio.gather(producer(), consumer())
    await q.join()
    out.append("joined")


@scenario
async def task_group_child_fails(out):
    async def bad():
        await asyncio.sleep(0.01)
        raise ValueError("boom")

    async def good():
        try:
            await asyncio.sleep(1)
        except asyncio.CancelledError:
            out.append("good cancelled")
            raise

    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(good())
            tg.create_task(bad())
            out.append("body done")
    except ExceptionGroup as eg:
        out.append("group raised %d: %s" % (len(eg.exceptions),
                                           eg.exceptions[0]))
    # (3.11 leaves the task's cancelling() at 1 here, 3.13 at 0 as tapio:
    # not compared)


@scenario
async def timeout_expires(out):
    try:
        async with asyncio.timeout(0.01):
            try:
                await asyncio.sleep(1)
            except asyncio.CancelledError:
                out.append("body cancelled")
                raise
    except TimeoutError:
        out.append("timeout")
    out.append("cancelling %d" % asyncio.current_task().cancelling())


@scenario
async def wait_first_completed(out):
    async def after(delay, name):
        await asyncio.sleep(delay)
        return name

    a = asyncio.ensure_future(after(0.01, "a"))
    b = asyncio.ensure_future(after(0.05, "b"))
    done, pending = await asyncio.wait([a, b],
                                       return_when=asyncio.FIRST_COMPLETED)
    out.append("done %s, pending %s" % (
        [t.result() for t in done], len(pending)))
    b.cancel()
    done, pending = await asyncio.wait([b])
    out.append("b cancelled: %s" % b.cancelled())


@scenario
async def as_completed_order(out):
    async def after(delay, name):
        await asyncio.sleep(delay)
        return name

    for fut in asyncio.as_completed([after(0.03, "c"), after(0.01, "a"),
                                     after(0.02, "b")]):
        out.append(await fut)


@scenario
async def barrier_parties(out):
    barrier = asyncio.Barrier(3)

    async def party(name):
        out.append(name + " arrives")
        await barrier.wait()
        out.append(name + " passes")

    await asyncio.gather(party("a"), party("b"), party("c"))
    out.append("waiting %d" % barrier.n_waiting)


@scenario
async def wait_for_inner_returns(out):
    async def inner():
        try:
            await asyncio.sleep(1)
        except asyncio.CancelledError:
            out.append("inner declines the cancel")
        return "late value"

    out.append("wait_for returned %s" % await asyncio.wait_for(inner(), 0.01))


@scenario
async def gather_return_exceptions(out):
    async def bad():
        raise ValueError("boom")

    async def good():
        return "fine"

    async def slow():
        await asyncio.sleep(1)

    s = asyncio.ensure_future(slow())
    asyncio.get_running_loop().call_later(0.01, s.cancel)
    res = await asyncio.gather(good(), bad(), s, return_exceptions=True)
    out.append("0: %s" % res[0])
    out.append("1: %s" % res[1])
    out.append("2 cancelled: %s" % isinstance(res[2],
                                              asyncio.CancelledError))


@scenario
async def queue_getter_woken_then_cancelled(out):
    q = asyncio.Queue()

    async def getter(name):
        try:
            out.append("%s got %s" % (name, await q.get()))
        except asyncio.CancelledError:
            out.append(name + " cancelled")

    g1 = asyncio.ensure_future(getter("g1"))
    g2 = asyncio.ensure_future(getter("g2"))
    await asyncio.sleep(0)
    q.put_nowait("x")  # g1 is woken
    g1.cancel()        # and cancelled before it runs: g2 gets the item
    await asyncio.gather(g1, g2)
    out.append("left %d" % q.qsize())


@scenario
async def lock_no_barging(out):
    lock = asyncio.Lock()
    await lock.acquire()

    async def worker(name):
        async with lock:
            out.append(name + " holds")
            await asyncio.sleep(0)

    w = asyncio.ensure_future(worker("waiter"))
    await asyncio.sleep(0)
    lock.release()  # the waiter is woken; a newcomer now must queue
    n = asyncio.ensure_future(worker("newcomer"))
    await asyncio.gather(w, n)


@scenario
async def condition_wait_cancelled(out):
    cond = asyncio.Condition()

    async def waiter():
        async with cond:
            try:
                await cond.wait()
            except asyncio.CancelledError:
                out.append("cancelled, holding the lock: %s" % cond.locked())
                raise

    t = asyncio.ensure_future(waiter())
    await asyncio.sleep(0)
    t.cancel()
    try:
        await t
    except asyncio.CancelledError:
        out.append("waiter cancelled")
    out.append("locked after: %s" % cond.locked())


@scenario
async def event_set_then_cleared(out):
    ev = asyncio.Event()

    async def waiter():
        out.append("woken: %s" % await ev.wait())

    t = asyncio.ensure_future(waiter())
    await asyncio.sleep(0)
    ev.set()
    ev.clear()  # before the waiter runs: it was woken all the same
    await t
    out.append("is_set: %s" % ev.is_set())


@scenario
async def shield_inner_fails(out):
    async def inner():
        await asyncio.sleep(0.01)
        raise ValueError("inner broke")

    try:
        await asyncio.shield(inner())
    except ValueError as e:
        out.append("shield raised %s" % e)


@scenario
async def task_group_body_fails(out):
    async def child():
        try:
            await asyncio.sleep(1)
        except asyncio.CancelledError:
            out.append("child cancelled")
            raise

    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(child())
            await asyncio.sleep(0)
            raise ValueError("body broke")
    except ExceptionGroup as eg:
        out.append("group raised %d: %s" % (len(eg.exceptions),
                                           eg.exceptions[0]))


@scenario
async def wait_first_exception(out):
    async def after(delay, fail):
        await asyncio.sleep(delay)
        if fail:
            raise ValueError("boom")
        return delay

    ts = [asyncio.ensure_future(after(d, f))
          for d, f in ((0.01, False), (0.02, True), (0.03, False))]
    done, pending = await asyncio.wait(
        ts, return_when=asyncio.FIRST_EXCEPTION)
    out.append("done %d, pending %d" % (len(done), len(pending)))
    out.append("third done: %s" % ts[2].done())
    await asyncio.wait(ts)
    out.append("errors %d" % sum(1 for t in ts if t.exception()))


@scenario
async def as_completed_timeout(out):
    async def after(delay, name):
        await asyncio.sleep(delay)
        return name

    slow = asyncio.ensure_future(after(1, "slow"))
    try:
        for fut in asyncio.as_completed([after(0.01, "quick"), slow],
                                        timeout=0.05):
            out.append(await fut)
    except asyncio.TimeoutError:
        out.append("timed out")
    out.append("slow cancelled: %s" % slow.cancelled())
    slow.cancel()


@scenario
async def barrier_abort(out):
    barrier = asyncio.Barrier(3)

    async def party(name):
        try:
            await barrier.wait()
        except asyncio.BrokenBarrierError:
            out.append(name + " broken")

    ts = [asyncio.ensure_future(party(n)) for n in ("a", "b")]
    await asyncio.sleep(0)
    await barrier.abort()
    await asyncio.gather(*ts)
    out.append("broken: %s" % barrier.broken)


@scenario
async def done_callback_added_late(out):
    loop = asyncio.get_running_loop()
    fut = loop.create_future()
    fut.set_result(1)
    fut.add_done_callback(lambda f: out.append("late callback"))
    loop.call_soon(out.append, "soon after it")
    out.append("added")
    await asyncio.sleep(0)
    await asyncio.sleep(0)


# StreamReader, fed by hand (feed_data, feed_eof): each read's result as
# [bytes], or its error as the error's name, its fields and message.
def outcome(value):
    return "[%s]" % value.decode("latin-1").replace("\n", "\\n")


async def attempt(out, label, coro):
    try:
        out.append("%s -> %s" % (label, outcome(await coro)))
    except asyncio.IncompleteReadError as e:
        out.append("%s -> IncompleteReadError partial %s expected %s: %s"
                   % (label, outcome(e.partial), e.expected, e))
    except asyncio.LimitOverrunError as e:
        out.append("%s -> LimitOverrunError consumed %d: %s"
                   % (label, e.consumed, e))
    except ValueError as e:  # readline over the limit (tapio: LimitOverrun)
        out.append("%s -> LimitOverrunError: %s" % (label, e))


@scenario
async def reader_lines_and_limit(out):
    r = asyncio.StreamReader(limit=7)
    r.feed_data(b"1234567\n12345678\nab")
    r.feed_eof()
    await attempt(out, "readline", r.readline())
    await attempt(out, "readline", r.readline())
    await attempt(out, "readline", r.readline())
    await attempt(out, "readline", r.readline())
    out.append("at_eof %s" % r.at_eof())


@scenario
async def reader_line_over_limit_unfinished(out):
    r = asyncio.StreamReader(limit=4)
    r.feed_data(b"abcdefghij")
    await attempt(out, "readline", r.readline())
    r.feed_data(b"xy\n")
    r.feed_eof()
    await attempt(out, "read", r.read())


@scenario
async def reader_readexactly(out):
    r = asyncio.StreamReader()
    r.feed_data(b"abcdef")
    await attempt(out, "readexactly 4", r.readexactly(4))
    await attempt(out, "readexactly 0", r.readexactly(0))
    r.feed_eof()
    await attempt(out, "readexactly 5", r.readexactly(5))
    await attempt(out, "read", r.read())


@scenario
async def reader_readuntil(out):
    r = asyncio.StreamReader(limit=6)
    r.feed_data(b"ab--cdefghij")
    await attempt(out, "readuntil --", r.readuntil(b"--"))
    await attempt(out, "readuntil --", r.readuntil(b"--"))
    r.feed_data(b"k--")
    await attempt(out, "readuntil --", r.readuntil(b"--"))
    await attempt(out, "read 4", r.read(4))
    r.feed_data(b"rest")
    r.feed_eof()
    await attempt(out, "readuntil --", r.readuntil(b"--"))
    await attempt(out, "read", r.read())


@scenario
async def reader_read_sizes(out):
    loop = asyncio.get_running_loop()
    r = asyncio.StreamReader()
    await attempt(out, "read 0", r.read(0))
    loop.call_soon(r.feed_data, b"hello")
    await attempt(out, "read 3", r.read(3))
    await attempt(out, "read 10", r.read(10))
    loop.call_soon(r.feed_data, b"wor")
    loop.call_soon(r.feed_data, b"ld\nand more")
    await attempt(out, "readline", r.readline())
    loop.call_soon(r.feed_eof)
    await attempt(out, "read", r.read())
    await attempt(out, "read", r.read())
    out.append("at_eof %s" % r.at_eof())


@scenario
async def reader_at_eof(out):
    r = asyncio.StreamReader()
    out.append("fresh: at_eof %s" % r.at_eof())
    r.feed_data(b"ab")
    r.feed_eof()
    out.append("fed: at_eof %s" % r.at_eof())
    await attempt(out, "read 1", r.read(1))
    out.append("at_eof %s" % r.at_eof())
    await attempt(out, "read 1", r.read(1))
    out.append("at_eof %s" % r.at_eof())


@scenario
async def reader_exception(out):
    r = asyncio.StreamReader()
    r.feed_data(b"buffered")
    r.set_exception(ConnectionResetError("reset by peer"))
    try:
        await r.read(3)
    except ConnectionResetError as e:
        out.append("read raised %s" % e)


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """A loop whose time moves only when nothing is ready: then to the
    next timer that is not cancelled (as tapio.testing's clock is moved by
    the spec). So the order of events depends on no machine's speed.
    (It reads the private _ready and _scheduled of asyncio's base loop,
    as CPython's own TestLoop does.)"""

    def __init__(self):
        super().__init__()
        self._now = 0.0

    def time(self):
        return self._now

    def _run_once(self):
        if not self._ready:
            due = [h._when for h in self._scheduled if not h._cancelled]
            if due and min(due) > self._now:
                self._now = min(due)
        super()._run_once()


def main():
    names = sys.argv[1:] or list(SCENARIOS)
    for name in names:
        out = []
        loop = VirtualClockLoop()
        try:
            loop.run_until_complete(SCENARIOS[name](out))
        finally:
            loop.close()
        for event in out:
            print("%s|%s" % (name, event))


main()
