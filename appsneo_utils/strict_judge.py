"""The kit's strict judge (`judge="strict"`): exact rules, total and linear on any output or value.

Standard input (`compare_stdout`), on bytes (never decoded), whitespace being the six ASCII
characters space, \\t, \\n, \\r, \\v, \\f and lines ending at \\n, \\r or \\r\\n only; the first step
that accepts wins:
  1. "exact":   output == expected
  2. "lines":   per line stripped of whitespace, trailing blank lines ignored
  3. "tokens":  the whitespace-separated tokens are equal
  4. "numbers": same number of tokens; each pair equal, or both plain ASCII decimal numbers
                ([+-], digits 0-9, at most one point, optional exponent) where an expected integer
                accepts only the same value (`5.0` for `5`, never a tolerance) and an expected
                non-integer accepts any number within ABS_TOL or REL_TOL of it (beyond the float
                range: exact values only).
Call-based (`compare_return`): the returned value, decoded losslessly, equals the expected JSON
value: tuples read as lists; bool only equals bool; an expected int accepts an int or a float of
exactly that value, an expected float a number within the tolerance; dict keys compared as JSON
writes them (`1` and `"1"` are one key); a set or any other type is never equal. The value may also
equal the single element of a one-element expected list (APPS stores outputs wrapped so).
"""

from __future__ import annotations

import json
import math
import re
from decimal import Decimal
from typing import Any

from ._sandbox_protocol import MAX_DEPTH

ABS_TOL = 1e-6
REL_TOL = 1e-6
_NUMBER = re.compile(rb"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")  # no nested repeats
_INTEGER = re.compile(rb"[+-]?[0-9]+")


def _as_bytes(text: str | bytes | list) -> bytes:
    if isinstance(text, list):  # some APPS rows hold the expected lines as a list
        text = "\n".join(map(str, text))
    return text if isinstance(text, bytes) else text.encode("utf-8", "surrogateescape")


def compare_stdout(output: str | bytes, expected: str | bytes | list) -> str | None:
    """The strict cascade step that accepts `output` ("exact", "lines", "tokens", "numbers"), or None."""
    got, want = _as_bytes(output), _as_bytes(expected)
    if got == want:
        return "exact"
    if _lines(got) == _lines(want):
        return "lines"
    got, want = got.split(), want.split()  # bytes.split(): ASCII whitespace only
    if got == want:
        return "tokens"
    if len(got) == len(want) and all(a == b or _close_tokens(a, b) for a, b in zip(got, want)):
        return "numbers"
    return None


def _lines(text: bytes) -> list[bytes]:
    lines = [line.strip() for line in text.splitlines()]  # bytes: \n, \r, \r\n only
    while lines and not lines[-1]:
        lines.pop()
    return lines


def _close_tokens(got: bytes, want: bytes) -> bool:
    if not (_NUMBER.fullmatch(got) and _NUMBER.fullmatch(want)):
        return False
    if _INTEGER.fullmatch(want):  # an integer is expected: that value exactly, never a tolerance
        return not _INTEGER.fullmatch(got) and Decimal(got.decode()) == Decimal(want.decode())
    a, b = float(got), float(want)
    if not (math.isfinite(a) and math.isfinite(b)):  # beyond float range: exact values only
        return Decimal(got.decode()) == Decimal(want.decode())
    return _close(a, b)


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=ABS_TOL)


def compare_return(value: Any, expected: Any) -> bool:
    """Whether a returned value (decoded losslessly) matches the expected JSON value, strictly."""
    try:
        if _same(value, expected, 0):
            return True
        return isinstance(expected, list) and len(expected) == 1 and _same(value, expected[0], 0)
    except RecursionError:
        return False


def _same(a: Any, b: Any, depth: int) -> bool:
    if depth > MAX_DEPTH + 2:
        return False
    ta, tb = type(a), type(b)
    if ta is tuple:
        a, ta = list(a), list
    if tb is tuple:
        b, tb = list(b), list
    if ta is bool or tb is bool:
        return ta is tb and a == b
    if ta in (int, float) and tb in (int, float):
        return _same_number(a, b)
    if ta is list and tb is list:
        return len(a) == len(b) and all(_same(x, y, depth + 1) for x, y in zip(a, b))
    if ta is dict and tb is dict:
        return _same_dict(a, b, depth)
    return ta is tb and ta in (str, type(None)) and a == b


def _same_number(value, expected) -> bool:
    if value == expected:  # exact, for ints of any size and floats alike (no conversion)
        return True
    if type(expected) is int:  # an expected integer: that value exactly
        return False
    try:
        return _close(float(value), float(expected))
    except OverflowError:  # an int beyond float range is never close to a float
        return False


def _json_key(key) -> str | None:
    if type(key) is str:
        return key
    if type(key) is bool or key is None:
        return json.dumps(key)
    if type(key) in (int, float):
        try:
            return json.dumps(key)
        except (ValueError, OverflowError):
            return None
    return None


def _same_dict(a: dict, b: dict, depth: int) -> bool:
    if len(a) != len(b):
        return False
    keyed = {}
    for k, v in a.items():
        name = _json_key(k)
        if name is None or name in keyed:
            return False
        keyed[name] = v
    return all(_json_key(k) in keyed and _same(keyed[_json_key(k)], v, depth + 1) for k, v in b.items())


def preview(value: Any, n: int = 80) -> str:
    """A short text of any value or output, for error messages; never raises, never walks it all."""
    try:
        text = _preview(value, n)
    except Exception as exc:  # a value that cannot even be previewed still gets a message
        text = f"<{type(value).__name__}: {type(exc).__name__}>"
    return repr(text[:n] + ("..." if len(text) > n else ""))


def _preview(value: Any, n: int) -> str:
    if isinstance(value, bytes):
        return value[:4 * n].decode("utf-8", "replace")
    if isinstance(value, str):
        return value[:4 * n]
    if type(value) is int and value.bit_length() > 4 * n:
        return f"<int of about {int(value.bit_length() * 0.30103)} digits>"
    if isinstance(value, (list, tuple, set, frozenset)):
        parts, size = [], 0
        for item in value:
            parts.append(_preview(item, n) if not isinstance(item, str) else repr(item[:n]))
            size += len(parts[-1]) + 2
            if size > n:
                parts.append("...")
                break
        open_, close = {list: "[]", tuple: "()"}.get(type(value), "{}")
        return open_ + ", ".join(parts) + close
    if isinstance(value, dict):
        items = [f"{_preview(k, n)}: {_preview(v, n)}" for k, v in list(value.items())[:8]]
        return "{" + ", ".join(items) + (", ...}" if len(value) > 8 else "}")
    return repr(value)[:4 * n]


def diff(output: bytes, expected: Any) -> str:
    got, want = output.split(), _as_bytes(expected).split()
    for i, (a, b) in enumerate(zip(got, want)):
        if a != b:
            return f"token {i + 1}: expected {preview(b, 40)}, got {preview(a, 40)}"
    return f"expected {len(want)} tokens, got {len(got)}" + ("" if got else " (no output)")
