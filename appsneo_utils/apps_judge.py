"""The 2021 APPS harness's judging rules, reimplemented on plain data (`judge="apps"`).

Reference: hendrycks/apps `eval/testing_util.py` at commit bc8c250 (2021-07-14), `run_test`.
The program itself runs in the kit's sandbox (`execution`, `judge="apps"` mode); this module builds
the source the harness would run and decides verdicts from what the program printed or returned.
Every quirk is kept on purpose (lines compared as sets, numbers rounded to 3 decimals, ...): that is
what makes a score comparable with the APPS literature. The strict judge is in `execution`.

The comparisons are total: any input gives True or False. Where the harness itself would raise out
of `run_test` (an expected value that is neither text nor a list of text), the answer is False.
"""

from __future__ import annotations

import math
from typing import Any

# The import block run_test prepends to every program, byte for byte.
APPS_PRELUDE = (
    "import sys\nimport time\nimport itertools\nfrom itertools import accumulate, product, permutations, "
    "combinations\nimport collections\nfrom collections import Counter, OrderedDict, deque, defaultdict, "
    "ChainMap\nfrom functools import lru_cache\nimport math\nfrom math import sqrt, sin, cos, tan, ceil, "
    "fabs, floor, gcd, exp, log, log2\nimport fractions\nfrom typing import List, Tuple\nimport numpy as np\n"
    "import random\nimport heapq\nfrom heapq import *\n"
)
# What run_test puts before `def code():` (standard input): evaluated while the module loads, so
# these two names are the process's real streams, not the per-test StringIO the harness swaps in.
STDIN_HEADER = "stdin = sys.stdin\nstdout = sys.stdout\ndef code():\n"
# np.allclose's defaults, the tolerance of run_test's one-number-per-line step
RTOL, ATOL = 1e-05, 1e-08
_BLOCK = 1 << 16  # lines per block of the number step


# ------------------------------------------------------------------------------------ the program

def tests_problem(tests: Any, *, text_stdin: bool = False) -> str | None:
    """What is wrong with an APPS `input_output` dict, or None when it can be judged. `text_stdin`: also
    require standard-input tests to be text (the loader's rule; the harness itself joins a list of lines)."""
    if not isinstance(tests, dict):
        return f"not a dict with inputs and outputs but {type(tests).__name__}"
    inputs, outputs, fn_name = tests.get("inputs"), tests.get("outputs"), tests.get("fn_name")
    if not isinstance(inputs, list) or not isinstance(outputs, list):
        return "inputs/outputs missing"
    if len(inputs) != len(outputs):
        return "inputs and outputs differ in length (they must be lists of the same length)"
    if not inputs:
        return "no tests"
    if fn_name is not None and not (isinstance(fn_name, str) and fn_name.isidentifier()):
        return "fn_name is not a name"
    if text_stdin and fn_name is None and not all(isinstance(x, str) for x in inputs + outputs):
        return "standard-input tests that are not text"
    return None


def program_source(code: str, fn_name: str | None) -> str:
    """The exact source `run_test` executes: the prelude plus the program (standard input: in `def code():`).

    Standard input: every line that does not start with `from `/`import ` gets a tab; the first
    tabbed line opens `def code():`; import lines after it are tabbed too (imports before it stay
    at the top level, which is how `if __name__` guards and top-level `return` end up inside a function).
    """
    if fn_name is not None:
        return APPS_PRELUDE + code
    parts, started = [APPS_PRELUDE], False
    for line in code.split("\n"):
        is_import = line.startswith("from ") or line.startswith("import ")
        if not is_import:
            if not started:
                parts.append(STDIN_HEADER)
                started = True
            parts.append("\t" + line + "\n")
        else:
            parts.append(("\t" if started else "") + line + "\n")
    return "".join(parts)


def method_name(fn_name: str | None) -> str:
    """The name `run_test` looks up after loading: `code` for standard input, else `fn_name`."""
    return "code" if fn_name is None else fn_name


def uses_solution_class(code: str) -> bool:
    """run_test calls the method on `Solution()` exactly when the program text contains `class Solution`."""
    return "class Solution" in code


# ------------------------------------------------------------------------------------ test data

