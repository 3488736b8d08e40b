"""The two example hosts of examples/host/, each serving a tapio Lua client
(spec/embed/echo_clients.lua) while it runs its own main loop:
frame_host steps tapio once per frame for a few hundred frames with a Lua
echo server in its own lua_State; poll_host sleeps in its own poll() on
tapio's descriptor and its standard input, and takes no CPU while idle.
Usage: test_hosts.py BUILD_DIR SOURCE_DIR"""
import os
import subprocess
import sys
import time

from checks import check, finish

build, src = sys.argv[1], sys.argv[2]
tapio = os.path.join(build, "tapio")
clients = os.path.join(src, "spec", "embed", "echo_clients.lua")



def listening_port(proc):
    line = proc.stdout.readline()
    assert line.startswith("listening on "), "host said: %r" % line
    return line.split()[2]


def run_clients(port, n):
    r = subprocess.run([tapio, clients, port, str(n)], capture_output=True,
                       text=True, timeout=60)
    return r.returncode == 0 and r.stdout.strip() == "echoed %d" % n, \
        r.stdout + r.stderr


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def frame_host():
    frames = 240  # 4 s at 60 frames a second
    start = time.monotonic()
    proc = subprocess.Popen(
        [os.path.join(build, "frame_host"),
         os.path.join(src, "examples", "host", "echo_server.lua"),
         str(frames)], stdout=subprocess.PIPE, text=True)
    try:
        port = listening_port(proc)
        ok, out = run_clients(port, 5)
        check(ok, "frame_host: 5 Lua clients echoed byte for byte", out)
        ok, out = run_clients(port, 3)
        check(ok, "frame_host: 3 more, later", out)
        rest, _ = proc.communicate(timeout=30)
    finally:
        proc.kill()
    words = rest.split()
    stats = dict(zip(words[::2], words[1::2]))
    check(proc.returncode == 0, "frame_host exits 0, memory all given back")
    check(stats.get("frames") == str(frames), "frame_host ran %d frames" % frames,
          rest)
    check(stats.get("served") == "8", "frame_host served 8", rest)
    # never waits in tapio: the frames keep their pace (a step that waited
    # for events would stall once the clients are done), and no step takes
    # more than a few frames even on a loaded machine
    took = time.monotonic() - start
    check(took < 4 + 6, "frame_host: %d frames in %.1f s" % (frames, took))
    check(int(stats.get("longest_step_us", "1e9")) < 100000,
          "frame_host: longest step %s us" % stats.get("longest_step_us"))


def poll_host():
    proc = subprocess.Popen([os.path.join(build, "poll_host")],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    try:
        port = listening_port(proc)
        ok, out = run_clients(port, 5)
        check(ok, "poll_host: 5 Lua clients echoed byte for byte", out)
        # Idle: a second of nothing but its 250 ms timer. What is measured
        # is the host's CPU over that second, so the test waits it out.
        before = cpu_ticks(proc.pid)
        time.sleep(1.0)
        used = cpu_ticks(proc.pid) - before
        hz = os.sysconf("SC_CLK_TCK")
        check(used * 1000 // hz <= 30,
              "poll_host idle: %d ms of CPU in 1 s" % (used * 1000 // hz))
        proc.stdin.write("hello\n")
        proc.stdin.flush()
        check(proc.stdout.readline() == "stdin: hello\n",
              "poll_host answers its own descriptor")
        ok, out = run_clients(port, 2)
        check(ok, "poll_host: 2 more after", out)
        proc.stdin.write("quit\n")
        proc.stdin.flush()
        rest, _ = proc.communicate(timeout=30)
    finally:
        proc.kill()
    words = rest.split()
    stats = dict(zip(words[::2], words[1::2]))
    check(proc.returncode == 0 and stats.get("served") == "7",
          "poll_host served 7", rest)
    # a busy host wakes thousands of times a second; this one for its
    # clients and its timer (4 a second) only
    check(int(stats.get("wakeups", "1e9")) < 2000,
          "poll_host woke %s times" % stats.get("wakeups"))
    check(int(stats.get("ticks", "0")) >= 4, "poll_host timer ran")


frame_host()
poll_host()
finish()
