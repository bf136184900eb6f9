"""The forked child of a sandbox worker: lock down, compile, run one test of an untrusted program.

Loaded by path by `_sandbox_worker.py` (never imported by the caller). `run_child` never returns: it
reports through fd 3 (a memory file the worker reads after the child is gone) and exits with one of
the EXIT_* codes. Steps: `_confine` (process, uid, namespaces, rlimits, seccomp), `_streams`, then
`_run_strict` (the kit's judge) or `_run_apps` (the 2021 APPS harness's way of running a program).

Compile once per program, inside the limits: the first test's child compiles (under the test's
memory cap) and, before any of the program's code runs, hands the code object to the worker on fd 4
(marshalled, at most CODE_CACHE_LIMIT bytes) and closes it; the worker passes that code object to
the children of the program's later tests, which skip the compile.
"""

from __future__ import annotations

import _signal
import atexit
import builtins
import ctypes
import ctypes.util
import errno
import io
import marshal
import math
import os
import platform
import random
import resource
import signal
import struct
import sys
import tempfile
import threading
import traceback
import types

# exit codes of a child (anything else, or a signal, is a runtime error)
EXIT_OK, EXIT_ERROR, EXIT_LOAD_ERROR, EXIT_NO_FUNCTION, EXIT_SETUP = 0, 101, 102, 103, 104
CODE_FD = 4  # the first test's child hands its compiled program to the worker here
CODE_CACHE_LIMIT = 8 << 20  # bytes of marshalled code the worker takes (bigger: compiled per test)

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWNET = (
    0x00020000, 0x04000000, 0x08000000, 0x10000000, 0x40000000)
PR_SET_PDEATHSIG, PR_SET_SECCOMP, PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 1, 22, 36, 38
KEYCTL_JOIN_SESSION_KEYRING, KEYCTL_SETPERM, KEYCTL_CLEAR = 1, 5, 7
KEY_SPEC_USER_KEYRING, KEY_SPEC_USER_SESSION_KEYRING = -4, -5
# syscall numbers (keyctl, socket, io_uring_setup) and the seccomp audit arch, per machine
_ARCH = {"x86_64": (250, 41, 425, 0xC000003E), "aarch64": (219, 198, 425, 0xC00000B7)}.get(platform.machine())
SYS_KEYCTL = _ARCH[0] if _ARCH else None


def _libc():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    except OSError:  # pragma: no cover
        return None


LIBC = _libc()


def prctl(option: int, value: int, arg3=0) -> bool:
    if LIBC is None or not sys.platform.startswith("linux"):
        return False
    return LIBC.prctl(ctypes.c_int(option), ctypes.c_ulong(value), ctypes.c_void_p(arg3),
                      ctypes.c_ulong(0), ctypes.c_ulong(0)) == 0


def keyctl(op: int, arg: int, arg2: int = 0) -> int:
    """The keyctl system call (-1 where there is none)."""
    if LIBC is None or SYS_KEYCTL is None:
        return -1
    return LIBC.syscall(ctypes.c_long(SYS_KEYCTL), ctypes.c_long(op), ctypes.c_long(arg), ctypes.c_long(arg2))