def stdin_text(inputs: Any) -> Any:
    """A standard-input test's input as the program reads it: a list is joined with newlines."""
    return "\n".join(inputs) if isinstance(inputs, list) else inputs


def convert_inputs(inputs: Any) -> Any:
    """Call-based arguments after run_test's dict rule: a first argument that is a dict becomes the ONLY
    argument, its keys turned into ints (`[{int(k): v}]`); any failure keeps the arguments as they were."""
    try:
        if isinstance(inputs[0], dict):
            return [{int(k): v for k, v in inputs[0].items()}]
    except Exception:  # as the harness: a bare try around the whole rule
        pass
    return inputs


def convert_expected(expected: Any) -> Any:
    """An expected output after run_test's two dict rules (applied to every test, both problem kinds).

    A dict becomes `[{int(k): v}]`; a list whose first element is a dict becomes `[{int(k): v}]` too
    (the rest of the list is dropped). Keys that `int()` refuses (words, more than 4,300 digits on
    Python 3.11+) leave the value unchanged. Builds new objects; the argument is never modified.
    """
    try:
        if isinstance(expected, dict):
            expected = [{int(k): v for k, v in expected.items()}]
    except Exception:
        pass
    try:
        if isinstance(expected[0], dict):
            expected = [{int(k): v for k, v in expected[0].items()}]
    except Exception:
        pass
    return expected


# ------------------------------------------------------------------------------------ standard input

def compare_stdout(lines: list[str], expected: Any) -> bool:
    """run_test's standard-input verdict: `lines` is the captured stdout's `splitlines()` (a str is split here).

    The steps, in the harness's order (the first that accepts wins):
      1. the whole output, stripped, equals the expected text, stripped (lines joined as printed,
         then with each line stripped);
      2. the output is exactly one line equal to the whole expected text;
      3. the output lines equal the expected text's non-empty lines, stripped (empty output lines
         are then dropped and this is tried again);
      4. every line is one number: as many lines as expected, `np.allclose` (relative 1e-5);
      5. the SET of each non-blank line's SET of tokens equals the expected one;
      6. the same with every token read as a number rounded to 3 decimals.
    """
    try:
        return _cascade(lines, expected)
    except Exception:  # run_test itself would raise (an expected value that is not text): no pass
        return False


def _cascade(lines: Any, expected: Any) -> bool:
    if isinstance(lines, str):
        lines = lines.splitlines()
    expected = convert_expected(expected)
    if isinstance(expected, list):
        expected = "\n".join(expected)
    output = list(lines)
    if _whole_text_matches(output, expected) or output == [expected]:
        return True
    # From here on `expected` is text: the harness's branches for a list expected value are dead code.
    want = list(map(str.strip, filter(None, expected.split("\n"))))  # empty lines dropped BEFORE stripping
    if output == want:
        return True
    output = list(filter(None, output))
    if output == want or _numbers_close(output, want):
        return True
    return _as_sets_of_token_sets(output, want)


def _whole_text_matches(output: list, expected: str) -> bool:
    """custom_compare_: the lines joined (as printed, then each stripped) against the expected text."""
    want = expected.strip()
    if "\n".join(output).strip() == want:
        return True
    return "\n".join(map(str.strip, output)).strip() == want


def _numbers_close(output: list[str], want: list[str]) -> bool:
    """Every line is one number (Python's float(): spaces, `1_000`, `inf`, `nan` allowed), np.allclose.

    Checked a block at a time so that a long wrong output stops at its first wrong block; the
    verdict is the harness's (all lines must parse and be close either way).
    """
    if len(output) != len(want):
        return False
    try:
        ref = list(map(float, want))  # the expected side first: usually short, and it must parse too
        for start in range(0, len(output), _BLOCK):
            got = list(map(float, output[start:start + _BLOCK]))
            if not _allclose(got, ref[start:start + _BLOCK]):
                return False
    except Exception:  # a line that is not one number
        return False
    return True


def _allclose(got: list[float], ref: list[float]) -> bool:
    """np.allclose(got, ref) on float64: |a - b| <= atol + rtol * |b| for finite b, else a == b; nan never."""
    import numpy as np  # only here: most comparisons never reach this step

    with np.errstate(invalid="ignore", over="ignore"):
        return bool(np.allclose(np.asarray(got, dtype=np.float64), np.asarray(ref, dtype=np.float64),
                                rtol=RTOL, atol=ATOL))


