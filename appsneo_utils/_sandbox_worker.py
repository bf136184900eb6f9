"""Warm sandbox worker: forks one isolated child per test of an untrusted program.

Started by `appsneo_utils.execution.Executor` as `python -s -P _sandbox_worker.py` (its options
come in the protocol's CONFIG message: a forked child could read a command line back), never
imported by the caller. Standard library only (plus numpy, preloaded when installed), so that it
starts fast and its address space stays small. It speaks the protocol of `_sandbox_protocol.py`
on private descriptors (moved off stdin/stdout at start-up) and never sees expected outputs: it
sends back what each child printed or returned, and the caller compares. A child inherits this
process's memory, so anything held here is readable by the program.

Isolation (Linux as root, the full set): the worker unshares a network namespace (no network), an
IPC and a mount namespace with private tmpfs over the world-writable folders (/tmp, /var/tmp,
/dev/shm, /run/lock), a /proc that hides other users' processes (hidepid), and empty read-only
mounts over the folders and files CONFIG names (data, run folders, the problems file); it makes
a memory cgroup for its children. As an ordinary user it first enters a user namespace of its
own and then makes the same namespaces (no uid drop, no cgroup, no hidepid). Each child
(`_sandbox_child.py`) gets its own session, its own IPC namespace, the cgroup, a uid/gid
unique to this worker (so `kill(-1)` from that uid reaches every process the program left behind
and nothing else), the worker's locked session keyring, no capabilities, no_new_privs, rlimits,
the worker's seccomp filter refusing AF_UNIX sockets, a fresh working directory and a scrubbed
environment. A program is compiled once, in the child of its first test (see `_sandbox_child.py`).
After every test the worker kills what the program left and empties the private folders,
iteratively; when that fails it reports POISONED and exits, and the caller judges the remaining
tests on a fresh worker. Whatever is not permitted falls back (see `_sandbox_isolation.py`) and
is reported in READY.
"""

from __future__ import annotations

import importlib.util
import json
import marshal
import os
import select
import signal
import sys
import tempfile
import time

# Preloaded here (before any fork) so that every child finds them in sys.modules: importing them
# afresh in every test would cost more than the fork itself. numpy is in the APPS prelude.
import array, bisect, collections, copy, decimal, fractions, functools, heapq, io, itertools  # noqa: E401,F401
import math, operator, queue, random, re, statistics, string, threading, types, typing  # noqa: E401,F401

try:  # the APPS prelude imports numpy; optional
    import numpy  # noqa: F401
except Exception:  # pragma: no cover - numpy missing or broken
    numpy = None


