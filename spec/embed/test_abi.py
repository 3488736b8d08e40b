"""The ABI's stability checks that need no compiler: the shared library
exports exactly the functions capi/tapio.h declares (nothing missing,
nothing extra), every declaration is inside the part the FFI reads, and
the header's version macros are the library's runtime version.
Usage: test_abi.py TAPIO_H TAPIO_CDEF_H LIBTAPIO_SO"""
import ctypes
import re
import subprocess
import sys

from checks import check, finish

header, cdef, lib = sys.argv[1:4]



def declared(path):
    """Names of the functions a header declares (not function pointer
    types or fields): each statement ending in ';' that is not a typedef,
    a struct or an enum, and whose name is followed by its parameters."""
    text = re.sub(r"/\*.*?\*/", "", open(path).read(), flags=re.S)
    text = re.sub(r"^[ \t]*#(?:.*\\\n)*.*$", "", text, flags=re.M)
    text = text.replace('extern "C" {', "")
    text = re.sub(r"\{[^{}]*\}", "{}", text)  # struct and enum bodies
    names = set()
    for stmt in text.split(";"):
        stmt = stmt.strip()
        if re.match(r"(typedef|struct|enum)\b", stmt) or "(*" in stmt:
            continue
        m = re.match(r"[\w\s\*]*?\b(tapio_\w+)\s*\(", stmt)
        if m:
            names.add(m.group(1))
    return names


nm = subprocess.run(["nm", "-D", "--defined-only", lib], check=True,
                    capture_output=True, text=True).stdout
exported = {line.split()[2] for line in nm.splitlines()
            if line.split()[1] in "TWDBR"}
in_header = declared(header)
in_cdef = declared(cdef)
check(len(in_header) > 60, "the header declares %d functions"
      % len(in_header))
check(not (in_header - exported), "nothing declared is missing",
      " ".join(sorted(in_header - exported)))
check(not (exported - in_header), "nothing undeclared is exported",
      " ".join(sorted(exported - in_header)))
check(in_cdef == in_header, "every declaration is in tapio_cdef.h",
      " ".join(sorted(in_header ^ in_cdef)))

text = open(header).read()
v = [int(re.search(r"#define TAPIO_VERSION_%s (\d+)" % k, text).group(1))
     for k in ("MAJOR", "MINOR", "PATCH")]
c = ctypes.CDLL(lib)
c.tapio_version.restype = ctypes.c_uint32
c.tapio_version_string.restype = ctypes.c_char_p
check(c.tapio_version() == (v[0] << 16 | v[1] << 8 | v[2]),
      "tapio_version() is the header's TAPIO_VERSION")
check(c.tapio_version_string().decode() == "%d.%d.%d" % tuple(v),
      "tapio_version_string() is the header's")
soname = subprocess.run(["objdump", "-p", lib], capture_output=True,
                        text=True).stdout
check("SONAME               libtapio.so.%d" % v[0] in soname,
      "the soname carries the major version")
finish()
