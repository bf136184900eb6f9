"""What a sandbox worker can set up, decided once at its start: uid, namespaces, cgroup, mounts.

Loaded by path by `_sandbox_worker.py` (never imported by the caller); `Isolation` gets the
worker's copy of `_sandbox_child` (libc, prctl, namespace flags, the seccomp filter). Everything
that is refused falls back and is said in `report()` (the READY message).
"""

from __future__ import annotations

import json
import os
import stat
import sys

SANDBOX_UID_BASE = 1_500_000_000  # + worker pid: unique per live worker, far above real accounts
CGROUP_SLACK = 64 << 20  # pages a forked child copies from the warm worker, on top of memory_mb
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_BIND, MS_REC, MS_PRIVATE = 4096, 16384, 1 << 18
child = LIBC = None  # set by Isolation()


class Isolation:
    """What this worker managed to set up; decided once at start-up."""

    def __init__(self, child_module, allow_setuid: bool, allow_namespaces: bool, hide: list[str],
                 numpy_loaded: bool, world_writable: tuple[str, ...]):
        global child, LIBC  # one Isolation per worker process: the child module it was loaded beside
        child, LIBC = child_module, child_module.LIBC
        self.numpy, self.world_writable = numpy_loaded, world_writable
        self.linux = sys.platform.startswith("linux")
        self.root = os.geteuid() == 0
        self.netns = self.mountns = self.ipcns = self.hidepid = False
        self.private_dirs: list[str] = []
        self.hidden: list[str] = []  # folders replaced by a tmpfs exposing only the interpreter
        self.hidden_data: list[str] = []  # --hide paths made empty for the sandbox
        self.notes: list[str] = []
        self.cgroup = self.cgroup_dir = self.cgroup_limit_file = None
        self.cgroup_fd: int | None = None  # its cgroup.procs, open: a child joins with one write
        # An ordinary user gets namespaces through a user namespace of its own (where the kernel
        # allows it); its children then drop the capabilities that namespace gave the worker.
        self.userns = allow_namespaces and self.linux and LIBC is not None and not self.root and _user_namespace()
        if allow_namespaces and (self.root or self.userns) and self.linux and LIBC is not None:
            self._namespaces(hide)
            self._make_cgroup()
        self.subreaper = child.prctl(child.PR_SET_CHILD_SUBREAPER, 1)
        self.uid = self.gid = None
        if allow_setuid and self.root:
            self._choose_uid()
        self.locked_keyring = self.uid is not None and _locked_session_keyring()
        self.seccomp = allow_namespaces and self.linux and _probe_seccomp()
        # Installed here once, the filter holds in every child (a filter per fork cost a BPF
        # compilation each test); the worker itself never opens AF_UNIX sockets or io_uring.
        self.seccomp_inherited = self.seccomp and child.install_seccomp()
        self.pidfd = hasattr(os, "pidfd_open")
        # Baseline address space (the warm interpreter): memory_mb is granted on top of it.
        self.base_vm = _vm_size()

    def _namespaces(self, hide: list[str]):
        if LIBC.unshare(child.CLONE_NEWNET) == 0:
            self.netns = True
        # children get an IPC namespace each; the UTS one is the worker's (no child can sethostname)
        self.ipcns = LIBC.unshare(child.CLONE_NEWIPC | child.CLONE_NEWUTS) == 0
        if LIBC.unshare(child.CLONE_NEWNS) != 0:
            return
        # Private propagation: nothing mounted here is seen by the host, and vice versa.
        if LIBC.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0:
            return
        self.mountns = True
        keep = _keep_paths()
        for d in self.world_writable:
            real = os.path.realpath(d)
            if real in self.private_dirs or not os.path.isdir(real):
                continue
            if not os.stat(real).st_mode & stat.S_IWOTH:
                continue
            if any(k == real or k.startswith(real + os.sep) for k in keep):
                continue  # the interpreter or the kit lives there: cannot hide it
            if LIBC.mount(b"tmpfs", real.encode(), b"tmpfs", MS_NOSUID | MS_NODEV,
                          b"mode=1777,size=512m,nr_inodes=65536") == 0:
                self.private_dirs.append(real)
        # Other users' processes (the caller's command line and environment) become invisible.
        self.hidepid = LIBC.mount(b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                                  b"hidepid=2") == 0
        for path in hide:
            self._hide(os.path.realpath(path), keep)

    def _hide(self, path: str, keep: list[str]) -> None:
        """An empty read-only mount over a folder, /dev/null over a file (never over the interpreter)."""
        if not os.path.exists(path) or any(k == path or k.startswith(path + os.sep) for k in keep):
            if os.path.exists(path):
                self.notes.append(f"not hidden (the interpreter or the kit is inside): {path}")
            return
        if os.path.isdir(path):
            done = LIBC.mount(b"tmpfs", path.encode(), b"tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                              b"mode=0555,size=4k,nr_inodes=8") == 0
        else:
            done = LIBC.mount(b"/dev/null", path.encode(), None, MS_BIND, None) == 0
        (self.hidden_data if done else self.notes).append(path if done else f"could not hide {path}")

    def _make_cgroup(self) -> None:
        """A memory cgroup (v1 or v2) of our own for the children: caps forks, memfds and SysV memory."""
        try:
            with open("/proc/self/cgroup") as f:
                lines = [line.rstrip("\n").split(":", 2) for line in f]
        except OSError:
            return
        candidates = []
        for _, controllers, rel in lines:
            if "memory" in controllers.split(","):
                candidates.append((f"/sys/fs/cgroup/memory{rel}", "memory.limit_in_bytes"))
            elif controllers == "" and os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
                candidates.append((f"/sys/fs/cgroup{rel}", "memory.max"))
        for base, limit_file in candidates:
            path = os.path.join(base.rstrip("/"), f"appsneo-sandbox-{os.getpid()}")
            try:
                os.mkdir(path, 0o700)
            except OSError:
                continue
            if os.path.exists(os.path.join(path, limit_file)):
                self.cgroup_dir, self.cgroup_limit_file = path, os.path.join(path, limit_file)
                self.cgroup = os.path.join(path, "cgroup.procs")
                # opened here (as root): "0" written to it by a child moves that child, without a
                # path lookup in every test; the kernel checks the opener's credentials
                self.cgroup_fd = os.open(self.cgroup, os.O_WRONLY)
                return
            os.rmdir(path)
        self.notes.append("no memory cgroup: memory_mb caps each process's address space only")

    def set_memory(self, memory_mb: int) -> None:
        if self.cgroup_limit_file:
            limit = str((int(memory_mb) << 20) + CGROUP_SLACK)
            try:
                with open(self.cgroup_limit_file, "w") as f:
                    f.write(limit)
                swap = os.path.join(self.cgroup_dir, "memory.memsw.limit_in_bytes")
                if os.path.exists(swap):
                    with open(swap, "w") as f:
                        f.write(limit)
            except OSError as exc:
                self.notes.append(f"cgroup limit not set: {exc}")

    def remove_cgroup(self) -> None:
        if self.cgroup_fd is not None:
            os.close(self.cgroup_fd)
            self.cgroup_fd = None
        if self.cgroup_dir:
            try:
                os.rmdir(self.cgroup_dir)
            except OSError:
                pass

    def _choose_uid(self) -> None:
        """A uid that can switch and still read the interpreter (pyenv or conda under a 0700 /root
        cannot be read by other users: then the blocking directory is hidden behind a tmpfs that
        holds only the interpreter's folders, when a mount namespace allows it)."""
        needed = sorted({os.path.realpath(p) for p in
                         [sys.base_prefix, sys.prefix, os.path.dirname(os.path.realpath(sys.executable)),
                          *sys.path] if p and os.path.exists(p)})
        for uid in (SANDBOX_UID_BASE + os.getpid(), 65534):
            unreadable = _probe_uid(uid, needed)
            if unreadable is None:
                continue  # cannot switch to this uid here
            if unreadable and self.mountns:
                self._expose(unreadable)
                unreadable = _probe_uid(uid, needed) or []
            if unreadable:
                self.notes.append(f"no uid drop: the sandbox user could not read {unreadable[0]}")
                return
            self.uid = self.gid = uid
            return
        self.notes.append("no uid drop: setuid failed")

    def _expose(self, paths: list[str]) -> None:
        blockers: dict[str, list[str]] = {}
        for path in paths:
            current = "/"
            for part in path.split("/")[1:-1]:
                current = os.path.join(current, part)
                if not os.stat(current).st_mode & stat.S_IXOTH:
                    blockers.setdefault(current, []).append(path)
                    break
        for blocker, wanted in blockers.items():
            wanted = [w for w in wanted if not any(w != o and w.startswith(o + os.sep) for o in wanted)]
            handles = [(w, os.open(w, os.O_PATH)) for w in wanted]
            try:
                if LIBC.mount(b"tmpfs", blocker.encode(), b"tmpfs", MS_NOSUID | MS_NODEV,
                              b"mode=0755,size=1m") != 0:
                    continue
                for target, fd in handles:
                    if os.path.isdir(f"/proc/self/fd/{fd}"):
                        os.makedirs(target, mode=0o755, exist_ok=True)
                    else:
                        os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
                        open(target, "a").close()
                    LIBC.mount(f"/proc/self/fd/{fd}".encode(), target.encode(), None, MS_BIND | MS_REC, None)
                self.hidden.append(blocker)
            finally:
                for _, fd in handles:
                    os.close(fd)

    def report(self) -> dict:
        return {"platform": sys.platform, "root": self.root, "uid": self.uid, "netns": self.netns,
                "mountns": self.mountns, "private_dirs": self.private_dirs,
                "subreaper": self.subreaper, "pidfd": self.pidfd, "base_vm_mb": self.base_vm >> 20,
                "numpy": self.numpy, "ipcns": self.ipcns, "hidepid": self.hidepid,
                "seccomp": self.seccomp, "locked_keyring": self.locked_keyring, "cgroup": self.cgroup_dir,
                "userns": self.userns, "hidden": self.hidden, "hidden_data": self.hidden_data,
                "notes": self.notes}


def _probe_uid(uid: int, paths: list[str]) -> list[str] | None:
    """Paths a child switched to uid cannot read; None when it cannot switch at all."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            bad = [p for p in paths if not os.access(p, os.R_OK | (os.X_OK if os.path.isdir(p) else 0))]
            os.write(write_end, json.dumps(bad).encode())
            os._exit(0)
        except BaseException:
            os._exit(1)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        return None
    return json.loads(data)


def _vm_size() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 256 << 20  # macOS: RLIMIT_AS is not enforced there anyway




def _keep_paths() -> list[str]:
    """What the sandbox must still read: the interpreter, its libraries, this kit's sandbox files."""
    return [os.path.realpath(p) for p in [sys.prefix, sys.base_prefix, __file__, *sys.path] if p]


def _user_namespace() -> bool:
    """Enters a new user namespace mapping our own uid and gid to themselves; False where refused."""
    uid, gid = os.getuid(), os.getgid()
    if LIBC.unshare(child.CLONE_NEWUSER) != 0:
        return False
    for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
        with open(f"/proc/self/{name}", "w") as f:  # an error here is fatal: unmapped ids read nothing
            f.write(text)
    return True


def _locked_session_keyring() -> bool:
    """A new session keyring for this worker with no permission for anyone: every child inherits it
    (and possesses it) but can neither read, write, link, search nor invalidate it, and only its owner
    (root) could change that. It replaces a fresh session keyring per child (one keyring made and
    garbage-collected per test); the caller's session keyring is never reachable from a child."""
    serial = child.keyctl(child.KEYCTL_JOIN_SESSION_KEYRING, 0)
    return serial > 0 and child.keyctl(child.KEYCTL_SETPERM, serial, 0) == 0


def _probe_seccomp() -> bool:
    """Whether a child can install the AF_UNIX filter (and it works): checked once, in a fork."""
    if child.SECCOMP is None:
        return False
    pid = os.fork()
    if pid == 0:  # pragma: no cover
        try:
            child.prctl(child.PR_SET_NO_NEW_PRIVS, 1)
            if not child.install_seccomp():
                os._exit(1)
            import socket

            try:
                socket.socket(socket.AF_UNIX)
            except PermissionError:
                os._exit(0)
            os._exit(1)
        finally:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0
