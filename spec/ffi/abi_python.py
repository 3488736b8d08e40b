"""The ABI as Python sees it: cffi parses the generated declarations as
they are, and ctypes calls the library with a callback.
Usage: python3 abi_python.py <tapio_cdef.h> <libtapio.so>"""
import ctypes
import sys

import cffi

cdef_path, lib_path = sys.argv[1], sys.argv[2]

ffi = cffi.FFI()
ffi.cdef(open(cdef_path).read())
lib = ffi.dlopen(lib_path)
assert ffi.string(lib.tapio_errname(lib.TAPIO_EADDRINUSE)) == b"EADDRINUSE"
loop = ffi.new("tapio_loop **")
assert lib.tapio_loop_new(loop) == 0
opts = ffi.new("tapio_options **")
assert lib.tapio_options_new(loop[0], opts) == 0
assert lib.tapio_options_set_int(opts[0], b"backlog", 5) == 0
assert lib.tapio_options_set_int(opts[0], b"no_such", 1) == lib.TAPIO_EINVAL
lib.tapio_options_free(opts[0])
assert lib.tapio_loop_free(loop[0]) == 0

# ctypes: no declarations at all, a call_later callback stops the loop.
c = ctypes.CDLL(lib_path)
c.tapio_version_string.restype = ctypes.c_char_p
assert c.tapio_version_string() == b"0.1.0"
c.tapio_loop_time.restype = ctypes.c_double
c.tapio_loop_time.argtypes = [ctypes.c_void_p]
c.tapio_call_later.argtypes = [ctypes.c_void_p, ctypes.c_double,
                               ctypes.c_void_p, ctypes.c_void_p,
                               ctypes.c_void_p]
CALL = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
lp = ctypes.c_void_p()
assert c.tapio_loop_new(ctypes.byref(lp)) == 0
fired = []
start = c.tapio_loop_time(lp)


def on_timer(_ud):
    fired.append(c.tapio_loop_time(lp) - start)
    c.tapio_loop_stop(lp)


cb = CALL(on_timer)
assert c.tapio_call_later(lp, 0.01, ctypes.cast(cb, ctypes.c_void_p),
                          None, None) == 0
assert c.tapio_loop_run(lp) == 0
assert c.tapio_loop_free(lp) == 0
assert len(fired) == 1 and fired[0] >= 0.01, fired
print("1 passed, 0 failed")
