#!/usr/bin/env python3
"""A tiny DNS client of the tests' own, on plain sockets, for the DNS
forwarder's spec (examples/dns_forwarder.lua).

    dns_client.py PORT [--tcp] MSG... [-- [--tcp] MSG...]...

Each group of MSGs (groups are split by "--") is one client: one UDP socket
(or, with --tcp, one TCP connection, each message with its 2-byte length)
on 127.0.0.1. Every client sends all its messages at once, in order, then
every client reads until it has the answer to its last query (a query is
answered when an answer with its id comes), for at most 5 seconds. A MSG:

    ID:NAME:TYPE    a query (RD set) of NAME, TYPE (A, AAAA or a number)
    hex:HEX         these bytes as they are ("hex:" alone: an empty datagram)

Prints one line per answer received, in the order they came:

    <client> id=<id> rcode=<n> tc=<0|1> an=<count> ttl=<t,...>
        data=<address,...> len=<bytes> hex=<the answer's bytes>

(on one line), and "<client> TIMEOUT" for a client still waiting at the end.
"""
import select
import socket
import struct
import sys
import time

TYPES = {"A": 1, "AAAA": 28}


def query(qid, name, qtype):
    labels = b"".join(bytes([len(label)]) + label.encode("ascii")
                      for label in name.split(".") if label)
    return (struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + labels
            + b"\0" + struct.pack("!HH", TYPES.get(qtype) or int(qtype), 1))


def parse_msg(arg):
    if arg.startswith("hex:"):
        return bytes.fromhex(arg[4:]), None
    qid, name, qtype = arg.split(":")
    return query(int(qid), name, qtype), int(qid)


def skip_name(msg, pos):
    while msg[pos]:
        if msg[pos] >= 0xC0:
            return pos + 2
        pos += 1 + msg[pos]
    return pos + 1


def describe(msg):
    qid, flags, qd, an, ns, ar = struct.unpack("!HHHHHH", msg[:12])
    pos = 12
    for _ in range(qd):
        pos = skip_name(msg, pos) + 4
    ttls, data = [], []
    for _ in range(an):
        pos = skip_name(msg, pos)
        rtype, _, ttl, rdlen = struct.unpack("!HHIH", msg[pos:pos + 10])
        rdata = msg[pos + 10:pos + 10 + rdlen]
        ttls.append(str(ttl))
        if rtype in (1, 28):
            data.append(socket.inet_ntop(
                socket.AF_INET if rtype == 1 else socket.AF_INET6, rdata))
        pos += 10 + rdlen
    return ("id=%d rcode=%d tc=%d an=%d ttl=%s data=%s len=%d hex=%s"
            % (qid, flags & 15, (flags >> 9) & 1, an, ",".join(ttls),
               ",".join(data), len(msg), msg.hex()))


class Client:
    def __init__(self, index, port, tcp, msgs):
        self.index, self.tcp, self.buf = index, tcp, b""
        kind = socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM
        self.sock = socket.socket(socket.AF_INET, kind)
        self.sock.connect(("127.0.0.1", port))
        self.last = None
        for msg, qid in msgs:
            if qid is not None:
                self.last = qid
            if tcp:
                self.sock.sendall(struct.pack("!H", len(msg)) + msg)
            else:
                self.sock.send(msg)
        self.waiting = self.last is not None

    def receive(self, out):
        """Prints what arrived; False when the connection ended."""
        if not self.tcp:
            return self.answered(self.sock.recv(65536), out)
        data = self.sock.recv(65536)
        self.buf += data
        while len(self.buf) >= 2:
            n = struct.unpack("!H", self.buf[:2])[0]
            if len(self.buf) < 2 + n:
                break
            self.answered(self.buf[2:2 + n], out)
            self.buf = self.buf[2 + n:]
        return bool(data)

    def answered(self, msg, out):
        out.append("%d %s" % (self.index, describe(msg)))
        if len(msg) >= 2 and struct.unpack("!H", msg[:2])[0] == self.last:
            self.waiting = False
        return True


def main():
    port, groups = int(sys.argv[1]), [[]]
    for arg in sys.argv[2:]:
        if arg == "--":
            groups.append([])
        else:
            groups[-1].append(arg)
    clients = []
    for i, args in enumerate(groups, 1):
        tcp = "--tcp" in args
        msgs = [parse_msg(a) for a in args if a != "--tcp"]
        clients.append(Client(i, port, tcp, msgs))
    out, deadline = [], time.monotonic() + 5
    while any(c.waiting for c in clients):
        left = deadline - time.monotonic()
        socks = {c.sock: c for c in clients if c.waiting}
        ready, _, _ = select.select(list(socks), [], [], max(0, left))
        if not ready:
            break
        for s in ready:
            if not socks[s].receive(out):
                socks[s].waiting = False
                out.append("%d CLOSED" % socks[s].index)
    for c in clients:
        if c.waiting:
            out.append("%d TIMEOUT" % c.index)
    print("\n".join(out))


if __name__ == "__main__":
    main()
