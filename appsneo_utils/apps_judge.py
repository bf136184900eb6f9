"""The 2021 APPS harness's judging rules, reimplemented on plain data (`judge="apps"`).

Reference: hendrycks/apps `eval/testing_util.py` at commit bc8c250 (2021-07-14), `run_test`.
The program itself runs in the kit's sandbox (`execution`, `judge="apps"` mode); this module builds
the source the harness would run and decides verdicts from what the program printed or returned.

STUB: interface agreed between the sandbox and the APPS-judge work; the bodies are being written.
"""

from __future__ import annotations

from typing import Any

# The import block run_test prepends to every program, byte for byte.
APPS_PRELUDE = (
    "import sys\nimport time\nimport itertools\nfrom itertools import accumulate, product, permutations, "
    "combinations\nimport collections\nfrom collections import Counter, OrderedDict, deque, defaultdict, "
    "ChainMap\nfrom functools import lru_cache\nimport math\nfrom math import sqrt, sin, cos, tan, ceil, "
    "fabs, floor, gcd, exp, log, log2\nimport fractions\nfrom typing import List, Tuple\nimport numpy as np\n"
    "import random\nimport heapq\nfrom heapq import *\n"
)


def program_source(code: str, fn_name: str | None) -> str:
    """The exact source `run_test` executes: the prelude plus the program (standard input: in `def code():`)."""
    raise NotImplementedError


def method_name(fn_name: str | None) -> str:
    """The name `run_test` looks up after loading: `code` for standard input, else `fn_name`."""
    return "code" if fn_name is None else fn_name


def uses_solution_class(code: str) -> bool:
    """run_test calls the method on `Solution()` exactly when the program text contains `class Solution`."""
    return "class Solution" in code


def compare_stdout(lines: list[str], expected: Any) -> bool:
    """run_test's standard-input verdict: `lines` is the captured stdout's `splitlines()`."""
    raise NotImplementedError


def compare_call(value: Any, expected: Any) -> bool:
    """run_test's call-based verdict on the returned value, decoded losslessly (tuples stay tuples, int dict keys stay ints)."""
    raise NotImplementedError
