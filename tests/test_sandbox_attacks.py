"""Round two of hostile programs (issue 11): classes of attack, each with several programs of its own.

Every case gets the checks of test_adversarial: the verdict is right, the harness survives (a
poisoned worker is replaced, the others stay), a correct program is judged right afterwards,
nothing is left outside (files, SysV IPC objects, POSIX queues, processes, and what a follow-up
program could still find: keys, files, shared memory), and the judge's wall time is bounded.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from appsneo_utils.execution import COMPILE_ERROR, PASSED, RUNTIME_ERROR, TIMEOUT, WRONG_ANSWER, Executor
from conftest import running_as
from test_adversarial import leftovers

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the attacks and checks are Linux's")

ROOT = Path(__file__).resolve().parents[1]
TOKEN = secrets.token_hex(6)
SECRET = f"answer-{TOKEN}"
SANITY = ("print(int(input()) + 1)\n", {"inputs": ["41\n"], "outputs": ["42\n"]})
EMPTY = {"inputs": [""], "outputs": ["none\n"]}
CALL = {"fn_name": "f", "inputs": [[1]], "outputs": [[1.5]]}
LIBC = "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nlibc.syscall.restype = ctypes.c_long\n"
ADD_KEY, KEYCTL = {"x86_64": (248, 250), "aarch64": (217, 219)}.get(os.uname().machine, (248, 250))


@dataclass
class Case:
    name: str
    code: str
    verdicts: tuple  # acceptable verdicts of every test
    tests: dict = None
    needs: tuple = ()  # isolation features the case is about ("uid", "cgroup", "seccomp", ...)
    followup: str | None = None  # a later program on the same executor that must print "none"
    replaces_worker: bool = False  # the program poisons its worker: it is replaced, tests go on
    timeout: float = 2.0
    memory_mb: int = 256


def cases(world: dict) -> list[Case]:
    unix, answers = world["unix"], world["answers"]
    deep = "import os\nfor _ in range(1500):\n\tos.mkdir('d')\n\tos.chdir('d')\nopen('f', 'w').write('x')\n"
    return [
        # 1. values that crashed the caller's comparison or messages
        Case("huge_wrong_int", "def f(x):\n\treturn 10 ** 5000 + 1\n", (WRONG_ANSWER,), tests=CALL),
        Case("float_overflow", "def f(x):\n\treturn [10 ** 400]\n", (WRONG_ANSWER,), tests=CALL),
        Case("huge_int_key", "def f(x):\n\treturn {10 ** 4400: [10 ** 4400]}\n", (WRONG_ANSWER,), tests=CALL),
        # 2. output that cost the judge quadratic time
        Case("digit_token_then_letter", "print('7' * 400000 + 'x')\n", (WRONG_ANSWER,),
             tests={"inputs": [""], "outputs": ["7\n"]}),
        Case("control_byte_flood", "import sys\nsys.stdout.write('\\x00\\x1c\\x1f\\n' * (2 << 20))\n",
             (WRONG_ANSWER,), tests={"inputs": [""], "outputs": ["7\n"]}),
        Case("many_numbers", "import sys\nsys.stdout.write('1.5 ' * (4 << 20))\n", (WRONG_ANSWER,),
             tests={"inputs": [""], "outputs": ["1.5\n"]}),
        # 3. a test that poisons the worker's cleanup: the remaining tests are judged on a new one
        Case("deep_tree_in_workdir", deep + "print(input())\n", (PASSED,), replaces_worker=True,
             tests={"inputs": ["1", "2", "3"], "outputs": ["1\n", "2\n", "3\n"]}),
        Case("deep_tree_in_tmp", "import os\nos.chdir('/tmp')\n" + deep + "print(input())\n", (PASSED,),
             replaces_worker=True, tests={"inputs": ["1", "2"], "outputs": ["1\n", "2\n"]}, needs=("mountns",)),
        Case("unreadable_tree", "import os\nos.makedirs('a/b/c')\nopen('a/b/c/f', 'w').write('x')\n"
             "os.chmod('a/b', 0)\nos.chmod('a', 0o500)\nprint(input())\n", (PASSED,),
             tests={"inputs": ["1", "2"], "outputs": ["1\n", "2\n"]}),
        # 4. state that must not outlive the test
        Case("sysv_shared_memory",
             LIBC + f"shm = libc.shmget(0x{TOKEN[:7]}, 4096, 0o1666)\nlibc.shmat.restype = ctypes.c_void_p\n"
             f"ctypes.memmove(libc.shmat(shm, None, 0), b'{SECRET}', {len(SECRET)})\nprint('none')\n",
             (PASSED,), tests=EMPTY, needs=("ipcns",),
             followup=LIBC + f"shm = libc.shmget(0x{TOKEN[:7]}, 4096, 0o666)\nprint('found' if shm >= 0 else 'none')\n"),
        Case("sysv_message_queue",
             LIBC + f"q = libc.msgget(0x{TOKEN[1:8]}, 0o1666)\nmsg = ctypes.create_string_buffer(b'\\1\\0\\0\\0\\0\\0\\0\\0"
             f"{SECRET}')\nlibc.msgsnd(q, msg, {len(SECRET)}, 0)\nprint('none')\n",
             (PASSED,), tests=EMPTY, needs=("ipcns",),
             followup=LIBC + f"q = libc.msgget(0x{TOKEN[1:8]}, 0o666)\nprint('found' if q >= 0 else 'none')\n"),
        Case("user_keyring",
             LIBC + f"k = libc.syscall({ADD_KEY}, b'user', b'appsneo-{TOKEN}', b'{SECRET}', {len(SECRET)}, -4)\n"
             "print('none')\n",
             (PASSED,), tests=EMPTY, needs=("uid",),
             followup=LIBC + f"k = libc.syscall({KEYCTL}, 10, -4, b'user', b'appsneo-{TOKEN}', 0)\n"
                             "print('found' if k > 0 else 'none')\n"),
        Case("session_keyrings",  # the session keyring a child inherits, and the uid's user-session one
             LIBC + "".join(f"libc.syscall({ADD_KEY}, b'user', b'appsneo-{TOKEN}', b'{SECRET}', {len(SECRET)}, {ring})\n"
                            for ring in (-3, -5)) + "print('none')\n",
             (PASSED,), tests=EMPTY, needs=("uid",),
             followup=LIBC + "found = [libc.syscall(" + str(KEYCTL) + f", 10, ring, b'user', b'appsneo-{TOKEN}', 0) > 0 "
                             "for ring in (-3, -5)]\nprint('found' if any(found) else 'none')\n"),
        Case("files_left_in_tmp",
             f"import os\nos.makedirs('/tmp/appsneo-left-{TOKEN}/x/y')\n"
             f"open('/tmp/appsneo-left-{TOKEN}/x/y/a', 'w').write('{SECRET}')\n"
             f"open('/dev/shm/appsneo-left-{TOKEN}', 'w').write('{SECRET}')\nprint('none')\n",
             (PASSED,), tests=EMPTY, needs=("mountns",),
             followup=f"import os\nprint('found' if os.path.exists('/tmp/appsneo-left-{TOKEN}') or "
                      f"os.path.exists('/dev/shm/appsneo-left-{TOKEN}') else 'none')\n"),
        # 5. a symlink planted for the judge's own files (see also test_execute_cli)
        Case("symlink_then_stall",
             f"import os, time\nos.symlink('/etc/hostname', '/tmp/appsneo-{TOKEN}.errors.jsonl')\ntime.sleep(60)\n",
             (TIMEOUT,), tests=EMPTY, timeout=1.0, needs=("uid",)),
        Case("symlinks_then_exit",  # several names a caller might open later, then a hard exit
             "import os\nfor d in ('/tmp', '/var/tmp', '/dev/shm'):\n"
             f"\tos.symlink('/etc/passwd', f'{{d}}/appsneo-{TOKEN}.jsonl')\nos._exit(0)\n",
             (WRONG_ANSWER,), tests=EMPTY, needs=("mountns",)),
        # 6. memory the per-process address-space cap did not count
        Case("forked_children_memory",
             "import os, time\nkids = []\nfor _ in range(8):\n\tpid = os.fork()\n\tif pid == 0:\n"
             "\t\tb = bytearray(60 << 20)\n\t\tfor i in range(0, len(b), 4096):\n\t\t\tb[i] = 1\n\t\ttime.sleep(3)\n"
             "\t\tos._exit(0)\n\tkids.append(pid)\nok = all(os.waitpid(pid, 0)[1] == 0 for pid in kids)\n"
             "print('none' if ok else 'killed')\n",
             (RUNTIME_ERROR, WRONG_ANSWER, TIMEOUT), tests=EMPTY, memory_mb=64, timeout=6.0, needs=("cgroup", "uid")),
        Case("memfd_memory",
             "import os\nfds = [os.memfd_create('m') for _ in range(20)]\n"
             "for fd in fds:\n\tfor _ in range(30):\n\t\tos.write(fd, b'x' * (1 << 20))\nprint('none')\n",
             (RUNTIME_ERROR,), tests=EMPTY, memory_mb=64, timeout=6.0, needs=("cgroup",)),
        Case("sysv_segments_memory",
             LIBC + "libc.shmat.restype = ctypes.c_void_p\nfor i in range(10):\n"
             "\tshm = libc.shmget(0, 30 << 20, 0o1600)\n\tat = libc.shmat(shm, None, 0)\n"
             "\tctypes.memset(at, 1, 30 << 20)\n\tlibc.shmdt(ctypes.c_void_p(at))\n"  # detached: RLIMIT_AS never sees it
             "print('none')\n",
             (RUNTIME_ERROR,), tests=EMPTY, memory_mb=64, timeout=6.0, needs=("cgroup", "ipcns")),
        Case("huge_literal_compiled",
             "x = (" + "1, " * 1_400_000 + ")\nprint('none')\n",
             (RUNTIME_ERROR, COMPILE_ERROR, TIMEOUT), tests=EMPTY, memory_mb=16, timeout=6.0),
        # 7. reading the answers
        Case("search_answer_files",
             "import os\nfound = 'none'\n"
             f"for top in {[str(ROOT / 'data'), str(ROOT / 'runs'), str(ROOT.parent / 'shared' / 'data'), str(answers.parent)]!r}:\n"
             "\tfor folder, _, names in os.walk(top):\n\t\tfor name in names:\n\t\t\ttry:\n"
             f"\t\t\t\tif {SECRET!r} in open(os.path.join(folder, name), errors='replace').read():\n"
             "\t\t\t\t\tfound = 'found'\n\t\t\texcept OSError:\n\t\t\t\tpass\nprint(found)\n",
             (PASSED,), tests=EMPTY, needs=("uid", "mountns")),
        Case("caller_command_line",
             "import os\nfound = 'none'\nfor pid in os.listdir('/proc'):\n\ttry:\n"
             f"\t\tif b'{TOKEN}' in open(f'/proc/{{pid}}/cmdline', 'rb').read():\n\t\t\tfound = 'found'\n"
             "\texcept OSError:\n\t\tpass\nprint(found)\n",
             (PASSED,), tests=EMPTY, needs=("uid", "hidepid")),
        # 9. host sockets reached through the file system
        Case("unix_socket_file",
             f"import socket\ntry:\n\tsocket.socket(socket.AF_UNIX).connect({str(unix)!r})\n\tprint('found')\n"
             "except OSError:\n\tprint('none')\n", (PASSED,), tests=EMPTY, needs=("seccomp",)),
        Case("unix_socket_raw_syscall",
             LIBC + "fd = libc.socket(1, 1, 0)\nprint('found' if fd >= 0 else 'none')\n",
             (PASSED,), tests=EMPTY, needs=("seccomp",)),
        Case("unix_socket_abstract",
             f"import socket\ntry:\n\tsocket.socket(socket.AF_UNIX).connect('\\0appsneo-{TOKEN}')\n\tprint('found')\n"
             "except OSError:\n\tprint('none')\n", (PASSED,), tests=EMPTY, needs=("netns",)),
    ]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A host socket in a folder the sandbox can see, an answers file named on a command line."""
    unix = ROOT / f".appsneo-sock-{TOKEN}"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(unix))
    os.chmod(unix, 0o777)
    listener.listen(4)
    listener.setblocking(False)
    abstract = socket.socket(socket.AF_UNIX)
    abstract.bind(f"\0appsneo-{TOKEN}")
    abstract.listen(4)
    abstract.setblocking(False)
    answers = ROOT / "runs" / f".answers-{TOKEN}" / "problems.jsonl"
    answers.parent.mkdir(parents=True)
    answers.write_text(f'{{"outputs": ["{SECRET}"]}}\n')
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", "--problems", str(answers)])
    yield {"unix": unix, "answers": answers, "listeners": (listener, abstract)}
    holder.kill()
    holder.wait()
    for s in (listener, abstract):
        s.close()
    unix.unlink()
    answers.unlink()
    answers.parent.rmdir()


