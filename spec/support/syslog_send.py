#!/usr/bin/env python3
"""Sends log records through Python's logging.handlers.SysLogHandler, a
real syslog sender for spec/syslog_spec.lua.

    syslog_send.py (udp PORT | unix PATH) [--name NAME] [--format FMT]
                   LEVEL MESSAGE...

Each MESSAGE goes as one record of logger NAME ("app" unless given) at
LEVEL (debug, info, warning, error, critical), to 127.0.0.1:PORT over UDP
or to the Unix datagram socket PATH, formatted by FMT (a logging format;
the handler's default, the bare message, unless given), with the
handler's defaults otherwise: facility user, a NUL appended.
"""
import logging
import logging.handlers
import sys


def main(argv):
    kind, where, rest = argv[0], argv[1], argv[2:]
    name, fmt = "app", None
    while rest and rest[0].startswith("--"):
        if rest[0] == "--name":
            name = rest[1]
        elif rest[0] == "--format":
            fmt = rest[1]
        rest = rest[2:]
    address = ("127.0.0.1", int(where)) if kind == "udp" else where
    handler = logging.handlers.SysLogHandler(address=address)
    if fmt:
        handler.setFormatter(logging.Formatter(fmt))
    log = logging.getLogger(name)
    log.propagate = False
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    level = getattr(logging, rest[0].upper())
    for message in rest[1:]:
        log.log(level, message)
    handler.close()


if __name__ == "__main__":
    main(sys.argv[1:])
