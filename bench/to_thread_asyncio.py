"""asyncio.to_thread's round trip, to set beside bench/to_thread.lua:
empty jobs one at a time from a coroutine and from 64 at once, on the
default executor with 1 and 4 threads.
Usage: python3 bench/to_thread_asyncio.py [jobs]   (50000 by default)"""
import asyncio
import concurrent.futures
import sys
import time

JOBS = int(sys.argv[1]) if len(sys.argv) > 1 else 50000


def empty():
    pass


async def measure(inflight, threads):
    loop = asyncio.get_running_loop()
    loop.set_default_executor(
        concurrent.futures.ThreadPoolExecutor(max_workers=threads))
    per = JOBS // inflight

    async def one():
        for _ in range(per):
            await asyncio.to_thread(empty)

    t0 = time.monotonic()
    await asyncio.gather(*(one() for _ in range(inflight)))
    secs = time.monotonic() - t0
    n = per * inflight
    print("%d thread%s, %2d in flight: %8.0f jobs/s  %6.2f us a job"
          % (threads, "s" if threads > 1 else " ", inflight, n / secs,
             secs / n * 1e6))


for inflight, threads in ((1, 1), (1, 4), (64, 1), (64, 4)):
    asyncio.run(measure(inflight, threads))
