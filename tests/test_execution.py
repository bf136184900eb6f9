"""The executor judges programs exactly: stdin and call-based, the comparison cascade, verdicts."""

from __future__ import annotations

import os
import time

import pytest

from appsneo_utils.execution import (APPS_CODES, COMPILE_ERROR, PASSED, RUNTIME_ERROR, TIMEOUT, VERDICTS,
                                     WRONG_ANSWER, ExecResult, Executor, Job, compare_return, compare_stdout,
                                     run_many, run_tests)
from conftest import running_as

ADD = {"inputs": ["1 2\n", "3 4\n", "10 -3\n"], "outputs": ["3\n", "7\n", "7\n"]}


@pytest.fixture(scope="module")
def ex():
    with Executor(workers=2) as executor:
        yield executor


# ------------------------------------------------------------------ the comparison cascade, step by step

@pytest.mark.parametrize("output, expected, step", [
    ("3\n", "3\n", "exact"),
    ("3   \r\n\n\n", "3\n", "lines"),  # trailing spaces, CRLF, trailing blank lines
    ("  1 2\n3\n", "1 2\n3", "lines"),  # surrounding whitespace per line
    ("1 2 3\n", "1\n2\n3\n", "tokens"),  # same tokens, other layout
    ("1\n\n2\n", "1\n2\n", "tokens"),  # a blank line inside
    ("0.3333333333\n", "0.333333\n", "numbers"),
    ("1\n", "1.000000\n", "numbers"),
    ("2.50000001 7\n", "2.5 7\n", "numbers"),
    ("a\nb", ["a", "b"], "exact"),  # expected lines given as a list (some APPS rows)
])
def test_cascade_accepts_at_the_right_step(output, expected, step):
    assert compare_stdout(output, expected) == step


@pytest.mark.parametrize("output, expected", [
    ("4\n", "3\n"),
    ("1000001\n", "1000000\n"),  # integers are never compared with a tolerance
    ("0.5\n", "0.6\n"),
    ("0.33\n", "0.333333\n"),  # outside 1e-6
    ("1 2\n", "1 2 3\n"),
    ("", "0\n"),
    ("Yes\n", "YES\n"),
    ("3\n", "3.x\n"),
    ("nan\n", "nan1\n"),
])
def test_cascade_rejects(output, expected):
    assert compare_stdout(output, expected) is None


@pytest.mark.parametrize("value, expected, ok", [
    (9, 9, True),
    (9, [9], True),  # APPS wraps expected values in a one-element list
    ([1, 2], [[1, 2]], True),
    ([1, 2], [1, 2], True),
    ([[1, 2], [3]], [[[1, 2], [3]]], True),
    (True, [True], True),
    (0.1 + 0.2, [0.3], True),
    ({"a": [1]}, [{"a": [1]}], True),
    (9, [8], False),
    ("9", [9], False),
    ([1, 2], [[2, 1]], False),
    (None, [0], False),
    ([], [[1]], False),
])
def test_compare_return(value, expected, ok):
    assert compare_return(value, expected) is ok


# ------------------------------------------------------------------ the strict judge rejects what it must (issue 11, item 8)

@pytest.mark.parametrize("output, expected", [
    ("1414213562.0\n", "1414213561\n"),  # an expected integer gets no tolerance, however it is written
    ("5.0000001\n", "5\n"),
    ("\u0668 \u0665\n", "8 5\n"),  # Arabic-Indic digits are not ASCII digits
    ("\uff18 \uff15\n", "8 5\n"),  # nor are fullwidth ones
    ("8\x1c5\n", "8 5\n"),  # ASCII separator controls are not whitespace
    ("8\x855\n", "8 5\n"),  # nor is NEL
    ("8\u20285\n", "8\n5\n"),  # nor is a Unicode line separator a line end
    ("1e400\n", "2e400\n"),  # beyond float range: exact values only (both would be inf)
])
def test_strict_cascade_rejects_lookalikes(output, expected):
    assert compare_stdout(output, expected) is None


@pytest.mark.parametrize("output, expected, step", [
    ("5.0\n", "5\n", "numbers"),  # the same integer value, written as a float
    ("1e400\n", "1.0e400\n", "numbers"),
    ("8\x0b5\x0c\n", "8 5\n", "tokens"),  # \v and \f are ASCII whitespace
    (b"\xff\n", "\udcff\n", "exact"),  # bytes that are not UTF-8 compare as bytes
])
def test_strict_cascade_accepts_only_the_documented_cases(output, expected, step):
    assert compare_stdout(output, expected) == step


