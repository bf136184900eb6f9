"""Caller-side handle of one sandbox worker process: start it, talk to it, stop it, clean up after it.

Used by `execution.Executor` (which decides what each worker runs and judges what comes back). The
worker itself is `_sandbox_worker.py`, a fresh interpreter started with a scrubbed environment; it
speaks the protocol of `_sandbox_protocol.py` on its stdin and stdout.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import _sandbox_protocol as P
from ._sandbox_files import PRIVATE_DIRS, empty_dir

WORKER_SCRIPT = Path(__file__).resolve().with_name("_sandbox_worker.py")
SANDBOX_MARKER = "APPSNEO_SANDBOX"
START_TIMEOUT = 60.0  # seconds a worker may take to start and report READY

def worker_env() -> dict:
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


class WorkerHandle:
    """Caller-side handle of one `_sandbox_worker.py` process."""

    def __init__(self, isolation: str, hide: list[str]):
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, "-s", "-P", str(WORKER_SCRIPT)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, env=worker_env(),
            cwd="/", close_fds=True, start_new_session=True,
        )
        self.fd = self.proc.stdout.fileno()
        os.set_blocking(self.fd, False)
        self.reader = P.Reader()
        self.ready: dict | None = None
        self.running = None  # the execution._Running job it works on
        self.lost: str | None = None  # why it can judge no more (died, stalled, poisoned)
        auto = isolation == "auto"
        try:
            self.send({"op": P.CONFIG, "setuid": auto, "namespaces": auto, "hide": list(hide)})
        except OSError:
            pass  # it did not start: wait_ready says why, from its log

    def send(self, obj: dict) -> None:
        self.proc.stdin.write((json.dumps(obj) + "\n").encode())
        self.proc.stdin.flush()

    def read(self) -> list[dict] | None:
        """Complete messages available now; None when the worker has gone. ValueError: broken stream."""
        try:
            chunk = os.read(self.fd, 1 << 22)
        except BlockingIOError:
            return []
        if not chunk:
            return None
        return self.reader.feed(chunk)

    def wait_ready(self, deadline: float) -> dict:
        while self.ready is None:
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()
                raise RuntimeError(f"the sandbox worker did not start within {START_TIMEOUT:g} s")
            with selectors.DefaultSelector() as sel:
                sel.register(self.fd, selectors.EVENT_READ)
                sel.select(left)
            messages = self.read()
            if messages is None:
                raise RuntimeError(f"the sandbox worker failed to start: {self.log_tail()}")
            for msg in messages:
                if msg.get("op") == P.READY:
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
        return self.lost is None and self.proc.poll() is None

    def kill(self) -> None:
        """Stops the worker now: SIGTERM (it kills its sandbox and cleans up), then SIGKILL."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                os.kill(self.proc.pid, signal.SIGCONT)  # a stopped worker wakes up to clean up and leave
            except OSError:
                pass
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.proc.returncode != 0 or self.lost:  # its sandbox may have survived it
            self._clean_uid()
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass
        self.log.close()

    def _clean_uid(self) -> None:
        """After a hard kill (root callers only): kill what runs as its sandbox uid, clear the uid's
        keyring, remove what the uid left in the shared temporary folders, drop its cgroup."""
        isolation = (self.ready or {}).get("isolation", {})
        uid = isolation.get("uid")
        if not uid or os.geteuid() != 0:
            return
        script = (f"import os, ctypes\nos.setgroups([])\nos.setgid({uid})\nos.setresuid({uid}, {uid}, {uid})\n"
                  "os.kill(-1, 9)\nimport importlib.util as u\n"
                  f"s = u.spec_from_file_location('c', {str(WORKER_SCRIPT.with_name('_sandbox_child.py'))!r})\n"
                  "m = u.module_from_spec(s)\ns.loader.exec_module(m)\nm.keyctl(m.KEYCTL_CLEAR, m.KEY_SPEC_USER_KEYRING)\n")
        try:
            subprocess.run([sys.executable, "-S", "-c", script], timeout=10, env=worker_env(),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except (OSError, subprocess.SubprocessError):
            pass
        for folder in PRIVATE_DIRS:  # its private mounts died with it; shared folders did not
            if os.path.isdir(folder):
                empty_dir(folder, uid)
        if isolation.get("cgroup"):
            try:
                os.rmdir(isolation["cgroup"])
            except OSError:
                pass

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.send({"op": P.EXIT})
                self.proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired, ValueError):
                pass
        self.kill()
