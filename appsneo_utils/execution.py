"""Run untrusted programs against APPS tests, isolated, and judge them exactly.

`run_tests(code, tests)` judges one program; `Executor.run_many(jobs)` (or the module-level
`run_many`) judges many on a pool of warm worker processes. Each worker (`_sandbox_worker.py`, a
fresh interpreter, never a fork of the caller) forks one locked-down child per test, so a test costs
a fork instead of an interpreter start. The worker sends back only what the child printed or
returned; the verdict is decided here, in the caller, on plain data: a returned object cannot take
part in the comparison (no `__eq__` of the program's runs here) and printed text is only text.

Comparison cascade for standard-input problems (`compare_stdout`), first step that accepts wins:
  1. "exact":   output == expected
  2. "lines":   per line stripped of surrounding whitespace, trailing blank lines ignored
  3. "tokens":  the whitespace-separated tokens are equal
  4. "numbers": same number of tokens, each equal or both numbers within ABS_TOL/REL_TOL; at least
                one of the pair must be written as a non-integer (integers are compared exactly)
Call-based problems (`compare_return`): the returned value (tuples read as lists) equals the expected
value, or its single element when the expected value is a one-element-or-longer list (as in the APPS
harness); numbers compare as above, with a float on either side allowing the tolerance.
"""

from __future__ import annotations

import json
import math
import os
import re
import selectors
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

PASSED, WRONG_ANSWER, RUNTIME_ERROR, TIMEOUT, COMPILE_ERROR = (
    "passed", "wrong_answer", "runtime_error", "timeout", "compile_error")
VERDICTS = (PASSED, WRONG_ANSWER, RUNTIME_ERROR, TIMEOUT, COMPILE_ERROR)
# The original APPS harness's per-test codes: True, False, -1 (runtime error or timeout), -2 (compile)
APPS_CODES = {PASSED: True, WRONG_ANSWER: False, RUNTIME_ERROR: -1, TIMEOUT: -1, COMPILE_ERROR: -2}

ABS_TOL = 1e-6
REL_TOL = 1e-6
DEFAULT_TIMEOUT = 4.0  # seconds per test, as in the APPS harness
DEFAULT_MEMORY_MB = 1024  # address space the program may add on top of the warm interpreter
DEFAULT_OUTPUT_LIMIT = 32 << 20  # bytes per written file (stdout, stderr, any file it creates)
DEFAULT_MAX_PROCESSES = 64  # processes + threads the program may have at once

WORKER_SCRIPT = Path(__file__).resolve().with_name("_sandbox_worker.py")
SANDBOX_MARKER = "APPSNEO_SANDBOX"
_WORKER_START_TIMEOUT = 60.0
_WATCHDOG_GRACE = 15.0  # seconds beyond a test's time limit before a silent worker is replaced

_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_INTEGER = re.compile(r"[+-]?\d+")


# ------------------------------------------------------------------------------------ comparison

def compare_stdout(output: str, expected: str | list) -> str | None:
    """The cascade step that accepts `output` ("exact", "lines", "tokens", "numbers"), or None."""
    if isinstance(expected, list):  # some APPS rows hold the expected lines as a list
        expected = "\n".join(map(str, expected))
    if output == expected:
        return "exact"
    if _lines(output) == _lines(expected):
        return "lines"
    got, want = output.split(), expected.split()
    if got == want:
        return "tokens"
    if len(got) == len(want) and all(a == b or _close_tokens(a, b) for a, b in zip(got, want)):
        return "numbers"
    return None


def _lines(text: str) -> list[str]:
    lines = [line.strip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def _close_tokens(a: str, b: str) -> bool:
    if not (_NUMBER.fullmatch(a) and _NUMBER.fullmatch(b)):
        return False
    if _INTEGER.fullmatch(a) and _INTEGER.fullmatch(b):
        return False  # "1000000" vs "1000001" must not pass on a relative tolerance
    return _close(float(a), float(b))


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=ABS_TOL)


