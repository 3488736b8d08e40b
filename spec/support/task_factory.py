"""Eager and lazy tasks on asyncio, for spec/task_factory_spec.lua: each
scenario runs in a new loop, with asyncio.eager_task_factory set
("eager"), create_eager_task_factory(asyncio.Task) ("ctor"), none
("lazy"), or a factory of its own ("custom"), and prints
what happened, in order, one event a line:

    SCENARIO MODE|EVENT

tapio runs the same scenarios and must print the same lines. Waits are
on futures and on turns of the loop (hops: call_soon chains), never on
time, so the order of events is the loop's FIFO order in both.
    python3.13 spec/support/task_factory.py > spec/support/task_factory.out

(spec/task_factory_spec.lua compares with that recording where no Python
3.12 or later is found.)"""
import asyncio
import sys

EVENTS = []


def text(v):
    return v if isinstance(v, str) else repr(v)


def log(*words):
    EVENTS.append(" ".join(text(w) for w in words))


async def hops(n):
    """n turns of the loop: a chain of call_soon, then a future's result
    wakes the caller."""
    loop = asyncio.get_running_loop()
    fut = loop.create_future()

    def hop(k):
        if k == 0:
            fut.set_result(None)
        else:
            loop.call_soon(hop, k - 1)
    loop.call_soon(hop, n)
    await fut


async def returns(name, value=None):
    log("child", name, "runs")
    return value


async def sync_result():
    me = asyncio.current_task()
    log("main before")
    t = asyncio.create_task(returns("a", 42))
    log("created, done:", t.done())
    t.add_done_callback(lambda t: log("done callback:", t.result()))
    log("current is main:", asyncio.current_task() is me)
    await hops(3)
    log("main end:", t.result())


async def suspend_once():
    gate = asyncio.get_running_loop().create_future()

    async def child():
        log("child start")
        v = await gate
        log("child got", v)
        return v
    t = asyncio.create_task(child())
    log("created, done:", t.done())
    gate.set_result("x")
    log("gate set")
    log("main got", await t)


async def error():
    async def child():
        log("child raises")
        raise ValueError("boom")
    t = asyncio.create_task(child())
    log("created, done:", t.done())
    await hops(2)
    log("exception:", str(t.exception()))


async def cancel_self():
    loop = asyncio.get_running_loop()

    async def child():
        log("child start")
        asyncio.current_task().cancel()
        log("child cancelling:", asyncio.current_task().cancelling())
        try:
            await loop.create_future()
        except asyncio.CancelledError:
            log("child cancelled at its await")
            raise
    t = asyncio.create_task(child())
    log("created, done:", t.done())
    await hops(2)
    log("cancelled:", t.cancelled())


async def cancel_by_caller():
    loop = asyncio.get_running_loop()

    async def child():
        log("child start")
        try:
            await loop.create_future()
        except asyncio.CancelledError:
            log("child cancelled at its await")
            raise
    t = asyncio.create_task(child())
    log("cancel:", t.cancel())
    log("done:", t.done())
    await hops(2)
    log("cancelled:", t.cancelled())


async def cancel_raised():
    async def child():
        log("child raises a cancellation")
        raise asyncio.CancelledError()
    t = asyncio.create_task(child())
    log("created, done:", t.done(), "cancelled:", t.cancelled())
    await hops(2)
    log("cancelled:", t.cancelled())


async def cancel_then_return():
    async def child():
        log("child cancels itself, returns")
        asyncio.current_task().cancel()
        return 1
    t = asyncio.create_task(child())
    log("created, done:", t.done(), "cancelled:", t.cancelled())
    await hops(2)
    log("cancelled:", t.cancelled())


async def callbacks_order():
    loop = asyncio.get_running_loop()
    t1 = asyncio.create_task(returns("a"))
    t1.add_done_callback(lambda _: log("callback a"))
    loop.call_soon(log, "call_soon")
    t2 = asyncio.create_task(returns("b"))
    t2.add_done_callback(lambda _: log("callback b"))
    log("main waits")
    await hops(4)
    log("main end")


async def current_task():
    me = asyncio.current_task()
    seen = {}

    async def child():
        seen["current"] = asyncio.current_task()
        seen["listed"] = asyncio.current_task() in asyncio.all_tasks()
        await hops(1)
        seen["current later"] = asyncio.current_task()
    t = asyncio.create_task(child())
    log("current in child is it:", seen.get("current") is t)
    log("child in all_tasks:", seen.get("listed"))
    log("current is main:", asyncio.current_task() is me)
    await t
    log("current in child is it:", seen["current"] is t)
    log("later too:", seen["current later"] is t)
    log("current is main:", asyncio.current_task() is me)


