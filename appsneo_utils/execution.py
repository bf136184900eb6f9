"""Run untrusted programs against APPS tests, isolated, and judge them: strictly, or as APPS did.

`run_tests(code, tests)` judges one program; `Executor.run_many(jobs)` (or the module-level
`run_many`) judges many on a pool of warm worker processes. Each worker (`_sandbox_worker.py`, a
fresh interpreter, never a fork of the caller) forks one locked-down child per test, so a test costs
a fork instead of an interpreter start (`_sandbox_handle.py` starts, talks to and stops a worker;
this module decides what each one runs). The worker sends back only what the child printed or
returned; the verdict is decided here, in the caller, on plain data: a returned object cannot take
part in the comparison (no `__eq__` of the program's runs here) and printed text is only bytes.
Every comparison here is total (any output or value gives a verdict, never an exception) and
linear in the size of the output.

Two judges (`judge=`):
- "strict" (the default here): `strict_judge`, the kit's exact cascade (its docstring lists every rule).
- "apps": the 2021 APPS harness's rules (`apps_judge`): its program wrapping, globals, stdin
  handling, comparisons and verdict codes; `ExecResult.apps_codes` is what its `run_test` returns.
"""

from __future__ import annotations

import os
import selectors
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from . import _sandbox_protocol as P
from . import apps_judge
from ._sandbox_handle import SANDBOX_MARKER, WORKER_SCRIPT  # noqa: F401  (public names of this module)
from ._sandbox_handle import START_TIMEOUT as _WORKER_START_TIMEOUT
from ._sandbox_handle import WorkerHandle as _Worker
from .strict_judge import ABS_TOL, REL_TOL, compare_return, compare_stdout, diff, preview  # noqa: F401

PASSED, WRONG_ANSWER, RUNTIME_ERROR, TIMEOUT, COMPILE_ERROR = (
    "passed", "wrong_answer", "runtime_error", "timeout", "compile_error")
VERDICTS = (PASSED, WRONG_ANSWER, RUNTIME_ERROR, TIMEOUT, COMPILE_ERROR)
# The original APPS harness's per-test codes: True, False, -1 (runtime error or timeout), -2 (compile)
APPS_CODES = {PASSED: True, WRONG_ANSWER: False, RUNTIME_ERROR: -1, TIMEOUT: -1, COMPILE_ERROR: -2}
STRICT, APPS = P.STRICT, P.APPS
JUDGES = P.JUDGES

DEFAULT_TIMEOUT = 4.0  # seconds per test, as in the APPS harness
DEFAULT_MEMORY_MB = 1024  # memory the program may add on top of the warm interpreter
DEFAULT_OUTPUT_LIMIT = 32 << 20  # bytes per written file (stdout, stderr, any file it creates)
DEFAULT_MAX_PROCESSES = 64  # processes + threads the program may have at once

_WATCHDOG_GRACE = 15.0  # seconds beyond a test's time limit before a silent worker is replaced
_MAX_REPLACEMENTS = 2  # fresh workers one job may get after a worker died or stalled on it



# ------------------------------------------------------------------------------------ results

def pass_fraction(verdicts, n_tests: int) -> float:
    """Passed tests over `n_tests` (0.0 when there are none): one program's APPS test-case average."""
    return sum(v == PASSED for v in verdicts) / n_tests if n_tests else 0.0


@dataclass
class ExecResult:
    """Verdicts of one program on one problem's tests.

    verdicts: one per test (shorter only with stop_on_first_failure). apps_codes: with judge="apps",
    exactly what the 2021 `run_test` returns (one code per test, [-2] for a program that does not
    load, [] when the method to call is missing); with "strict", the codes of the verdicts.
    """

    verdicts: list[str]
    apps_codes: list
    passed: bool
    errors: list[str | None]
    seconds: float
    n_tests: int = 0
    test_seconds: list[float] = field(default_factory=list)
    matches: list[str | None] = field(default_factory=list)  # cascade step per passed test
    judge: str = STRICT

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
    """One program to judge; `key` comes back with its result. judge: "strict" or "apps"."""

    code: str
    tests: dict
    key: Any = None
    timeout: float = DEFAULT_TIMEOUT
    total_timeout: float | None = None
    memory_mb: int = DEFAULT_MEMORY_MB
    stop_on_first_failure: bool = False
    judge: str = STRICT


