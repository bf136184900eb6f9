"""Warm sandbox worker: forks one isolated child per test of an untrusted program.

Started by `appsneo_utils.execution.Executor` as `python -s -P _sandbox_worker.py`, never imported by
the caller. Standard library only (plus numpy, preloaded when installed), so that it starts fast and
its address space stays small.
It speaks newline-delimited JSON on its stdin/stdout (moved to private descriptors at start-up) and
never sees expected outputs: it sends back what each child printed or returned, and the caller
compares. A child inherits this process's memory, so anything held here is readable by the program.

Isolation per child (Linux as root, the full set): own session and process group; a uid/gid unique
to this worker (so `kill(-1)` from that uid reaches every process the program left behind and
nothing else, and RLIMIT_NPROC counts only the sandbox); no supplementary groups; no_new_privs;
rlimits on address space, CPU, file size, processes, open files, core size; a fresh working
directory; a scrubbed environment; stdin/stdout/stderr on fresh memory files. The worker itself
unshares a network namespace (no network at all) and a mount namespace with private tmpfs over the
world-writable directories (/tmp, /var/tmp, /dev/shm, /run/lock), emptied after every test.
Whatever is not permitted falls back (see `_Isolation`) and is reported in the `ready` message.
"""

from __future__ import annotations

import _signal
import atexit
import ctypes
import ctypes.util
import errno
import json
import os
import resource
import select
import shutil
import signal
import stat
import sys
import tempfile
import time
import traceback

# Preloaded here (before any fork) so that every child finds them in sys.modules: importing them
# afresh in every test would cost more than the fork itself. numpy is in the APPS prelude.
import array, bisect, collections, copy, decimal, fractions, functools, heapq, io, itertools  # noqa: E401,F401
import math, operator, queue, random, re, statistics, string, threading, types, typing  # noqa: E401,F401

try:  # the APPS prelude imports numpy; optional
    import numpy  # noqa: F401
except Exception:  # pragma: no cover - numpy missing or broken
    numpy = None

# The prelude the original APPS harness prepends, plus bisect, string, re and the star imports of
# typing and collections (LeetCode-style `List[int]` annotations). Executed once here into a dict
# that seeds every program's globals, so the line numbers in a program's tracebacks stay its own.
PRELUDE = """\
from typing import *
import sys
import time
import itertools
from itertools import accumulate, product, permutations, combinations
import collections
from collections import *
from collections import Counter, OrderedDict, deque, defaultdict, ChainMap
from functools import lru_cache
import math
from math import sqrt, sin, cos, tan, ceil, fabs, floor, gcd, exp, log, log2
import fractions
from typing import List, Tuple
import random
import heapq
from heapq import *
import bisect
import string
import re
try:
    import numpy as np
except ImportError:
    pass
"""

SANDBOX_UID_BASE = 1_500_000_000  # + worker pid: unique per live worker, far above real accounts
PRIVATE_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")
MARKER = "APPSNEO_SANDBOX"  # in every sandboxed process's environment (tests look for leftovers)

# exit codes of a child (anything else, or a signal, is a runtime error)
EXIT_OK, EXIT_ERROR, EXIT_LOAD_ERROR, EXIT_NO_FUNCTION, EXIT_SETUP = 0, 101, 102, 103, 104

CLONE_NEWNS, CLONE_NEWNET = 0x00020000, 0x40000000
MS_NOSUID, MS_NODEV, MS_BIND, MS_REC, MS_PRIVATE = 2, 4, 4096, 16384, 1 << 18
PR_SET_PDEATHSIG, PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 1, 36, 38


def _sandbox_environment() -> dict:
    """The whole environment a program sees (plus HOME and TMPDIR, its working directory)."""
    return {
        "PATH": os.pathsep.join([os.path.dirname(sys.executable), "/usr/local/bin", "/usr/bin", "/bin"]),
        "LANG": "C.UTF-8", "PYTHONIOENCODING": "utf-8", "PYTHONHASHSEED": "0",
        "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
        "USER": "sandbox", "LOGNAME": "sandbox", MARKER: "1",
    }


def _libc():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    except OSError:  # pragma: no cover
        return None


LIBC = _libc()