def compare_return(value: Any, expected: Any) -> bool:
    """Whether a returned value (plain JSON data) matches the expected one, APPS-style."""
    if _same(value, expected):
        return True
    return isinstance(expected, list) and len(expected) > 0 and _same(value, expected[0])


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, tuple):
        a = list(a)
    if isinstance(b, tuple):
        b = list(b)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if isinstance(a, float) or isinstance(b, float):
            return a == b or _close(float(a), float(b))
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if type(a) in (str, type(None)) and type(b) in (str, type(None)):
        return a == b
    return False


# ------------------------------------------------------------------------------------ results

def pass_fraction(verdicts, n_tests: int) -> float:
    """Passed tests over `n_tests` (0.0 when there are none): one program's APPS test-case average."""
    return sum(v == PASSED for v in verdicts) / n_tests if n_tests else 0.0


@dataclass
class ExecResult:
    """Verdicts of one program on one problem's tests."""

    verdicts: list[str]
    apps_codes: list
    passed: bool
    errors: list[str | None]
    seconds: float
    n_tests: int = 0
    test_seconds: list[float] = field(default_factory=list)
    matches: list[str | None] = field(default_factory=list)  # cascade step per passed test

    @property
    def pass_fraction(self) -> float:
        """Passed tests over all tests (the APPS test-case average of one program)."""
        return pass_fraction(self.verdicts, self.n_tests)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ExecResult":
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class Job:
    """One program to judge; `key` comes back with its result."""

    code: str
    tests: dict
    key: Any = None
    timeout: float = DEFAULT_TIMEOUT
    total_timeout: float | None = None
    memory_mb: int = DEFAULT_MEMORY_MB
    stop_on_first_failure: bool = False


def _check_tests(tests: Any) -> tuple[list, list, str | None]:
    if not isinstance(tests, dict):
        raise ValueError(f"tests must be a dict with 'inputs' and 'outputs' (APPS input_output), "
                         f"got {type(tests).__name__}")
    inputs, outputs, fn_name = tests.get("inputs"), tests.get("outputs"), tests.get("fn_name")
    if not isinstance(inputs, list) or not isinstance(outputs, list) or len(inputs) != len(outputs):
        raise ValueError("tests['inputs'] and tests['outputs'] must be lists of the same length")
    if not inputs:
        raise ValueError("tests has no test cases: nothing to judge")
    if fn_name is not None and not (isinstance(fn_name, str) and fn_name.isidentifier()):
        raise ValueError(f"tests['fn_name'] must be a function name, got {fn_name!r}")
    return inputs, outputs, fn_name


def _as_job(item: Any, defaults: dict) -> Job:
    if isinstance(item, Job):
        return item
    if isinstance(item, dict):
        return Job(**{**defaults, **item})
    if isinstance(item, tuple) and len(item) == 3:
        key, code, tests = item
        return Job(code=code, tests=tests, key=key, **defaults)
    raise TypeError(f"a job must be a Job, a dict or a (key, code, tests) tuple, got {type(item).__name__}")