def _seccomp_filter():
    """A BPF filter: socket(AF_UNIX, ...) and io_uring_setup fail with EACCES, other arches die.

    No host socket may be reached from the sandbox: the network namespace hides TCP and abstract
    sockets, this hides socket files anywhere on disk (io_uring could open sockets past it).
    """
    if _ARCH is None or LIBC is None:
        return None
    _, nr_socket, nr_uring, arch = _ARCH
    ld, jeq, ret, alu_and = 0x20, 0x15, 0x06, 0x54  # BPF_LD|W|ABS, BPF_JMP|JEQ|K, BPF_RET|K, BPF_ALU|AND|K
    allow, deny, kill = 0x7FFF0000, 0x00050000 | errno.EACCES, 0x80000000
    insns = [
        (ld, 0, 0, 4), (jeq, 1, 0, arch), (ret, 0, 0, kill),           # foreign arch (i386 socketcall): die
        (ld, 0, 0, 0), (alu_and, 0, 0, 0xBFFFFFFF),                     # syscall nr, x32 bit cleared
        (jeq, 4, 0, nr_uring), (jeq, 0, 2, nr_socket),
        (ld, 0, 0, 16), (jeq, 1, 0, 1),                                 # args[0] == AF_UNIX
        (ret, 0, 0, allow), (ret, 0, 0, deny),
    ]
    code = b"".join(struct.pack("HBBI", *i) for i in insns)
    buffer = ctypes.create_string_buffer(code, len(code))
    prog = struct.pack("HxxxxxxP", len(insns), ctypes.addressof(buffer))
    return buffer, ctypes.create_string_buffer(prog, len(prog))


SECCOMP = _seccomp_filter()


def install_seccomp() -> bool:
    """Installs the filter on this process (and so on every process it forks from now on)."""
    return SECCOMP is not None and prctl(PR_SET_SECCOMP, 2, ctypes.addressof(SECCOMP[1]))


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def drop_capabilities() -> None:
    """Empties every capability set (a worker in its own user namespace holds all of them there:
    a program keeping them could unmount the private folders and the hidden ones)."""
    header, data = _CapHeader(0x20080522, 0), (_CapData * 2)()
    if LIBC.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset failed: the program would keep the worker's capabilities")


def _block_network():
    """Fallback when no network namespace could be made: refuse sockets at the audit hook."""
    blocked = {"socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg", "socket.getaddrinfo",
               "socket.gethostbyname", "socket.gethostbyaddr"}

    def hook(event, args):
        if event in blocked:
            raise PermissionError(f"network access is disabled in the sandbox ({event})")

    sys.addaudithook(hook)


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


def _confine(job: dict, files: dict, workdir: str, iso, timeout: float) -> None:
    """Own session, fresh fds, own IPC namespace, the sandbox uid, rlimits, seccomp."""
    os.setsid()
    # the memory cap of the whole test: every process the program makes stays in the cgroup ("0": this
    # process; written before the fds move, and closed with the others)
    if iso.cgroup_fd is not None:
        os.write(iso.cgroup_fd, b"0")
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
        _signal.signal(sig, _signal.SIG_DFL)  # the C function: no enum wrapping on the hot path
    for target, name in enumerate(("stdin", "stdout", "stderr", "result", "code")):
        if name in files:
            os.dup2(files[name], target)
    os.closerange(CODE_FD + 1 if "code" in files else CODE_FD, 1 << 16)
    os.chdir(workdir)
    if iso.ipcns:  # SysV objects, POSIX queues: gone with the test's last process
        LIBC.unshare(CLONE_NEWIPC)  # (no UTS one: without capabilities the hostname cannot change)
    if iso.userns:
        drop_capabilities()
    if iso.uid is not None:
        os.setgroups([])
        os.setgid(iso.gid)
        os.setuid(iso.uid)
        if not iso.locked_keyring:  # else the worker's, which no one may use, is inherited
            keyctl(KEYCTL_JOIN_SESSION_KEYRING, 0)  # a fresh anonymous session keyring
        keyctl(KEYCTL_CLEAR, KEY_SPEC_USER_KEYRING)  # the uid's own keyring: what a test before left
        keyctl(KEYCTL_CLEAR, KEY_SPEC_USER_SESSION_KEYRING)
    prctl(PR_SET_NO_NEW_PRIVS, 1)
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # after setuid, which clears it
    _limits(job, iso, timeout)
    if iso.seccomp and not iso.seccomp_inherited and not install_seccomp():
        raise OSError("the seccomp filter could not be installed")
    os.environ["HOME"] = os.environ["TMPDIR"] = workdir  # the rest was scrubbed at start-up
    tempfile.tempdir = workdir
    if not iso.netns:
        _block_network()


