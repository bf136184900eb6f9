"""The caller <-> sandbox worker protocol, in one place: message kinds, statuses, framing, values.

Imported by `execution` (the caller) and loaded by path by `_sandbox_worker.py` (which runs as a
script with `python -s -P` and so cannot import the package). Standard library only.

Framing: every message is one JSON object on one line. A message with a `blob` field (a byte count)
is followed by exactly that many raw bytes: a program's stdout, or its encoded return value, travels
unescaped and uncopied (JSON-escaping megabytes of control bytes cost quadratic time).

Sequence:
  caller -> worker  CONFIG {setuid, namespaces, hide}          once, first (not on the command line,
                                                               which a forked child can read back)
  worker -> caller  READY {pid, isolation}                     once, at start-up
  caller -> worker  JOB {id, code, fn_name, inputs, start, judge, method, solution_class, limits...}
  worker -> caller  TEST {id, index, status, seconds, cpu[, error][, unserializable][, blob]}  per test
  caller -> worker  NEXT | STOP                                after each TEST, only when the job asks (ack)
  worker -> caller  DONE {id, stopped}                         stopped: None, STOP_* below
  worker -> caller  POISONED {error}                           the worker could not clean up after a test;
                                                               it exits, and the caller judges the job's
                                                               remaining tests on a fresh worker
  caller -> worker  EXIT                                       the worker cleans up and leaves
"""

from __future__ import annotations

import json
import math

# message kinds (the "op" field)
CONFIG, READY, JOB, TEST, NEXT, STOP, DONE, POISONED, EXIT = (
    "config", "ready", "job", "test", "next", "stop", "done", "poisoned", "exit")

# status of one test (TEST messages)
OK, ERROR, TIMEOUT, LOAD_ERROR, NO_FUNCTION = "ok", "error", "timeout", "load_error", "no_function"

# why a job ended before its last test (DONE messages)
STOP_COMPILE, STOP_BUDGET, STOP_CALLER, STOP_NO_METHOD = "compile_error", "budget", "caller", "no_method"

# the judges
STRICT, APPS = "strict", "apps"
JUDGES = (STRICT, APPS)

MAX_DEPTH = 100  # nesting of a returned value


def frame(header: dict, blob: bytes | None = None) -> list:
    """The byte strings of one message (written in order)."""
    if blob is not None:
        header = {**header, "blob": len(blob)}
    return [(json.dumps(header) + "\n").encode()] + ([blob] if blob else [])


class Reader:
    """Splits a byte stream into messages; linear in the bytes received, whatever they are."""

    def __init__(self):
        self.buffer = bytearray()
        self.scan = 0  # where the search for the next newline goes on
        self.header: dict | None = None  # a header waiting for its blob

    def feed(self, chunk: bytes) -> list[dict]:
        """Complete messages (a blob arrives as bytes under "data"); ValueError on a broken stream."""
        self.buffer += chunk
        out = []
        while True:
            if self.header is None:
                end = self.buffer.find(b"\n", self.scan)
                if end < 0:
                    self.scan = len(self.buffer)
                    return out
                header = json.loads(bytes(self.buffer[:end]))
                del self.buffer[:end + 1]  # bytearray drops its front in O(1)
                self.scan = 0
                if not isinstance(header, dict):
                    raise ValueError("a protocol message must be a JSON object")
                blob = header.get("blob")
                if blob:
                    if type(blob) is not int or blob < 0:
                        raise ValueError(f"bad blob size {blob!r}")
                    self.header = header
                    continue
                out.append(header)
            else:
                n = self.header["blob"]
                if len(self.buffer) < n:
                    return out
                self.header["data"] = bytes(self.buffer[:n])
                del self.buffer[:n]
                out.append(self.header)
                self.header = None


# ------------------------------------------------------------------ returned values, losslessly

def encode_value(value, numpy_types=frozenset()) -> str:
    """A returned value as JSON text that `decode_value` turns back into an equal value of the same types.

    Exact type checks (a subclass could override __eq__, __iter__ or __repr__). None, bool, str,
    finite floats and ints below 2**63 are plain JSON; everything else is a list tagged by its first
    element: ["list", ...], ["tuple", ...], ["set", ...], ["frozenset", ...], ["dict", k, v, ...],
    ["int", hex digits] (any size, linear time), ["float", "inf" | "-inf" | "nan"]. Exact numpy
    scalars and arrays become their `tolist()`. TypeError for anything else or deeper than MAX_DEPTH.
    """
    return json.dumps(_encode(value, 0, numpy_types), allow_nan=False)


def _encode(v, depth, numpy_types):
    if depth > MAX_DEPTH:
        raise TypeError(f"nested deeper than {MAX_DEPTH} levels")
    t = type(v)
    if v is None or t is bool or t is str:
        return v
    if t is int:
        return v if -(1 << 63) <= v < (1 << 63) else ["int", hex(v)]
    if t is float:
        return v if math.isfinite(v) else ["float", repr(v)]
    if t in (list, tuple, set, frozenset):
        return [t.__name__, *[_encode(x, depth + 1, numpy_types) for x in v]]
    if t is dict:
        out = ["dict"]
        for k, x in v.items():
            out += [_encode(k, depth + 1, numpy_types), _encode(x, depth + 1, numpy_types)]
        return out
    if t in numpy_types:
        return _encode(v.tolist(), depth + 1, numpy_types)
    raise TypeError(f"an object of type {t.__module__}.{t.__qualname__}")


_BUILD = {"list": list, "tuple": tuple, "set": set, "frozenset": frozenset}


def decode_value(text: str | bytes):
    """The value `encode_value` wrote; ValueError (or RecursionError) on anything malformed."""
    return _decode(json.loads(text))


def _decode(v):
    if type(v) is not list:
        if type(v) is dict:
            raise ValueError("an untagged JSON object")
        return v
    if not v or type(v[0]) is not str:
        raise ValueError("an untagged list")
    tag, items = v[0], v[1:]
    if tag in _BUILD:
        return _BUILD[tag](_decode(x) for x in items)
    if tag == "dict":
        if len(items) % 2:
            raise ValueError("a dict with a key and no value")
        return {_decode(items[i]): _decode(items[i + 1]) for i in range(0, len(items), 2)}
    if tag == "int" and len(items) == 1 and isinstance(items[0], str):
        return int(items[0], 16)
    if tag == "float" and items in (["inf"], ["-inf"], ["nan"]):
        return float(items[0])
    raise ValueError(f"unknown tag {tag!r}")