@pytest.fixture(scope="module", params=["auto", "basic"])
def ex(request, world):
    # "basic" (no uid drop, no namespaces) runs the classes that do not need them
    with Executor(workers=2, isolation=request.param, hide=[world["answers"]]) as executor:
        executor.run(*SANITY)
        yield executor


def ipc_state() -> dict:
    state = {}
    for kind in ("shm", "msg", "sem"):
        try:
            state[kind] = len(Path(f"/proc/sysvipc/{kind}").read_text().splitlines())
        except OSError:
            state[kind] = None
    state["mqueue"] = sorted(os.listdir("/dev/mqueue")) if os.path.isdir("/dev/mqueue") else None
    state["tmp"] = sorted(n for d in ("/tmp", "/var/tmp", "/dev/shm") for n in os.listdir(d) if TOKEN in n)
    return state


def _feature(ex, need: str) -> bool:
    info = ex.isolation
    return info.get(need) is not None and info.get(need) is not False if need != "uid" else bool(ex.sandbox_uids())


CASE_NAMES = [c.name for c in cases({"unix": Path("/x"), "answers": Path("/x/y")})]


@pytest.mark.parametrize("name", CASE_NAMES)
def test_attack_class(ex, world, name):
    case = next(c for c in cases(world) if c.name == name)
    missing = [n for n in case.needs if not _feature(ex, n)]
    if missing:
        pytest.skip(f"{name} needs {missing}, absent with isolation={ex.isolation_mode!r} here (README: sandbox)")
    before, workers = ipc_state(), ex.worker_pids()
    tests = case.tests or SANITY[1]
    start = time.monotonic()
    result = ex.run(case.code, tests, timeout=case.timeout, memory_mb=case.memory_mb)
    elapsed = time.monotonic() - start

    assert set(result.verdicts) <= set(case.verdicts) and len(result.verdicts) == len(tests["inputs"]), \
        (result.verdicts, result.errors)
    # bounded: the time limits of its tests, plus a fresh worker per poisoned test, plus a little
    assert elapsed < len(tests["inputs"]) * (case.timeout + (3 if case.replaces_worker else 0)) + 10
    if case.replaces_worker:
        assert len(ex.worker_pids()) == len(workers)
    else:
        assert ex.worker_pids() == workers, "a worker died: the harness did not survive"
    assert ex.run(*SANITY).passed, "the harness no longer judges correctly"
    if case.followup:
        later = ex.run(case.followup, EMPTY)
        assert later.passed, f"a later program found what {name} left: {later.errors}"
    assert leftovers(ex) == []
    assert ipc_state() == before
    for listener in world["listeners"]:
        with pytest.raises(BlockingIOError):
            listener.accept()


