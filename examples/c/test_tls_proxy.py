#!/usr/bin/env python3
"""Tests examples/c/tls_proxy.c with real peers: Python's ssl (asyncio) and
openssl s_client as TLS clients, an asyncio server as the backend.

The backend's behaviour is chosen by the first line each client sends
through the proxy: "echo", "push N" (N bytes, then it closes), "sink N
TAG" (reads N bytes, answers their count and SHA-256, then notes how its
input ended), "slowsink N TAG" (the same, reading slowly).

Checked: 1 byte, 1 MiB and BIG bytes (64 MiB unless --big) both ways, byte
for byte; slow readers on either side (BIG / 4 bytes) keep the proxy's
write buffers bounded (the peaks the proxy logs); a backend that refuses
and one that does not answer (connect timeout); a client without a
certificate refused; a client that resets; the idle timeout; SIGTERM with
live connections ends within the shutdown bound, exit status 0 (the proxy
may run under valgrind or be built with ASan: their reports fail it).

Every port is one the kernel picked for a socket this test holds, so no
other process can take it meanwhile. Two proxies run: one whose backend
is that held socket, with a 1 s connect timeout (the refusal and the
timeout), and one in front of the real backend, whose connect timeout
(DEADLINE) a proxy slowed by ASan, valgrind or a loaded machine cannot
reach.

Usage: test_tls_proxy.py CERTS_DIR [--big BYTES] -- PROXY-COMMAND...
"""
import asyncio
import hashlib
import os
import re
import signal
import socket
import ssl
import struct
import sys
import time

MiB = 1 << 20
HIGH = 65536
# What a write buffer may reach with flow control: the high-water mark
# plus what one read hands over (tapio reads up to 256 KiB at a time).
BOUND = 1 * MiB
DEADLINE = 30.0

failures = []


def check(ok, what):
    print(("ok: " if ok else "FAIL: ") + what, flush=True)
    if not ok:
        failures.append(what)