@pytest.mark.parametrize("value, expected, ok", [
    (True, [1], False),  # bool is not a number
    (1, [True], False),
    (5, [5, 6], False),  # only a one-element expected list is unwrapped
    (5.0, 5, True),
    (5.0000001, 5, False),  # an expected integer: that value exactly
    (5, 5.0000001, True),  # an expected float: the tolerance
    ({1: "a"}, {"1": "a"}, True),  # keys as JSON writes them
    ({1: "a", "1": "b"}, {"1": "a"}, False),
    ({1, 2}, [1, 2], False),  # a set is not JSON data
    ((1, 2), [1, 2], True),
    (10 ** 400, 1.5, False),  # beyond float range
    (10 ** 5000, 10 ** 5000 + 1, False),  # more than 4,300 digits
    (10 ** 5000, 10 ** 5000, True),
    (float("inf"), [float("inf")], True),
    (float("nan"), [float("nan")], False),
], ids=lambda v: type(v).__name__)
def test_compare_return_strict_rules(value, expected, ok):
    assert compare_return(value, expected) is ok


def test_judge_is_total_on_hostile_values(ex):
    """Values that once crashed the caller (int->str limit, float overflow) give verdicts."""
    tests = {"fn_name": "f", "inputs": [[1], [2], [3], [4]], "outputs": [[5], [1.5], [[1, 2]], [{"1": 2}]]}
    code = ("def f(x):\n\treturn [None, 10 ** 5000 + 7, 10 ** 400, [10 ** 4400, 2], {10 ** 4500: 2}][x]\n")
    r = ex.run(code, tests)
    assert r.verdicts == [WRONG_ANSWER] * 4, r.errors
    assert "digits" in r.errors[0] and "digits" in r.errors[3]


def test_judge_time_is_linear_in_the_output(ex):
    """A long digit token ending in a letter (regex backtracking) and megabytes of control bytes
    (escaping, re-copied buffers) once cost minutes; now the judge adds little to the run."""
    start = time.monotonic()
    assert compare_stdout("1" * 200_000 + "a\n", "1" * 200_000 + "b\n") is None
    assert time.monotonic() - start < 1
    tests = {"inputs": ["", ""], "outputs": ["1" * 100_000 + "b\n", "0\n"]}
    token = "print('1' * 100000 + 'a')\n"
    control = "import sys\nsys.stdout.write('\\x00\\x01\\x1c' * (3 << 20))\n"
    for code in (token, control):
        start = time.monotonic()
        r = ex.run(code, tests, timeout=4)
        assert r.verdicts == [WRONG_ANSWER] * 2 and time.monotonic() - start < 8, r.errors


# ------------------------------------------------------------------ standard input

def test_stdin_program_passes_and_wrong_answer_is_reported(ex):
    good = ex.run("a, b = map(int, input().split())\nprint(a + b)\n", ADD)
    assert good.verdicts == [PASSED] * 3 and good.passed and good.apps_codes == [True] * 3
    assert good.n_tests == 3 and len(good.test_seconds) == 3 and good.matches == ["exact"] * 3
    bad = ex.run("a, b = map(int, input().split())\nprint(a - b if a == 3 else a + b)\n", ADD)
    assert bad.verdicts == [PASSED, WRONG_ANSWER, PASSED] and not bad.passed
    assert bad.apps_codes == [True, False, True]
    assert "expected '7', got '-1'" in bad.errors[1]


@pytest.mark.parametrize("code", [
    "import sys\ndef main():\n\ta, b = map(int, sys.stdin.readline().split())\n\tprint(a + b)\n"
    "if __name__ == '__main__':\n\tmain()\n",
    "import sys\na, b = map(int, sys.stdin.buffer.read().split())\nsys.stdout.write(str(a + b) + '\\n')\n",
    "a, b = map(int, open(0).read().split())\nprint(a + b)\n",
    "import sys\ninput = sys.stdin.readline\nprint(sum(map(int, input().split())))\n",
    "def s(xs: List[int]) -> int:\n\treturn sum(deque(xs))\nprint(s(list(map(int, input().split()))))\n",
], ids=["main-guard-tabs", "stdin-buffer", "open-0", "readline", "prelude-names"])
def test_ways_of_reading_stdin(ex, code):
    assert ex.run(code, ADD).verdicts == [PASSED] * 3