class _Running:
    """Verdicts of the job a worker is running, filled test by test."""

    def __init__(self, job: Job, jid: int):
        self.job, self.jid = job, jid
        self.inputs, self.outputs, self.fn_name = _check_tests(job.tests)
        self.n = len(self.inputs)
        self.verdicts: list[str] = []
        self.errors: list[str | None] = []
        self.seconds: list[float] = []
        self.matches: list[str | None] = []
        self.start = self.last = time.monotonic()

    def add(self, verdict: str, error: str | None, seconds: float = 0.0, match: str | None = None):
        self.verdicts.append(verdict)
        self.errors.append(error)
        self.seconds.append(round(seconds, 6))
        self.matches.append(match)

    def fill(self, verdict: str, error: str) -> None:
        while len(self.verdicts) < self.n:
            self.add(verdict, error)

    def judge(self, msg: dict) -> str:
        """Verdict of one test message from the worker (decided here, on plain data)."""
        status, seconds = msg.get("status"), float(msg.get("seconds") or 0.0)
        error = msg.get("error") if isinstance(msg.get("error"), str) else None
        expected = self.outputs[len(self.verdicts)]
        if status == "timeout":
            self.add(TIMEOUT, error, seconds)
        elif status in ("load_error", "no_function"):
            self.add(COMPILE_ERROR, error, seconds)
        elif status != "ok":
            self.add(RUNTIME_ERROR, error or "runtime error", seconds)
        elif self.fn_name is None:
            output = msg.get("stdout") if isinstance(msg.get("stdout"), str) else ""
            match = compare_stdout(output, expected)
            if match:
                self.add(PASSED, None, seconds, match)
            else:
                self.add(WRONG_ANSWER, _diff(output, expected), seconds)
        elif "unserializable" in msg:
            self.add(WRONG_ANSWER, str(msg["unserializable"])[:300], seconds)
        else:
            try:
                value = _loads(msg.get("result"))
            except (TypeError, ValueError, RecursionError) as exc:
                self.add(WRONG_ANSWER, f"unreadable return value: {exc}"[:300], seconds)
                return self.verdicts[-1]
            if compare_return(value, expected):
                self.add(PASSED, None, seconds, "value")
            else:
                self.add(WRONG_ANSWER, f"expected {_short(expected)}, got {_short(value)}", seconds)
        return self.verdicts[-1]

    def result(self) -> ExecResult:
        verdicts = list(self.verdicts)
        return ExecResult(
            verdicts=verdicts,
            apps_codes=[APPS_CODES[v] for v in verdicts],
            passed=len(verdicts) == self.n and all(v == PASSED for v in verdicts),
            errors=list(self.errors),
            seconds=round(time.monotonic() - self.start, 6),
            n_tests=self.n,
            test_seconds=list(self.seconds),
            matches=list(self.matches),
        )


def _loads(text: Any) -> Any:
    if not isinstance(text, str):
        raise TypeError("no return value")
    try:
        return json.loads(text)
    except ValueError:
        # a returned int of more than 4300 digits: lift the limit for this parse only
        limit = sys.get_int_max_str_digits()
        sys.set_int_max_str_digits(0)
        try:
            return json.loads(text)
        finally:
            sys.set_int_max_str_digits(limit)


def _short(value: Any, n: int = 80) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return repr(text[:n] + ("..." if len(text) > n else ""))


def _diff(output: str, expected: Any) -> str:
    if isinstance(expected, list):
        expected = "\n".join(map(str, expected))
    got, want = output.split(), expected.split()
    for i, (a, b) in enumerate(zip(got, want)):
        if a != b:
            return f"token {i + 1}: expected {_short(b, 40)}, got {_short(a, 40)}"
    return f"expected {len(want)} tokens, got {len(got)}" + ("" if got else " (no output)")


# ------------------------------------------------------------------------------------ workers

