# A job runner (Python 3.13): each line of FILE is a shell command, run as
# a child process by a pool of WORKERS tasks that take the jobs from a
# queue; at most RUNNING children run at once (a semaphore) and each has
# TIMEOUT seconds. Results are printed as the jobs finish. Ctrl-C kills
# the children still running, and waits for them, before it exits.
# Usage: python3.13 jobs.py FILE [workers [running [timeout]]]
import asyncio
import sys

FILE = sys.argv[1]
WORKERS = int(sys.argv[2]) if len(sys.argv) > 2 else 4
RUNNING = int(sys.argv[3]) if len(sys.argv) > 3 else 2
TIMEOUT = float(sys.argv[4]) if len(sys.argv) > 4 else 10


async def run(command, running):
    async with running:
        proc = await asyncio.create_subprocess_exec(
            "sh", "-c", command, stdout=asyncio.subprocess.PIPE)
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), TIMEOUT)
            return f"exit {proc.returncode}: {out.decode().strip()!r}"
        except TimeoutError:
            return f"timed out after {TIMEOUT:g} s"
        finally:
            if proc.returncode is None:  # timed out, or cancelled
                proc.kill()
                await proc.wait()


async def worker(jobs, running):
    while True:
        try:
            command, result = await jobs.get()
        except asyncio.QueueShutDown:  # no more jobs
            return
        try:
            result.set_result(await run(command, running))
        except Exception as e:
            result.set_exception(e)


async def produce(jobs, results):
    for result, (n, command) in results.items():
        await jobs.put((command, result))
    jobs.shutdown()


async def main():
    with open(FILE) as f:
        commands = [line.strip() for line in f if line.strip()]
    loop = asyncio.get_running_loop()
    results = {loop.create_future(): (n, c) for n, c in enumerate(commands, 1)}
    jobs = asyncio.Queue(WORKERS)
    running = asyncio.Semaphore(RUNNING)
    async with asyncio.TaskGroup() as tg:
        for _ in range(WORKERS):
            tg.create_task(worker(jobs, running))
        tg.create_task(produce(jobs, results))
        async for result in asyncio.as_completed(results):
            n, command = results[result]
            print(f"[{n}] {command}: {result.result()}")

asyncio.run(main())