def test_a_killed_worker_leaves_nothing_behind(world):
    """A worker killed hard cannot clean up: the caller kills what its uid still runs, clears what
    it left, and judges the test again on a fresh worker (never blamed on the program)."""
    import threading

    with Executor(workers=1) as executor:
        executor.run(*SANITY)
        uids = set(executor.sandbox_uids())
        if not uids:
            pytest.skip("no uid drop here: nothing can tell a sandbox's processes and files from the caller's")
        code = (f"import subprocess, time\nopen('/tmp/appsneo-left-{TOKEN}', 'w').write('x')\n"
                "subprocess.Popen(['sleep', '1000'])\ntime.sleep(60)\n")
        killer = threading.Timer(1.0, os.kill, (executor.worker_pids()[0], 9))
        killer.start()
        result = executor.run(code, EMPTY, timeout=3)
        killer.join()
        assert result.verdicts == [TIMEOUT], result.errors  # judged again on a fresh worker
        assert running_as(uids) == [], "the killed worker's sandbox still runs"
        assert executor.run(*SANITY).passed
    assert ipc_state()["tmp"] == []


def test_a_cleanup_failure_poisons_the_worker_and_the_rest_is_judged_on_a_fresh_one():
    """An immutable file (root in 'basic' mode can make one) defeats the cleanup: the worker says so
    and leaves, and the program's remaining tests are judged on a fresh worker, all correctly."""
    import fcntl
    import glob
    import struct

    if os.geteuid() != 0:
        pytest.skip("only root can make a file immutable")
    code = ("import fcntl, os, struct\nx = input()\nif x == '1':\n\tfd = os.open('stuck', os.O_CREAT | os.O_RDONLY)\n"
            "\tfcntl.ioctl(fd, 0x40086602, struct.pack('l', 0x10))\nprint(x)\n")
    tests = {"inputs": ["0", "1", "2", "3"], "outputs": ["0\n", "1\n", "2\n", "3\n"]}
    try:
        with Executor(workers=1, isolation="basic") as executor:
            executor.run(*SANITY)
            first = executor.worker_pids()
            result = executor.run(code, tests)
            if not glob.glob("/tmp/appsneo-*/stuck"):
                pytest.skip("this file system has no immutable flag")
            assert result.verdicts == [PASSED] * 4, result.errors
            assert executor.worker_pids() != first, "the poisoned worker was not replaced"
            assert executor.run(*SANITY).passed
    finally:
        for path in glob.glob("/tmp/appsneo-*/stuck"):
            fd = os.open(path, os.O_RDONLY)
            fcntl.ioctl(fd, 0x40086602, struct.pack("l", 0))
            os.close(fd)
            os.unlink(path)
            os.rmdir(os.path.dirname(path))