def _worker_env() -> dict:
    """A scrubbed environment: nothing of the caller's (secrets, tokens) reaches the sandbox."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "PYTHONHASHSEED": "0",  # the same set/dict order in every run
        "PYTHONDONTWRITEBYTECODE": "1",
        "OPENBLAS_NUM_THREADS": "1",  # the preloaded numpy must not start thread pools before forks
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        SANDBOX_MARKER: "1",
    }


class _Worker:
    """Caller-side handle of one `_sandbox_worker.py` process."""

    def __init__(self, isolation: str):
        flags = [] if isolation == "auto" else ["--no-setuid", "--no-namespaces"]
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, "-s", "-P", str(WORKER_SCRIPT), *flags],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, env=_worker_env(),
            cwd="/", close_fds=True, start_new_session=True,
        )
        self.fd = self.proc.stdout.fileno()
        os.set_blocking(self.fd, False)
        self.buffer = b""
        self.ready: dict | None = None
        self.running: _Running | None = None

    def send(self, obj: dict) -> None:
        self.proc.stdin.write((json.dumps(obj) + "\n").encode())
        self.proc.stdin.flush()

    def read(self) -> list[dict] | None:
        """Complete messages available now; None when the worker has gone."""
        try:
            chunk = os.read(self.fd, 1 << 22)
        except BlockingIOError:
            return []
        if not chunk:
            return None
        self.buffer += chunk
        *lines, self.buffer = self.buffer.split(b"\n")
        return [json.loads(line) for line in lines if line.strip()]

    def wait_ready(self, deadline: float) -> dict:
        while self.ready is None:
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()
                raise RuntimeError(f"the sandbox worker did not start within {_WORKER_START_TIMEOUT:g} s")
            with selectors.DefaultSelector() as sel:
                sel.register(self.fd, selectors.EVENT_READ)
                sel.select(left)
            messages = self.read()
            if messages is None:
                raise RuntimeError(f"the sandbox worker failed to start: {self.log_tail()}")
            for msg in messages:
                if msg.get("op") == "ready":
                    self.ready = msg
        return self.ready

    def log_tail(self, n: int = 600) -> str:
        try:
            self.log.seek(0)
            return self.log.read().decode("utf-8", "replace")[-n:].strip() or "(no output)"
        except (OSError, ValueError):
            return "(no log)"

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """Stops the worker now: SIGTERM (it kills its sandbox and cleans up), then SIGKILL."""
        if self.alive:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.proc.returncode != 0:  # died or killed hard: its sandbox may have survived it
            self._kill_uid()
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass
        self.log.close()

    def _kill_uid(self) -> None:
        """After a hard kill: whatever still runs as this worker's sandbox uid (root callers only)."""
        uid = (self.ready or {}).get("isolation", {}).get("uid")
        if not uid or os.geteuid() != 0:
            return
        script = (f"import os\nos.setgroups([])\nos.setgid({uid})\nos.setresuid({uid}, {uid}, {uid})\n"
                  "os.kill(-1, 9)\n")
        try:
            subprocess.run([sys.executable, "-S", "-c", script], timeout=10, env=_worker_env(),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except (OSError, subprocess.SubprocessError):
            pass

    def close(self) -> None:
        if self.alive:
            try:
                self.send({"op": "exit"})
                self.proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired, ValueError):
                pass
        self.kill()