def _prctl(option: int, value: int) -> bool:
    if LIBC is None or not sys.platform.startswith("linux"):
        return False
    return LIBC.prctl(ctypes.c_int(option), ctypes.c_ulong(value), ctypes.c_ulong(0),
                      ctypes.c_ulong(0), ctypes.c_ulong(0)) == 0


class _Isolation:
    """What this worker managed to set up; decided once at start-up."""

    def __init__(self, allow_setuid: bool, allow_namespaces: bool):
        self.linux = sys.platform.startswith("linux")
        self.root = os.geteuid() == 0
        self.netns = self.mountns = False
        self.private_dirs: list[str] = []
        self.hidden: list[str] = []  # folders replaced by a tmpfs exposing only the interpreter
        if allow_namespaces and self.root and self.linux and LIBC is not None:
            self._namespaces()
        self.subreaper = _prctl(PR_SET_CHILD_SUBREAPER, 1)
        self.uid = self.gid = None
        self.notes: list[str] = []
        if allow_setuid and self.root:
            self._choose_uid()
        self.pidfd = hasattr(os, "pidfd_open")
        # Baseline address space (the warm interpreter): memory_mb is granted on top of it.
        self.base_vm = _vm_size()

    def _namespaces(self):
        if LIBC.unshare(CLONE_NEWNET) == 0:
            self.netns = True
        if LIBC.unshare(CLONE_NEWNS) != 0:
            return
        # Private propagation: nothing mounted here is seen by the host, and vice versa.
        if LIBC.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0:
            return
        self.mountns = True
        keep = [os.path.realpath(p) for p in [sys.prefix, sys.base_prefix, __file__, *sys.path] if p]
        for d in PRIVATE_DIRS:
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
                "numpy": numpy is not None,
                "hidden": self.hidden, "notes": self.notes}


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


def _own_process_count() -> int:
    """Processes of this uid (for RLIMIT_NPROC when the sandbox shares our uid)."""
    uid, n = os.getuid(), 0
    try:
        for name in os.listdir("/proc"):
            if name.isdigit():
                try:
                    n += os.stat(f"/proc/{name}").st_uid == uid
                except OSError:
                    pass
    except OSError:
        return 2048
    return n


def _new_file(name: str) -> int:
    if hasattr(os, "memfd_create"):
        return os.memfd_create(name, 0)
    handle, path = tempfile.mkstemp(prefix=f"appsneo-{name}-")
    os.unlink(path)
    return handle


