"""Hostile programs: for every one the harness survives, the verdict is right, nothing outside the
sandbox changes and no process is left behind.

Run under both isolation modes: "auto" (here, as root on Linux: uid drop, network and mount
namespaces) and "basic" (no uid drop, no namespaces: what an unprivileged user gets). Cases that
only the uid drop makes safe (a fork bomb as root, killing every process, writing the caller's
files) run in "auto" only.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from appsneo_utils.execution import PASSED, RUNTIME_ERROR, TIMEOUT, WRONG_ANSWER, Executor

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the adversarial suite checks /proc (Linux)")

ROOT = Path(__file__).resolve().parents[1]
TOKEN = secrets.token_hex(6)
SECRET = f"hunter2-{TOKEN}"
ONE = {"inputs": ["1\n"], "outputs": ["1\n"]}
SANITY = ("print(int(input()) + 1)\n", {"inputs": ["41\n"], "outputs": ["42\n"]})


@dataclass
class Case:
    name: str
    code: str
    verdicts: tuple  # acceptable verdicts of the single test
    tests: dict = None
    modes: tuple = ("auto", "basic")
    needs_uid: bool = False  # only safe (or only meaningful) with the uid drop
    timeout: float = 1.0
    memory_mb: int = 256


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Things outside the sandbox that programs will try to reach."""
    sentinel_dir = ROOT / "runs" / f".sandbox-test-{TOKEN}"
    sentinel_dir.mkdir(parents=True)
    (sentinel_dir / "keep.txt").write_text("precious\n")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    # a process whose environment holds the secret (its /proc/<pid>/environ shows it)
    holder = subprocess.Popen(["sleep", "300"], env={"APPSNEO_TEST_SECRET": SECRET, "PATH": "/usr/bin:/bin"})
    os.environ["APPSNEO_TEST_SECRET"] = SECRET  # in the caller's environment before workers start
    info = {"sentinel": sentinel_dir, "port": listener.getsockname()[1], "listener": listener,
            "caller": os.getpid(), "holder": holder.pid}
    yield info
    os.environ.pop("APPSNEO_TEST_SECRET", None)
    holder.kill()
    holder.wait()
    listener.close()
    for p in sentinel_dir.iterdir():
        p.unlink()
    sentinel_dir.rmdir()


@pytest.fixture(scope="module", params=["auto", "basic"])
def ex(request, world):
    # "basic" (as root too: no uid drop) has only what rlimits and process groups give: still safe
    # for the cases marked for "basic" below
    with Executor(workers=2, isolation=request.param) as executor:
        executor.run(*SANITY)  # start the workers
        yield executor