async def nested():
    async def grandchild():
        log("grandchild start")
        await hops(1)
        log("grandchild end")

    async def child():
        log("child start")
        g = asyncio.create_task(grandchild())
        log("child created the grandchild")
        await g
        log("child end")
    log("main before")
    t = asyncio.create_task(child())
    log("main created the child")
    await t
    log("main end")


async def taskgroup_ok():
    gate = asyncio.get_running_loop().create_future()

    async def waits(name):
        log("child", name, "waits")
        v = await gate
        log("child", name, "got", v)
        return v
    async with asyncio.TaskGroup() as tg:
        t1 = tg.create_task(returns("a", "ra"))
        log("a done:", t1.done())
        t2 = tg.create_task(waits("b"))
        log("b done:", t2.done())
        gate.set_result("g")
        log("body end")
    log("group end:", t1.result(), t2.result())


async def taskgroup_error():
    loop = asyncio.get_running_loop()

    async def fails():
        log("child raises")
        raise ValueError("boom")
    try:
        async with asyncio.TaskGroup() as tg:
            t = tg.create_task(fails())
            log("child done:", t.done())
            log("body waits")
            try:
                await loop.create_future()
            except asyncio.CancelledError:
                log("body cancelled")
                raise
    except ExceptionGroup as eg:
        log("group error:", " ".join(str(e) for e in eg.exceptions))


async def timeout_in_step():
    loop = asyncio.get_running_loop()

    async def child():
        log("child start")
        try:
            async with asyncio.timeout(0.01):
                await loop.create_future()
        except TimeoutError:
            log("child timed out")
        return "ok"
    async with asyncio.timeout(10):
        t = asyncio.create_task(child())
        log("created")
        log("main got", await t)
    log("main cancelling:", asyncio.current_task().cancelling())


def shown(v):
    """A gather's item: a cancellation error, another error, or a value."""
    if isinstance(v, asyncio.CancelledError):
        return "cancelled"
    if isinstance(v, BaseException):
        return "error " + str(v)
    return v


async def fails(message):
    log("child raises")
    raise ValueError(message)


async def cancels_itself():
    log("child cancels itself, returns")
    asyncio.current_task().cancel()
    return 1


async def gather_eager():
    """Children that all finish when made: eager ones gather at once."""
    loop = asyncio.get_running_loop()
    loop.call_soon(log, "call_soon")
    r = await asyncio.gather(returns("a", 1), returns("b", 2))
    log("gathered", *r)
    await hops(1)
    log("main end")


async def gather_done_futures():
    """Futures done already: gathered at once, in both modes."""
    loop = asyncio.get_running_loop()
    f1 = loop.create_future()
    f1.set_result("x")
    f2 = loop.create_future()
    f2.set_exception(ValueError("boom"))
    f3 = loop.create_future()
    f3.cancel()
    loop.call_soon(log, "call_soon")
    r = await asyncio.gather(f1, f2, f3, f1, return_exceptions=True)
    log("gathered", *[shown(v) for v in r])
    await hops(1)
    log("main end")


async def gather_finished_later():
    """A future listed before the eager child that finishes it was not
    done at its turn: its callback comes from the loop."""
    loop = asyncio.get_running_loop()
    f = loop.create_future()

    async def finishes():
        log("child finishes f")
        f.set_result("f")
        return "c"
    loop.call_soon(log, "call_soon")
    r = await asyncio.gather(f, finishes())
    log("gathered", *r)
    await hops(1)
    log("main end")


async def gather_eager_error():
    loop = asyncio.get_running_loop()
    loop.call_soon(log, "call_soon")
    try:
        await asyncio.gather(returns("a"), fails("boom"), returns("b"))
    except ValueError as e:
        log("gather raised", str(e))
    await hops(1)
    log("main end")


async def gather_eager_cancelled():
    loop = asyncio.get_running_loop()
    loop.call_soon(log, "call_soon")
    try:
        await asyncio.gather(returns("a"), cancels_itself())
    except asyncio.CancelledError:
        log("gather raised cancelled")
    log("main cancelling:", asyncio.current_task().cancelling())
    r = await asyncio.gather(cancels_itself(), returns("b", 2),
                             return_exceptions=True)
    log("gathered", *[shown(v) for v in r])
    await hops(1)
    log("main end")


