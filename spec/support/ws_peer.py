"""WebSocket peers for spec/websocket_spec.lua: Python's websockets (10.4,
Debian 12) as the client of examples/ws_echo_server.lua and as the server
of examples/ws_client.lua, and raw sockets for what websockets will not
send. Each scenario prints what it saw, one line per fact.

usage: ws_peer.py SCENARIO PORT CERTDIR|-  [N]
       ws_peer.py server CERTDIR|-        (prints its port, then events)
"""
import asyncio
import os
import selectors
import socket
import ssl
import struct
import sys

import websockets

MIB = 1024 * 1024


def every_byte(n):
    block = bytes(range(256)) * 4096
    return (block * (n // len(block) + 1))[:n]


def uri(port, certs):
    return ("wss" if certs != "-" else "ws") + "://localhost:%d/echo" % port


def client_ssl(certs):
    if certs == "-":
        return None
    return ssl.create_default_context(cafile=os.path.join(certs, "ca.pem"))


def connect(port, certs, **kw):
    return websockets.connect(uri(port, certs), ssl=client_ssl(certs),
                              max_size=16 * MIB, ping_interval=None, **kw)


async def echo(port, certs):
    """Sizes and kinds echoed byte for byte, fragments, a ping."""
    async with connect(port, certs) as ws:
        for n in (0, 125, 126, 65535, 65536, 8 * MIB):
            data = every_byte(n)
            await ws.send(data)
            back = await ws.recv()
            print("BINARY", n, back == data)
        text = "h\u00e9llo \u2603 \U0001f600" * 20
        await ws.send(text)
        back = await ws.recv()
        print("TEXT", type(back).__name__, back == text)
        await ws.send(["frag", "ment", "ed \u00e9"])  # 3 frames
        print("FRAGMENTS", await ws.recv())
        await ws.send([b"\x00\xff", b"\x01"])
        print("BINARY FRAGMENTS", await ws.recv() == b"\x00\xff\x01")
        pong = await ws.ping(b"are you there")
        await asyncio.wait_for(pong, 5)
        print("PONG")
    print("CLOSED", ws.close_code)


async def toobig(port, certs):
    """A message over the server's --max-size: closed with 1009."""
    async with connect(port, certs) as ws:
        try:
            await ws.send(b"x" * 70000)
            await ws.recv()
        except websockets.ConnectionClosed as e:
            print("CLOSED", e.rcvd.code if e.rcvd else None)


async def many(port, certs, n):
    """n clients at once, each echoing its messages."""
    async def one(i):
        async with connect(port, certs) as ws:
            for j in range(5):
                msg = "client %d message %d" % (i, j)
                await ws.send(msg)
                assert await ws.recv() == msg
        return ws.close_code
    codes = await asyncio.gather(*(one(i) for i in range(n)))
    print("CODES", sorted(set(codes)), len(codes))


async def held(port, certs, n):
    """n clients connect, say READY, then wait: the codes they get."""
    conns = [await connect(port, certs) for _ in range(n)]
    for ws in conns:  # each handshake done and one echo: all are served
        await ws.send("hi")
        assert await ws.recv() == "hi"
    print("READY", flush=True)

    async def code(ws):
        try:
            await ws.recv()
        except websockets.ConnectionClosed as e:
            return (e.rcvd.code, e.rcvd.reason) if e.rcvd else None
    for c in sorted(set(await asyncio.gather(*(code(ws) for ws in conns)))):
        print("CLOSED", *c)


# ---- raw sockets -------------------------------------------------------

def raw_connect(port, rcvbuf=None):
    s = socket.socket()
    s.settimeout(10)
    if rcvbuf:  # before connect: the window the kernel offers the server
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.connect(("127.0.0.1", port))
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
              b"Connection: Upgrade\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
              b"Sec-WebSocket-Version: 13\r\n\r\n")
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        head += s.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    assert b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in head, head
    return s


def frame(op, payload, mask=True, fin=True):
    """A frame; masked with the key 0 (the payload unchanged)."""
    n = len(payload)
    b2 = (128 if mask else 0)
    if n < 126:
        head = struct.pack("!BB", (128 if fin else 0) | op, b2 | n)
    elif n < 65536:
        head = struct.pack("!BBH", (128 if fin else 0) | op, b2 | 126, n)
    else:
        head = struct.pack("!BBQ", (128 if fin else 0) | op, b2 | 127, n)
    return head + (b"\0\0\0\0" if mask else b"") + payload


def recv_exact(s, n):
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def read_frame(s):
    b1, b2 = recv_exact(s, 2)
    n = b2 & 127
    if n == 126:
        n = struct.unpack("!H", recv_exact(s, 2))[0]
    elif n == 127:
        n = struct.unpack("!Q", recv_exact(s, 8))[0]
    key = recv_exact(s, 4) if b2 & 128 else b"\0\0\0\0"
    data = recv_exact(s, n)
    return b1 & 15, bytes(b ^ key[i % 4] for i, b in enumerate(data))


def until_eof(s):
    """Reads to the end; True if it came (not a timeout)."""
    try:
        while s.recv(65536):
            pass
        return True
    except socket.timeout:
        return False


def expect_close(s, answer=True, mask=True):
    op, payload = read_frame(s)
    while op != 8:
        op, payload = read_frame(s)
    code = struct.unpack("!H", payload[:2])[0]
    print("CLOSE", code, payload[2:].decode())
    if answer:
        s.sendall(frame(8, payload[:2], mask=mask))
    print("EOF", until_eof(s))


def bad_utf8(port, certs):
    s = raw_connect(port)
    s.sendall(frame(1, b"ok \xc3\x28 not utf-8"))
    expect_close(s)


def unmasked(port, certs):
    s = raw_connect(port)
    s.sendall(frame(2, b"plain", mask=False))
    expect_close(s)


def noanswer(port, certs):
    """The close frame never answered: the server ends the connection."""
    s = raw_connect(port)
    s.settimeout(5)  # within the spec's deadline: "EOF False" if it stays
    s.sendall(frame(2, b"plain", mask=False))
    expect_close(s, answer=False)


def interleaved(port, certs):
    """A ping between the fragments of a text message."""
    s = raw_connect(port)
    s.sendall(frame(1, b"fir", fin=False) + frame(9, b"ping!")
              + frame(0, b"st ", fin=False) + frame(0, b"half", fin=True))
    print("FRAME", *read_frame(s))
    print("FRAME", *read_frame(s))
    s.sendall(frame(8, struct.pack("!H", 1000) + b"bye"))
    expect_close(s, answer=False)


def slow(port, certs):
    """Sends 32 MiB in 64 KiB messages, reading only when its sending
    is blocked; then reads the rest. Prints whether all came back. Its
    receive buffer is small, so that the kernel holds little of what the
    server sends: the rest waits in the server."""
    s = raw_connect(port, rcvbuf=65536)
    s.setblocking(False)
    msg = frame(2, b"s" * 65536)
    total, sent, got = 512 * len(msg), 0, 0
    expect = 512 * (65536 + 10)  # the server's frames: 10-byte headers
    out = memoryview(msg * 512)
    sel = selectors.DefaultSelector()
    sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE)
    while sent < total:
        try:
            sent += s.send(out[sent:sent + MIB])
        except BlockingIOError:  # the server stopped reading: read a bit
            for _, events in sel.select(10):
                if events & selectors.EVENT_READ:
                    got += len(s.recv(65536))
    s.setblocking(True)
    s.settimeout(10)
    while got < expect:
        got += len(s.recv(65536))
    print("ECHOED", got == expect)
    s.sendall(frame(8, struct.pack("!H", 1000)))
    expect_close(s, answer=False)