class Executor:
    """A pool of warm sandbox workers. Use as a context manager, or call `close()`.

    workers: processes running programs in parallel (default: the number of CPUs).
    isolation: "auto" (everything the platform permits) or "basic" (no uid drop, no namespaces:
    what an unprivileged user gets; for tests of the fallbacks).
    """

    def __init__(self, workers: int | None = None, *, isolation: str = "auto",
                 output_limit: int = DEFAULT_OUTPUT_LIMIT, max_processes: int = DEFAULT_MAX_PROCESSES):
        if isolation not in ("auto", "basic"):
            raise ValueError(f"isolation must be 'auto' or 'basic', got {isolation!r}")
        if sys.platform == "win32":
            raise OSError("the sandbox needs a POSIX system (Linux, macOS); on Windows use WSL")
        self.workers = max(1, int(workers or os.cpu_count() or 1))
        self.isolation_mode = isolation
        self.output_limit, self.max_processes = int(output_limit), int(max_processes)
        self._pool: list[_Worker] = []
        self._next_id = 0
        self._lock = threading.Lock()
        self._owner: int | None = None  # thread inside run_many
        self._closed = False

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def close(self) -> None:
        """Stops the workers (and with them anything still running)."""
        for worker in self._pool:
            worker.close()
        self._pool = []
        self._closed = True

    @property
    def isolation(self) -> dict:
        """What the workers could set up (uid, network and mount namespaces, ...)."""
        return self._workers(1)[0].ready["isolation"]

    def worker_pids(self) -> list[int]:
        """Process ids of the live workers."""
        return [w.proc.pid for w in self._pool if w.alive]

    def sandbox_uids(self) -> list[int]:
        """The uids the workers run programs as (empty where there is no uid drop)."""
        return [w.ready["isolation"]["uid"] for w in self._pool
                if w.ready and w.ready["isolation"].get("uid") is not None]

    def _workers(self, n: int) -> list[_Worker]:
        if self._closed:
            raise RuntimeError("this Executor is closed")
        for worker in self._pool:
            if not worker.alive and worker.running is None:
                worker.kill()
        self._pool = [w for w in self._pool if w.alive or w.running]
        while len(self._pool) < n:
            self._pool.append(_Worker(self.isolation_mode))
        deadline = time.monotonic() + _WORKER_START_TIMEOUT
        for worker in self._pool:
            worker.wait_ready(deadline)
        return self._pool

    def run(self, code: str, tests: dict, **options) -> ExecResult:
        """Judges one program (see `run_tests`)."""
        ((_, result),) = list(self.run_many([Job(code, tests, **options)]))
        return result

    def run_many(self, jobs: Iterable, *, progress: Callable[[int], None] | None = None,
                 **defaults) -> Iterator[tuple[Any, ExecResult]]:
        """Yields (key, ExecResult) as programs finish (not in input order).

        jobs: `Job`s, dicts of Job fields, or (key, code, tests) tuples; `defaults` (timeout=...,
        memory_mb=...) apply to the tuples and dicts. progress(n) is called after every n tests.
        """
        if self._owner == threading.get_ident():
            raise RuntimeError("this Executor is already running a run_many loop in this thread; "
                               "finish that loop first or use a second Executor")
        with self._lock:
            self._owner = threading.get_ident()
            try:
                yield from self._run_many(iter(jobs), progress, defaults)
            finally:
                self._owner = None

    def _run_many(self, jobs, progress, defaults):
        exhausted = False
        pool = self._workers(self.workers)
        selector = selectors.DefaultSelector()
        try:
            while True:
                for i, worker in enumerate(pool):
                    if worker.running is not None or exhausted:
                        continue
                    if not worker.alive:
                        worker.kill()
                        pool[i] = worker = _Worker(self.isolation_mode)
                        worker.wait_ready(time.monotonic() + _WORKER_START_TIMEOUT)
                    item = next(jobs, _END)
                    if item is _END:
                        exhausted = True
                        continue
                    self._start(worker, _as_job(item, defaults))
                busy = [w for w in pool if w.running is not None]
                if not busy:
                    return
                for w in busy:  # unregistered again after each select
                    selector.register(w.fd, selectors.EVENT_READ, w)
                events = selector.select(0.5)
                for w in busy:
                    selector.unregister(w.fd)
                for key, _ in events:
                    worker = key.data
                    done = self._pump(worker, progress)
                    if done is not None:
                        yield done
                for worker in busy:
                    if worker.running is not None and self._stalled(worker):
                        yield self._abandon(worker, "the sandbox worker stopped responding and was replaced")
        finally:
            selector.close()
            for worker in pool:  # abandoned mid-way (the consumer stopped iterating): start afresh
                if worker.running is not None:
                    worker.running = None
                    worker.kill()

    def _start(self, worker: _Worker, job: Job) -> None:
        run = _Running(job, self._next_id)
        self._next_id += 1
        if not isinstance(job.code, str):
            raise ValueError(f"code must be a str, got {type(job.code).__name__}")
        worker.running = run
        worker.send({
            "op": "job", "id": run.jid, "code": job.code, "fn_name": run.fn_name, "inputs": run.inputs,
            "timeout": float(job.timeout), "total_timeout": job.total_timeout,
            "memory_mb": int(job.memory_mb), "output_limit": self.output_limit,
            "max_processes": self.max_processes, "ack": bool(job.stop_on_first_failure),
        })

    def _stalled(self, worker: _Worker) -> bool:
        limit = float(worker.running.job.timeout) + _WATCHDOG_GRACE
        return time.monotonic() - worker.running.last > limit

    @staticmethod
    def _abandon(worker: _Worker, why: str) -> tuple[Any, ExecResult]:
        """Kill a worker that died or stalled; its job's remaining tests become runtime errors."""
        run, worker.running = worker.running, None
        worker.kill()
        run.fill(RUNTIME_ERROR, why)
        return run.job.key, run.result()

    def _pump(self, worker: _Worker, progress) -> tuple[Any, ExecResult] | None:
        run = worker.running
        try:
            messages = worker.read()
        except ValueError:  # not JSON: the protocol is broken, do not trust this worker
            messages = None
        if messages is None:
            return self._abandon(worker, f"the sandbox worker died (exit status {worker.proc.poll()}): "
                                         f"{worker.log_tail(300)}")
        run.last = time.monotonic()
        for msg in messages:
            if msg.get("id") != run.jid:
                continue
            if msg.get("op") == "test" and msg.get("index") == len(run.verdicts) < run.n:
                verdict = run.judge(msg)
                if progress is not None:
                    progress(1)
                if run.job.stop_on_first_failure:
                    worker.send({"op": "next" if verdict == PASSED else "stop"})
            elif msg.get("op") == "done":
                before = len(run.verdicts)
                stopped = msg.get("stopped")
                if stopped == "compile_error":
                    error = msg.get("error") or (run.errors[-1] if run.errors else "compile error")
                    if not run.job.stop_on_first_failure:
                        run.fill(COMPILE_ERROR, error)
                    elif not run.verdicts:  # else it has stopped at its first failure, as asked
                        run.add(COMPILE_ERROR, error)
                elif stopped == "budget":
                    run.fill(TIMEOUT, f"total time limit of {run.job.total_timeout:g} s used up")
                elif stopped is None:
                    run.fill(RUNTIME_ERROR, "no result from the sandbox worker")
                if progress is not None and len(run.verdicts) > before:
                    progress(len(run.verdicts) - before)
                worker.running = None
                return run.job.key, run.result()
        return None