def _read_file(fd: int, limit: int) -> bytes:
    size = min(os.fstat(fd).st_size, limit)
    chunks, offset = [], 0
    while offset < size:
        chunk = os.pread(fd, min(size - offset, 1 << 20), offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def _stderr_tail(files: dict, n: int) -> str:
    """The last `n` bytes the program wrote to stderr (read only when an error needs them)."""
    fd = files["stderr"]
    return os.pread(fd, n, max(0, os.fstat(fd).st_size - n)).decode("utf-8", "replace")


# ---------------------------------------------------------------- child side (untrusted code runs)

def _plain(value, depth=0):
    """The returned value as plain JSON data; raises TypeError for anything else.

    Exact type checks (not isinstance): a subclass could override __eq__ or __repr__.
    """
    if depth > 100:
        raise TypeError("nested deeper than 100 levels")
    t = type(value)
    if value is None or t is bool or t is int or t is float or t is str:
        return value
    if t is list or t is tuple:
        return [_plain(v, depth + 1) for v in value]
    if t is dict:
        out = {}
        for k, v in value.items():
            if not (k is None or type(k) in (str, int, float, bool)):
                raise TypeError(f"dict key of type {type(k).__name__}")
            out[k] = _plain(v, depth + 1)
        return out
    if t in _NUMPY_TYPES:  # exact numpy types only: a subclass could override tolist
        return _plain(value.tolist(), depth + 1)
    raise TypeError(f"an object of type {t.__module__}.{t.__qualname__}")


_NUMPY_TYPES = set()
if numpy is not None:
    _NUMPY_TYPES.add(numpy.ndarray)
    for _code in numpy.typecodes["AllInteger"] + numpy.typecodes["AllFloat"] + "?U":
        _NUMPY_TYPES.add(numpy.dtype(_code).type)


def _block_network():
    """Fallback when no network namespace could be made: refuse sockets at the audit hook."""
    blocked = {"socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg", "socket.getaddrinfo",
               "socket.gethostbyname", "socket.gethostbyaddr"}

    def hook(event, args):
        if event in blocked:
            raise PermissionError(f"network access is disabled in the sandbox ({event})")

    sys.addaudithook(hook)


def _child(job: dict, test_input, files: dict, workdir: str, iso: _Isolation, code_obj,
           prelude: dict, timeout: float):
    """Runs in the forked child: lock down, run the program, report through fd 3, never return."""
    try:
        os.setsid()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
            _signal.signal(sig, _signal.SIG_DFL)  # the C function: no enum wrapping on the hot path
        os.dup2(files["stdin"], 0)
        os.dup2(files["stdout"], 1)
        os.dup2(files["stderr"], 2)
        os.dup2(files["result"], 3)
        os.closerange(4, 1 << 16)
        os.chdir(workdir)
        if iso.uid is not None:
            os.setgroups([])
            os.setgid(iso.gid)
            os.setuid(iso.uid)
        _prctl(PR_SET_NO_NEW_PRIVS, 1)
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # after setuid, which clears it
        mem = iso.base_vm + (int(job["memory_mb"]) << 20)
        cpu = int(math.ceil(timeout)) + 1
        nproc = int(job.get("max_processes", 64))
        if iso.uid is None:  # the limit counts every process of the uid, ours included
            nproc += _own_process_count()
        limits = [
            (resource.RLIMIT_AS, mem), (resource.RLIMIT_CPU, cpu), (resource.RLIMIT_CORE, 0),
            (resource.RLIMIT_FSIZE, int(job["output_limit"])), (resource.RLIMIT_NPROC, nproc),
            (resource.RLIMIT_NOFILE, 256),
        ]
        for which, value in limits:
            try:
                soft, hard = resource.getrlimit(which)
                hard_new = value + (1 if which == resource.RLIMIT_CPU else 0)
                if hard != resource.RLIM_INFINITY:
                    value, hard_new = min(value, hard), min(hard_new, hard)
                resource.setrlimit(which, (value, hard_new))
            except (ValueError, OSError):
                pass  # e.g. RLIMIT_AS on macOS
        os.environ["HOME"] = os.environ["TMPDIR"] = workdir  # the rest was scrubbed at start-up
        tempfile.tempdir = workdir
        if not iso.netns:
            _block_network()
        stdin = io.TextIOWrapper(io.BufferedReader(io.FileIO(0, "r", closefd=False)), encoding="utf-8",
                                 errors="replace")
        stdout = io.TextIOWrapper(io.BufferedWriter(io.FileIO(1, "w", closefd=False), 1 << 16),
                                  encoding="utf-8", errors="replace")
        stderr = io.TextIOWrapper(io.BufferedWriter(io.FileIO(2, "w", closefd=False)), encoding="utf-8",
                                  errors="backslashreplace", line_buffering=True)
        sys.stdin = sys.__stdin__ = stdin
        sys.stdout = sys.__stdout__ = stdout
        sys.stderr = sys.__stderr__ = stderr
        sys.argv = ["solution.py"]
        sys.set_int_max_str_digits(0)  # the APPS-era Pythons had no limit on int <-> str
        random.seed()
        atexit._clear()
        module = types.ModuleType("__main__")
        module.__dict__.update(prelude)
        module.__dict__.update({"__name__": "__main__", "__file__": os.path.join(workdir, "solution.py"),
                                "__builtins__": __builtins__})
        sys.modules["__main__"] = module
    except BaseException:  # the sandbox could not be built: never run the program unconfined
        try:
            os.write(2, traceback.format_exc().encode()[-2000:])
        finally:
            os._exit(EXIT_SETUP)
    dumps = json.dumps
    write, exit_ = os.write, os._exit

    def report(obj) -> None:
        try:
            data = dumps(obj).encode()
            try:
                os.ftruncate(3, 0)
                os.lseek(3, 0, 0)
            except OSError:
                pass
            while data:
                data = data[write(3, data):]
        except BaseException:  # the program closed or replaced fd 3, or broke json: no report
            exit_(EXIT_ERROR)

    def finish(code: int) -> None:
        try:
            threading._shutdown()  # join non-daemon threads, as a normal interpreter exit does
        except BaseException:
            pass
        try:
            atexit._run_exitfuncs()
        except BaseException:
            pass
        try:
            stdout.flush()
            stderr.flush()
        except BaseException as exc:  # e.g. File too large: the output limit
            report({"error": _describe(exc)})
            exit_(EXIT_ERROR)
        exit_(code)

    call = job["fn_name"] is not None
    try:
        exec(code_obj, module.__dict__)
    except SystemExit as exc:
        if call:
            report({"error": f"SystemExit({exc.code!r}) while loading the module"})
            finish(EXIT_LOAD_ERROR)
        if exc.code is None or exc.code == 0:
            finish(EXIT_OK)
        if not isinstance(exc.code, int):
            try:
                stderr.write(f"{exc.code}\n")
            except BaseException:
                pass
        report({"error": f"SystemExit({exc.code!r})"})
        finish(EXIT_ERROR)
    except BaseException as exc:
        report({"error": _describe(exc)})
        finish(EXIT_LOAD_ERROR if call else EXIT_ERROR)
    if not call:
        finish(EXIT_OK)
    name = job["fn_name"]
    g = module.__dict__
    try:
        if isinstance(g.get("Solution"), type) and hasattr(g["Solution"], name):
            target = getattr(g["Solution"](), name)
        elif name in g:
            target = g[name]
        else:
            report({"error": f"no function or Solution method named {name!r}"})
            finish(EXIT_NO_FUNCTION)
    except BaseException as exc:
        report({"error": _describe(exc)})
        finish(EXIT_LOAD_ERROR)
    try:
        args = test_input if isinstance(test_input, list) else [test_input]
        value = target(*args)
    except BaseException as exc:
        report({"error": _describe(exc)})
        finish(EXIT_ERROR)
    try:
        report({"value": _plain(value)})
    except TypeError as exc:
        report({"unserializable": f"returned {exc}"})
    except BaseException as exc:
        report({"error": f"could not record the returned value: {_describe(exc)}"})
        finish(EXIT_ERROR)
    finish(EXIT_OK)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno == errno.EFBIG:
        return "output limit exceeded (File too large)"
    if isinstance(exc, SyntaxError):
        where = f" (line {exc.lineno})" if exc.lineno else ""
        return f"{type(exc).__name__}: {exc.msg}{where}"[:300]
    try:
        text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    except BaseException:
        text = type(exc).__name__
    return text[-300:]


# ---------------------------------------------------------------- worker side (trusted)

class Worker:
    def __init__(self, iso: _Isolation, proto_in: int, proto_out: int):
        self.iso, self.proto_in, self.proto_out = iso, proto_in, proto_out
        self.buffer = b""
        self.ppid = os.getppid()
        self.prelude: dict = {}
        exec(compile(PRELUDE, "<prelude>", "exec"), self.prelude)
        self.prelude.pop("__builtins__", None)
        self.scratch = self.iso.private_dirs[0] if self.iso.private_dirs else tempfile.gettempdir()
        self.current: int | None = None  # the child running a test
        self.workdir: str | None = None

    def terminate(self, *_):
        """SIGTERM from the caller (it gave up on a job): kill the sandbox, clean up, leave."""
        if self.current is not None:
            for target in (-self.current, self.current):
                try:
                    os.kill(target, signal.SIGKILL)
                except OSError:
                    pass
        try:
            self.kill_leftovers()
            if self.workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)
            self.clean_private_dirs()
        finally:
            os._exit(0)

    # protocol
    def send(self, obj) -> None:
        data = (json.dumps(obj) + "\n").encode()
        while data:
            data = data[os.write(self.proto_out, data):]

    def receive(self):
        while b"\n" not in self.buffer:
            chunk = os.read(self.proto_in, 1 << 20)
            if not chunk:
                return None
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)

    def serve(self) -> None:
        self.send({"op": "ready", "pid": os.getpid(), "isolation": self.iso.report()})
        while True:
            msg = self.receive()
            if msg is None or msg.get("op") == "exit":
                return
            if msg.get("op") == "job":
                if not self.run_job(msg):
                    return
            if os.getppid() != self.ppid:
                return

    # one program
    def run_job(self, job: dict) -> bool:
        """Runs every test of one program; False when the caller went away."""
        jid = job["id"]
        try:
            code_obj = compile_program(job["code"], stdin=job["fn_name"] is None)
        except Exception as exc:  # SyntaxError, IndentationError, ValueError (null bytes), ...
            self.send({"op": "done", "id": jid, "stopped": "compile_error", "error": _describe(exc)})
            return True
        budget = job.get("total_timeout")
        spent, stopped = 0.0, None
        for index, test_input in enumerate(job["inputs"]):
            timeout = float(job["timeout"])
            if budget is not None:
                left = float(budget) - spent
                if left <= 0:
                    stopped = "budget"
                    break
                timeout = min(timeout, left)
            try:
                outcome = self.run_test(job, test_input, code_obj, timeout)
            except Exception as exc:  # the harness itself failed (fork refused, disk full, ...)
                outcome = {"status": "error", "seconds": 0.0, "error": f"sandbox failure: {_describe(exc)}"}
            spent += outcome["seconds"]
            outcome.update(op="test", id=jid, index=index)
            self.send(outcome)
            if outcome["status"] in ("load_error", "no_function"):
                stopped = "compile_error"
                break
            if job.get("ack"):
                reply = self.receive()
                if reply is None:
                    return False
                if reply.get("op") != "next":
                    stopped = "caller"
                    break
        self.send({"op": "done", "id": jid, "stopped": stopped})
        return True

    def run_test(self, job: dict, test_input, code_obj, timeout: float) -> dict:
        files: dict[str, int] = {}
        workdir = tempfile.mkdtemp(prefix="appsneo-", dir=self.scratch)
        try:
            for name in ("stdin", "stdout", "stderr", "result"):
                files[name] = _new_file(name)
            if job["fn_name"] is None:
                data = test_input if isinstance(test_input, str) else "\n".join(map(str, test_input))
                os.write(files["stdin"], data.encode("utf-8", "surrogateescape"))
                os.lseek(files["stdin"], 0, os.SEEK_SET)
            if self.iso.uid is not None:
                os.chown(workdir, self.iso.uid, self.iso.gid)
            os.chmod(workdir, 0o700)
            start = time.perf_counter()
            self.workdir = workdir
            pid = os.fork()
            if pid == 0:  # pragma: no cover - runs in the child, which must never get back here
                try:
                    _child(job, test_input, files, workdir, self.iso, code_obj, self.prelude, timeout)
                finally:
                    os._exit(EXIT_SETUP)
            self.current = pid
            status, rusage, timed_out = self.wait(pid, timeout)
            self.current = None
            seconds = time.perf_counter() - start
            if not self.iso.subreaper:  # no reparenting to us: reach its process group at least
                try:
                    os.killpg(pid, signal.SIGKILL)
                except OSError:
                    pass
            leftovers = self.kill_leftovers()
            return self.outcome(job, files, status, rusage, timed_out, seconds, timeout, leftovers)
        finally:
            for fd in files.values():
                os.close(fd)
            shutil.rmtree(workdir, ignore_errors=True)
            self.clean_private_dirs()

    def wait(self, pid: int, timeout: float):
        """(status, rusage, timed_out) of child pid, killing its group at the deadline."""
        deadline = time.monotonic() + timeout
        if self.iso.pidfd:
            pidfd = os.pidfd_open(pid)
            try:
                poller = select.poll()
                poller.register(pidfd, select.POLLIN)
                while True:
                    left = deadline - time.monotonic()
                    if left <= 0 or poller.poll(max(1, int(left * 1000) + 1)):
                        break
            finally:
                os.close(pidfd)
            done, status, rusage = os.wait4(pid, os.WNOHANG)
        else:  # no pidfd (macOS, old kernels): poll with a growing sleep
            delay = 0.0002
            while True:
                done, status, rusage = os.wait4(pid, os.WNOHANG)
                left = deadline - time.monotonic()
                if done or left <= 0:
                    break
                time.sleep(min(delay, left))
                delay = min(delay * 2, 0.01)
        if done:
            return status, rusage, False
        for target in (-pid, pid):
            try:
                os.kill(target, signal.SIGKILL)
            except OSError:
                pass
        _, status, rusage = os.wait4(pid, 0)
        return status, rusage, True

    def kill_leftovers(self) -> int:
        """Kills every process the program left behind; returns how many were seen."""
        seen = 0
        deadline = time.monotonic() + 10
        killed_at = None
        while time.monotonic() < deadline:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return seen  # no child at all: with the subreaper, nothing is left
            if pid:
                seen += 1
                continue
            if killed_at is None or time.monotonic() - killed_at > 0.2:
                self.kill_sandbox_processes()
                killed_at = time.monotonic()
            time.sleep(0.001)
        return seen

    def kill_sandbox_processes(self) -> None:
        if self.iso.uid is not None:
            # A helper with the sandbox uid sends kill(-1): every process of that uid, atomically
            # with respect to fork, and none of anyone else's.
            pid = os.fork()
            if pid == 0:  # pragma: no cover
                try:
                    os.setgroups([])
                    os.setgid(self.iso.gid)
                    os.setresuid(self.iso.uid, self.iso.uid, self.iso.uid)
                    for _ in range(3):
                        os.kill(-1, signal.SIGKILL)
                finally:
                    os._exit(0)
            os.waitpid(pid, 0)
            return
        for pid in _descendants(os.getpid()):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass

    def outcome(self, job, files, status, rusage, timed_out, seconds, timeout, leftovers) -> dict:
        out = {"seconds": round(seconds, 6), "cpu": round(rusage.ru_utime + rusage.ru_stime, 6),
               "leftovers": leftovers}
        raw = _read_file(files["result"], 1 << 26)
        try:
            report = json.loads(raw) if raw else {}
            if not isinstance(report, dict):
                report = {}
        except ValueError:
            report = {}
        code = os.waitstatus_to_exitcode(status)
        cpu_limited = code in (-signal.SIGXCPU, -signal.SIGKILL) and out["cpu"] >= math.ceil(timeout)
        if timed_out or cpu_limited:
            out.update(status="timeout", error=f"time limit of {timeout:g} s exceeded")
            return out
        if code == EXIT_OK:
            if job["fn_name"] is None:
                data = _read_file(files["stdout"], int(job["output_limit"]))
                out.update(status="ok", stdout=data.decode("utf-8", "replace"))
            elif "value" in report:
                out.update(status="ok", result=json.dumps(report["value"]))
            elif "unserializable" in report:
                out.update(status="ok", unserializable=str(report["unserializable"])[:300])
            else:
                out.update(status="error", error="the program exited before returning a value")
            return out
        message = report.get("error") if isinstance(report.get("error"), str) else None
        if code == EXIT_LOAD_ERROR:
            out.update(status="load_error", error=message or "the module failed to load")
        elif code == EXIT_NO_FUNCTION:
            out.update(status="no_function", error=message or f"no function named {job['fn_name']!r}")
        elif code == EXIT_SETUP:
            out.update(status="error", error="sandbox setup failed: " + _stderr_tail(files, 2000)[-300:])
        elif code < 0:
            name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
            hint = {"SIGSEGV": " (stack overflow from deep recursion?)", "SIGXFSZ": " (output limit)"}
            out.update(status="error", error=f"killed by {name}{hint.get(name, '')}")
        else:
            last = _stderr_tail(files, 2000).strip().splitlines()[-1:] or [f"exit status {code}"]
            out.update(status="error", error=message or (f"exit status {code}: " + last[0])[:300])
        return out

    def clean_private_dirs(self) -> None:
        """Empties the private tmpfs mounts (nobody outside sees them, but the next test would)."""
        for d in self.iso.private_dirs:
            try:
                names = os.listdir(d)
            except OSError:
                continue
            for name in names:
                path = os.path.join(d, name)
                try:
                    if os.path.isdir(path) and not os.path.islink(path):
                        shutil.rmtree(path, ignore_errors=True)
                    else:
                        os.unlink(path)
                except OSError:
                    pass
        if self.iso.uid is not None:
            # A world-writable directory left shared (no mount namespace, as in a container without
            # CAP_SYS_ADMIN, or /tmp holding the interpreter or the kit): the sandbox uid can still
            # write there; remove what it left.
            for d in PRIVATE_DIRS:
                if os.path.realpath(d) in self.iso.private_dirs:
                    continue
                try:
                    with os.scandir(d) as entries:
                        for entry in entries:
                            try:
                                if entry.stat(follow_symlinks=False).st_uid == self.iso.uid:
                                    if entry.is_dir(follow_symlinks=False):
                                        shutil.rmtree(entry.path, ignore_errors=True)
                                    else:
                                        os.unlink(entry.path)
                            except OSError:
                                pass
                except OSError:
                    pass