def masked_server(_port, _certs):
    """A server whose first frame is masked: prints the port, then the
    close frame the client sends; answers it and closes."""
    import base64
    import hashlib
    lsock = socket.create_server(("127.0.0.1", 0))
    print(lsock.getsockname()[1], flush=True)
    s, _ = lsock.accept()
    s.settimeout(5)
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        head += s.recv(1)
    key = [line.split(b":", 1)[1].strip() for line in head.split(b"\r\n")
           if line.lower().startswith(b"sec-websocket-key:")][0]
    accept = base64.b64encode(hashlib.sha1(
        key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
    s.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
              b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept
              + b"\r\n\r\n" + frame(1, b"masked", mask=True))
    op, payload = read_frame(s)
    print("CLOSE", struct.unpack("!H", payload[:2])[0], payload[2:].decode())
    s.sendall(frame(8, payload[:2], mask=False))
    s.close()  # a server ends the connection (RFC 6455 7.1.1)


# ---- a websockets server for examples/ws_client.lua ----------------------

async def server(certs):
    """Echoes; "frag" comes back in 3 fragments, "ping" makes it ping the
    client and say whether the pong came, "bye" makes it close with 1001.
    Prints each connection's close code. Its stdin's end stops it."""
    async def handler(ws):
        async for msg in ws:
            if msg == "frag":
                await ws.send(["fr", "ag", "mented"])
            elif msg == "ping":
                await asyncio.wait_for(await ws.ping(b"p"), 5)
                await ws.send("pong came")
            elif msg == "bye":
                await ws.close(1001, "server going away")
            else:
                await ws.send(msg)
        print("CLOSED", ws.close_code, ws.close_reason, flush=True)

    ctx = None
    if certs != "-":
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(os.path.join(certs, "server.pem"),
                            os.path.join(certs, "server.key"))
    async with websockets.serve(handler, "127.0.0.1", 0, ssl=ctx,
                                max_size=16 * MIB) as srv:
        print(srv.sockets[0].getsockname()[1], flush=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.read)


def main():
    scenario = sys.argv[1]
    if scenario == "server":
        asyncio.run(server(sys.argv[2]))
        return
    if scenario == "masked_server":
        masked_server(None, None)
        return
    port, certs = int(sys.argv[2]), sys.argv[3]
    rest = [int(a) for a in sys.argv[4:]]
    fn = globals()[scenario]
    if asyncio.iscoroutinefunction(fn):
        asyncio.run(fn(port, certs, *rest))
    else:
        fn(port, certs, *rest)


main()
