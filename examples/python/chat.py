# A line chat with streams (Python 3.13): the first line a client sends
# is its name, each line after it goes to every other client, "/quit"
# leaves. Each client has a reader task and a writer task in a TaskGroup;
# what is broadcast goes through the client's bounded Queue, so a client
# that stops reading is dropped once its queue is full, and one that says
# nothing for IDLE seconds is dropped too.
# Run: python3.13 chat.py [port [idle]]; then nc 127.0.0.1 8888
import asyncio
import sys

PORT = int(sys.argv[1]) if len(sys.argv) > 1 else 8888
IDLE = float(sys.argv[2]) if len(sys.argv) > 2 else 300
QUEUE_SIZE = 100
clients = {}  # name -> (queue, writer)


def broadcast(text, sender=None):
    for name, (queue, writer) in list(clients.items()):
        if name == sender:
            continue
        try:
            queue.put_nowait(text)
        except asyncio.QueueFull:  # it stopped reading: drop it
            print(f"{name} is too slow: dropped")
            queue.shutdown(immediate=True)
            writer.transport.abort()
        except asyncio.QueueShutDown:  # leaving already
            pass


async def send_lines(queue, writer):
    try:
        while True:
            writer.write((await queue.get()).encode())
            await writer.drain()
    except (asyncio.QueueShutDown, ConnectionError):
        pass
    finally:
        writer.close()  # the reader sees the end


async def read_lines(name, reader, queue):
    try:
        while True:
            async with asyncio.timeout(IDLE):
                line = await reader.readline()
            if not line or line == b"/quit\n":
                break
            broadcast(f"{name}: {line.decode()}", name)
    except TimeoutError:
        queue.put_nowait(f"idle for {IDLE:g} s: bye\n")
    except ConnectionError:
        pass
    finally:
        queue.shutdown()  # the writer sends what is queued, then ends


async def handle_client(reader, writer):
    name = (await reader.readline()).decode().strip()
    if not name or name in clients:
        writer.write(b"that name is taken\n")
        writer.close()
        return
    queue = asyncio.Queue(QUEUE_SIZE)
    clients[name] = (queue, writer)
    queue.put_nowait(f"welcome, {name}\n")
    broadcast(f"* {name} joined\n", name)
    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(send_lines(queue, writer))
            tg.create_task(read_lines(name, reader, queue))
    finally:
        del clients[name]
        broadcast(f"* {name} left\n")
        print(f"{name} left")


async def main():
    server = await asyncio.start_server(handle_client, "127.0.0.1", PORT)
    print(f"Serving on {server.sockets[0].getsockname()}")
    async with server:
        await server.serve_forever()

asyncio.run(main())