NOBODY_CHECK = r'''
import sys
sys.path.insert(0, sys.argv[1])
from appsneo_utils.execution import Executor
checks = {
    "capabilities": ("print(open('/proc/self/status').read().split('CapEff:')[1].split()[0])", "0000000000000000"),
    "unmount": (f"import ctypes\nl = ctypes.CDLL(None)\nprint(l.umount2(b'/tmp', 2), l.umount2({sys.argv[1] + '/data'!r}.encode(), 2))",
                "-1 -1"),
    "data": (f"import os\nprint(os.listdir({sys.argv[1] + '/data'!r}))", "[]"),
    "unix": ("import socket\ntry:\n\tsocket.socket(socket.AF_UNIX).connect('/x')\nexcept PermissionError:\n\tprint(0)", "0"),
    "network": ("import socket\ntry:\n\tsocket.create_connection(('127.0.0.1', 22), timeout=1)\nexcept OSError:\n\tprint(0)", "0"),
    "ipc": ("import ctypes\nl = ctypes.CDLL(None)\nprint(int(l.shmget(0x1234, 4096, 0o1666) >= 0))", "1"),
    "ipc_gone": ("import ctypes\nl = ctypes.CDLL(None)\nprint(int(l.shmget(0x1234, 4096, 0o666) >= 0))", "0"),
}
with Executor(1) as ex:
    info = ex.isolation
    assert info["userns"] and info["netns"] and info["mountns"] and info["ipcns"] and info["seccomp"], info
    for name, (code, want) in checks.items():
        r = ex.run(code, {"inputs": [""], "outputs": [want + "\n"]})
        assert r.passed, (name, r.errors)
print("ALL OK")
'''