def _check_tests(tests: Any) -> tuple[list, list, str | None]:
    problem = apps_judge.tests_problem(tests)
    if problem:
        raise ValueError(f"tests (APPS input_output) that cannot be judged: {problem}")
    return tests["inputs"], tests["outputs"], tests.get("fn_name")


def _as_job(item: Any, defaults: dict) -> Job:
    if isinstance(item, Job):
        job = item
    elif isinstance(item, dict):
        job = Job(**{**defaults, **item})
    elif isinstance(item, tuple) and len(item) == 3:
        key, code, tests = item
        job = Job(code=code, tests=tests, key=key, **defaults)
    else:
        raise TypeError(f"a job must be a Job, a dict or a (key, code, tests) tuple, got {type(item).__name__}")
    if job.judge not in JUDGES:
        raise ValueError(f"judge must be one of {JUDGES}, got {job.judge!r}")
    if not isinstance(job.code, str):
        raise ValueError(f"code must be a str, got {type(job.code).__name__}")
    return job


class _Running:
    """Verdicts of the job a worker is running, filled test by test (on any worker it moves to)."""

    def __init__(self, job: Job, jid: int):
        self.job, self.jid = job, jid
        self.inputs, self.outputs, self.fn_name = _check_tests(job.tests)
        self.n = len(self.inputs)
        self.verdicts: list[str] = []
        self.errors: list[str | None] = []
        self.seconds: list[float] = []
        self.matches: list[str | None] = []
        self.apps_codes: list | None = None  # set when APPS stops early ([-2] or [])
        self.replacements = 0  # fresh workers given to this job after a death or a stall
        self.judged_at_start = 0  # tests judged when it was last sent to a worker
        self.start = self.last = time.monotonic()

    def add(self, verdict: str, error: str | None, seconds: float = 0.0, match: str | None = None):
        self.verdicts.append(verdict)
        self.errors.append(error)
        self.seconds.append(round(seconds, 6))
        self.matches.append(match)

    def fill(self, verdict: str, error: str) -> int:
        """Fills the tests left with one verdict; returns how many."""
        n = self.n - len(self.verdicts)
        for _ in range(n):
            self.add(verdict, error)
        return n

    def judge(self, msg: dict) -> str:
        """Verdict of one TEST message from the worker (decided here, on plain data)."""
        status, seconds = msg.get("status"), float(msg.get("seconds") or 0.0)
        error = msg.get("error") if isinstance(msg.get("error"), str) else None
        if status == P.TIMEOUT:
            self.add(TIMEOUT, error, seconds)
        elif status in (P.LOAD_ERROR, P.NO_FUNCTION) and (self.job.judge == STRICT or not self.verdicts):
            self.add(COMPILE_ERROR, error, seconds)
        elif status != P.OK:  # also APPS: a load that fails on a later test (the harness loaded once)
            self.add(RUNTIME_ERROR, error or "runtime error", seconds)
        else:
            try:
                ok, detail = self._compare(msg)
            except Exception as exc:  # the judge's own bug: recorded, never fatal, never a pass
                ok, detail = False, f"judge error: {type(exc).__name__}: {preview(str(exc), 200)}"
            if ok:
                self.add(PASSED, None, seconds, detail)
            else:
                self.add(WRONG_ANSWER, detail, seconds)
        return self.verdicts[-1]

    def _compare(self, msg: dict) -> tuple[bool, str | None]:
        """(passed, cascade step or error text) of a test that ran to its end."""
        expected = self.outputs[len(self.verdicts)]
        data = msg.get("data") or b""
        apps = self.job.judge == APPS
        if self.fn_name is None:
            if apps:
                lines = data.decode("utf-8", "surrogatepass").splitlines()
                ok = apps_judge.compare_stdout(lines, expected) is True
                return ok, "apps" if ok else diff(data, expected)
            match = compare_stdout(data, expected)
            return (True, match) if match else (False, diff(data, expected))
        if "unserializable" in msg:
            return False, str(msg["unserializable"])[:300]
        try:
            value = P.decode_value(data)
        except (ValueError, RecursionError) as exc:
            return False, f"unreadable return value: {preview(str(exc))}"
        if apps:
            ok = apps_judge.compare_call(value, expected) is True
            return ok, "apps" if ok else f"expected {preview(expected)}, got {preview(value)}"
        if compare_return(value, expected):
            return True, "value"
        return False, f"expected {preview(expected)}, got {preview(value)}"

    def stop(self, stopped: str | None, error: str | None) -> int:
        """Applies a DONE message; returns how many tests it filled."""
        if stopped == P.STOP_COMPILE or stopped == P.STOP_NO_METHOD:
            error = error or (self.errors[-1] if self.errors else "compile error")
            if self.job.judge == APPS:
                self.apps_codes = [] if stopped == P.STOP_NO_METHOD else [-2]
            if not self.job.stop_on_first_failure:
                return self.fill(COMPILE_ERROR, error)
            if not self.verdicts:  # else it has stopped at its first failure, as asked
                self.add(COMPILE_ERROR, error)
                return 1
            return 0
        if stopped == P.STOP_BUDGET:
            return self.fill(TIMEOUT, f"total time limit of {self.job.total_timeout:g} s used up")
        if stopped is None:
            return self.fill(RUNTIME_ERROR, "no result from the sandbox worker")
        return 0

    def result(self) -> ExecResult:
        verdicts = list(self.verdicts)
        codes = self.apps_codes if self.apps_codes is not None else [APPS_CODES[v] for v in verdicts]
        return ExecResult(
            verdicts=verdicts,
            apps_codes=list(codes),
            passed=len(verdicts) == self.n and all(v == PASSED for v in verdicts),
            errors=list(self.errors),
            seconds=round(time.monotonic() - self.start, 6),
            n_tests=self.n,
            test_seconds=list(self.seconds),
            matches=list(self.matches),
            judge=self.job.judge,
        )

    def message(self, executor: "Executor") -> dict:
        """The JOB message for the tests still to run (all of them, or the rest after a replacement)."""
        start, job = len(self.verdicts), self.job
        apps = job.judge == APPS
        return {
            "op": P.JOB, "id": self.jid, "start": start, "inputs": self.inputs[start:],
            "code": apps_judge.program_source(job.code, self.fn_name) if apps else job.code,
            "fn_name": self.fn_name, "judge": job.judge,
            "method": apps_judge.method_name(self.fn_name), "solution_class": apps_judge.uses_solution_class(job.code),
            "timeout": float(job.timeout), "total_timeout": job.total_timeout, "spent": sum(self.seconds),
            "memory_mb": int(job.memory_mb), "output_limit": executor.output_limit,
            "max_processes": executor.max_processes, "ack": bool(job.stop_on_first_failure),
        }


