"""The worker protocol's pieces on their own: framing, the lossless value encoding, tree removal."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from appsneo_utils import _sandbox_protocol as P
from appsneo_utils._sandbox_files import empty_dir, remove_tree


@pytest.mark.parametrize("value", [
    None, True, False, 0, -5, 2 ** 63, -(2 ** 63) - 1, 10 ** 5000, 1.5, float("inf"), float("-inf"), "",
    "\udcff text", [], (), [1, (2, [3])], {1: "a", "1": "b", (1, 2): frozenset({3}), None: {4}},
    set(), {True, 2}, frozenset(), [[[[]]]],
], ids=lambda v: type(v).__name__)
def test_values_round_trip_with_their_types(value):
    back = P.decode_value(P.encode_value(value))
    assert back == value and type(back) is type(value)
    if isinstance(value, (list, tuple)) and value:
        assert [type(x) for x in back] == [type(x) for x in value]


def test_nan_and_what_cannot_be_encoded():
    assert P.decode_value(P.encode_value(float("nan"))) != P.decode_value(P.encode_value(float("nan")))

    class Liar(int):
        pass

    for value in (Liar(3), object(), [map(int, "1")], {1: object()}):
        with pytest.raises(TypeError):
            P.encode_value(value)
    deep = []
    for _ in range(P.MAX_DEPTH + 5):
        deep = [deep]
    with pytest.raises(TypeError, match="deeper"):
        P.encode_value(deep)


@pytest.mark.parametrize("text", ['{"a": 1}', '["nope", 1]', '[1]', '["int", 5]', '["dict", 1]', '["float", "x"]'])
def test_malformed_values_are_refused(text):
    with pytest.raises(ValueError):
        P.decode_value(text)


def test_reader_splits_framed_messages_linearly_whatever_the_chunks():
    blob = b"\x00\n\x1c" * (3 << 20)
    data = b"".join(P.frame({"op": P.TEST, "i": 1}, blob) + P.frame({"op": P.DONE}) + P.frame({"op": "x"}, b""))
    for size in (1, 4099, 65536):
        reader, got = P.Reader(), []
        start = time.monotonic()
        chunks = range(0, len(data), size) if size > 1 else range(0, 4096)  # byte by byte: the headers
        if size == 1:
            for i in chunks:
                got += reader.feed(data[i:i + 1])
            got += reader.feed(data[4096:])
        else:
            for i in chunks:
                got += reader.feed(data[i:i + size])
        assert time.monotonic() - start < 5
        assert [m["op"] for m in got] == [P.TEST, P.DONE, "x"] and got[0]["data"] == blob


def test_reader_refuses_a_broken_stream():
    with pytest.raises(ValueError):
        P.Reader().feed(b"not json\n")
    with pytest.raises(ValueError):
        P.Reader().feed(b'{"blob": -3}\n')


def test_remove_tree_any_depth_without_following_symlinks(tmp_path):
    # on tmpfs, as in the sandbox's private folders (a disk file system takes ms per rmdir here)
    if os.access("/dev/shm", os.W_OK):
        import tempfile

        tmp_path = Path(tempfile.mkdtemp(dir="/dev/shm"))
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("keep")
    top = tmp_path / "top"
    here = os.open(tmp_path, os.O_RDONLY)
    os.mkdir("top", dir_fd=here)
    fd = os.open("top", os.O_RDONLY, dir_fd=here)
    os.close(here)
    for _ in range(3000):  # deeper than PATH_MAX and than recursion allows
        os.mkdir("d", dir_fd=fd)
        os.symlink(str(victim), "link", dir_fd=fd)
        nxt = os.open("d", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = nxt
    os.close(fd)
    assert remove_tree(str(top)) and not top.exists()
    assert (victim / "keep.txt").read_text() == "keep"
    assert remove_tree(str(tmp_path / "missing"))
    assert remove_tree(str(tmp_path))


def test_empty_dir_only_what_a_uid_owns(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f").write_text("x")
    (tmp_path / "b").write_text("y")
    assert empty_dir(str(tmp_path), uid=os.getuid() + 1) and sorted(os.listdir(tmp_path)) == ["a", "b"]
    assert empty_dir(str(tmp_path)) and os.listdir(tmp_path) == []