def test_an_ordinary_user_gets_namespaces_through_a_user_namespace(tmp_path):
    """Run as nobody (from root, where the interpreter may sit under a 0700 /root: a private mount
    exposes it): the worker makes a user namespace, and with it the network, mount and IPC ones;
    its children hold no capabilities (they cannot unmount the private or hidden folders)."""
    import shutil

    if os.geteuid() != 0 or not (shutil.which("unshare") and shutil.which("setpriv")):
        pytest.skip("needs root with unshare and setpriv to become an ordinary user")
    script = tmp_path / "check.py"
    script.write_text(NOBODY_CHECK)
    script.chmod(0o644)
    tmp_path.chmod(0o755)
    for parent in tmp_path.parents:
        if parent == Path("/tmp"):
            break
        parent.chmod(parent.stat().st_mode | 0o005)
    prefix, expose = os.path.realpath(sys.base_prefix), ""
    blocker = next((p for p in Path(prefix).parents if p != Path("/") and not p.stat().st_mode & 0o001), None)
    if blocker is not None:  # e.g. pyenv under /root: a tmpfs over /root with only the interpreter in it
        expose = (f"mkdir -p /mnt/appsneo-py && mount --bind {prefix} /mnt/appsneo-py && "
                  f"mount -t tmpfs tmpfs {blocker} && mkdir -p {prefix} && mount --move /mnt/appsneo-py {prefix} && ")
    command = (f"mount --make-rprivate / && {expose}cd /tmp && setpriv --reuid=65534 --regid=65534 --clear-groups "
               f"env HOME=/tmp {sys.executable} {script} {ROOT}")
    proc = subprocess.run(["unshare", "-m", "sh", "-c", command], capture_output=True, text=True, timeout=120)
    if "unshare failed" in proc.stderr or "Operation not permitted" in proc.stderr and "ALL OK" not in proc.stdout:
        pytest.skip(f"this machine refuses the namespaces: {proc.stderr[-300:]}")
    assert "ALL OK" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-2000:]
