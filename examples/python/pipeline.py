# A shell pipeline runner, the original of examples/pipeline.lua:
#   pipeline.py [--timeout S] [--grace S] [--pipefail] 'cmd1' 'cmd2' ...
# runs each command with sh -c, the stdout of each connected straight to
# the stdin of the next through an OS pipe (the data never passes through
# the runner). Each child's stderr is printed as "[index] line". All the
# children share one new process group; on timeout, SIGINT or SIGTERM the
# group gets SIGTERM, then SIGKILL after a grace period. The exit status
# is bash's (--pipefail: the last non-zero one) and the statuses are
# printed at the end to stderr, as bash's PIPESTATUS.
import asyncio
import os
import signal
import sys


def usage():
    sys.exit("usage: pipeline.py [--timeout S] [--grace S] [--pipefail] "
             "'cmd' ...")


def parse(argv):
    opts = {"timeout": None, "grace": 2.0, "pipefail": False}
    while argv and argv[0].startswith("--"):
        name = argv.pop(0)
        if name == "--pipefail":
            opts["pipefail"] = True
        elif name in ("--timeout", "--grace") and argv:
            opts[name[2:]] = float(argv.pop(0))
        else:
            usage()
    if not argv:
        usage()
    return opts, argv


def say(line):
    sys.stderr.buffer.write(line)
    sys.stderr.buffer.flush()


async def next_line(stream):
    """The next line (the last one may have no newline; b"" at the end);
    a line longer than the stream's limit comes in pieces."""
    try:
        return await stream.readuntil(b"\n")
    except asyncio.IncompleteReadError as e:
        return e.partial
    except asyncio.LimitOverrunError as e:
        # what it saw, through the newline when one is there
        return await stream.read(e.consumed + 1)


async def relay_stderr(index, stream):
    while line := await next_line(stream):
        if not line.endswith(b"\n"):
            line += b"\n"
        say(b"[%d] %s" % (index, line))


async def start_leader():
    """The process group's leader: a child that lives until every command
    has joined its group (a command that exited and was reaped at once
    would take the group with it, and the next one could not join)."""
    return await asyncio.create_subprocess_exec(
        "cat", stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL, process_group=0)


async def start(commands, pgid):
    """Starts the children, each one's stdout the next one's stdin."""
    procs, stdin = [], None
    for i, command in enumerate(commands):
        last = i == len(commands) - 1
        read_end, write_end = (None, None) if last else os.pipe()
        try:
            proc = await asyncio.create_subprocess_exec(
                "sh", "-c", command, stdin=stdin, stdout=write_end,
                stderr=asyncio.subprocess.PIPE, process_group=pgid)
        finally:
            # the children hold the pipes now, the runner must not
            if stdin is not None:
                os.close(stdin)
            if write_end is not None:
                os.close(write_end)
        procs.append(proc)
        stdin = read_end
    return procs


def bash_status(returncode):
    return 128 - returncode if returncode < 0 else returncode


def killpg(pgid, sig):
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass  # the whole group is gone already


async def run(opts, commands):
    loop = asyncio.get_running_loop()
    stopped = loop.create_future()

    def on_signal(sig):
        if not stopped.done():
            stopped.set_result(sig)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    leader = await start_leader()
    pgid = leader.pid
    try:
        procs = await start(commands, pgid)
    except BaseException:
        killpg(pgid, signal.SIGKILL)
        raise
    finally:
        leader.stdin.close()
    # done when every child has exited and every stderr has ended (a
    # grandchild may still hold one)
    done = asyncio.gather(
        leader.wait(), *(p.wait() for p in procs),
        *(relay_stderr(i + 1, p.stderr) for i, p in enumerate(procs)))
    await asyncio.wait([done, stopped], timeout=opts["timeout"],
                       return_when=asyncio.FIRST_COMPLETED)
    signalled = stopped.result() if stopped.done() else None
    if not done.done():
        if signalled is None:
            say(b"pipeline: timed out after %g s\n" % opts["timeout"])
        killpg(pgid, signal.SIGTERM)
        await asyncio.wait([done], timeout=opts["grace"])
        if not done.done():
            say(b"pipeline: still running after %g s: SIGKILL\n"
                % opts["grace"])
            killpg(pgid, signal.SIGKILL)
    await done  # raises what failed in it
    statuses = [bash_status(p.returncode) for p in procs]
    say(b"pipestatus: %s\n" % " ".join(map(str, statuses)).encode())
    if signalled is not None:
        return 128 + signalled
    failed = [s for s in statuses if s != 0]
    if opts["pipefail"]:
        return failed[-1] if failed else 0
    return statuses[-1]


if __name__ == "__main__":
    sys.exit(asyncio.run(run(*parse(sys.argv[1:]))))