def pattern(n):
    """n bytes that differ at every offset of a 64 KiB block."""
    block = hashlib.shake_256(b"tapio").digest(65536)
    return (block * (n // 65536 + 1))[:n]


# ---- The backend ----------------------------------------------------------

class Backend:
    def __init__(self):
        self.sinks = {}  # TAG -> future of (count, sha256 hex, how it ended)

    def sink(self, tag):
        return self.sinks.setdefault(
            tag, asyncio.get_running_loop().create_future())

    async def handle(self, reader, writer):
        try:
            words = (await reader.readline()).split()
            if words[0] == b"echo":
                while data := await reader.read(256 * 1024):
                    writer.write(data)
                    await writer.drain()
            elif words[0] == b"push":
                writer.write(pattern(int(words[1])))
                await writer.drain()
            else:
                await self.consume(reader, writer, words)
        except (ConnectionError, IndexError):
            pass
        finally:
            writer.close()

    async def consume(self, reader, writer, words):
        n, tag, slow = int(words[1]), words[2].decode(), words[0] == b"slowsink"
        h, got, end = hashlib.sha256(), 0, "eof"
        try:
            while True:
                data = await reader.read(64 * 1024)
                if not data:
                    break
                h.update(data)
                got += len(data)
                if got == n:
                    writer.write(b"got %d %s\n" % (got, h.hexdigest().encode()))
                if slow:
                    await asyncio.sleep(0.001)
        except ConnectionError as e:
            end = type(e).__name__
        fut = self.sink(tag)
        if not fut.done():
            fut.set_result((got, h.hexdigest(), end))


# ---- The proxy's log ------------------------------------------------------

class Log:
    def __init__(self, stream):
        self.lines, self.changed = [], asyncio.Event()
        self.task = asyncio.create_task(self.pump(stream))

    async def pump(self, stream):
        while line := await stream.readline():
            self.lines.append(line.decode().rstrip("\n"))
            self.changed.set()

    async def wait(self, regex, timeout=DEADLINE):
        async def scan():
            while True:
                for line in self.lines:
                    m = re.search(regex, line)
                    if m:
                        return m
                self.changed.clear()
                await self.changed.wait()
        return await asyncio.wait_for(scan(), timeout)

    async def closed(self, client_port):
        """The proxy's closing line for the client at client_port."""
        m = await self.wait(r"conn (\d+) from 127\.0\.0\.1:%d " % client_port)
        return (await self.wait(r"conn %s closed: (.*)" % m[1])).group(1)


def figures(line):
    m = re.match(r"up (\d+)/(\d+) down (\d+)/(\d+) peak client (\d+) "
                 r"backend (\d+) tls (\w+): (.*)", line)
    keys = ("up_in", "up_out", "down_in", "down_out", "client_peak",
            "backend_peak")
    d = dict(zip(keys, map(int, m.groups()[:6])))
    d["tls"], d["why"] = m[7], m[8]
    return d


# ---- Clients --------------------------------------------------------------

class Env:
    def __init__(self, certs, port, log, backend, big):
        self.certs, self.port, self.log = certs, port, log
        self.backend, self.big = backend, big
        self.ctx = ssl.create_default_context(cafile=certs + "/ca.pem")
        self.ctx.load_cert_chain(certs + "/client.pem", certs + "/client.key")
        self.ctx.set_alpn_protocols(["h2"])

    async def connect(self):
        r, w = await asyncio.open_connection(
            "127.0.0.1", self.port, ssl=self.ctx, server_hostname="localhost")
        return r, w, w.get_extra_info("sockname")[1]


async def write_all(writer, data):
    """In pieces: one 64 MiB write stalls Python's TLS for seconds."""
    for i in range(0, len(data), MiB):
        writer.write(data[i:i + MiB])
        await writer.drain()


async def read_all(reader, slow=False):
    parts = []
    while data := await reader.read(64 * 1024):
        parts.append(data)
        if slow:
            await asyncio.sleep(0.001)
    return b"".join(parts)


async def close(writer):
    writer.close()
    try:
        await writer.wait_closed()
    except (ConnectionError, ssl.SSLError):
        pass


async def echo(env, n):
    r, w, port = await env.connect()
    data = pattern(n)
    w.write(b"echo\n")

    sender = asyncio.create_task(write_all(w, data))
    got = await r.readexactly(n)
    await sender
    await close(w)
    f = figures(await env.log.closed(port))
    check(got == data, "echo %d bytes: the same bytes back" % n)
    check(f["up_in"] == f["up_out"] == n + 5 and
          f["down_in"] == f["down_out"] == n,
          "echo %d bytes: the proxy counted them (%s)" % (n, f))


async def push(env, n, slow=False):
    r, w, port = await env.connect()
    w.write(b"push %d\n" % n)
    got = await read_all(r, slow)
    await close(w)
    f = figures(await env.log.closed(port))
    what = "push %d bytes%s" % (n, " to a slow reader" if slow else "")
    check(got == pattern(n), what + ": the same bytes, then the end")
    check(f["down_out"] == n and f["tls"] == "clean" and
          f["why"] == "backend closed", what + ": counted, clean (%s)" % f)
    if slow:
        check(f["client_peak"] <= BOUND,
              what + ": client write buffer bounded (%d)" % f["client_peak"])


async def sink(env, n, slow=False):
    r, w, port = await env.connect()
    tag = "sink%d%s" % (n, slow)
    data = pattern(n)
    w.write(b"%s %d %s\n" % (b"slowsink" if slow else b"sink", n,
                             tag.encode()))
    await write_all(w, data)
    answer = await r.readline()
    await close(w)
    f = figures(await env.log.closed(port))
    got, digest, end = await asyncio.wait_for(env.backend.sink(tag), DEADLINE)
    what = "send %d bytes%s" % (n, " to a slow backend" if slow else "")
    want = hashlib.sha256(data).hexdigest()
    check(got == n and digest == want and
          answer == b"got %d %s\n" % (n, want.encode()),
          what + ": the backend got the same bytes")
    # The client's close_notify is the backend's end of input.
    check(end == "eof" and f["why"] == "client closed",
          what + ": the client's end reached the backend as its end (%s)"
          % end)
    if slow:
        check(f["backend_peak"] <= BOUND,
              what + ": backend write buffer bounded (%d)" % f["backend_peak"])


async def s_client(env, stdin, *args):
    p = await asyncio.create_subprocess_exec(
        "openssl", "s_client", "-connect", "127.0.0.1:%d" % env.port,
        "-CAfile", env.certs + "/ca.pem", "-servername", "localhost", *args,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(p.communicate(stdin), DEADLINE)
    return p.returncode, out, err


async def openssl_clients(env):
    cert = ["-cert", env.certs + "/client.pem", "-key",
            env.certs + "/client.key"]
    # -quiet waits for the server's end: the proxy's close_notify.
    rc, out, _ = await s_client(env, b"push 1000\n", "-quiet", *cert)
    check(rc == 0 and out == pattern(1000),
          "s_client: 1000 bytes pushed, then the end")
    # Without -quiet, the end of stdin is s_client's close_notify.
    rc, out, _ = await s_client(env, b"sink 1 s_client\nX", *cert)
    got, _, end = await asyncio.wait_for(env.backend.sink("s_client"),
                                         DEADLINE)
    check(got == 1 and end == "eof",
          "s_client: 1 byte and its end reached the backend")
    rc, out, err = await s_client(env, b"push 10\n", "-quiet")
    check(pattern(10) not in out,
          "s_client without a client certificate: refused")
    why = await env.log.wait(r"handshake failed from 127\.0\.0\.1:\d+: (.*)")
    check("certificate" in why[1],
          "s_client without a client certificate: logged (%s)" % why[1])


async def reset(env):
    r, w, port = await env.connect()
    w.write(b"sink 1000000 reset\n" + pattern(1000))
    await w.drain()
    await env.log.wait(r"conn \d+ from 127\.0\.0\.1:%d " % port)
    sock = w.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                    struct.pack("ii", 1, 0))
    w.transport.abort()
    f = figures(await env.log.closed(port))
    check("reset" in f["why"] and f["tls"] in ("aborted", "truncated"),
          "a client's reset: logged (%s)" % f)
    got, _, end = await asyncio.wait_for(env.backend.sink("reset"), DEADLINE)
    check(end == "ConnectionResetError",
          "a client's reset: passed on to the backend (%s)" % end)


async def idle(env):
    r, w, port = await env.connect()
    w.write(b"echo\n")
    got = await asyncio.wait_for(read_all(r), DEADLINE)
    f = figures(await env.log.closed(port))
    check(got == b"" and f["why"] == "idle timeout" and f["tls"] == "clean",
          "an idle client: closed cleanly by the proxy (%s)" % f)
    await close(w)


async def unreachable_backend(env, lsock):
    """lsock, bound, not listening: connections refused; then listening
    with its queue full: SYNs unanswered."""
    r, w, port = await env.connect()
    got = await read_all(r)
    f = figures(await env.log.closed(port))
    check(got == b"" and "refused" in f["why"],
          "a backend that refuses: logged (%s)" % f)
    await close(w)
    lsock.listen(0)
    fill = socket.socket()
    fill.connect(lsock.getsockname())
    r, w, port = await env.connect()
    w.write(b"echo\n")
    got = await read_all(r)
    f = figures(await env.log.closed(port))
    check(got == b"" and f["why"] == "backend connect timed out",
          "a backend that does not answer: connect timeout (%s)" % f)
    await close(w)
    fill.close()


async def sigterm(env, proc):
    """One idle connection, one whose client reads nothing."""
    r2, w2, port2 = await env.connect()
    w2.write(b"push %d\n" % env.big)
    await r2.readexactly(1)  # then it reads no more
    r1, w1, port1 = await env.connect()
    w1.write(b"echo\nx")
    await r1.readexactly(1)
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    rc = await asyncio.wait_for(proc.wait(), DEADLINE)
    took = time.monotonic() - started
    f1 = figures(await env.log.closed(port1))
    f2 = figures(await env.log.closed(port2))
    check(rc == 0, "SIGTERM: the proxy exits 0 (%d)" % rc)
    check(f1["tls"] == "clean" and f1["why"] == "proxy stopping",
          "SIGTERM: the idle client closed cleanly (%s)" % f1)
    check(f2["tls"] in ("timeout", "aborted") and
          f2["client_peak"] <= BOUND,
          "SIGTERM: the client that reads nothing cut at the bound (%s)" % f2)
    check(took < DEADLINE, "SIGTERM: done in %.1f s" % took)
    await close(w1)
    w2.transport.abort()


async def start_proxy(cmd, certs, connect_timeout, backend):
    """The proxy on a port it picks, in front of backend (host, port); its
    process, its log and its port."""
    proc = await asyncio.create_subprocess_exec(
        *cmd, "--cert", certs + "/server.pem",
        "--key", certs + "/server.key", "--client-ca", certs + "/ca.pem",
        "--alpn", "h2,http/1.1", "--connect-timeout", str(connect_timeout),
        "--idle-timeout", "4", "--shutdown-timeout", "1", "--high", str(HIGH),
        "0", backend[0], str(backend[1]), stdout=asyncio.subprocess.PIPE)
    log = Log(proc.stdout)
    return proc, log, int((await log.wait(r"listening on (\d+)"))[1])


async def stop(proc, what):
    """SIGTERM to a proxy without connections: it exits 0 (valgrind's and
    ASan's reports make it fail)."""
    proc.send_signal(signal.SIGTERM)
    rc = await asyncio.wait_for(proc.wait(), DEADLINE)
    check(rc == 0, "%s: exits 0 at SIGTERM (%d)" % (what, rc))


async def main():
    args = sys.argv[1:]
    certs = args.pop(0)
    big = 64 * MiB
    if args[0] == "--big":
        big = int(args[1])
        args = args[2:]
    proxy_cmd = args[1:]
    backend = Backend()
    server = await asyncio.start_server(backend.handle, "127.0.0.1", 0)
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    (proc, log, port), (short, short_log, short_port) = await asyncio.gather(
        start_proxy(proxy_cmd, certs, DEADLINE,
                    ("localhost", server.sockets[0].getsockname()[1])),
        start_proxy(proxy_cmd, certs, 1, lsock.getsockname()))
    env = Env(certs, port, log, backend, big)
    try:
        await unreachable_backend(
            Env(certs, short_port, short_log, backend, big), lsock)
        stopping = asyncio.create_task(stop(short, "the other proxy"))
        # Idle beside the others: the timeout is long enough that a
        # transfer on a loaded machine does not stall that long.
        idler = asyncio.create_task(idle(env))
        for n in (1, MiB):
            await echo(env, n)
            await push(env, n)
            await sink(env, n)
        await echo(env, big)
        # A quarter is enough to show the bound (16 times it by default).
        await push(env, big // 4, slow=True)
        await sink(env, big // 4, slow=True)
        await openssl_clients(env)
        await reset(env)
        await idler
        await stopping
        await sigterm(env, proc)
    finally:
        for p in (proc, short):
            if p.returncode is None:
                p.kill()
                await p.wait()
        await asyncio.gather(log.task, short_log.task)
        lsock.close()
        server.close()
        print("the other proxy's log:\n" + "\n".join(short_log.lines))
        print("the proxy's log:\n" + "\n".join(log.lines))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