def cases(world) -> list[Case]:
    s, port, caller, holder = world["sentinel"], world["port"], world["caller"], world["holder"]
    outside = [str(s / "new.txt"), f"/tmp/appsneo-escape-{TOKEN}", f"/var/tmp/appsneo-escape-{TOKEN}",
               f"/dev/shm/appsneo-escape-{TOKEN}", str(ROOT / f"appsneo-escape-{TOKEN}")]
    return [
        Case("fork_bomb", "import os\nwhile True:\n\ttry:\n\t\tos.fork()\n\texcept OSError:\n\t\tpass\n",
             (TIMEOUT,), modes=("auto",), needs_uid=True),
        Case("memory_bomb", "x = bytearray(10 ** 11)\nprint(1)\n", (RUNTIME_ERROR,)),
        Case("memory_growth", "chunks = []\nwhile True:\n\tchunks.append(bytearray(10 ** 7))\n", (RUNTIME_ERROR,),
             memory_mb=128),
        Case("infinite_loop", "while True:\n\tpass\n", (TIMEOUT,)),
        Case("sleep_forever", "import time\ntime.sleep(10 ** 6)\n", (TIMEOUT,)),
        Case("output_flood", "while True:\n\tprint('x' * 10000)\n", (RUNTIME_ERROR,)),
        Case("read_past_eof", "input()\ninput()\nprint(1)\n", (RUNTIME_ERROR,)),
        Case("files_outside",
             # writes to the private /tmp may succeed (nobody outside sees them); the caller's files
             # must be out of reach: it prints how many of those attempts succeeded
             "import os, shutil\n"
             f"for t in {outside[1:4]!r}:\n\ttry:\n\t\topen(t, 'w').write('pwned')\n\texcept OSError:\n\t\tpass\n"
             "done = 0\n"
             f"for action in (lambda: open({outside[0]!r}, 'w').write('pwned'), lambda: open({outside[4]!r}, 'w'),\n"
             f"\t\tlambda: open({str(s / 'keep.txt')!r}, 'w').write('gone'),\n"
             f"\t\tlambda: os.remove({str(s / 'keep.txt')!r}), lambda: shutil.rmtree({str(s)!r}),\n"
             f"\t\tlambda: os.chmod({str(s)!r}, 0o777), lambda: os.rename({str(s)!r}, {str(s) + '-moved'!r})):\n"
             "\ttry:\n\t\taction()\n\t\tdone += 1\n\texcept OSError:\n\t\tpass\n"
             "print(done)\n",
             (PASSED,), tests={"inputs": [""], "outputs": ["0\n"]}, modes=("auto",), needs_uid=True),
        Case("environment_secret",
             "import os\nfound = os.environ.get('APPSNEO_TEST_SECRET', 'none') != 'none'\n"
             "for pid in os.listdir('/proc'):\n"
             "\ttry:\n"
             f"\t\tfound = found or {SECRET!r}.encode() in open(f'/proc/{{pid}}/environ', 'rb').read()\n"
             "\texcept (OSError, ValueError):\n\t\tpass\n"
             "print('found' if found else 'none')\n",
             (PASSED,), tests={"inputs": [""], "outputs": ["none\n"]}, modes=("auto",), needs_uid=True),
        Case("environment_variable",
             "import os\nprint(os.environ.get('APPSNEO_TEST_SECRET', 'none'))\n",
             (PASSED,), tests={"inputs": [""], "outputs": ["none\n"]}),
        Case("network_listener",
             "import socket\ntry:\n"
             f"\tsocket.create_connection(('127.0.0.1', {port}), timeout=1).sendall(b'hello')\n"
             "\tprint('connected')\nexcept OSError:\n\tprint('blocked')\n",
             (PASSED,), tests={"inputs": [""], "outputs": ["blocked\n"]}),
        Case("kill_the_parent",  # prints how many of its kills went through
             "import os, signal\ndone = 0\n"
             f"for action in (lambda: os.kill(os.getppid(), 9), lambda: os.kill({caller}, 9),\n"
             f"\t\tlambda: os.killpg(os.getpgid({caller}), 9), lambda: os.kill({holder}, 9)):\n"
             "\ttry:\n\t\taction()\n\t\tdone += 1\n\texcept OSError:\n\t\tpass\n"
             "print(done)\n",
             (PASSED,), tests={"inputs": [""], "outputs": ["0\n"]}, modes=("auto",), needs_uid=True),
        Case("kill_everything", "import os\nif os.getuid() != 0:\n\tos.kill(-1, 9)\nprint(1)\n",
             (PASSED,), modes=("auto",), needs_uid=True),  # kill(-1) spares the caller: it reaches nobody else
        Case("ignore_sigterm",
             "import os, signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nos.fork()\nwhile True:\n\tpass\n",
             (TIMEOUT,)),
        Case("sys_exit_before_printing", "import sys\nsys.exit(0)\nprint(1)\n", (WRONG_ANSWER,)),
        Case("os_exit_before_printing", "import os\nos._exit(0)\nprint(1)\n", (WRONG_ANSWER,)),
        Case("deep_recursion", "def f(n):\n\treturn f(n + 1)\nf(0)\n", (RUNTIME_ERROR,)),
        Case("deep_recursion_no_limit",
             "import sys\nsys.setrecursionlimit(10 ** 9)\ndef f(n):\n\treturn f(n + 1) + 1\nf(0)\n",
             (RUNTIME_ERROR, TIMEOUT), memory_mb=64, timeout=3.0),
        Case("deep_recursion_legit",
             "import sys\nsys.setrecursionlimit(10 ** 6)\ndef f(n):\n\treturn 0 if n == 0 else 1 + f(n - 1)\n"
             "print(f(10 ** 5) // 10 ** 5)\n", (PASSED,), timeout=3.0),
        Case("threads_and_subprocesses",
             "import os, subprocess, threading\nresults = []\n"
             "threads = [threading.Thread(target=lambda: results.append(1)) for _ in range(8)]\n"
             "[t.start() for t in threads]\n[t.join() for t in threads]\n"
             "threading.Thread(target=lambda: __import__('time').sleep(0.2), daemon=True).start()\n"
             "subprocess.Popen(['sleep', '1000'])\n"
             "subprocess.Popen(['sleep', '1000'], start_new_session=True)\n"
             "if os.fork() == 0:\n\tos.setsid()\n\tif os.fork() == 0:\n\t\t__import__('time').sleep(1000)\n\tos._exit(0)\n"
             "print(len(results) // 8)\n",
             (PASSED,)),
        Case("imitates_a_verdict",
             "import sys\nmsg = 'passed\\nTrue\\n{\"op\": \"test\", \"status\": \"ok\", \"verdict\": \"passed\"}'\n"
             "print(msg)\nprint(msg, file=sys.stderr)\n",
             (WRONG_ANSWER,), tests={"inputs": [""], "outputs": ["42\n"]}),
        Case("forges_protocol_messages",
             "import os, json\nfake = (json.dumps({'op': 'test', 'id': 0, 'index': 0, 'status': 'ok', 'value': 42,"
             " 'stdout': '42\\n'}) + '\\n').encode()\n"
             "for fd in range(64):\n\ttry:\n\t\tos.write(fd, fake)\n\texcept OSError:\n\t\tpass\n"
             "print(7)\n",
             (WRONG_ANSWER,), tests={"inputs": [""], "outputs": ["42\n"]}),
        Case("eq_always_true",
             "class Liar:\n\tdef __eq__(self, other):\n\t\treturn True\n\t__hash__ = object.__hash__\n"
             "def f(x):\n\treturn Liar()\n",
             (WRONG_ANSWER,), tests={"fn_name": "f", "inputs": [[1]], "outputs": [[42]]}),
        Case("str_subclass_eq",
             "class S(str):\n\tdef __eq__(self, other):\n\t\treturn True\n\t__hash__ = str.__hash__\n"
             "def f(x):\n\treturn S('nope')\n",
             (WRONG_ANSWER,), tests={"fn_name": "f", "inputs": [[1]], "outputs": [["yes"]]}),
        Case("int_subclass_eq",
             "class I(int):\n\tdef __eq__(self, other):\n\t\treturn True\n\t__hash__ = int.__hash__\n"
             "def f(x):\n\treturn [I(0)]\n",
             (WRONG_ANSWER,), tests={"fn_name": "f", "inputs": [[1]], "outputs": [[[42]]]}),
        Case("returns_a_verdict_string",
             "def f(x):\n\treturn 'passed'\n",
             (WRONG_ANSWER,), tests={"fn_name": "f", "inputs": [[1]], "outputs": [[True]]}),
    ]


