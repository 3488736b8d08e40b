#!/usr/bin/env python3
"""A small DNS server of the tests' own, on 127.0.0.1 (UDP), so that the
resolver specs make real lookups: answers that come at once, late, or never,
names that do not exist, names with several addresses.

    dns_server.py [--port N] [--log] [--port-file PATH]

Prints "PORT <n>" on stdout once it listens (and writes <n> to PATH with
--port-file, for a test that holds only the server's stdin), and serves
until its stdin closes (it dies with the test that started it). With --log, each query it
receives is printed as "QUERY <type> <name>" on stdout (flushed), so a test
that reads them can tell that a lookup reached it, or that none did.

The zone (names are case-insensitive):
    v4.tapio.test        A     127.0.0.1
    v6.tapio.test        AAAA  ::1
    both.tapio.test      A     127.0.0.1     AAAA ::1
    two4.tapio.test      A     127.0.0.2, 127.0.0.1   (in that order)
    six4.tapio.test      AAAA  ::1           A    127.0.0.1
    mix.tapio.test       AAAA  ::1, ::ffff:127.0.0.1    A 127.0.0.1
    *.bench.tapio.test   A     127.0.0.1     (any name: the resolver bench)
    anything else        NXDOMAIN
Prefix labels change how a name is answered:
    slowNNN.<name>       answered as <name> after NNN milliseconds
    silent.<name>        never answered
    fail.<name>          SERVFAIL
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
    "six4.tapio.test": {A: ["127.0.0.1"], AAAA: ["::1"]},
    "mix.tapio.test": {A: ["127.0.0.1"], AAAA: ["::1", "::ffff:127.0.0.1"]},
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


def answer(msg):
    """(delay in seconds or None for never, the response) for a query."""
    qid, flags, name, qtype, end = parse_question(msg)
    delay, rcode = 0.0, None
    labels = name.split(".")
    while labels:
        first = labels[0]
        if first.startswith("slow") and first[4:].isdigit():
            delay = int(first[4:]) / 1000.0
        elif first == "silent":
            return None, b""
        elif first == "fail":
            rcode = SERVFAIL
        else:
            break
        labels = labels[1:]
    code, addrs = records(".".join(labels), qtype)
    if rcode is None:
        rcode = code
    if rcode != NOERROR:
        addrs = []
    family = socket.AF_INET if qtype == A else socket.AF_INET6
    body = b"".join(
        struct.pack("!HHHIH", 0xC00C, qtype, 1, 60,
                    4 if qtype == A else 16) + socket.inet_pton(family, a)
        for a in addrs)
    rd = flags & 0x0100
    header = struct.pack("!HHHHHH", qid, 0x8080 | rd | rcode, 1, len(addrs),
                         0, 0)
    return delay, header + msg[12:end] + body


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--log", action="store_true")
    ap.add_argument("--port-file")
    args = ap.parse_args()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", args.port))
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
        ready, _, _ = select.select([sock, stdin], [], [], timeout)
        if stdin in ready and not os.read(stdin, 4096):
            return
        if sock in ready:
            msg, peer = sock.recvfrom(4096)
            try:
                delay, resp = answer(msg)
                _, _, name, qtype, _ = parse_question(msg)
                if args.log:
                    out.write("QUERY %s %s\n"
                              % ({A: "A", AAAA: "AAAA"}.get(qtype, qtype),
                                 name))
                    out.flush()
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
