# A TCP proxy (Python): each client's connection is joined to a new
# connection to HOST:UPSTREAM, raced over the name's IPv6 and IPv4
# addresses (Happy Eyeballs), and bytes pass both ways; each direction's
# end is passed on (write_eof), and the bytes each way are counted.
# Usage: python3 proxy.py PORT HOST UPSTREAM
import asyncio
import sys

PORT, HOST, UPSTREAM = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])


async def pipe(reader, writer):
    count = 0
    while data := await reader.read(65536):
        writer.write(data)
        count += len(data)
        await writer.drain()
    writer.write_eof()  # the other side's end, passed on
    return count


async def handle_client(reader, writer):
    try:
        up_reader, up_writer = await asyncio.open_connection(
            HOST, UPSTREAM, happy_eyeballs_delay=0.25)
    except OSError as e:
        print(f"cannot reach {HOST}: {e}")
        writer.close()
        return
    via = up_writer.get_extra_info("peername")[0]
    try:
        async with asyncio.TaskGroup() as tg:
            up = tg.create_task(pipe(reader, up_writer))
            down = tg.create_task(pipe(up_reader, writer))
        print(f"via {via}: {up.result()} bytes up, {down.result()} down")
    finally:
        writer.close()
        up_writer.close()


async def main():
    server = await asyncio.start_server(handle_client, "127.0.0.1", PORT)
    async with server:
        await server.serve_forever()

asyncio.run(main())