async def gather_cancel():
    """A gather of one finished child and one waiting, cancelled."""
    loop = asyncio.get_running_loop()

    async def waits():
        log("child b waits")
        try:
            await loop.create_future()
        except asyncio.CancelledError:
            log("child b cancelled")
            raise

    async def gathers():
        return await asyncio.gather(returns("a", 1), waits())
    g = asyncio.create_task(gathers())
    log("g done:", g.done())
    await hops(1)
    log("cancel:", g.cancel())
    try:
        await g
    except asyncio.CancelledError:
        log("g cancelled:", g.cancelled())
    await hops(1)
    log("main end")


def counting(eager):
    made = []

    def factory(loop, coro, **kw):
        made.append(1)
        if eager:
            return asyncio.eager_task_factory(loop, coro, **kw)
        return asyncio.Task(coro, loop=loop, **kw)
    return factory, made


async def custom(eager):
    loop = asyncio.get_running_loop()
    factory, made = counting(eager)
    loop.set_task_factory(factory)
    log("factory is it:", loop.get_task_factory() is factory)
    t1 = loop.create_task(returns("a"))
    t2 = asyncio.create_task(returns("b"))
    log("made", len(made))
    async with asyncio.TaskGroup() as tg:
        tg.create_task(returns("c"))
    log("made", len(made))
    await asyncio.gather(returns("d"), returns("e"))
    await t1
    await t2
    log("made", len(made))
    loop.set_task_factory(None)
    log("factory:", loop.get_task_factory())
    asyncio.create_task(returns("f"))
    log("made", len(made))
    await hops(1)


async def bad_factory():
    loop = asyncio.get_running_loop()
    try:
        loop.set_task_factory(42)
    except TypeError:
        log("error")
    log("factory:", loop.get_task_factory())


async def constructor():
    """create_eager_task_factory with a constructor of its own: it is
    called for every task, each starting eagerly, also one made in
    another's eager step; its error reaches create_task's caller."""
    loop = asyncio.get_running_loop()

    def ctor(coro, *, loop, **kw):
        log("constructor")
        return asyncio.Task(coro, loop=loop, **kw)
    loop.set_task_factory(asyncio.create_eager_task_factory(ctor))

    async def outer():
        log("outer start")
        inner = asyncio.create_task(returns("inner", 2))
        log("inner done:", inner.done())
        await hops(1)
        return inner.result()
    t = asyncio.create_task(outer())
    log("outer done:", t.done())
    log("result:", await t)

    def refuses(coro, **kw):
        coro.close()
        raise ValueError("no")
    loop.set_task_factory(asyncio.create_eager_task_factory(refuses))
    try:
        asyncio.create_task(returns("x"))
    except ValueError:
        log("constructor error raised")
    loop.set_task_factory(None)  # asyncio.run's shutdown makes tasks


SCENARIOS = [sync_result, suspend_once, error, cancel_self,
             cancel_by_caller, cancel_raised, cancel_then_return,
             callbacks_order, current_task, nested, taskgroup_ok,
             taskgroup_error, timeout_in_step, gather_eager,
             gather_done_futures, gather_finished_later, gather_eager_error,
             gather_eager_cancelled, gather_cancel]

# Run again with create_eager_task_factory(asyncio.Task) ("ctor"): what
# eager_task_factory does.
CTOR_SCENARIOS = [sync_result, suspend_once, error, cancel_self, nested,
                  taskgroup_error, gather_eager]


def run(name, mode, main):
    """main() in a new loop whose factory mode says, its events printed."""
    async def body():
        if mode == "eager":
            asyncio.get_running_loop().set_task_factory(
                asyncio.eager_task_factory)
        elif mode == "ctor":
            asyncio.get_running_loop().set_task_factory(
                asyncio.create_eager_task_factory(asyncio.Task))
        await main()
    EVENTS.clear()
    asyncio.run(body())
    for e in EVENTS:
        print("%s %s|%s" % (name, mode, e))


def not_running():
    """The factory set on a loop not running: the task waits for it."""
    loop = asyncio.new_event_loop()
    loop.set_task_factory(asyncio.eager_task_factory)
    EVENTS.clear()
    t = loop.create_task(returns("a", 1))
    log("created, done:", t.done())
    log("result:", loop.run_until_complete(t))
    loop.close()
    for e in EVENTS:
        print("not_running eager|%s" % e)


def main():
    for scenario in SCENARIOS:
        for mode in ("eager", "lazy"):
            run(scenario.__name__, mode, scenario)
    run("custom", "lazy", lambda: custom(False))
    run("custom", "eager", lambda: custom(True))
    run("bad_factory", "lazy", bad_factory)
    for scenario in CTOR_SCENARIOS:
        run(scenario.__name__, "ctor", scenario)
    run("constructor", "lazy", constructor)
    not_running()
    sys.stdout.flush()


if __name__ == "__main__":
    main()
