# The spawn benchmark's Python side: N children of PROGRAM, K in flight,
# each an asyncio subprocess_exec (stdio on /dev/null) awaited to its
# exit. Uses the default event loop (the unix selector loop and its pidfd
# or thread child watcher, whichever this Python picks).
# Usage: python3 spawn_asyncio.py PROGRAM N K
import asyncio
import resource
import subprocess
import sys
import time


def cpu():
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


async def main(program, total, k):
    loop = asyncio.get_running_loop()
    left = total

    async def worker():
        nonlocal left
        while left > 0:
            left -= 1
            done = loop.create_future()

            class Child(asyncio.SubprocessProtocol):
                def connection_lost(self, exc):
                    done.set_result(None)

            transport, _ = await loop.subprocess_exec(
                Child, program, stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            await done
            assert transport.get_returncode() == 0, "a child failed"
            transport.close()

    start, cpu0 = time.monotonic(), cpu()
    await asyncio.gather(*(worker() for _ in range(min(k, total))))
    secs, used = time.monotonic() - start, cpu() - cpu0
    print("children=%d seconds=%.4f spawns_per_s=%.1f cpu_us_per_spawn=%.1f"
          % (total, secs, total / secs, used * 1e6 / total))


asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
