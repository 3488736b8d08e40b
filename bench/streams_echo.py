"""The streams echo benchmark's asyncio servers: a task per connection, as
the streams page writes them, on asyncio's own loop or on uvloop.
Usage: /usr/bin/python3 streams_echo.py PORT asyncio|uvloop [lines]
  (no lines) reads up to 64 KiB, writes it back, drains
  lines      reads a line, writes it back, drains"""
import asyncio
import sys


def echo(read):
    async def handler(reader, writer):
        while True:
            data = await read(reader)
            if not data:
                break
            writer.write(data)
            await writer.drain()
        writer.close()
    return handler


async def main(port, read):
    server = await asyncio.start_server(echo(read), "127.0.0.1", port,
                                        backlog=1024)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if sys.argv[2] == "uvloop":
    import uvloop
    uvloop.install()
if sys.argv[3:] == ["lines"]:
    asyncio.run(main(int(sys.argv[1]), lambda r: r.readline()))
else:
    asyncio.run(main(int(sys.argv[1]), lambda r: r.read(65536)))