def _as_sets_of_token_sets(output: list[str], want: list[str]) -> bool:
    """The last two steps: lines as a set of token sets, then the same with numbers rounded to 3 decimals.

    Output lines without tokens are dropped; an expected line of spaces only stays, as an empty
    token set that no output line gives (such an expected text can only pass earlier).
    """
    want = set(want)  # the verdict depends only on the SET of lines, on either side
    if _same_keys(output, want, None):
        return True
    try:  # a token that is not a number, on either side, fails this step
        return _same_keys(output, want, _Round3().__getitem__)
    except Exception:
        return False


def _same_keys(output: list[str], want: set, convert) -> bool:
    """Whether {frozenset(map(convert, tokens)) of each output line with tokens} equals that of the expected lines.

    The expected side is keyed first (usually short); the output side stops at its first token
    that no expected line has, or its first line whose key is not expected.
    """
    index: dict = {}
    values_seen: set = set()
    for line in want:
        values = line.split() if convert is None else list(map(convert, line.split()))
        values_seen.update(values)
        index.setdefault(_line_key(values), len(index))
    hit, count, previous = bytearray(len(index)), 0, None
    for line in output:
        if line == previous:
            continue
        previous = line
        tokens = line.split()
        if len(tokens) == 1:  # the common case, kept to one lookup
            key = tokens[0] if convert is None else convert(tokens[0])
        elif not tokens:
            continue
        elif not values_seen.issuperset(tokens if convert is None else map(convert, tokens)):
            return False  # checked token by token: a long line stops at its first unexpected token
        else:
            key = _line_key(tokens if convert is None else list(map(convert, tokens)))
        i = index.get(key)
        if i is None:
            return False
        if not hit[i]:
            hit[i], count = 1, count + 1
    return count == len(index)


def _line_key(values: list):
    """A stand-in for frozenset(values) with the same equality: one distinct value stands for itself.

    Saves building millions of frozensets (about 200 bytes each) for one-token lines.
    """
    if len(values) == 1:
        return values[0]
    distinct = frozenset(values)
    return next(iter(distinct)) if len(distinct) == 1 else distinct


class _Round3(dict):
    """token -> round(float(token), 3), each computed once (long outputs repeat their tokens).

    A nan is never remembered: each nan the harness makes is its own object, and two nan objects
    are different members of a frozenset, so repeated "nan" tokens must stay distinct here too.
    """

    def __missing__(self, token: str) -> float:
        value = round(float(token), 3)
        if value == value:
            self[token] = value
        return value


# ------------------------------------------------------------------------------------ call-based

def compare_call(value: Any, expected: Any) -> bool:
    """run_test's call-based verdict on the returned value, decoded losslessly (tuples stay, int keys stay).

    A tuple is read as a list; then the value equals the expected one, or its first element when
    the expected value is a non-empty list, or (a list of tuples) its tuples as lists equal that first
    element. Python's `==`: `True == 1`, `1 == 1.0`; no tolerance; a nan never equals anything.
    """
    try:
        expected = convert_expected(expected)
        try:
            expected = _fresh_nans(expected)
        except RecursionError:  # deeper than Python frames allow: compare the expected value as it is
            pass
        output = list(value) if isinstance(value, tuple) else value
        if output == expected:
            return True
        if isinstance(expected, list) and expected and output == expected[0]:
            return True
        try:
            if isinstance(output[0], tuple):
                return [list(x) for x in output] == expected[0]
        except Exception:  # as the harness: this last rule is tried in a bare try
            pass
        return False
    except Exception:  # RecursionError on absurd nesting: the harness would record -1, not a pass
        return False


def _fresh_nans(value: Any) -> Any:
    """A copy whose nan objects are new ones.

    Containers compare items by identity first, and json.loads hands out ONE nan object, so a decoded
    return value could "equal" an expected nan. In the harness the program's nan is its own object.
    """
    if isinstance(value, float):
        return float("nan") if math.isnan(value) else value
    if type(value) in (list, tuple):
        return type(value)(_fresh_nans(v) for v in value)
    if type(value) is dict:
        return {_fresh_nans(k): _fresh_nans(v) for k, v in value.items()}
    return value
