#!/usr/bin/env python3
"""libpq as an oracle for pgwarden-core's conninfo parser.

Reads one JSON request on stdin and writes one JSON answer on stdout, so a
test can ask about many strings with a single process start.

Request:
    {
      "parse":    ["host=a", ...],          # PQconninfoParse
      "validate": ["host=127.0.0.1 ...", ...],  # PQconnectStart + PQstatus
      "defaults": [{"PGHOST": "x"}, ...]    # PQconndefaults under that environment
    }
Answer:
    {
      "version": 150018,                    # PQlibVersion()
      "keywords": [{"keyword": ..., "envvar": ..., "compiled": ..., "dispchar": ...}],
      "parse":    [{"ok": {"host": "a"}} | {"error": "message"}, ...],
                  (a value that is not UTF-8 is {"bytes_hex": "c3"})
      "validate": [{"bad": bool, "message": "..."}, ...],
      "defaults": [{"host": "x", ...}, ...]
    }

`validate` starts a real connection attempt without polling it, so only pass
strings whose hosts are loopback addresses, `localhost` or socket directories:
anything else may wait on DNS. The caller interprets the message (an option
error versus a failed connect).

Exit status 3 with a reason on stderr means libpq could not be loaded.
"""

import ctypes
import ctypes.util
import json
import os
import sys


class PQconninfoOption(ctypes.Structure):
    _fields_ = [
        ("keyword", ctypes.c_char_p),
        ("envvar", ctypes.c_char_p),
        ("compiled", ctypes.c_char_p),
        ("val", ctypes.c_char_p),
        ("label", ctypes.c_char_p),
        ("dispchar", ctypes.c_char_p),
        ("dispsize", ctypes.c_int),
    ]


CONNECTION_BAD = 1


def load_libpq():
    candidates = []
    found = ctypes.util.find_library("pq")
    if found:
        candidates.append(found)
    candidates += ["libpq.so.5", "/usr/lib/x86_64-linux-gnu/libpq.so.5", "libpq.dylib"]
    errors = []
    for name in candidates:
        try:
            lib = ctypes.CDLL(name)
        except OSError as err:
            errors.append(f"{name}: {err}")
            continue
        lib.PQconninfoParse.restype = ctypes.POINTER(PQconninfoOption)
        lib.PQconninfoParse.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p)]
        lib.PQconndefaults.restype = ctypes.POINTER(PQconninfoOption)
        lib.PQconndefaults.argtypes = []
        lib.PQconninfoFree.argtypes = [ctypes.POINTER(PQconninfoOption)]
        lib.PQfreemem.argtypes = [ctypes.c_void_p]
        lib.PQconnectStart.restype = ctypes.c_void_p
        lib.PQconnectStart.argtypes = [ctypes.c_char_p]
        lib.PQstatus.restype = ctypes.c_int
        lib.PQstatus.argtypes = [ctypes.c_void_p]
        lib.PQerrorMessage.restype = ctypes.c_char_p
        lib.PQerrorMessage.argtypes = [ctypes.c_void_p]
        lib.PQfinish.argtypes = [ctypes.c_void_p]
        lib.PQlibVersion.restype = ctypes.c_int
        return lib
    sys.stderr.write("libpq not found: " + "; ".join(errors) + "\n")
    sys.exit(3)


def text(raw):
    """Text for names and messages (never fails; bad bytes become U+FFFD)."""
    return None if raw is None else raw.decode("utf-8", errors="replace")


def value(raw):
    """A value as a string, or {"bytes_hex": ...} when libpq holds bytes that are not UTF-8."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return {"bytes_hex": raw.hex()}


def options_to_list(ptr):
    out = []
    i = 0
    while ptr[i].keyword is not None:
        out.append(ptr[i])
        i += 1
    return out


def keyword_table(lib):
    ptr = lib.PQconndefaults()
    if not ptr:
        return []
    try:
        return [
            {
                "keyword": text(o.keyword),
                "envvar": text(o.envvar),
                "compiled": text(o.compiled),
                "dispchar": text(o.dispchar),
            }
            for o in options_to_list(ptr)
        ]
    finally:
        lib.PQconninfoFree(ptr)


def parse(lib, conninfo):
    errmsg = ctypes.c_void_p()
    ptr = lib.PQconninfoParse(conninfo.encode("utf-8"), ctypes.byref(errmsg))
    if not ptr:
        message = ""
        if errmsg.value:
            message = text(ctypes.cast(errmsg, ctypes.c_char_p).value)
            lib.PQfreemem(errmsg)
        return {"error": message.strip()}
    try:
        values = {}
        for o in options_to_list(ptr):
            if o.val is not None:
                values[text(o.keyword)] = value(o.val)
        return {"ok": values}
    finally:
        lib.PQconninfoFree(ptr)


def validate(lib, conninfo):
    conn = lib.PQconnectStart(conninfo.encode("utf-8"))
    if not conn:
        return {"bad": True, "message": "out of memory"}
    try:
        bad = lib.PQstatus(conn) == CONNECTION_BAD
        message = text(lib.PQerrorMessage(conn)) or ""
        return {"bad": bad, "message": message.strip()}
    finally:
        lib.PQfinish(conn)


def defaults(lib, env):
    saved = {k: v for k, v in os.environ.items() if k.startswith("PG")}
    for key in saved:
        del os.environ[key]
    os.environ.update(env)
    try:
        ptr = lib.PQconndefaults()
        if not ptr:
            return {}
        try:
            return {
                text(o.keyword): value(o.val)
                for o in options_to_list(ptr)
                if o.val is not None
            }
        finally:
            lib.PQconninfoFree(ptr)
    finally:
        for key in env:
            os.environ.pop(key, None)
        os.environ.update(saved)


def main():
    request = json.load(sys.stdin)
    lib = load_libpq()
    answer = {
        "version": lib.PQlibVersion(),
        "keywords": keyword_table(lib),
        "parse": [parse(lib, s) for s in request.get("parse", [])],
        "validate": [validate(lib, s) for s in request.get("validate", [])],
        "defaults": [defaults(lib, e) for e in request.get("defaults", [])],
    }
    json.dump(answer, sys.stdout)


if __name__ == "__main__":
    main()