def test_runtime_error_and_verdict_codes(ex):
    r = ex.run("a, b = map(int, input().split())\nprint(a // (b - 4))\n", ADD)
    assert r.verdicts == [WRONG_ANSWER, RUNTIME_ERROR, WRONG_ANSWER]  # 1//-2 = -1, 3//0 raises
    assert r.apps_codes == [False, -1, False]
    assert "ZeroDivisionError" in r.errors[1]
    assert APPS_CODES == {PASSED: True, WRONG_ANSWER: False, RUNTIME_ERROR: -1, TIMEOUT: -1, COMPILE_ERROR: -2}
    assert set(VERDICTS) == set(APPS_CODES)


def test_timeout_verdict(ex):
    r = ex.run("while True:\n\tpass\n", {"inputs": ["1\n"], "outputs": ["1\n"]}, timeout=0.5)
    assert r.verdicts == [TIMEOUT] and r.apps_codes == [-1]
    assert 0.5 <= r.test_seconds[0] < 3


@pytest.mark.parametrize("code", [
    "a, b = map(int, input().split(\n",  # truncated generation
    "if True:\n\tx = 1\n        y = 2\n",  # tabs then spaces
    "def f(:\n\tpass\n",
    "print('a'\x00)\n",  # a null byte
])
def test_compile_errors_are_found_per_program(ex, code):
    r = ex.run(code, ADD)
    assert r.verdicts == [COMPILE_ERROR] * 3 and r.apps_codes == [-2] * 3
    assert r.errors[0]


def test_a_program_compiled_once_runs_the_same_in_every_test_and_cannot_reach_the_handed_over_code(ex):
    """The first test's child compiles the program and hands the code object to the worker on fd 4,
    closed before the program runs; the later tests run that code: same line numbers, same file name."""
    code = ("import os\ntry:\n\tos.write(4, b'x')\n\tstate = 'open'\nexcept OSError:\n\tstate = 'closed'\n"
            "def f():\n\traise ValueError(input())\ntry:\n\tf()\nexcept ValueError as e:\n"
            "\tprint(state, e.__traceback__.tb_next.tb_lineno, os.path.basename(__file__), e)\n")
    tests = {"inputs": ["1", "2", "3"], "outputs": [f"closed 8 solution.py {i}\n" for i in (1, 2, 3)]}
    r = ex.run(code, tests)
    assert r.passed, r.errors


def test_a_forgiven_program_keeps_its_rewriting_in_every_test(ex):
    """Top-level `return` and `nonlocal` (rewritten at compile time) survive the hand-over."""
    tests = {"inputs": ["0", "2", "3"], "outputs": ["0\n", "2\n", "3\n"]}
    assert ex.run("n = int(input())\nif n > 1:\n\tprint(n)\n\treturn\nprint(0)\n", tests).passed
    code = "n = int(input())\ndef g():\n\tnonlocal n\n\tn += 0\ng()\nprint(n)\n"
    assert ex.run(code, tests).passed


def test_tab_indented_program(ex):
    code = "n = int(input().split()[0])\nfor i in range(1):\n\tif n > 0:\n\t\tprint(n + 2)\n\telse:\n\t\tprint(n)\n"
    assert ex.run(code, {"inputs": ["1 2\n"], "outputs": ["3\n"]}).passed


def test_top_level_return_and_nonlocal_as_in_apps(ex):
    # APPS runs standard-input programs wrapped in a function; its solutions rely on it.
    ret = "n = int(input().split()[0])\nif n == 1:\n\tprint(3)\n\treturn\nprint(n + 4)\n"
    assert ex.run(ret, {"inputs": ["1 2\n", "3 4\n"], "outputs": ["3\n", "7\n"]}).passed
    nonlocal_ = "t = 5\ndef f():\n\tnonlocal t\n\tt += 2\nf()\nprint(t)\n"
    assert ex.run(nonlocal_, {"inputs": [""], "outputs": ["7\n"]}).passed


def test_exit_codes(ex):
    tests = {"inputs": ["1\n"], "outputs": ["1\n"]}
    assert ex.run("print(1)\nexit()\n", tests).verdicts == [PASSED]
    assert ex.run("import sys\nprint(1)\nsys.exit(0)\n", tests).verdicts == [PASSED]
    assert ex.run("import sys\nprint(1)\nsys.exit(3)\n", tests).verdicts == [RUNTIME_ERROR]
    assert ex.run("import sys\nprint(1)\nsys.exit('boom')\n", tests).verdicts == [RUNTIME_ERROR]


def test_tests_do_not_share_state(ex):
    # each test runs in a fresh process and a fresh folder: test 2 cannot see test 1's file
    code = "import os\nprint('seen' if os.path.exists('state.txt') else 'fresh')\nopen('state.txt', 'w').write('x')\n"
    r = ex.run(code, {"inputs": ["", ""], "outputs": ["fresh\n", "fresh\n"]})
    assert r.verdicts == [PASSED, PASSED]