def _limits(job: dict, iso, timeout: float) -> None:
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
    if hasattr(resource, "RLIMIT_MSGQUEUE"):
        limits.append((resource.RLIMIT_MSGQUEUE, 1 << 20))
    for which, value in limits:
        try:
            soft, hard = resource.getrlimit(which)
            hard_new = value + (1 if which == resource.RLIMIT_CPU else 0)
            if hard != resource.RLIM_INFINITY:
                value, hard_new = min(value, hard), min(hard_new, hard)
            resource.setrlimit(which, (value, hard_new))
        except (ValueError, OSError):
            pass  # e.g. RLIMIT_AS on macOS


def _streams():
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
    return stdout, stderr


class _Exit:
    """report() writes the one result of this test to fd 3; finish() exits like an interpreter."""

    def __init__(self, stdout, stderr, dumps):
        self.stdout, self.stderr, self.dumps = stdout, stderr, dumps
        self.write, self.exit = os.write, os._exit

    def report(self, obj=None, raw: bytes | None = None) -> None:
        try:
            data = raw if raw is not None else self.dumps(obj).encode()
            try:
                os.ftruncate(3, 0)
                os.lseek(3, 0, 0)
            except OSError:
                pass
            view = memoryview(data)
            while view:
                view = view[self.write(3, view):]
        except BaseException:  # the program closed or replaced fd 3, or the value is too big: no report
            self.exit(EXIT_ERROR)

    def finish(self, code: int) -> None:
        try:
            threading._shutdown()  # join non-daemon threads, as a normal interpreter exit does
        except BaseException:
            pass
        try:
            atexit._run_exitfuncs()
        except BaseException:
            pass
        try:
            self.stdout.flush()
            self.stderr.flush()
        except BaseException as exc:  # e.g. File too large: the output limit
            self.report({"error": describe(exc)})
            self.exit(EXIT_ERROR)
        self.exit(code)


def run_child(job: dict, test_input, files: dict, workdir: str, iso, kit, timeout: float,
              alarm: float | None = None, code_obj=None) -> None:
    """Runs in the forked child: lock down, run the program, report through fd 3, never return.

    kit: what the worker loaded once for every child (prelude, encode_value, numpy_types, apps: the
    `apps_judge` module); timeout: the hard limit (the worker kills at it); alarm: APPS's own
    per-step alarm (apps judge); code_obj: the program compiled by an earlier test's child (strict
    judge), else None: compile it (and hand it over on fd 4 when files has "code")."""
    import json

    try:
        _confine(job, files, workdir, iso, timeout)
        stdout, stderr = _streams()
    except BaseException:  # the sandbox could not be built: never run the program unconfined
        try:
            os.write(2, traceback.format_exc().encode()[-2000:])
        finally:
            os._exit(EXIT_SETUP)
    out = _Exit(stdout, stderr, json.dumps)
    if job.get("judge") == "apps":
        _run_apps(job, test_input, out, kit, alarm or timeout)
    else:
        _run_strict(job, test_input, out, kit, workdir, code_obj)


def _hand_over(code_obj, output_limit: int) -> None:
    """Writes the compiled program to fd 4 for the worker (length, then marshal) and closes fd 4,
    before the program runs: what the worker reads there was written by trusted code only."""
    try:
        data = marshal.dumps(code_obj)
        if len(data) + 8 <= min(CODE_CACHE_LIMIT, output_limit):  # the file size limit applies too
            view = memoryview(struct.pack("<Q", len(data)) + data)
            while view:
                view = view[os.write(CODE_FD, view):]
    except BaseException:  # too big for memory, fd 4 absent: the later tests compile for themselves
        pass
    finally:
        try:
            os.close(CODE_FD)
        except OSError:
            pass


