"""JSONL records, the kit's one file format for samples and verdicts: safe to append, safe to kill.

Every writer appends one line per `os.write` or writes a whole file through a rename, so a run killed
mid-write leaves at most one partial last line; every reader drops that line (and `repair` cuts it off,
so that appending can go on). Files are opened without following symlinks: a link planted where a
record file will be written is refused, never followed.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def complete_lines(path, *, repair: bool = False) -> list[bytes]:
    """The whole lines of a JSONL file: a partly written last line (a kill mid-write) is left out,
    and with repair cut off the file."""
    path = Path(path)
    if not path.is_file():
        return []
    fd = os.open(path, (os.O_RDWR if repair else os.O_RDONLY) | NOFOLLOW)  # a planted symlink: refused
    try:
        with os.fdopen(os.dup(fd), "rb") as handle:
            data = handle.read()
        end = data.rfind(b"\n") + 1
        if repair and end != len(data):
            os.ftruncate(fd, end)
    finally:
        os.close(fd)
    return data[:end].splitlines()


def read_jsonl(path, *, repair: bool = False) -> list[dict]:
    """The rows (JSON objects) of a JSONL file; a partial last line is dropped, an unreadable line skipped."""
    rows = []
    for line in complete_lines(path, repair=repair):
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def open_append(path) -> int:
    """A file descriptor that appends to `path` (created 0644); a symlink there is refused."""
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | NOFOLLOW, 0o644)


def write_row(fd: int, row: dict) -> None:
    """One row as one line in one write, so a kill leaves at most one partial line (dropped on read)."""
    os.write(fd, (json.dumps(row, ensure_ascii=False) + "\n").encode())


def append_jsonl(path, rows) -> None:
    """Append rows, one write per line."""
    fd = open_append(path)
    try:
        for row in rows:
            write_row(fd, row)
    finally:
        os.close(fd)


def write_jsonl(rows, path) -> Path:
    """Write rows as a whole new file: a private temporary file (mkstemp: created, never opened through a
    name planted beforehand) renamed over `path`, so a kill leaves the old file and a symlink at `path` is
    replaced, never followed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path