def test_threads_and_deep_recursion_in_a_thread(ex):
    code = ("import sys, threading\nsys.setrecursionlimit(10 ** 6)\nthreading.stack_size(2 ** 26)\n"
            "def depth(n):\n\treturn 0 if n == 0 else 1 + depth(n - 1)\n"
            "def main():\n\tprint(depth(int(input())))\nthreading.Thread(target=main).start()\n")
    assert ex.run(code, {"inputs": ["50000\n"], "outputs": ["50000\n"]}).passed


# ------------------------------------------------------------------ call-based

def test_call_based_function_and_solution_method(ex):
    tests = {"fn_name": "is_prime", "inputs": [[1], [2], [143], [29]], "outputs": [[False], [True], [False], [True]]}
    plain = "def is_prime(n):\n\treturn n > 1 and all(n % d for d in range(2, int(n ** 0.5) + 1))\n"
    assert ex.run(plain, tests).verdicts == [PASSED] * 4
    leet = {"fn_name": "findKthPositive", "inputs": [[[2, 3, 4, 7, 11], 5], [[1, 2, 3, 4], 2]], "outputs": [9, 6]}
    method = ("class Solution:\n\tdef findKthPositive(self, arr: List[int], k: int) -> int:\n"
              "\t\tmissing = sorted(set(range(1, 3000)) - set(arr))\n\t\treturn missing[k - 1]\n")
    assert ex.run(method, leet).verdicts == [PASSED, PASSED]


def test_call_based_values(ex):
    tests = {"fn_name": "f", "inputs": [[2], [3]], "outputs": [[[2, 4]], [[3, 9]]]}
    assert ex.run("def f(x):\n\treturn (x, x * x)\n", tests).passed  # a tuple is read as a list
    assert ex.run("import numpy as np\ndef f(x):\n\treturn np.array([x, x * x])\n", tests).passed
    wrong = ex.run("def f(x):\n\treturn [x, x * x + (x == 3)]\n", tests)
    assert wrong.verdicts == [PASSED, WRONG_ANSWER] and "expected" in wrong.errors[1]
    gen = ex.run("def f(x):\n\treturn map(int, [x, x * x])\n", tests)
    assert gen.verdicts == [WRONG_ANSWER, WRONG_ANSWER] and "map" in gen.errors[0]


def test_call_based_arguments_are_positional_and_fresh(ex):
    tests = {"fn_name": "f", "inputs": [[[1, 2], 3], [[4], 1]], "outputs": [[[1, 2, 3]], [[4, 1]]]}
    code = "def f(xs, y):\n\txs.append(y)\n\treturn xs\n"
    assert ex.run(code, tests).passed


def test_call_based_errors(ex):
    tests = {"fn_name": "f", "inputs": [[1], [2]], "outputs": [[1], [2]]}
    missing = ex.run("def g(x):\n\treturn x\n", tests)
    assert missing.verdicts == [COMPILE_ERROR] * 2 and "'f'" in missing.errors[0]  # as APPS: -2
    broken_module = ex.run("import no_such_module_xyz\ndef f(x):\n\treturn x\n", tests)
    assert broken_module.verdicts == [COMPILE_ERROR] * 2  # APPS counts a failing module load as -2
    raising = ex.run("def f(x):\n\treturn 1 // (x - 2)\n", tests)
    assert raising.verdicts == [WRONG_ANSWER, RUNTIME_ERROR]


# ------------------------------------------------------------------ options and batch API

def test_stop_on_first_failure_and_total_timeout(ex):
    tests = {"inputs": ["1\n", "2\n", "3\n"], "outputs": ["1\n", "0\n", "3\n"]}
    r = ex.run("print(input())\n", tests, stop_on_first_failure=True)
    assert r.verdicts == [PASSED, WRONG_ANSWER] and r.n_tests == 3 and not r.passed
    slow = "import time\ntime.sleep(0.4)\nprint(input())\n"
    budget = ex.run(slow, {"inputs": ["1\n"] * 6, "outputs": ["1\n"] * 6}, timeout=2, total_timeout=1.0)
    assert budget.verdicts[:2] == [PASSED, PASSED] and budget.verdicts[-1] == TIMEOUT
    assert budget.seconds < 2.5


