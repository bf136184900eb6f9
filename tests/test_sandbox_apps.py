"""judge="apps": programs run as the 2021 APPS harness ran them, inside the kit's sandbox.

The comparisons are `apps_judge`'s (tested with it); here: what the sandbox side must reproduce
(the wrapped source, a bare globals dict, the stdin patches, load errors, missing methods, the
lossless return values).
The per-test verdicts of the real harness on the shared golden data: tests/test_agreement.py.
"""

from __future__ import annotations

import pytest

from appsneo_utils import apps_judge
from appsneo_utils.execution import (APPS, COMPILE_ERROR, RUNTIME_ERROR, STRICT, WRONG_ANSWER,
                                     Executor)

ONE = {"inputs": ["1 2\n"], "outputs": ["3\n"]}


@pytest.fixture(scope="module")
def ex():
    with Executor(workers=2) as executor:
        yield executor


def both(ex, code, tests):
    return ex.run(code, tests, judge=APPS), ex.run(code, tests, judge=STRICT)


def test_a_correct_program_passes_both_judges(ex):
    apps, strict = both(ex, "a, b = map(int, input().split())\nprint(a + b)\n", ONE)
    assert apps.passed and strict.passed
    assert apps.judge == APPS and apps.to_dict()["judge"] == APPS and strict.judge == STRICT
    assert apps.apps_codes == [True]


def test_main_guard_never_runs_under_apps(ex):
    # APPS wraps the program in `def code():` and runs it in a dict without __name__
    code = "def main():\n\tprint(sum(map(int, input().split())))\nif __name__ == '__main__':\n\tmain()\n"
    apps, strict = both(ex, code, ONE)
    assert apps.apps_codes == [False] and strict.passed


def test_stdin_is_a_stringio_without_buffer(ex):
    code = "import sys\nprint(sum(map(int, sys.stdin.buffer.read().split())))\n"
    apps, strict = both(ex, code, ONE)
    assert apps.apps_codes == [-1] and apps.verdicts == [RUNTIME_ERROR] and strict.passed


def test_open_reads_the_input_and_readline_keeps_its_newline(ex):
    code = ("import sys\nline = sys.stdin.readline()\nprint(repr(line)[-3:-1] == '\\\\n', "
            "open('anything.txt').read().split()[0])\n")
    apps, _ = both(ex, code, {"inputs": ["1 2\n"], "outputs": ["True 1\n"]})
    assert apps.passed, apps.errors


def test_output_around_sys_stdout_is_not_captured(ex):
    code = "import os\nos.write(1, b'3\\n')\n"
    apps, strict = both(ex, code, ONE)
    assert apps.apps_codes == [False] and strict.passed


def test_names_the_kit_preloads_but_apps_does_not(ex):
    code = "print(bisect.bisect([1, 2], int(input().split()[0])) + 2)\n"  # no import of bisect
    apps, strict = both(ex, code, ONE)
    assert apps.apps_codes == [-1] and strict.passed


def test_load_error_gives_a_single_minus_two(ex):
    tests = {"fn_name": "f", "inputs": [[1], [2]], "outputs": [1, 2]}
    apps = ex.run("def f(x:\n\treturn x\n", tests, judge=APPS)
    assert apps.apps_codes == [-2] and apps.verdicts == [COMPILE_ERROR] * 2 and not apps.passed
    boom = ex.run("raise ValueError('at load')\ndef f(x):\n\treturn x\n", tests, judge=APPS)
    assert boom.apps_codes == [-2]


def test_exit_while_loading_a_call_based_program(ex):
    tests = {"fn_name": "f", "inputs": [[1]], "outputs": [1]}
    apps = ex.run("def f(x):\n\treturn x\nexit()\n", tests, judge=APPS)
    assert apps.apps_codes == [-2] and "harness itself would have exited" in apps.errors[0]


def test_missing_method_runs_no_test(ex):
    tests = {"fn_name": "f", "inputs": [[1], [2]], "outputs": [1, 2]}
    apps = ex.run("def g(x):\n\treturn x\n", tests, judge=APPS)
    assert apps.apps_codes == [] and apps.verdicts == [COMPILE_ERROR] * 2
    method = ex.run("class Solution:\n\tdef g(self, x):\n\t\treturn x\n", tests, judge=APPS)
    assert method.apps_codes == []
    broken = ex.run("class Solution:\n\tdef __init__(self):\n\t\traise ValueError\n\tdef f(self, x):\n\t\treturn x\n",
                    tests, judge=APPS)
    assert broken.apps_codes == [-2]


def test_call_based_values_reach_compare_call_losslessly(ex, monkeypatch):
    seen = []
    real = apps_judge.compare_call
    monkeypatch.setattr(apps_judge, "compare_call", lambda value, expected: seen.append(value) or real(value, expected))
    code = "def f(d):\n\treturn (sorted(d), {1: (2, 3)}, {4}, frozenset([5]), True, 10 ** 30, float('inf'))\n"
    tests = {"fn_name": "f", "inputs": [[{"2": 0, "1": 0}]], "outputs": [[0]]}
    ex.run(code, tests, judge=APPS)
    assert seen == [([1, 2], {1: (2, 3)}, {4}, frozenset([5]), True, 10 ** 30, float("inf"))]
    assert [type(v) for v in seen[0]] == [list, dict, set, frozenset, bool, int, float]


def test_a_judge_that_raises_is_recorded_not_fatal(ex, monkeypatch):
    def broken(*args):
        raise RuntimeError("judge bug")

    monkeypatch.setattr(apps_judge, "compare_stdout", broken)
    r = ex.run("print(3)\n", ONE, judge=APPS)
    assert r.verdicts == [WRONG_ANSWER] and "judge error" in r.errors[0] and r.apps_codes == [False]
    monkeypatch.setattr(apps_judge, "program_source", broken)
    r = ex.run("print(3)\n", {"inputs": ["1", "2"], "outputs": ["3", "3"]}, judge=APPS)
    assert r.verdicts == [WRONG_ANSWER] * 2 and "judge error" in r.errors[0]
    assert ex.run("print(3)\n", ONE).passed  # the executor goes on


def test_loading_and_each_call_have_their_own_alarm_as_in_apps(ex):
    """The harness timed the module load and each call apart (signal.alarm before each)."""
    slow_load = "import time\ntime.sleep(0.7)\ndef f(x):\n\ttime.sleep(0.7)\n\treturn x\n"
    tests = {"fn_name": "f", "inputs": [[1], [2]], "outputs": [1, 2]}
    r = ex.run(slow_load, tests, judge=APPS, timeout=1)
    assert r.apps_codes == [True, True], r.errors  # 1.4 s per test, but never 1 s in one step
    assert ex.run(slow_load, tests, judge=STRICT, timeout=1).verdicts == ["timeout"] * 2
    hang = ex.run("import time\ntime.sleep(5)\ndef f(x):\n\treturn x\n", tests, judge=APPS, timeout=0.5)
    assert hang.apps_codes == [-2] and "while loading" in hang.errors[0]
    call = ex.run("def f(x):\n\twhile True:\n\t\tpass\n", tests, judge=APPS, timeout=0.5)
    assert call.apps_codes == [-1, -1] and call.verdicts == ["timeout"] * 2
