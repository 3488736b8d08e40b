"""The streams echo benchmark's asyncio servers: a task per connection, as
the streams page writes them, on asyncio's own loop or on uvloop.
Usage: /usr/bin/python3 streams_echo.py PORT asyncio|uvloop [lines]
  (no lines) reads up to 64 KiB, writes it back, drains
  lines      reads a line, writes it back, drains"""
import asyncio
import sys


async def echo(reader, writer):
    while True:
        data = await reader.read(65536)
        if not data:
            break
        writer.write(data)
        await writer.drain()
    writer.close()


async def lines(reader, writer):
    while True:
        line = await reader.readline()
        if not line:
            break
        writer.write(line)
        await writer.drain()
    writer.close()


async def main(port, handler):
    server = await asyncio.start_server(handler, "127.0.0.1", port,
                                        backlog=1024)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if sys.argv[2] == "uvloop":
    import uvloop
    uvloop.install()
asyncio.run(main(int(sys.argv[1]),
                 lines if sys.argv[3:] == ["lines"] else echo))