CASE_NAMES = [c.name for c in cases({"sentinel": Path("/x"), "port": 0, "caller": 0, "holder": 0})]


def _descendants(pid: int) -> list[int]:
    found, stack = [], [pid]
    while stack:
        p = stack.pop()
        try:
            tids = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                kids = [int(x) for x in Path(f"/proc/{p}/task/{tid}/children").read_text().split()]
            except (OSError, ValueError):
                continue
            found += kids
            stack += kids
    return found


def leftovers(executor: Executor) -> list[str]:
    """Processes the sandbox left: descendants of the workers, or anything running as a sandbox uid."""
    uids = set(executor.sandbox_uids())
    found = {pid for w in executor.worker_pids() for pid in _descendants(w)}
    for name in os.listdir("/proc"):
        if name.isdigit() and uids:
            try:
                if os.stat(f"/proc/{name}").st_uid in uids:
                    found.add(int(name))
            except OSError:
                pass
    out = []
    for pid in sorted(found):
        try:
            out.append(f"{pid}: {Path(f'/proc/{pid}/cmdline').read_bytes()!r}")
        except OSError:
            pass  # gone meanwhile
    return out


def outside_state(world) -> dict:
    s = world["sentinel"]
    state = {"sentinel": sorted((p.name, p.read_text(), oct(p.stat().st_mode)) for p in s.iterdir()),
             "sentinel_mode": oct(s.stat().st_mode)}
    for d in ("/tmp", "/var/tmp", "/dev/shm", str(ROOT), str(Path.cwd())):
        state[d] = sorted(n for n in os.listdir(d) if TOKEN in n)
    return state


@pytest.mark.parametrize("name", CASE_NAMES)
def test_hostile_program(ex, world, name):
    case = next(c for c in cases(world) if c.name == name)
    mode = ex.isolation_mode
    if mode not in case.modes:
        pytest.skip(f"{name} runs only with the uid drop (as root, 'basic' mode has no uid to contain it)")
    if case.needs_uid and not ex.sandbox_uids():
        pytest.skip(f"{name} needs the uid drop, which this machine does not allow (see README: sandbox)")
    before, workers = outside_state(world), ex.worker_pids()

    result = ex.run(case.code, case.tests or ONE, timeout=case.timeout, memory_mb=case.memory_mb)

    assert result.verdicts[0] in case.verdicts, (result.verdicts, result.errors)
    assert ex.worker_pids() == workers, "a worker died: the harness did not survive"
    assert leftovers(ex) == []
    assert outside_state(world) == before
    assert ex.run(*SANITY).passed, "the harness no longer judges correctly"
    if name == "network_listener":
        with pytest.raises(BlockingIOError):
            world["listener"].accept()
    if name == "kill_the_parent":
        assert os.waitpid(world["holder"], os.WNOHANG) == (0, 0), "the program killed a process outside"


def test_leftover_detector_sees_a_running_sandbox(ex):
    """The leftover check above is only worth something if it sees sandbox processes when they exist."""
    import threading
    import time

    code = "import subprocess, time\nsubprocess.Popen(['sleep', '1000'])\ntime.sleep(1.5)\nprint(1)\n"
    results = []
    runner = threading.Thread(target=lambda: results.append(ex.run(code, ONE, timeout=5)))
    runner.start()
    seen, deadline = [], time.monotonic() + 1.2
    while not seen and time.monotonic() < deadline:
        seen = leftovers(ex)
        time.sleep(0.05)
    runner.join()
    assert seen, "no sandbox process seen while one was running"
    assert results[0].passed and leftovers(ex) == []


def test_isolation_report(ex):
    info = ex.isolation
    if ex.isolation_mode == "basic":
        assert info["uid"] is None and not info["netns"]
    elif os.geteuid() == 0 and sys.platform.startswith("linux"):
        # what this kit expects of a Linux machine where it runs as root (e.g. this CI, Colab)
        assert info["uid"] is not None, info
