#!/usr/bin/env python3
"""A small DNS server of the tests' own, on 127.0.0.1 (UDP), so that the
resolver specs make real lookups: answers that come at once, late, or never,
names that do not exist, names with several addresses.

    dns_server.py [--port N] [--log] [--port-file PATH] [--tcp]

Prints "PORT <n>" on stdout once it listens (and writes <n> to PATH with
--port-file, for a test that holds only the server's stdin), and serves
until its stdin closes (it dies with the test that started it). With --log, each query it
receives is printed as "QUERY <type> <name> id=<id> from=<port>" on stdout
(flushed; from=tcp over TCP), so a test that reads them can tell that a
lookup reached it, or that none did, and can answer in its place. With
--tcp it also serves TCP (RFC 1035's 2-byte length prefix) on the same port.

The zone (names are case-insensitive):
    v4.tapio.test        A     127.0.0.1
    v6.tapio.test        AAAA  ::1
    both.tapio.test      A     127.0.0.1     AAAA ::1
    two4.tapio.test      A     127.0.0.2, 127.0.0.1   (in that order)
    three4.tapio.test    A     127.0.0.3, 127.0.0.2, 127.0.0.1 (in order)
    six4.tapio.test      AAAA  ::1           A    127.0.0.1
    mix.tapio.test       AAAA  ::1, ::ffff:127.0.0.1    A 127.0.0.1
    *.bench.tapio.test   A     127.0.0.1     (any name: the resolver bench)
    many.tapio.test      A     127.0.1.1 ... 127.0.1.40 (over 512 bytes)
    anything else        NXDOMAIN
Prefix labels change how a name is answered:
    slowNNN.<name>       answered as <name> after NNN milliseconds
    silent.<name>        never answered
    fail.<name>          SERVFAIL
    tc.<name>            over UDP: truncated (TC set, no records); over
                         TCP: <name>'s full answer
    ttlNNN.<name>        records with a TTL of NNN seconds (else 60)
    hold.<name>          over TCP: never answered, the connection held
                         until the client closes it ("HELD CLOSED" is
                         logged then; the server does nothing else
                         meanwhile); over UDP: <name>
"""
import argparse
import heapq
import os
import select
import socket
import struct
import sys
import time

A, AAAA = 1, 28
ZONE = {
    "v4.tapio.test": {A: ["127.0.0.1"]},
    "v6.tapio.test": {AAAA: ["::1"]},
    "both.tapio.test": {A: ["127.0.0.1"], AAAA: ["::1"]},
    "two4.tapio.test": {A: ["127.0.0.2", "127.0.0.1"]},
    "three4.tapio.test": {A: ["127.0.0.3", "127.0.0.2", "127.0.0.1"]},
    "six4.tapio.test": {A: ["127.0.0.1"], AAAA: ["::1"]},
    "mix.tapio.test": {A: ["127.0.0.1"], AAAA: ["::1", "::ffff:127.0.0.1"]},
    "many.tapio.test": {A: ["127.0.1.%d" % i for i in range(1, 41)]},
}
NOERROR, SERVFAIL, NXDOMAIN = 0, 2, 3


def parse_question(msg):
    """(id, flags, name, qtype, end of the question) of a query."""
    qid, flags, qdcount = struct.unpack("!HHH", msg[:6])
    if qdcount != 1:
        raise ValueError("one question expected")
    labels, pos = [], 12
    while msg[pos]:
        n = msg[pos]
        labels.append(msg[pos + 1:pos + 1 + n].decode("ascii"))
        pos += 1 + n
    qtype, _qclass = struct.unpack("!HH", msg[pos + 1:pos + 5])
    return qid, flags, ".".join(labels).lower(), qtype, pos + 5


def records(name, qtype):
    """(rcode, addresses) for a plain name (prefixes already taken off)."""
    if name.endswith(".bench.tapio.test"):
        return NOERROR, ["127.0.0.1"] if qtype == A else []
    entry = ZONE.get(name)
    if entry is None:
        return NXDOMAIN, []
    return NOERROR, entry.get(qtype, [])


