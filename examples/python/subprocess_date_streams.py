# The date example with asyncio.create_subprocess_exec (Python asyncio):
# a child prints the date, its stdout is read a line of; the Lua
# version's counterpart in examples/test_examples.sh.
import asyncio
import sys


async def get_date():
    code = 'import datetime; print(datetime.datetime.now())'

    # Start the child with its standard output in a pipe.
    proc = await asyncio.create_subprocess_exec(
        sys.executable, '-c', code, stdout=asyncio.subprocess.PIPE)

    # One line of its output.
    data = await proc.stdout.readline()
    line = data.decode('ascii').rstrip()

    # Wait until it has exited.
    await proc.wait()
    return line

date = asyncio.run(get_date())
print(f"Current date: {date}")
