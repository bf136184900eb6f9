"""The 2021 APPS harness's rules (`apps_judge`): program wrapping, every comparison step, each quirk.

Expected verdicts are those of hendrycks/apps `eval/testing_util.py` at bc8c250 (`run_test`), read
off its code and checked against it; the golden agreement over 1,723 real programs is in
test_agreement.py.
"""

from __future__ import annotations

import io
import json
import math
import time

import pytest

from appsneo_utils.apps_judge import (APPS_PRELUDE, compare_call, compare_stdout, convert_expected,
                                      convert_inputs, method_name, program_source, stdin_text,
                                      uses_solution_class)


def judge(printed: str, expected) -> bool:
    """What run_test decides for a program that printed `printed` (its Capturing list is splitlines())."""
    return compare_stdout(printed.splitlines(), expected)


# ------------------------------------------------------------------------------------ the program

def test_the_prelude_is_the_harness_import_block_byte_for_byte():
    assert APPS_PRELUDE == (
        "import sys\nimport time\nimport itertools\n"
        "from itertools import accumulate, product, permutations, combinations\nimport collections\n"
        "from collections import Counter, OrderedDict, deque, defaultdict, ChainMap\n"
        "from functools import lru_cache\nimport math\n"
        "from math import sqrt, sin, cos, tan, ceil, fabs, floor, gcd, exp, log, log2\n"
        "import fractions\nfrom typing import List, Tuple\nimport numpy as np\nimport random\n"
        "import heapq\nfrom heapq import *\n")


def test_a_call_based_program_is_the_prelude_then_the_code_as_is():
    code = "class Solution:\n    def f(self, x):\n        return x\n"
    assert program_source(code, "f") == APPS_PRELUDE + code


def test_standard_input_code_is_wrapped_line_by_line_in_def_code():
    code = "import os\nfrom sys import stdin\nn = int(input())\nimport re\nif n:\n    print(n)\n"
    assert program_source(code, None) == APPS_PRELUDE + (
        "import os\n"                   # imports before the first statement stay at the top level
        "from sys import stdin\n"
        "stdin = sys.stdin\nstdout = sys.stdout\n"
        "def code():\n"
        "\tn = int(input())\n"
        "\timport re\n"                 # later imports move into the function
        "\tif n:\n"
        "\t    print(n)\n"
        "\t\n")                         # the final newline leaves a tab-only line


def test_only_lines_starting_exactly_with_import_or_from_stay_unindented_before_the_first_statement():
    code = "  import os\nfromage = 1"
    assert program_source(code, None) == APPS_PRELUDE + (
        "stdin = sys.stdin\nstdout = sys.stdout\ndef code():\n\t  import os\n\tfromage = 1\n")


def test_a_program_of_imports_only_never_defines_code():
    assert "def code()" not in program_source("import os\nimport re", None)


def _load(source: str) -> dict:
    namespace: dict = {}
    exec(compile(source, "<apps>", "exec"), namespace)  # as pyext's RuntimeModule.from_string: a fresh dict
    return namespace


def test_a_main_guard_never_runs_because_the_program_has_no_name():
    code = "def main():\n    print('ran')\nif __name__ == '__main__':\n    main()\nprint(__name__)\n"
    namespace = _load(program_source(code, None))
    out, real = io.StringIO(), __import__("sys").stdout
    __import__("sys").stdout = out
    try:
        namespace["code"]()
    finally:
        __import__("sys").stdout = real
    assert out.getvalue() == "builtins\n"  # __name__ falls through to the builtins module's


def test_top_level_return_and_nonlocal_are_valid_once_wrapped():
    for code in ("n = 1\nif n:\n    return\nprint(n)", "x = 0\ndef f():\n    nonlocal x\n    x += 1\nf()"):
        with pytest.raises(SyntaxError):
            compile(code, "<script>", "exec")
        compile(program_source(code, None), "<apps>", "exec")


def test_the_method_is_code_for_standard_input_and_solution_class_is_a_text_search():
    assert method_name(None) == "code" and method_name("twoSum") == "twoSum"
    assert uses_solution_class("class Solution:\n    pass")
    assert uses_solution_class("# class Solution is not used\ndef f(): pass")  # a comment counts too
    assert not uses_solution_class("class  Solution: pass")


# ------------------------------------------------------------------------------------ test data

def test_standard_input_lists_are_joined_with_newlines():
    assert stdin_text(["1 2", "3"]) == "1 2\n3" and stdin_text("1\n") == "1\n"


def test_a_dict_first_argument_becomes_the_only_argument_with_int_keys():
    assert convert_inputs([{"1": "a", "2": "b"}, 5]) == [{1: "a", 2: "b"}]
    assert convert_inputs([{"x": 1}, 5]) == [{"x": 1}, 5]    # int("x") fails: unchanged
    assert convert_inputs([1, {"1": 2}]) == [1, {"1": 2}]   # only the first argument is looked at
    assert convert_inputs([]) == []


