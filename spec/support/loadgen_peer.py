"""The misbehaving server of spec/loadgen_spec.lua: an asyncio echo server
of examples/loadgen.lua's protocol (a message after its length, 4 bytes
big-endian, answered by the same; with --line a line, answered by the
same line) that misbehaves as its options say.

    loadgen_peer.py [--line] [--stall K] [--reset K] [--close K] [--hold K]
                    [--backlog N --accept-every S]
                    [--tls CERTDIR [--stall-handshake K]]

    --stall K     every K-th request (counted over all connections) is
                  read and never answered; the connection is read to its end
    --reset K     every K-th request gets half its answer, then a reset
                  (SO_LINGER 0, then close)
    --close K     every K-th request gets half its answer, then a clean close
    --hold K      every K-th request's length is read, and nothing more
                  (not its body, nor anything after it): a request of
                  some megabytes fills the buffers (the server's receive
                  buffer is made small) and the client's drain waits
    --backlog N   listens with a backlog of N and accepts one connection,
                  then waits S seconds (--accept-every) before the next
    --tls CERTDIR TLS (CERTDIR/server.pem, server.key), the handshake
                  begun by the server once the connection is accepted;
                  every K-th connection's (--stall-handshake) never is: it
                  is read to its end

It prints "port <n>" once it listens, "serving" when it is about to
answer its 10th request (a client of 3 connections has had 3 answers at
least then), and serves until its standard input ends; then it prints
what it did, one "<what> <count>" a line (connections, requests,
answered, stalled, reset, closed, held, handshakes, handshakes_stalled,
handshakes_failed) and exits. Each count is made before the client can
see the deed (an answer is counted before it is written).
"""
import argparse
import asyncio
import os
import socket
import ssl
import struct
import sys

COUNTS = ("connections", "requests", "answered", "stalled", "reset", "closed",
          "held", "handshakes", "handshakes_stalled", "handshakes_failed")
counts = dict.fromkeys(COUNTS, 0)


def every(k, n):
    return k and n % k == 0


def parse():
    p = argparse.ArgumentParser()
    p.add_argument("--line", action="store_true")
    for name in ("stall", "reset", "close", "hold", "stall-handshake",
                 "backlog"):
        p.add_argument("--" + name, type=int, default=0)
    p.add_argument("--accept-every", type=float, default=0)
    p.add_argument("--tls")
    return p.parse_args()


args = parse()


def frame(msg):
    if args.line:
        return msg + b"\n"
    return struct.pack(">I", len(msg)) + msg


def count(what):
    counts[what] += 1
    return counts[what]


async def to_the_end(reader):
    """Reads and drops what comes until the client's end."""
    try:
        while await reader.read(65536):
            pass
    except ConnectionError:
        pass


async def read_request(reader, writer):
    """The next request (its number and message; IncompleteReadError at
    the end); a held one never returns, its connection no longer read."""
    if args.line:
        msg = (await reader.readuntil(b"\n"))[:-1]
        return count("requests"), msg
    head = await reader.readexactly(4)
    n = count("requests")
    if every(args.hold, n):
        count("held")
        writer.transport.pause_reading()
        await asyncio.Event().wait()  # until the process ends
    return n, await reader.readexactly(struct.unpack(">I", head)[0])


async def answer(reader, writer, n, msg):
    """Answers request n, or misbehaves; False when the connection is
    done with."""
    out = frame(msg)
    if every(args.stall, n):
        count("stalled")
        await to_the_end(reader)
        return False
    if every(args.reset, n):
        count("reset")
        writer.write(out[:len(out) // 2])
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                        struct.pack("ii", 1, 0))
        writer.transport.abort()
        return False
    if every(args.close, n):
        count("closed")
        writer.write(out[:len(out) // 2])
        return False
    if count("answered") == 10:
        print("serving", flush=True)
    writer.write(out)
    await writer.drain()
    return True


# The connections' tasks: held here, a task whose transport has gone (a
# held request's) would be collected while pending, and asyncio says so.
serving = set()


async def serve(reader, writer):
    c = count("connections")
    serving.add(asyncio.current_task())
    try:
        if args.tls:
            if every(args.stall_handshake, c):
                count("handshakes_stalled")
                await to_the_end(reader)
                return
            try:
                await writer.start_tls(TLS)
            except (ssl.SSLError, ConnectionError, OSError):
                count("handshakes_failed")
                return
            count("handshakes")
        while True:
            try:
                n, msg = await read_request(reader, writer)
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            if not await answer(reader, writer, n, msg):
                return
    except ConnectionError:
        pass
    finally:
        writer.close()
        serving.discard(asyncio.current_task())


def protocol():
    """A server-side stream protocol (start_server's: start_tls then
    handshakes as the server), its lines up to 16 MiB."""
    return asyncio.StreamReaderProtocol(asyncio.StreamReader(1 << 24), serve)


async def accept(listener):
    loop = asyncio.get_running_loop()
    while True:
        conn, _ = await loop.sock_accept(listener)
        await loop.connect_accepted_socket(protocol, conn)
        if args.accept_every:
            await asyncio.sleep(args.accept_every)


async def main():
    listener = socket.socket()
    if args.hold:  # the buffers fill sooner (the accepted sockets' too)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    listener.bind(("127.0.0.1", 0))
    listener.listen(args.backlog or 100)
    listener.setblocking(False)
    print("port", listener.getsockname()[1], flush=True)
    acceptor = asyncio.create_task(accept(listener))
    await asyncio.to_thread(sys.stdin.buffer.read)
    acceptor.cancel()
    for what in COUNTS:
        print(what, counts[what])
    sys.stdout.flush()
    os._exit(0)  # the connections left go with the process


TLS = None
if args.tls:
    TLS = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    TLS.load_cert_chain(os.path.join(args.tls, "server.pem"),
                        os.path.join(args.tls, "server.key"))
asyncio.run(main())
