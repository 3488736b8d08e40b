# tee for a command, on the protocol API, the original of
# examples/tee_exec.lua:
#   tee_exec.py [--bytes N] [--sink-delay S] FILE 'command'
# runs the command with sh -c (loop.subprocess_exec), writes N bytes
# (10 MiB by default: bytes 0, 1, ..., 250 over and over, made as the
# pipe takes them) to its stdin, and copies its stdout both to our stdout
# and to FILE. FILE is written by a child of its own (cat > FILE, after
# --sink-delay seconds, to make it lag): while it or our stdout cannot
# take more, the command's stdout is not read. Its stderr goes to ours.
# The SubprocessProtocol events are printed to stderr as they come, then
# how often each side paused; the exit status is the command's.
import asyncio
import errno
import sys

CHUNK = 65536
PATTERN = bytes(i % 251 for i in range(CHUNK + 251))


def say(text):
    sys.stderr.buffer.write(b"tee_exec: %s\n" % text.encode())
    sys.stderr.buffer.flush()


def input_chunk(offset, n):
    """n bytes of the input from offset."""
    start = offset % 251
    return PATTERN[start:start + n]


class Sink(asyncio.SubprocessProtocol):
    """Where the copy goes: our stdout's write pipe, or FILE's child (its
    stdin's pipe); main sets self.pipe."""

    def __init__(self, command):
        self.command, self.pipe, self.paused = command, None, False
        self.done = asyncio.get_running_loop().create_future()

    def write(self, data):
        if self.pipe:
            self.pipe.write(data)

    def close(self):
        if self.pipe:
            self.pipe.close()

    def pause_writing(self):
        self.paused = True
        self.command.sink_paused(1)

    def resume_writing(self):
        self.paused = False
        self.command.sink_paused(-1)

    def ended(self):
        """Its reader went away: it takes no more, and holds the others
        back no more (no resume_writing comes after the end)."""
        if self.paused:
            self.resume_writing()
        self.pipe = None

    def pipe_connection_lost(self, fd, exc):
        self.ended()  # FILE's child's stdin

    def connection_lost(self, exc):
        self.ended()
        self.done.set_result(exc)


class Command(asyncio.SubprocessProtocol):
    def __init__(self, size, sinks):
        self.size, self.sent, self.sinks = size, 0, sinks
        self.writing_paused = False
        self.sinks_paused = 0
        self.received = 0
        self.pauses = {"stdin": 0, "stdout": 0}
        self.done = asyncio.get_running_loop().create_future()

    def connection_made(self, transport):
        say("connection_made")
        self.transport = transport
        self.stdin = transport.get_pipe_transport(0)
        self.feed()

    def feed(self):
        while not self.writing_paused and self.sent < self.size:
            n = min(CHUNK, self.size - self.sent)
            data = input_chunk(self.sent, n)
            self.sent += n
            self.stdin.write(data)  # may call pause_writing
        if self.sent == self.size and not self.stdin.is_closing():
            # not at once: asyncio 3.11 drops what the pipe buffered when
            # it is closed inside resume_writing
            asyncio.get_running_loop().call_soon(self.stdin.close)

    def pause_writing(self):
        self.writing_paused = True
        self.pauses["stdin"] += 1

    def resume_writing(self):
        self.writing_paused = False
        self.feed()

    def pipe_data_received(self, fd, data):
        if fd == 2:
            sys.stderr.buffer.write(data)
            sys.stderr.buffer.flush()
            return
        self.received += len(data)
        for sink in self.sinks:
            sink.write(data)

    def sink_paused(self, delta):
        # stdout is read while every sink takes more
        self.sinks_paused += delta
        stdout = self.transport.get_pipe_transport(1)
        if self.sinks_paused == 1 and delta == 1:
            self.pauses["stdout"] += 1
            stdout.pause_reading()
        elif self.sinks_paused == 0:
            stdout.resume_reading()

    def pipe_connection_lost(self, fd, exc):
        if fd == 0:
            self.sent = self.size  # the child will read no more
            say("pipe_connection_lost 0: %s" % describe(exc))
        elif fd == 1:
            say("pipe_connection_lost 1 after %d bytes: %s"
                % (self.received, describe(exc)))
            for sink in self.sinks:
                sink.close()
        else:
            say("pipe_connection_lost 2: %s" % describe(exc))

    def process_exited(self):
        say("process_exited %d" % self.transport.get_returncode())

    def connection_lost(self, exc):
        say("connection_lost: %s" % describe(exc))
        self.done.set_result(self.transport.get_returncode())


def describe(exc):
    """ok, or the error's errno name (EPIPE), as tapio names it"""
    if exc is None:
        return "ok"
    if isinstance(exc, BrokenPipeError):
        return "EPIPE"  # asyncio makes some with no errno
    return errno.errorcode.get(exc.errno, type(exc).__name__)


async def main(size, delay, path, command):
    loop = asyncio.get_running_loop()
    # the command's protocol and its two sinks refer to each other
    command_proto = Command(size, [])
    out_proto, file_proto = Sink(command_proto), Sink(command_proto)
    out, _ = await loop.connect_write_pipe(lambda: out_proto, sys.stdout)
    file_proc, _ = await loop.subprocess_exec(
        lambda: file_proto, "sh", "-c", 'sleep "$0"; exec cat > "$1"',
        str(delay), path, stdout=None, stderr=None)
    out_proto.pipe = out
    file_proto.pipe = file_proc.get_pipe_transport(0)
    command_proto.sinks = [out_proto, file_proto]
    transport, _ = await loop.subprocess_exec(
        lambda: command_proto, "sh", "-c", command)
    status = await command_proto.done
    await out_proto.done
    await file_proto.done
    transport.close()
    file_proc.close()
    say("stdin paused %d times, stdout %d times"
        % (command_proto.pauses["stdin"], command_proto.pauses["stdout"]))
    return 128 - status if status < 0 else status


def parse(argv):
    size, delay = 10 * 1024 * 1024, 0
    while len(argv) > 2:
        name, value = argv.pop(0), argv.pop(0)
        if name == "--bytes":
            size = int(value)
        elif name == "--sink-delay":
            delay = float(value)
        else:
            break
    if len(argv) != 2:
        sys.exit("usage: tee_exec.py [--bytes N] [--sink-delay S] FILE "
                 "'command'")
    return size, delay, argv[0], argv[1]


if __name__ == "__main__":
    sys.exit(asyncio.run(main(*parse(sys.argv[1:]))))