def test_run_many_yields_every_job_with_its_key_and_counts_tests():
    seen = []
    jobs = [(i, f"print({i})", {"inputs": ["", ""], "outputs": [f"{i}\n", "0\n"]}) for i in range(7)]
    jobs.append(Job("print(", ADD, key="broken"))
    results = dict(run_many(jobs, workers=2, progress=seen.append))
    assert set(results) == set(range(7)) | {"broken"}
    assert results[0].verdicts == [PASSED, PASSED]
    assert results[3].verdicts == [PASSED, WRONG_ANSWER]
    assert results["broken"].verdicts == [COMPILE_ERROR] * 3
    assert sum(seen) == 7 * 2 + 3


def test_run_tests_default_executor_and_round_trip():
    r = run_tests("print(int(input()) * 2)\n", {"inputs": ["21\n"], "outputs": ["42\n"]})
    assert r.passed
    assert ExecResult.from_dict(r.to_dict()) == r
    assert r.pass_fraction == 1.0


def test_bad_tests_are_refused(ex):
    with pytest.raises(ValueError, match="same length"):
        ex.run("print(1)", {"inputs": ["1"], "outputs": []})
    with pytest.raises(ValueError, match="cannot be judged: no tests"):
        ex.run("print(1)", {"inputs": [], "outputs": []})
    with pytest.raises(ValueError, match="fn_name is not a name"):
        ex.run("print(1)", {"inputs": [[1]], "outputs": [1], "fn_name": "not a name"})


def test_abandoned_loop_leaves_nothing_running_and_the_executor_recovers():
    jobs = [(i, "import subprocess, time\nsubprocess.Popen(['sleep', '1000'])\ntime.sleep(30)\n",
             {"inputs": [""], "outputs": ["\n"]}) for i in range(2)]
    jobs.insert(0, ("quick", "print(1)", {"inputs": [""], "outputs": ["1\n"]}))
    with Executor(workers=2) as executor:
        loop = executor.run_many(jobs, timeout=30)
        key, result = next(loop)
        assert key == "quick" and result.passed
        with pytest.raises(RuntimeError, match="already running"):
            executor.run("print(1)", {"inputs": [""], "outputs": ["1\n"]})
        uids = set(executor.sandbox_uids())
        if uids:  # as root: wait until the sandbox (and its subprocess) runs, then give up on it
            deadline = time.monotonic() + 5
            while len(running_as(uids)) < 2 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert len(running_as(uids)) >= 2
        loop.close()  # the consumer gives up while a sandbox still runs
        assert running_as(uids) == []
        assert executor.run("print(1)", {"inputs": [""], "outputs": ["1\n"]}).passed


def test_a_stalled_worker_is_replaced_and_its_filled_tests_count_in_progress(monkeypatch):
    """The watchdog replaces a silent worker; with no replacement left the tests it could not judge
    become errors, and the progress callback counts them too (the bar reaches its total)."""
    import signal
    import threading

    from appsneo_utils import execution

    monkeypatch.setattr(execution, "_WATCHDOG_GRACE", 1.0)
    monkeypatch.setattr(execution, "_MAX_REPLACEMENTS", 0)
    seen = []
    tests = {"inputs": ["1\n"] * 4, "outputs": ["1\n"] * 4}
    with Executor(workers=1) as executor:
        executor.run("print(1)", tests)
        stopper = threading.Timer(0.05, os.kill, (executor.worker_pids()[0], signal.SIGSTOP))
        stopper.start()  # before its first test is judged: no progress, so no replacement is due
        ((_, r),) = list(executor.run_many([Job("import time\ntime.sleep(0.2)\nprint(input())\n", tests)],
                                           progress=seen.append, timeout=0.5))
        stopper.join()
        assert r.verdicts == [RUNTIME_ERROR] * 4 and sum(seen) == 4
        assert "stopped responding" in r.errors[-1]
        assert executor.run("print(1)", tests).passed  # on a fresh worker


def test_a_stalled_worker_is_replaced_and_the_test_judged_again():
    import signal
    import threading

    tests = {"inputs": ["1\n"] * 2, "outputs": ["1\n"] * 2}
    with Executor(workers=1) as executor:
        executor.run("print(1)", tests)
        from appsneo_utils import execution

        grace, execution._WATCHDOG_GRACE = execution._WATCHDOG_GRACE, 1.0
        try:
            stopper = threading.Timer(0.3, os.kill, (executor.worker_pids()[0], signal.SIGSTOP))
            stopper.start()
            r = executor.run("import time\ntime.sleep(0.5)\nprint(input())\n", tests, timeout=1)
            stopper.join()
        finally:
            execution._WATCHDOG_GRACE = grace
        assert r.verdicts == [PASSED, PASSED], r.errors  # the worker's fault is never the program's