def _sibling(name: str):
    """A module of this folder, by path: the worker runs with -P, so the package is not importable."""
    path = os.path.join(os.path.dirname(os.path.realpath(__file__)), f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"appsneo_sandbox{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


P = _sibling("_sandbox_protocol")
files = _sibling("_sandbox_files")
remove_tree, empty_dir = files.remove_tree, files.empty_dir
child = _sibling("_sandbox_child")
isolation = _sibling("_sandbox_isolation")
apps_judge = _sibling("apps_judge")  # the 2021 harness's input rules, the caller's own copy
LIBC = child.LIBC

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

PRIVATE_DIRS = files.PRIVATE_DIRS
MARKER = "APPSNEO_SANDBOX"  # in every sandboxed process's environment (tests look for leftovers)
NUMPY_TYPES = frozenset()
if numpy is not None:
    NUMPY_TYPES = frozenset([numpy.ndarray] + [numpy.dtype(c).type for c in
                                               numpy.typecodes["AllInteger"] + numpy.typecodes["AllFloat"] + "?U"])


def _sandbox_environment() -> dict:
    """The whole environment a program sees (plus HOME and TMPDIR, its working directory)."""
    return {
        "PATH": os.pathsep.join([os.path.dirname(sys.executable), "/usr/local/bin", "/usr/bin", "/bin"]),
        "LANG": "C.UTF-8", "PYTHONIOENCODING": "utf-8", "PYTHONHASHSEED": "0",
        "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
        "USER": "sandbox", "LOGNAME": "sandbox", MARKER: "1",
    }


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
        chunk = os.pread(fd, min(size - offset, 1 << 22), offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def _compiled(fd: int):
    """The code object a child handed over on its fd 4 (length, then marshal), or None."""
    size = os.fstat(fd).st_size
    if not 8 < size <= child.CODE_CACHE_LIMIT:
        return None
    data = _read_file(fd, size)
    if len(data) != size or int.from_bytes(data[:8], "little") != size - 8:
        return None  # cut short (the child was killed while writing it)
    try:
        code = marshal.loads(data[8:])
    except Exception:
        return None
    return code if isinstance(code, types.CodeType) else None


def _stderr_tail(files: dict, n: int) -> str:
    """The last `n` bytes the program wrote to stderr (read only when an error needs them)."""
    fd = files["stderr"]
    return os.pread(fd, n, max(0, os.fstat(fd).st_size - n)).decode("utf-8", "replace")


# ---------------------------------------------------------------- worker side (trusted)

class Worker:
    def __init__(self, proto_in: int, proto_out: int):
        self.proto_in, self.proto_out = proto_in, proto_out
        self.reader = bytearray()
        self.scan = 0
        self.ppid = os.getppid()
        prelude: dict = {}
        exec(compile(PRELUDE, "<prelude>", "exec"), prelude)
        prelude.pop("__builtins__", None)
        # what every child uses, made once here (see child.run_child)
        self.kit = types.SimpleNamespace(prelude=prelude, encode_value=P.encode_value, numpy_types=NUMPY_TYPES,
                                         apps=apps_judge)
        self.current: int | None = None  # the child running a test
        self.workdir: str | None = None
        self.poisoned: str | None = None  # why this worker cannot judge another test
        self.memory_mb: int | None = None
        self.code = None  # the running job's program, compiled by its first test's child

    def setup(self, iso) -> None:
        self.iso = iso
        self.scratch = iso.private_dirs[0] if iso.private_dirs else tempfile.gettempdir()

    def terminate(self, *_):
        """SIGTERM from the caller (it gave up on a job): kill the sandbox, clean up, leave."""
        if self.current is not None:
            for target in (-self.current, self.current):
                try:
                    os.kill(target, signal.SIGKILL)
                except OSError:
                    pass
        try:
            self.shutdown()
        finally:
            os._exit(0)

    def shutdown(self) -> None:
        self.kill_leftovers()
        self.kill_sandbox_processes()  # also clears the uid's keyrings
        if self.workdir:
            remove_tree(self.workdir)
        self.clean_private_dirs()
        self.iso.remove_cgroup()

    # protocol
    def send(self, header: dict, blob: bytes | None = None) -> None:
        for part in P.frame(header, blob):
            view = memoryview(part)
            while view:
                view = view[os.write(self.proto_out, view):]

    def receive(self):
        while True:
            end = self.reader.find(b"\n", self.scan)
            if end >= 0:
                line = bytes(self.reader[:end])
                del self.reader[:end + 1]
                self.scan = 0
                return json.loads(line)
            self.scan = len(self.reader)
            chunk = os.read(self.proto_in, 1 << 22)
            if not chunk:
                return None
            self.reader += chunk

    def serve(self) -> None:
        self.send({"op": P.READY, "pid": os.getpid(), "isolation": self.iso.report()})
        while True:
            msg = self.receive()
            if msg is None or msg.get("op") == P.EXIT:
                return
            if msg.get("op") == P.JOB and not self.run_job(msg):
                return
            if os.getppid() != self.ppid:
                return

    # one program
    def run_job(self, job: dict) -> bool:
        """Runs the tests of one program from job["start"] on; False when this worker must stop."""
        try:
            return self._run_job(job)
        finally:
            self.code = None

    def _run_job(self, job: dict) -> bool:
        jid, start = job["id"], int(job.get("start") or 0)
        if job["memory_mb"] != self.memory_mb:
            self.iso.set_memory(job["memory_mb"])
            self.memory_mb = job["memory_mb"]
        budget = job.get("total_timeout")
        spent, stopped = float(job.get("spent") or 0.0), None
        for index, test_input in enumerate(job["inputs"], start):
            timeout = float(job["timeout"])
            if budget is not None:
                left = float(budget) - spent
                if left <= 0:
                    stopped = P.STOP_BUDGET
                    break
                timeout = min(timeout, left)
            try:
                header, blob = self.run_test(job, test_input, timeout)
            except Exception as exc:  # the harness itself failed (fork refused, disk full, ...)
                self.send({"op": P.POISONED, "id": jid, "error": f"sandbox failure: {child.describe(exc)}"})
                return False
            spent += header["seconds"]
            header.update(op=P.TEST, id=jid, index=index)
            self.send(header, blob)
            if self.poisoned:
                self.send({"op": P.POISONED, "id": jid, "error": self.poisoned})
                return False
            if header["status"] in (P.LOAD_ERROR, P.NO_FUNCTION) and (job["judge"] == P.STRICT or index == 0):
                stopped = P.STOP_NO_METHOD if job["judge"] == P.APPS and header["status"] == P.NO_FUNCTION \
                    else P.STOP_COMPILE
                break
            if job.get("ack"):
                reply = self.receive()
                if reply is None:
                    return False
                if reply.get("op") != P.NEXT:
                    stopped = P.STOP_CALLER
                    break
        self.send({"op": P.DONE, "id": jid, "stopped": stopped})
        return True

    def run_test(self, job: dict, test_input, timeout: float) -> tuple[dict, bytes | None]:
        """One test in a fresh child. The APPS judge times loading and the call apart, each with
        its own alarm (as the harness did); the hard limit then covers both, plus a second."""
        alarm, timeout = timeout, (2 * timeout + 1 if job["judge"] == P.APPS else timeout)
        files: dict[str, int] = {}
        workdir = tempfile.mkdtemp(prefix="appsneo-", dir=self.scratch)
        try:
            # the strict judge's first test compiles the program and hands it over (the APPS judge
            # compiles in every test, within its alarm, as the 2021 harness did)
            hand_over = self.code is None and job["judge"] == P.STRICT
            for name in ("stdin", "stdout", "stderr", "result", "code")[:5 if hand_over else 4]:
                files[name] = _new_file(name)
            if job["fn_name"] is None and job["judge"] == P.STRICT:
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
                    child.run_child(job, test_input, files, workdir, self.iso, self.kit, timeout, alarm,
                                    self.code)
                finally:
                    os._exit(child.EXIT_SETUP)
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
            if hand_over:
                self.code = _compiled(files["code"])
            return self.outcome(job, files, status, rusage, timed_out, seconds, timeout, leftovers, alarm)
        finally:
            for fd in files.values():
                os.close(fd)
            self.cleanup(workdir)

    def cleanup(self, workdir: str) -> None:
        """Removes what the test left; any failure poisons this worker (the caller replaces it)."""
        try:
            if not remove_tree(workdir):
                self.poisoned = f"could not remove the test's folder {workdir}"
            elif not self.clean_private_dirs():
                self.poisoned = "could not empty the private temporary folders"
        except BaseException as exc:  # RecursionError, MemoryError, ...: never judge on in this state
            self.poisoned = f"cleanup failed: {child.describe(exc)}"
        self.workdir = None

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
        self.poisoned = "processes of the program survived 10 s of killing"
        return seen

    def kill_sandbox_processes(self) -> None:
        if self.iso.uid is not None:
            # A helper with the sandbox uid sends kill(-1): every process of that uid, atomically
            # with respect to fork, and none of anyone else's; then empties the uid's keyring.
            pid = os.fork()
            if pid == 0:  # pragma: no cover
                try:
                    os.setgroups([])
                    os.setgid(self.iso.gid)
                    os.setresuid(self.iso.uid, self.iso.uid, self.iso.uid)
                    for _ in range(3):
                        os.kill(-1, signal.SIGKILL)
                    child.keyctl(child.KEYCTL_CLEAR, child.KEY_SPEC_USER_KEYRING)
                finally:
                    os._exit(0)
            os.waitpid(pid, 0)
            return
        for pid in _descendants(os.getpid()):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass

    def outcome(self, job, files, status, rusage, timed_out, seconds, timeout, leftovers, alarm):
        """(TEST header, blob) of one finished child: its stdout, or its encoded value, as the blob."""
        out = {"seconds": round(seconds, 6), "cpu": round(rusage.ru_utime + rusage.ru_stime, 6),
               "leftovers": leftovers}
        raw = _read_file(files["result"], int(job["output_limit"]) + 1)
        value = raw[1:] if raw[:1] == b"V" else None
        report = {}
        if value is None and raw[:1] == b"{" and len(raw) < 1 << 16:
            try:
                report = json.loads(raw)
            except ValueError:
                pass
            report = report if isinstance(report, dict) else {}
        code = os.waitstatus_to_exitcode(status)
        cpu_limited = code in (-signal.SIGXCPU, -signal.SIGKILL) and out["cpu"] >= math.ceil(timeout)
        if timed_out or cpu_limited or report.get("timeout") is True:
            loading = job["judge"] == P.APPS and report.get("loading") and not report.get("loaded")
            out.update(status=P.LOAD_ERROR if loading else P.TIMEOUT,
                       error=f"time limit of {alarm:g} s exceeded" + (" while loading" if loading else ""))
            return out, None
        message = report.get("error") if isinstance(report.get("error"), str) else None
        if code == child.EXIT_OK:
            if job["fn_name"] is None:
                if job["judge"] == P.APPS and not report.get("done"):
                    out.update(status=P.ERROR, error="the program ended the process itself (os._exit?): "
                                                     "the 2021 harness would have ended with it")
                    return out, None
                out.update(status=P.OK)
                return out, _read_file(files["stdout"], int(job["output_limit"]))
            if value is not None:
                out.update(status=P.OK)
                return out, value
            if isinstance(report.get("unserializable"), str):
                out.update(status=P.OK, unserializable=report["unserializable"][:300])
            else:
                out.update(status=P.ERROR, error="the program exited before returning a value")
            return out, None
        if code == child.EXIT_LOAD_ERROR:
            out.update(status=P.LOAD_ERROR, error=message or "the module failed to load")
        elif code == child.EXIT_NO_FUNCTION:
            out.update(status=P.NO_FUNCTION, error=message or f"no function named {job['fn_name']!r}")
        elif code == child.EXIT_SETUP:
            out.update(status=P.ERROR, error="sandbox setup failed: " + _stderr_tail(files, 2000)[-300:])
        elif code < 0:
            name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
            hint = {"SIGSEGV": " (stack overflow from deep recursion?)", "SIGXFSZ": " (output limit)",
                    "SIGKILL": " (memory limit?)" if self.iso.cgroup else ""}
            out.update(status=P.ERROR, error=f"killed by {name}{hint.get(name, '')}")
        else:
            last = _stderr_tail(files, 2000).strip().splitlines()[-1:] or [f"exit status {code}"]
            out.update(status=P.ERROR, error=message or (f"exit status {code}: " + last[0])[:300])
        return out, None

    def clean_private_dirs(self) -> bool:
        """Empties the private tmpfs mounts, and what the sandbox uid left in shared ones."""
        ok = all([empty_dir(d) for d in self.iso.private_dirs])
        if self.iso.uid is not None:
            # A world-writable directory left shared (no mount namespace, as in a container without
            # CAP_SYS_ADMIN, or /tmp holding the interpreter or the kit): the sandbox uid can still
            # write there; remove what it left.
            for d in PRIVATE_DIRS:
                if os.path.realpath(d) not in self.iso.private_dirs and os.path.isdir(d):
                    ok = empty_dir(d, self.iso.uid) and ok
        return ok


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
    worker = Worker(proto_in, proto_out)
    config = worker.receive() or {}
    if config.get("op") != P.CONFIG:
        return 2
    worker.setup(isolation.Isolation(child, allow_setuid=bool(config.get("setuid")),
                                     allow_namespaces=bool(config.get("namespaces")),
                                     hide=[str(p) for p in config.get("hide") or []], numpy_loaded=numpy is not None,
                                     world_writable=PRIVATE_DIRS))
    signal.signal(signal.SIGTERM, worker.terminate)
    import gc

    gc.freeze()  # fewer copy-on-write page faults in the children
    try:
        worker.serve()
    except (BrokenPipeError, ConnectionResetError):
        pass
    finally:
        worker.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
