"""Removing what a sandboxed program left: any depth, never following a symlink.

Used by the sandbox worker after every test (loaded by path) and by the caller after a worker was
killed (the shared temporary folders, for the worker's uid). Standard library only.
"""

from __future__ import annotations

import os

# world-writable folders: private tmpfs mounts in a worker's mount namespace, else shared
PRIVATE_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")


def remove_tree(path: str) -> bool:
    """Removes `path` and all under it; True when it is gone.

    Iterative (any depth: recursion fails at about 1,000 levels), never follows a symlink, holds
    two directory descriptors at a time, and checks every step back up (`..`) against the folder it
    came from, so that a tree moved meanwhile cannot lead it elsewhere.
    """
    head, name = os.path.split(os.path.abspath(path))
    try:
        parent = os.open(head, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return False
    try:
        return _remove_in(parent, name)
    except OSError:
        return False
    finally:
        os.close(parent)


def _remove_in(parent: int, name: str) -> bool:
    try:
        os.unlink(name, dir_fd=parent)
        return True
    except FileNotFoundError:
        return True
    except (IsADirectoryError, PermissionError):
        pass  # a folder (Linux says EISDIR, others EPERM)
    fd = _open_dir(parent, name)
    if fd is None:
        return False
    stack, names = [(_ident(fd), _clear_files(fd))], []
    try:
        while stack:
            pending = stack[-1][1]
            if pending:
                sub_name = pending.pop()
                sub = _open_dir(fd, sub_name)
                if sub is None:
                    return False
                os.close(fd)
                fd = sub
                names.append(sub_name)
                stack.append((_ident(fd), _clear_files(fd)))
                continue
            stack.pop()
            if not stack:
                break
            up = os.open("..", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = up
            if _ident(fd) != stack[-1][0]:
                return False  # moved under our feet: stop rather than remove anything else
            os.rmdir(names.pop(), dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=parent)
    return True


def _ident(fd: int) -> tuple:
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


def _open_dir(parent: int, name: str) -> int | None:
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
    try:
        return os.open(name, flags, dir_fd=parent)
    except PermissionError:  # not root: a folder the program made unreadable (it is ours: fix it)
        try:
            os.chmod(name, 0o700, dir_fd=parent)
            return os.open(name, flags, dir_fd=parent)
        except OSError:
            return None
    except OSError:
        return None


def _clear_files(fd: int) -> list[str]:
    """Unlinks every non-folder in fd; returns the folders' names."""
    folders = []
    try:
        os.fchmod(fd, 0o700)  # not root: a folder made read-only by the program
    except OSError:
        pass
    with os.scandir(fd) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                folders.append(entry.name)
            else:
                try:
                    os.unlink(entry.name, dir_fd=fd)
                except FileNotFoundError:
                    pass
    return folders


def empty_dir(path: str, uid: int | None = None) -> bool:
    """Removes every entry of folder `path` (only those owned by `uid` when given); True when done."""
    ok = True
    try:
        with os.scandir(path) as entries:
            names = [e.name for e in entries if uid is None or e.stat(follow_symlinks=False).st_uid == uid]
    except OSError:
        return False
    for name in names:
        ok = remove_tree(os.path.join(path, name)) and ok
    return ok