# ------------------------------------------------------------------------------------ workers

def default_hidden() -> list[str]:
    """Folders no program may read: the kit's data and run folders and the shared data beside it."""
    from .paths import DATA_DIR, RUNS_DIR, SHARED_DATA

    return [str(p) for p in (DATA_DIR, RUNS_DIR, SHARED_DATA)]



class Executor:
    """A pool of warm sandbox workers. Use as a context manager, or call `close()`.

    workers: processes running programs in parallel (default: the number of CPUs).
    isolation: "auto" (everything the platform permits) or "basic" (no uid drop, no namespaces:
    what an unprivileged user gets; for tests of the fallbacks).
    hide: folders and files no program may read (mounted over, where a mount namespace exists),
    besides `default_hidden()`: e.g. the problems file and the results file of a run.
    """

    def __init__(self, workers: int | None = None, *, isolation: str = "auto",
                 output_limit: int = DEFAULT_OUTPUT_LIMIT, max_processes: int = DEFAULT_MAX_PROCESSES,
                 hide: Iterable[str | os.PathLike] = ()):
        if isolation not in ("auto", "basic"):
            raise ValueError(f"isolation must be 'auto' or 'basic', got {isolation!r}")
        if sys.platform == "win32":
            raise OSError("the sandbox needs a POSIX system (Linux, macOS); on Windows use WSL")
        self.workers = max(1, int(workers or os.cpu_count() or 1))
        self.isolation_mode = isolation
        self.output_limit, self.max_processes = int(output_limit), int(max_processes)
        self.hide = [*default_hidden(), *map(str, hide)]
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

    def _new_worker(self) -> _Worker:
        worker = _Worker(self.isolation_mode, self.hide)
        worker.wait_ready(time.monotonic() + _WORKER_START_TIMEOUT)
        return worker

    def _workers(self, n: int) -> list[_Worker]:
        if self._closed:
            raise RuntimeError("this Executor is closed")
        for worker in self._pool:
            if not worker.alive and worker.running is None:
                worker.kill()
        self._pool = [w for w in self._pool if w.alive or w.running]
        while len(self._pool) < n:
            self._pool.append(_Worker(self.isolation_mode, self.hide))
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
        memory_mb=..., judge=...) apply to the tuples and dicts. progress(n) is called whenever n
        more tests have a verdict (judged, or filled after a failure).
        """
        if self._owner == threading.get_ident():
            raise RuntimeError("this Executor is already running a run_many loop in this thread; "
                               "finish that loop first or use a second Executor")
        with self._lock:
            self._owner = threading.get_ident()
            try:
                yield from self._run_many(iter(jobs), progress or (lambda n: None), defaults)
            finally:
                self._owner = None

    def _run_many(self, jobs, progress, defaults):
        exhausted = False
        pool = self._workers(self.workers)
        selector = selectors.DefaultSelector()
        try:
            while True:
                for i, worker in enumerate(pool):
                    # running: busy until it is lost (its last messages are read before a death counts)
                    if worker.running is not None and worker.lost is None or exhausted and worker.running is None:
                        continue
                    if worker.lost is not None or worker.running is None and not worker.alive:
                        run = worker.running
                        worker.running = None
                        worker.kill()
                        pool[i] = worker = self._new_worker()
                        if run is not None:  # a replaced worker's job goes on here, from its next test
                            done = self._start(worker, run, progress)
                            if done is not None:
                                yield done
                            continue
                    item = next(jobs, _END)
                    if item is _END:
                        exhausted = True
                        continue
                    job = _as_job(item, defaults)
                    done = self._start(worker, _Running(job, self._next_id), progress)
                    self._next_id += 1
                    if done is not None:
                        yield done
                busy = [w for w in pool if w.running is not None and w.lost is None]
                if not busy and all(w.running is None for w in pool):
                    if exhausted:
                        return
                    continue
                yield from self._poll(selector, busy, progress)
        finally:
            selector.close()
            for worker in pool:  # abandoned mid-way (the consumer stopped iterating): start afresh
                if worker.running is not None:
                    worker.running = None
                    worker.kill()

    def _poll(self, selector, busy: list[_Worker], progress):
        for w in busy:  # unregistered again after each select
            selector.register(w.fd, selectors.EVENT_READ, w)
        events = selector.select(0.5)
        for w in busy:
            selector.unregister(w.fd)
        for key, _ in events:
            done = self._pump(key.data, progress)
            if done is not None:
                yield done
        for worker in busy:
            if worker.running is not None and worker.lost is None and self._stalled(worker):
                done = self._lost(worker, "the sandbox worker stopped responding", progress)
                if done is not None:
                    yield done

    def _start(self, worker: _Worker, run: _Running, progress) -> tuple[Any, ExecResult] | None:
        """Sends a job (or the rest of it) to a worker; a result right away when it cannot be sent."""
        try:
            message = run.message(self)
        except Exception as exc:  # e.g. the APPS judge could not build the program: its bug, recorded
            progress(run.fill(WRONG_ANSWER, f"judge error: {type(exc).__name__}: {preview(str(exc), 200)}"))
            return run.job.key, run.result()
        worker.running = run
        run.last = time.monotonic()
        run.judged_at_start = len(run.verdicts)
        worker.send(message)
        return None

    def _stalled(self, worker: _Worker) -> bool:
        limit = float(worker.running.job.timeout) + _WATCHDOG_GRACE
        return time.monotonic() - worker.running.last > limit  # `last`: the last test judged

    def _lost(self, worker: _Worker, why: str, progress) -> tuple[Any, ExecResult] | None:
        """A worker died or stalled: its test is judged again on a fresh worker, up to
        _MAX_REPLACEMENTS times per job; after that the tests left become runtime errors."""
        run = worker.running
        worker.lost = worker.lost or why
        if len(run.verdicts) > run.judged_at_start:
            return None  # it judged tests before it was lost: the program is not blocking the judge
        if run.replacements < _MAX_REPLACEMENTS:
            run.replacements += 1
            return None  # the main loop replaces the worker and resumes the job there
        worker.running = None
        worker.kill()
        progress(run.fill(RUNTIME_ERROR, f"{why} ({_MAX_REPLACEMENTS + 1} times on this program)"))
        return run.job.key, run.result()

    def _pump(self, worker: _Worker, progress) -> tuple[Any, ExecResult] | None:
        run = worker.running
        try:
            messages = worker.read()
        except ValueError:  # not the protocol: do not trust this worker
            messages = None
        if messages is None:
            return self._lost(worker, f"the sandbox worker died (exit status {worker.proc.poll()}): "
                                      f"{worker.log_tail(300)}", progress)
        for msg in messages:
            if msg.get("id") != run.jid:
                continue
            op = msg.get("op")
            if op == P.TEST and msg.get("index") == len(run.verdicts) < run.n:
                verdict = run.judge(msg)
                run.last = time.monotonic()
                progress(1)
                if run.job.stop_on_first_failure:
                    worker.send({"op": P.NEXT if verdict == PASSED else P.STOP})
            elif op == P.POISONED:  # it judged what it could; the rest goes to a fresh worker
                return self._lost(worker, f"the sandbox worker could not clean up: {msg.get('error')}", progress)
            elif op == P.DONE:
                progress(run.stop(msg.get("stopped"), msg.get("error")))
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
              memory_mb: int = DEFAULT_MEMORY_MB, stop_on_first_failure: bool = False, judge: str = STRICT,
              executor: Executor | None = None) -> ExecResult:
    """Runs `code` on every test of `tests` (APPS input_output dict) in the sandbox.

    timeout: seconds per test; total_timeout: seconds for the whole program (tests left when it is
    used up are timeouts); memory_mb: memory on top of the interpreter's;
    stop_on_first_failure: stop after the first test that does not pass (the lists are shorter);
    judge: "strict" (the kit's cascade) or "apps" (the 2021 APPS harness's rules).
    """
    executor = executor or default_executor()
    return executor.run(code, tests, timeout=timeout, total_timeout=total_timeout, memory_mb=memory_mb,
                        stop_on_first_failure=stop_on_first_failure, judge=judge)


def run_many(jobs: Iterable, *, workers: int | None = None, progress: Callable[[int], None] | None = None,
             **defaults) -> Iterator[tuple[Any, ExecResult]]:
    """Judges many programs on a fresh pool of `workers`; yields (key, ExecResult) as they finish."""
    with Executor(workers) as executor:
        yield from executor.run_many(jobs, progress=progress, **defaults)
