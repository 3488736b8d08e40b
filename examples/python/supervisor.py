# A process supervisor (Python 3.13): runs each NAME=COMMAND as a child
# (sh -c COMMAND), prints its output line by line as "[NAME] line" and
# its exit. A connection to PORT gets each child's state. SIGHUP restarts
# the children; SIGTERM stops: no more connections, then each child gets
# SIGTERM and GRACE seconds to exit before it is killed.
# Usage: python3.13 supervisor.py PORT GRACE NAME=COMMAND...
import asyncio
import signal
import sys

PORT, GRACE = int(sys.argv[1]), float(sys.argv[2])


def describe(returncode):
    if returncode is None:
        return "running"
    if returncode < 0:
        return f"killed by {signal.Signals(-returncode).name}"
    return f"exited with {returncode}"


class Child:
    def __init__(self, spec):
        self.name, self.command = spec.split("=", 1)
        self.proc = None

    async def run(self):
        self.proc = await asyncio.create_subprocess_exec(
            "sh", "-c", self.command, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        print(f"[{self.name}] started")
        async for line in self.proc.stdout:
            print(f"[{self.name}] {line.decode().rstrip()}")
        print(f"[{self.name}] {describe(await self.proc.wait())}")

    def state(self):
        return describe(self.proc.returncode if self.proc else None)


async def stop(children, tasks):
    for child in children:
        if child.proc.returncode is None:
            child.proc.terminate()
    await asyncio.wait(tasks, timeout=GRACE)
    for child in children:
        if child.proc.returncode is None:
            print(f"[{child.name}] still running after {GRACE:g} s: killing")
            child.proc.kill()
    await asyncio.gather(*tasks)


async def main():
    children = [Child(spec) for spec in sys.argv[3:]]

    async def status(reader, writer):
        for child in children:
            writer.write(f"{child.name}: {child.state()}\n".encode())
        writer.close()
        await writer.wait_closed()

    loop = asyncio.get_running_loop()
    signals = asyncio.Queue()
    for sig in (signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, signals.put_nowait, sig)
    server = await asyncio.start_server(status, "127.0.0.1", PORT)
    while True:
        tasks = [asyncio.create_task(child.run()) for child in children]
        if await signals.get() == signal.SIGTERM:
            break
        print("supervisor: SIGHUP: restarting the children")
        await stop(children, tasks)
    server.close()
    print("supervisor: SIGTERM: stopping")
    await stop(children, tasks)
    await server.wait_closed()
    print("supervisor: stopped")

asyncio.run(main())
