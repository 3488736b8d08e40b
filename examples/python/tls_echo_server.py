# The reference's TCP echo server with TLS (Python asyncio), as the Lua
# version's peer in examples/test_examples.sh.
# Usage: tls_echo_server.py [certdir [port]]
import asyncio
import ssl
import sys

CERTDIR = sys.argv[1] if len(sys.argv) > 1 else "."
PORT = int(sys.argv[2]) if len(sys.argv) > 2 else 8443


class EchoServerProtocol(asyncio.Protocol):
    def connection_made(self, transport):
        peername = transport.get_extra_info('peername')
        print('Connection from {}'.format(peername))
        self.transport = transport

    def data_received(self, data):
        message = data.decode()
        print('Data received: {!r}'.format(message))
        print('Send: {!r}'.format(message))
        self.transport.write(data)
        print('Close the client socket')
        self.transport.close()


async def main():
    loop = asyncio.get_running_loop()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(CERTDIR + "/server.pem", CERTDIR + "/server.key")
    server = await loop.create_server(
        lambda: EchoServerProtocol(), '127.0.0.1', PORT, ssl=context)
    async with server:
        await server.serve_forever()


asyncio.run(main())