def _descendants(root: int) -> list[int]:
    """Live descendants of root, from /proc/<pid>/task/<tid>/children (Linux)."""
    found, stack = [], [root]
    while stack:
        pid = stack.pop()
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/children") as f:
                    kids = [int(x) for x in f.read().split()]
            except (OSError, ValueError):
                continue
            found.extend(kids)
            stack.extend(kids)
    return found


def compile_program(source: str, stdin: bool = True):
    """Compiles a program, forgiving what the APPS harness forgives in standard-input programs.

    APPS runs those wrapped in a function, so its solutions may use a top-level `return` (here it
    becomes `raise SystemExit`, which keeps module semantics) or `nonlocal` for module variables
    (here the program is then wrapped in a function, as APPS does).
    """
    try:
        return compile(source, "solution.py", "exec", dont_inherit=True)
    except SyntaxError as exc:
        if not stdin or not any(k in str(exc.msg) for k in ("'return' outside function", "nonlocal")):
            raise
        first = exc
    import ast

    tree = ast.parse(source, "solution.py")
    if "nonlocal" not in str(first.msg):
        try:
            return compile(_TopLevelReturn().visit(tree), "solution.py", "exec", dont_inherit=True)
        except SyntaxError as exc:
            if "nonlocal" not in str(exc.msg):
                raise
        tree = ast.parse(source, "solution.py")
    hoisted = [n for n in tree.body if isinstance(n, ast.ImportFrom)
               and (n.module == "__future__" or any(a.name == "*" for a in n.names))]
    body = [n for n in tree.body if n not in hoisted] or [ast.Pass()]
    func = ast.FunctionDef(
        name="__apps_program__", body=body, decorator_list=[], returns=None, type_comment=None,
        args=ast.arguments(posonlyargs=[], args=[], vararg=None, kwonlyargs=[], kw_defaults=[],
                           kwarg=None, defaults=[]))
    call = ast.Expr(ast.Call(func=ast.Name("__apps_program__", ast.Load()), args=[], keywords=[]))
    module = ast.fix_missing_locations(ast.Module(body=[*hoisted, func, call], type_ignores=[]))
    return compile(module, "solution.py", "exec", dont_inherit=True)