def answer(msg, tcp=False):
    """(delay in seconds or None for never, the response) for a query."""
    qid, flags, name, qtype, end = parse_question(msg)
    delay, rcode, ttl, tc = 0.0, None, 60, False
    labels = name.split(".")
    while labels:
        first = labels[0]
        if first.startswith("slow") and first[4:].isdigit():
            delay = int(first[4:]) / 1000.0
        elif first == "silent":
            return None, b""
        elif first == "fail":
            rcode = SERVFAIL
        elif first == "tc":
            tc = not tcp
        elif first == "hold":
            if tcp:
                return None, b""
        elif first.startswith("ttl") and first[3:].isdigit():
            ttl = int(first[3:])
        else:
            break
        labels = labels[1:]
    code, addrs = records(".".join(labels), qtype)
    if rcode is None:
        rcode = code
    if rcode != NOERROR or tc:
        addrs = []
    family = socket.AF_INET if qtype == A else socket.AF_INET6
    body = b"".join(
        struct.pack("!HHHIH", 0xC00C, qtype, 1, ttl,
                    4 if qtype == A else 16) + socket.inet_pton(family, a)
        for a in addrs)
    rd = flags & 0x0100
    header = struct.pack("!HHHHHH", qid, 0x8080 | (0x200 if tc else 0) | rd
                         | rcode, 1, len(addrs), 0, 0)
    return delay, header + msg[12:end] + body


def log_query(out, msg, peer):
    """Prints QUERY <type> <name> id=<id> from=<peer> (flushed)."""
    qid, _, name, qtype, _ = parse_question(msg)
    out.write("QUERY %s %s id=%d from=%s\n"
              % ({A: "A", AAAA: "AAAA"}.get(qtype, qtype), name, qid, peer))
    out.flush()


def serve_tcp(conn, out, log):
    """Answers the queries of one TCP connection until its end (blocking:
    the tests send one at a time)."""
    conn.settimeout(5)
    with conn:
        while True:
            head = conn.recv(2, socket.MSG_WAITALL)
            if len(head) < 2:
                return
            msg = conn.recv(struct.unpack("!H", head)[0], socket.MSG_WAITALL)
            try:
                if log:
                    log_query(out, msg, "tcp")
                delay, resp = answer(msg, tcp=True)
            except (ValueError, IndexError, struct.error):
                return
            if delay is None:
                while conn.recv(4096):
                    pass
                if log:
                    out.write("HELD CLOSED\n")
                    out.flush()
                return
            conn.sendall(struct.pack("!H", len(resp)) + resp)


def bind(port, tcp):
    """The UDP socket, and with tcp a TCP one listening on the same port
    (port 0: a free one for both, tried again while TCP's is taken)."""
    while True:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", port))
        if not tcp:
            return sock, None
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind(("127.0.0.1", sock.getsockname()[1]))
        except OSError:
            if port:
                raise
            sock.close()
            listener.close()
            continue
        listener.listen(16)
        return sock, listener


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--log", action="store_true")
    ap.add_argument("--port-file")
    ap.add_argument("--tcp", action="store_true")
    args = ap.parse_args()
    sock, listener = bind(args.port, args.tcp)
    out = sys.stdout
    out.write("PORT %d\n" % sock.getsockname()[1])
    out.flush()
    if args.port_file:
        with open(args.port_file + ".tmp", "w") as f:
            f.write("%d\n" % sock.getsockname()[1])
        os.rename(args.port_file + ".tmp", args.port_file)
    later = []  # heap of (due, seq, response, address)
    seq = 0
    stdin = sys.stdin.fileno()
    while True:
        timeout = None
        if later:
            timeout = max(0.0, later[0][0] - time.monotonic())
        ready, _, _ = select.select([sock, stdin] + ([listener] if listener
                                    else []), [], [], timeout)
        if stdin in ready and not os.read(stdin, 4096):
            return
        if listener in ready:
            try:
                serve_tcp(listener.accept()[0], out, args.log)
            except OSError:  # a reset, or 5 seconds of silence
                pass
        if sock in ready:
            msg, peer = sock.recvfrom(4096)
            try:
                delay, resp = answer(msg)
                if args.log:
                    log_query(out, msg, peer[1])
            except (ValueError, IndexError, struct.error):
                continue
            if delay is None:
                continue
            seq += 1
            heapq.heappush(later, (time.monotonic() + delay, seq, resp, peer))
        now = time.monotonic()
        while later and later[0][0] <= now:
            _, _, resp, peer = heapq.heappop(later)
            sock.sendto(resp, peer)


if __name__ == "__main__":
    try:
        main()
    except (KeyboardInterrupt, BrokenPipeError):
        pass
