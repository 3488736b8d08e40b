"""The resolver benchmark's asyncio side: COUNT lookups of distinct names,
INFLIGHT of them at a time, through loop.getaddrinfo (glibc's getaddrinfo
in asyncio's default thread pool), as the system's resolver configuration
says. Names as in resolve.c; the same one-line output.
Usage: /usr/bin/python3 resolve_asyncio.py COUNT INFLIGHT"""
import asyncio
import socket
import sys
import time


async def main(count, inflight):
    loop = asyncio.get_running_loop()
    slots = asyncio.Semaphore(inflight)
    failed = 0

    async def one(i):
        nonlocal failed
        async with slots:
            try:
                await loop.getaddrinfo("n%d.bench.tapio.test" % i, 80,
                                       family=socket.AF_INET,
                                       type=socket.SOCK_STREAM)
            except OSError:
                failed += 1

    t0 = time.monotonic()
    await asyncio.gather(*(one(i) for i in range(count)))
    secs = time.monotonic() - t0
    print("mode=resolve lookups=%d secs=%.3f lps=%.1f failed=%d"
          % (count, secs, count / secs, failed))
    return failed


sys.exit(1 if asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]))) else 0)