class _TopLevelReturn:
    """Replaces `return` outside any function by `raise SystemExit`."""

    def visit(self, tree):
        import ast

        class Transformer(ast.NodeTransformer):
            def visit_FunctionDef(self, node):
                return node

            visit_AsyncFunctionDef = visit_ClassDef = visit_Lambda = visit_FunctionDef

            def visit_Return(self, node):
                return ast.copy_location(ast.Raise(exc=ast.Name("SystemExit", ast.Load()), cause=None), node)

        return ast.fix_missing_locations(Transformer().visit(tree))


def main(argv: list[str]) -> int:
    # The protocol moves off fds 0/1 so that nothing (a stray print, a child) can write into it.
    proto_in, proto_out = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)
    os.chdir("/")
    import warnings

    warnings.simplefilter("ignore")  # SyntaxWarnings of generated code would only fill our log
    os.environ.clear()  # whoever started us: nothing of theirs reaches a program
    os.environ.update(_sandbox_environment())
    sys.set_int_max_str_digits(0)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in a notebook belongs to the caller
    iso = _Isolation(allow_setuid="--no-setuid" not in argv, allow_namespaces="--no-namespaces" not in argv)
    worker = Worker(iso, proto_in, proto_out)
    signal.signal(signal.SIGTERM, worker.terminate)
    import gc

    gc.freeze()  # fewer copy-on-write page faults in the children
    try:
        worker.serve()
    except (BrokenPipeError, ConnectionResetError):
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
