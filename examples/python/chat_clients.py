# Drives a chat server (examples/chat.lua or python/chat.py) on
# 127.0.0.1:PORT through one scenario and prints what each client got,
# each wait bounded by a deadline: two clients talk, a taken name is
# refused, a client that never reads is dropped while another floods,
# "/quit", and a silent client dropped once idle.
import asyncio, sys, time

PORT = int(sys.argv[1])


async def connect(name):
    r, w = await asyncio.open_connection("127.0.0.1", PORT)
    w.write(name.encode() + b"\n")
    return r, w


async def expect(who, r):
    line = await asyncio.wait_for(r.readline(), 10)
    print(f"{who} got {line.decode()!r}")
    return line


async def main():
    ann_r, ann_w = await connect("ann")
    await expect("ann", ann_r)
    bob_r, bob_w = await connect("bob")
    await expect("bob", bob_r)
    await expect("ann", ann_r)
    ann_w.write(b"hello\n")
    await expect("bob", bob_r)
    r, w = await connect("ann")
    await expect("second ann", r)
    await expect("second ann", r)
    # bob reads nothing more while ann sends 30 MB: bob is dropped.
    line = b"x" * 99 + b"\n"
    async def flood():
        for _ in range(300000 // 1000):
            ann_w.write(line * 1000)
            await ann_w.drain()
    flooding = asyncio.create_task(flood())
    await expect("ann", ann_r)
    got = 0
    try:
        while data := await asyncio.wait_for(bob_r.read(1 << 16), 10):
            got += len(data)
    except ConnectionResetError:
        pass
    print(f"bob was dropped after less than 30 MB: {got < 30_000_000}")
    await asyncio.wait_for(flooding, 20)
    ann_w.write(b"/quit\n")
    await expect("ann", ann_r)
    start = time.monotonic()
    eve_r, eve_w = await connect("eve")
    await expect("eve", eve_r)
    await expect("eve", eve_r)
    await expect("eve", eve_r)
    print(f"eve was dropped after 1 s or more: {time.monotonic() - start >= 1}")

asyncio.run(main())