def _value_report(out: _Exit, value, kit) -> None:
    """The returned value, encoded losslessly, as the test's report (prefix b"V")."""
    try:
        data = b"V" + kit.encode_value(value, kit.numpy_types).encode("utf-8", "surrogatepass")
    except (TypeError, ValueError, RecursionError) as exc:
        out.report({"unserializable": f"returned {str(exc)[:200]}"})
        out.finish(EXIT_OK)
    except BaseException as exc:
        out.report({"error": f"could not record the returned value: {describe(exc)}"})
        out.finish(EXIT_ERROR)
    out.report(raw=data)
    out.finish(EXIT_OK)


def _run_strict(job, test_input, out: _Exit, kit, workdir, code_obj) -> None:
    call = job["fn_name"] is not None
    if code_obj is None:
        try:
            code_obj = compile_program(job["code"], stdin=not call)
        except MemoryError:
            out.report({"error": "MemoryError while compiling (memory limit)"})
            out.finish(EXIT_ERROR)
        except BaseException as exc:  # SyntaxError, ValueError (null bytes), RecursionError, ...
            out.report({"error": describe(exc)})
            out.finish(EXIT_LOAD_ERROR)
        _hand_over(code_obj, int(job["output_limit"]))
    module = types.ModuleType("__main__")
    module.__dict__.update(kit.prelude)
    module.__dict__.update({"__name__": "__main__", "__file__": os.path.join(workdir, "solution.py"),
                            "__builtins__": builtins})
    sys.modules["__main__"] = module
    try:
        exec(code_obj, module.__dict__)
    except SystemExit as exc:
        if call:
            out.report({"error": f"SystemExit({exc.code!r}) while loading the module"})
            out.finish(EXIT_LOAD_ERROR)
        if exc.code is None or exc.code == 0:
            out.finish(EXIT_OK)
        if not isinstance(exc.code, int):
            try:
                out.stderr.write(f"{exc.code}\n")
            except BaseException:
                pass
        out.report({"error": f"SystemExit({exc.code!r})"})
        out.finish(EXIT_ERROR)
    except BaseException as exc:
        out.report({"error": describe(exc)})
        out.finish(EXIT_LOAD_ERROR if call else EXIT_ERROR)
    if not call:
        out.finish(EXIT_OK)
    name, g = job["fn_name"], module.__dict__
    try:
        if isinstance(g.get("Solution"), type) and hasattr(g["Solution"], name):
            target = getattr(g["Solution"](), name)
        elif name in g:
            target = g[name]
        else:
            out.report({"error": f"no function or Solution method named {name!r}"})
            out.finish(EXIT_NO_FUNCTION)
    except BaseException as exc:
        out.report({"error": describe(exc)})
        out.finish(EXIT_LOAD_ERROR)
    try:
        value = target(*(test_input if isinstance(test_input, list) else [test_input]))
    except BaseException as exc:
        out.report({"error": describe(exc)})
        out.finish(EXIT_ERROR)
    _value_report(out, value, kit)


class _Alarm(Exception):
    """The harness's TimeoutException: SIGALRM raises it inside the program (an Exception, as in APPS)."""


def _raise_alarm(*_):
    raise _Alarm("alarm went off")


def _alarm(seconds: float) -> None:
    signal.setitimer(signal.ITIMER_REAL, seconds)