def test_expected_dicts_become_a_one_element_list_with_int_keys():
    assert convert_expected({"1": 2}) == [{1: 2}]
    assert convert_expected([{"1": 2}, "rest"]) == [{1: 2}]  # the rest of the list is dropped
    assert convert_expected({"a": 2}) == {"a": 2}
    assert convert_expected(["1"]) == ["1"] and convert_expected("") == "" and convert_expected(None) is None


def test_a_key_longer_than_python_allows_is_left_as_text():
    key = "1" * 5000  # int() refuses more than 4,300 digits (Python 3.11+), as in the golden run
    assert convert_expected({key: 1}) == {key: 1}


def test_converting_expected_values_never_modifies_them():
    expected = [{"1": [1, 2]}, 3]
    convert_expected(expected)
    compare_call({1: [1, 2]}, expected)
    assert expected == [{"1": [1, 2]}, 3]


# ------------------------------------------------------------------------------------ standard input: each step

def test_step1_whole_text_stripped_forgives_outer_whitespace_and_blank_ends():
    assert judge("\n  1 2\n3  \n\n", "1 2\n3")
    assert judge("1 2\n3", "\n1 2\n3\n")


def test_step1_each_line_stripped_forgives_leading_and_trailing_spaces():
    assert judge(" 1 2 \n 3 \n", "1 2\n3\n")


def test_step3_blank_lines_between_answers_are_ignored_on_both_sides():
    assert judge("1\n\n2\n", "1\n2\n")
    assert judge("1\n2\n", "1\n\n2\n")


def test_line_ends_of_every_kind_and_a_missing_final_newline_pass():
    assert judge("1\r\n2\r\n", "1\n2\n") and judge("1\r2", "1\n2\n") and judge("1\n2", "1\n2\n")


def test_case_is_never_forgiven():
    assert not judge("YES\n", "yes\n") and not judge("Yes 2\n", "yes 2\n")


def test_step4_one_number_per_line_uses_np_allclose():
    assert judge("1000001\n", "1000000\n")          # relative 1e-5: a wrong integer passes
    assert not judge("1000011\n", "1000000\n")
    assert judge("5.0\n2\n", "5\n2.000001\n")
    assert judge("1_000\n", "1000\n")              # Python's float() reads underscores
    assert judge("inf\n1\n", "inf\n1.0000001\n") and not judge("nan\n1\n", "nan\n1.0000001\n")
    assert not judge("1\n2\n", "1\n2\n3\n")         # as many lines as expected


def test_step5_lines_compared_as_a_set_of_token_sets():
    assert judge("3 2 1\n", "1 2 3\n")              # tokens reordered on a line
    assert judge("b\na\n", "a\nb\n")                # lines reordered
    assert judge("a\nb\nb\n", "a\nb\n")             # a duplicated line
    assert judge("1 1 2\n", "2 1\n")                # a duplicated token
    assert not judge("a\nb c\n", "a b\nc\n")        # tokens may not move across lines


def test_a_wrong_answer_passes_when_its_lines_form_the_same_set():
    assert judge("2\n2\n1\n30\n", "1\n2\n1\n30\n")  # the golden README's problem 45 example


def test_step6_numbers_rounded_to_3_decimals_when_every_token_is_a_number():
    assert judge("0.3334\n", "0.333333\n") and judge("0.3334 2\n", "0.333333 2\n")
    assert judge("1.0 6.0\n", "1 6\n")
    assert not judge("0.3336\n0.1\n", "0.333333\n0.1\n")


def test_an_int_printed_as_a_float_fails_beside_a_word_line():
    assert not judge("YES\n1.0 6.0 3.0 8.0\n", "YES\n1 6 3 8\n")  # problem 2022 in the golden set
    assert judge("1.0\n6.0\n", "1\n6\n")


def test_a_nan_read_as_a_number_never_equals_another():
    assert judge("nan 1\n", "1 nan\n")                  # as text, the tokens are equal
    assert judge("inf 1.0001\n", "1.00012 inf\n")       # rounded: {inf, 1.0} on both sides
    assert not judge("nan 1.0001\n", "1.00012 nan\n")   # each nan the harness makes is its own object


def test_an_expected_line_of_spaces_only_can_pass_only_before_the_set_steps():
    assert judge("a\n \nb\n", "a\n \nb")
    assert not judge("b\na\n", "a\n \nb")  # its empty token set is never printed


def test_no_output_fails_unless_nothing_is_expected():
    assert not judge("", "1\n") and judge("", "") and judge("\n\n", "  \n")


def test_an_expected_list_of_lines_is_joined_first():
    assert judge("1\n2\n", ["1", "2"]) and judge("2 1\n", ["1 2"]) and not judge("1\n", ["1", "2"])


