"""APPS metrics: unbiased pass@k, strict accuracy, test-case average, per difficulty, with bootstrap CIs.

Definitions (Hendrycks et al. 2021, Chen et al. 2021), with runtime and compile errors counting as
failed tests:
- test-case average: mean over problems of the fraction of a problem's tests a program passes
  (averaged over the problem's samples when there are several);
- strict accuracy: mean over problems of "the program passes every test" (with several samples,
  the mean over samples, which equals pass@1);
- pass@k: mean over problems of 1 - C(n-c, k) / C(n, k), n samples of which c pass every test.
Records are rows of `python -m appsneo_utils.execute` output (dicts with problem_id, passed,
verdicts, n_tests) or (problem_id, ExecResult) pairs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from .data import DIFFICULTIES
from .execution import pass_fraction


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one problem: n samples, c correct.

    1 - C(n-c, k)/C(n, k) = 1 - prod_{i=n-c+1}^{n} (1 - k/i), summed in log space so that neither
    huge binomials nor a long product of numbers near 1 lose precision.
    """
    n, c, k = int(n), int(c), int(k)
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"pass@{k} needs 1 <= k <= n samples, got n={n}")
    if n - c < k:
        return 1.0
    i = np.arange(n - c + 1, n + 1, dtype=np.float64)
    return float(-np.expm1(np.sum(np.log1p(-k / i))))


def pass_at_k_array(n: Iterable[int], c: Iterable[int], k: int) -> np.ndarray:
    """pass_at_k for many problems at once (NaN where a problem has fewer than k samples)."""
    n, c = np.asarray(list(n), dtype=np.int64), np.asarray(list(c), dtype=np.int64)
    return np.array([pass_at_k(a, b, k) if a >= k else np.nan for a, b in zip(n, c)], dtype=float)


def program_code(apps_codes: list) -> Any:
    """One APPS code for a whole program: True when every test passed, else the first failure's
    code (False, -1 or -2), as harnesses that stop at the first failing test report it."""
    for code in apps_codes:
        if code is not True:
            return code
    return True if apps_codes else False


def _record(item: Any) -> dict:
    if isinstance(item, tuple) and len(item) == 2:
        pid, result = item
        data = result.to_dict() if hasattr(result, "to_dict") else dict(result)
        data["problem_id"] = pid
        return data
    if isinstance(item, Mapping):
        return dict(item)
    raise TypeError(f"a record must be a dict or a (problem_id, ExecResult) pair, got {type(item).__name__}")


def problem_scores(records: Iterable | pd.DataFrame, difficulties: Mapping | None = None) -> pd.DataFrame:
    """One row per problem: n samples, c passing all tests, test_case_average, strict_accuracy.

    difficulties: problem_id -> difficulty; else each record's own "difficulty" (or "unknown").
    """
    if isinstance(records, pd.DataFrame):
        records = records.to_dict("records")
    rows: dict[Any, dict] = {}
    for item in records:
        r = _record(item)
        if "error" in r and "verdicts" not in r:
            continue  # an input error reported by the CLI, not a judged sample
        pid = r["problem_id"]
        verdicts = list(r.get("verdicts") or [])
        n_tests = int(r.get("n_tests") or len(verdicts))
        frac = pass_fraction(verdicts, n_tests)
        passed = bool(r.get("passed")) and n_tests > 0
        row = rows.setdefault(pid, {"problem_id": pid, "n": 0, "c": 0, "frac_sum": 0.0,
                                    "difficulty": r.get("difficulty")})
        row["n"] += 1
        row["c"] += passed
        row["frac_sum"] += frac
    frame = pd.DataFrame(list(rows.values()),
                         columns=["problem_id", "n", "c", "frac_sum", "difficulty"])
    if difficulties is not None:
        frame["difficulty"] = frame["problem_id"].map(dict(difficulties))
    frame["difficulty"] = frame["difficulty"].fillna("unknown").astype(str)
    frame["test_case_average"] = frame["frac_sum"] / frame["n"]
    frame["strict_accuracy"] = frame["c"] / frame["n"]
    return frame.drop(columns="frac_sum")


def bootstrap_ci(values: Iterable[float], n_boot: int = 1000, ci: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean, resampling problems with replacement."""
    values = np.asarray(list(values), dtype=float)
    values = values[~np.isnan(values)]
    if len(values) == 0:
        return (np.nan, np.nan)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(int(n_boot), len(values)))].mean(axis=1)
    alpha = (1 - ci) / 2
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def summarize(records: Iterable | pd.DataFrame, ks: Iterable[int] = (1, 5, 10),
              difficulties: Mapping | None = None, n_boot: int = 1000, ci: float = 0.95,
              seed: int = 0) -> pd.DataFrame:
    """Metrics overall and per difficulty, long format: difficulty, metric, value, low, high, problems.

    pass@k is reported for the problems with at least k samples (the `problems` column says how many).
    """
    table = problem_scores(records, difficulties)
    groups = [("all", table)]
    present = [d for d in DIFFICULTIES if d in set(table["difficulty"])]
    present += sorted(set(table["difficulty"]) - set(DIFFICULTIES))
    groups += [(d, table[table["difficulty"] == d]) for d in present]
    out = []
    for name, group in groups:
        metrics = {"strict_accuracy": group["strict_accuracy"].to_numpy(float),
                   "test_case_average": group["test_case_average"].to_numpy(float)}
        for k in ks:
            metrics[f"pass@{k}"] = pass_at_k_array(group["n"], group["c"], k)
        for metric, values in metrics.items():
            valid = values[~np.isnan(values)]
            low, high = bootstrap_ci(valid, n_boot, ci, seed)
            out.append({"difficulty": name, "metric": metric,
                        "value": float(valid.mean()) if len(valid) else np.nan,
                        "low": low, "high": high, "problems": int(len(valid))})
    return pd.DataFrame(out, columns=["difficulty", "metric", "value", "low", "high", "problems"])
