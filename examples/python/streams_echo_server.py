# The streams page's TCP echo server (Python asyncio), as the Lua
# version's peer in examples/test_examples.sh; the port is an argument.
# Usage: streams_echo_server.py [port]
import asyncio
import sys

PORT = int(sys.argv[1]) if len(sys.argv) > 1 else 8888


async def handle_echo(reader, writer):
    data = await reader.read(100)
    message = data.decode()
    addr = writer.get_extra_info('peername')

    print(f"Received {message!r} from {addr!r}")

    print(f"Send: {message!r}")
    writer.write(data)
    await writer.drain()

    print("Close the connection")
    writer.close()


async def main():
    server = await asyncio.start_server(
        handle_echo, '127.0.0.1', PORT)

    addr = server.sockets[0].getsockname()
    print(f'Serving on {addr}')

    async with server:
        await server.serve_forever()

asyncio.run(main())