# ------------------------------------------------------------------------------------ standard input: totality

@pytest.mark.parametrize("expected", [None, 5, 1.5, {"1": "a"}, [1, 2], [{"1": "a"}], ["a", None], b"1"])
def test_expected_values_the_harness_itself_would_crash_on_give_false(expected):
    assert compare_stdout(["1"], expected) is False


@pytest.mark.parametrize("lines", [None, 5, [None], [b"1"], [["1"]]])
def test_outputs_that_are_not_lines_give_false(lines):
    assert compare_stdout(lines, "1") is False


def test_a_captured_text_is_split_into_lines():
    assert compare_stdout("2\r\n1\r\n", "1\n2") is True


def test_odd_numbers_and_text_never_raise():
    for printed in ("1e999\n-1e999\n", "١٢\n", "0x10\n", "1" * 5000 + "\n", "\x00\n", "\ud800\n", "1e-400"):
        for expected in ("inf\n-inf\n", "12\n", "16\n", "1" * 5000, "", "1", "0"):
            assert compare_stdout(printed.splitlines(), expected) in (True, False)


def _timed(lines, expected) -> float:
    start = time.process_time()
    compare_stdout(lines, expected)
    return time.process_time() - start


def test_a_30_mb_output_against_a_short_answer_is_judged_in_linear_time():
    numbers = [f"{i}.5" for i in range(3_000_000)]  # 30 MB, every line a distinct number
    words = ["ab%d cd" % i for i in range(3_000_000)]
    one_line = [" ".join(map(str, range(4_000_000)))]
    for lines, expected in ((numbers, "1\n2\n3"), (words, "ab1 cd"), (one_line, "1 2 3"), ([" "] * 10**7, "a")):
        assert _timed(lines, expected) < 8  # about 0.4 s each on an idle 2-core machine


def test_a_long_output_that_repeats_the_answer_stays_fast():
    assert _timed(["2 1"] * 2_000_000, "1 2\n") < 8
    assert _timed(["1.00001"] * 2_000_000 + ["x"], "1\n") < 8


# ------------------------------------------------------------------------------------ call-based

def test_a_returned_tuple_is_read_as_a_list():
    assert compare_call((1, 2), [1, 2]) and compare_call((1, 2), [[1, 2]])


def test_a_value_equal_to_the_first_element_of_an_expected_list_passes():
    assert compare_call(3, [3]) and compare_call([1, 2], [[1, 2]]) and compare_call(3, [3, 4])
    assert not compare_call(3, [4, 3]) and not compare_call([3], [[[3]]])


def test_a_list_of_tuples_passes_as_lists_against_the_first_element():
    assert compare_call([(1, 2), (3, 4)], [[[1, 2], [3, 4]]])
    assert not compare_call([(1, 2), (3, 4)], [[1, 2], [3, 4]])  # only against expected[0]
    assert not compare_call([(1, 2), 3], [[[1, 2], 3]])          # list(3) fails: no pass


def test_returned_int_keys_pass_against_the_string_keys_json_forced():
    assert compare_call({1: "a"}, {"1": "a"}) and compare_call([{1: "a"}], [{"1": "a"}])
    assert not compare_call({"1": "a"}, {"1": "a"})  # the expected side was converted, the value not


def test_python_equality_decides_without_tolerance():
    assert compare_call(True, 1) and compare_call(1.0, 1) and compare_call(2.0, [2])
    assert not compare_call(0.30000000000000004, 0.3) and not compare_call("1", 1)
    assert compare_call(None, [None, 1])  # None == expected[0]


def test_a_nan_never_equals_even_when_both_sides_came_from_json():
    nan = json.loads("NaN")  # json hands out one shared nan object
    assert not compare_call([nan], json.loads("[NaN]")) and not compare_call(nan, json.loads("NaN"))
    assert compare_call([math.inf], json.loads("[Infinity]"))


def test_sets_and_other_returned_types_compare_as_python_does():
    assert not compare_call({1, 2}, [1, 2]) and compare_call(frozenset({1}), [frozenset({1})])


def test_huge_ints_deep_nesting_and_odd_values_never_raise():
    big = 7 ** 20000
    assert compare_call(big, [big]) and not compare_call(big, big + 1) and not compare_call(big, 1e308)
    deep, expected = [], []
    for _ in range(100_000):
        deep, expected = [deep], [expected]
    assert compare_call(deep, expected) is False  # RecursionError: the harness records -1, never a pass
    for value in (math.nan, math.inf, -0.0, b"x", object(), {None: 1}, ()):
        assert compare_call(value, [1]) in (True, False)


def test_a_deep_but_ordinary_value_still_compares():
    value = expected = 1
    for _ in range(300):
        value, expected = [value], [expected]
    assert compare_call(value, expected) is True