def _run_apps(job, test_input, out: _Exit, kit, alarm: float) -> None:
    """As `run_test` of the 2021 harness: the source as is, a bare globals dict, StringIO streams,
    and its alarm: `alarm` seconds for loading (with Solution()), then `alarm` seconds for the call."""
    call = job["fn_name"] is not None
    out.report({"loading": True})  # killed before the next report: a load timeout (-2 in APPS)
    g = {"__builtins__": builtins}
    _signal.signal(signal.SIGALRM, _raise_alarm)
    _alarm(alarm)
    try:
        exec(compile(job["code"], "tmp_sol", "exec", dont_inherit=True), g)
    except SystemExit as exc:
        out.report({"error": f"SystemExit({exc.code!r}) while loading: the 2021 harness itself would have "
                             f"exited here (no verdict)"})
        out.finish(EXIT_LOAD_ERROR)
    except BaseException as exc:
        out.report({"error": describe(exc), "timeout": isinstance(exc, _Alarm), "loading": True})
        out.finish(EXIT_LOAD_ERROR)
    try:
        holder = g["Solution"]() if job["solution_class"] else None
        _alarm(0)
    except BaseException as exc:
        out.report({"error": f"Solution() failed: {describe(exc)}", "timeout": isinstance(exc, _Alarm),
                    "loading": True})
        out.finish(EXIT_LOAD_ERROR)
    try:
        target = getattr(holder, job["method"]) if holder is not None else g[job["method"]]
    except BaseException:
        out.report({"error": f"no {job['method']!r} to call: the 2021 harness runs no test"})
        out.finish(EXIT_NO_FUNCTION)
    out.report({"loaded": True})
    _alarm(alarm)
    if call:
        _apps_call(kit.apps.convert_inputs(test_input), target, out, kit)
    else:
        _apps_stdin(kit.apps.stdin_text(test_input), target, out)


def _failed(out: _Exit, exc: BaseException) -> None:
    """A call that raised: APPS's -1, said to be a timeout when its alarm went off."""
    _alarm(0)
    out.report({"error": describe(exc), "timeout": isinstance(exc, _Alarm)})
    out.finish(EXIT_ERROR)


def _apps_call(inputs, target, out: _Exit, kit) -> None:
    """inputs: after APPS's dict rule (`apps_judge.convert_inputs`)."""
    try:
        value = target(*inputs)
        _alarm(0)
    except BaseException as exc:
        _failed(out, exc)
    _value_report(out, value, kit)


def _apps_stdin(inputs: str, target, out: _Exit) -> None:
    """inputs: the test's text (`apps_judge.stdin_text`)."""
    # APPS's patches, in the order its decorators apply them: read, readlines and readline of the
    # real stdin (what a `from sys import stdin` at load time holds: lines come without "\n"), then
    # sys.stdin itself (a StringIO: no .buffer, readline keeps its newline), then open, as
    # mock_open(read_data=inputs): whatever is opened reads the test's input.
    lines = iter(inputs.split("\n"))
    real = sys.stdin
    try:
        real.read = lambda *args: inputs
        real.readlines = lambda *args: inputs.split("\n")
        real.readline = lambda *args: next(lines)
    except AttributeError:  # the program replaced sys.stdin at load time by something without a dict
        pass
    sys.stdin = io.StringIO(inputs)
    builtins.open = lambda *args, **kwargs: io.StringIO(inputs)
    captured = sys.stdout = io.StringIO()
    try:
        target()
        _alarm(0)
    except SystemExit:
        _alarm(0)
    except BaseException as exc:
        sys.stdout = out.stdout
        _failed(out, exc)
    sys.stdout = out.stdout
    try:  # only what went through sys.stdout counts: fd 1 is emptied and gets the captured text
        data = captured.getvalue().encode("utf-8", "surrogatepass")
        out.stdout.flush()
        os.ftruncate(1, 0)
        os.lseek(1, 0, 0)
        view = memoryview(data)
        while view:
            view = view[os.write(1, view):]
    except BaseException as exc:
        out.report({"error": describe(exc)})
        out.finish(EXIT_ERROR)
    out.report({"done": True})
    out.finish(EXIT_OK)


def describe(exc: BaseException) -> str:
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
            return compile(_top_level_return(tree), "solution.py", "exec", dont_inherit=True)
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


def _top_level_return(tree):
    """Replaces `return` outside any function by `raise SystemExit`."""
    import ast

    class Transformer(ast.NodeTransformer):
        def visit_FunctionDef(self, node):
            return node

        visit_AsyncFunctionDef = visit_ClassDef = visit_Lambda = visit_FunctionDef

        def visit_Return(self, node):
            return ast.copy_location(ast.Raise(exc=ast.Name("SystemExit", ast.Load()), cause=None), node)

    return ast.fix_missing_locations(Transformer().visit(tree))