_END = object()
_default: Executor | None = None
_default_lock = threading.Lock()


def default_executor() -> Executor:
    """The shared one-worker Executor behind `run_tests` (started on first use, stopped at exit)."""
    global _default
    with _default_lock:
        if _default is None or _default._closed:
            import atexit

            _default = Executor(workers=1)
            atexit.register(_default.close)
        return _default


def run_tests(code: str, tests: dict, *, timeout: float = DEFAULT_TIMEOUT, total_timeout: float | None = None,
              memory_mb: int = DEFAULT_MEMORY_MB, stop_on_first_failure: bool = False,
              executor: Executor | None = None) -> ExecResult:
    """Runs `code` on every test of `tests` (APPS input_output dict) in the sandbox.

    timeout: seconds per test; total_timeout: seconds for the whole program (tests left when it is
    used up are timeouts); memory_mb: address space on top of the interpreter's;
    stop_on_first_failure: stop after the first test that does not pass (the lists are shorter).
    """
    executor = executor or default_executor()
    return executor.run(code, tests, timeout=timeout, total_timeout=total_timeout, memory_mb=memory_mb,
                        stop_on_first_failure=stop_on_first_failure)


def run_many(jobs: Iterable, *, workers: int | None = None, progress: Callable[[int], None] | None = None,
             **defaults) -> Iterator[tuple[Any, ExecResult]]:
    """Judges many programs on a fresh pool of `workers`; yields (key, ExecResult) as they finish."""
    with Executor(workers) as executor:
        yield from executor.run_many(jobs, progress=progress, **defaults)
