"""Scores of a judged run: pass@k tables with bootstrap intervals, their display, and the contamination gap.

`evaluation` judges the samples; these functions turn its per-sample results (`evaluation.load_results`) into
the long tables (difficulty, metric, value, low, high, problems) that the notebook shows and the figures draw.
"""

from __future__ import annotations

import pandas as pd

from . import metrics
from .contamination import Contamination, key_set
from .data import DIFFICULTIES

DIFFICULTY_ORDER = (*DIFFICULTIES, "humaneval", "all")
METRIC_ORDER = ("strict_accuracy", "test_case_average")
TABLE_COLUMNS = ["difficulty", "metric", "value", "low", "high", "problems"]


def score(results: pd.DataFrame, settings, *, subset=None) -> pd.DataFrame:
    """metrics.summarize of the judged samples (long format: difficulty, metric, value, low, high, problems).

    results: `evaluation.load_results`; settings: the run's `EvalSettings` (its usable_ks, n_boot, seed).

    subset: a set of (split, problem_id) keys to keep (the clean problems, say). Records go in key
    order, so the bootstrap draws, and with them the intervals, do not depend on judging order.
    """
    judged = results[results["judged"]]
    if subset is not None:
        keep = {(s, int(p)) for s, p in subset}
        judged = judged[[(s, int(p)) in keep for s, p in zip(judged["split"], judged["problem_id"])]]
    judged = judged.sort_values(["split", "problem_id", "sample_id"])
    records = [{"problem_id": r["problem_id"], "sample_id": r["sample_id"], "difficulty": r["difficulty"],
                "verdicts": r["verdicts"], "n_tests": r["n_tests"], "passed": r["passed"]}
               for r in judged.to_dict("records")]
    if not records:
        return pd.DataFrame(columns=TABLE_COLUMNS)
    return metrics.summarize(records, ks=settings.usable_ks, n_boot=settings.n_boot, seed=settings.seed)


def wide_table(long: pd.DataFrame, *, percent: bool = True, intervals: bool = True, by: str = "difficulty"
               ) -> pd.DataFrame:
    """Difficulties (or the `by` column) as rows, metrics as columns, "value [low, high]" in percent (display only)."""
    if long.empty:
        return pd.DataFrame()
    scale = 100 if percent else 1

    def cell(r):
        if pd.isna(r.value):
            return "n/a"
        text = f"{r.value * scale:.2f}"
        return text + (f" [{r.low * scale:.2f}, {r.high * scale:.2f}]" if intervals and not pd.isna(r.low) else "")

    table = long.assign(cell=[cell(r) for r in long.itertuples()]).pivot(index=by, columns="metric", values="cell")
    problems = long.groupby(by)["problems"].max()
    first = DIFFICULTY_ORDER if by == "difficulty" else list(dict.fromkeys(long[by]))
    order = [d for d in first if d in table.index] + [d for d in table.index if d not in first]
    metric_order = [m for m in long["metric"].unique() if m.startswith("pass@")] + list(METRIC_ORDER)
    table = table.loc[order, [m for m in metric_order if m in table.columns]]
    table.insert(0, "problems", problems.loc[order].astype(int))
    table.columns.name = None
    return table


def disagreeing(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """The samples judged by both whose `passed` differs: split, problem_id, sample_id, passed_a, passed_b."""
    keys = ["split", "problem_id", "sample_id"]
    both = a[a["judged"]][keys + ["passed"]].merge(b[b["judged"]][keys + ["passed"]], on=keys, suffixes=("_a", "_b"))
    return both[both["passed_a"] != both["passed_b"]].reset_index(drop=True)


# --- the contamination gap ------------------------------------------------------------------------

GAP_PARTS = ("seen", "unseen")  # problems the model trained on, and the others


def contamination_gap(results: pd.DataFrame, problems: pd.DataFrame, contamination: Contamination,
                      settings) -> pd.DataFrame | None:
    """pass@k over all difficulties on the problems the model trained on ("seen") and on the others
    ("unseen"), with bootstrap intervals (long: part, metric, value, low, high, problems); None when
    which problems it saw cannot be told."""
    unseen = contamination.clean_keys(problems)
    if unseen is None:
        return None
    keys, parts = key_set(problems), []
    for part, subset in zip(GAP_PARTS, (keys - unseen, unseen)):
        table = score(results, settings, subset=subset)
        table = table[(table["difficulty"] == "all") & table["metric"].str.startswith("pass@")]
        parts.append(table.drop(columns="difficulty").assign(part=part))
    return pd.concat(parts, ignore_index=True)[["part", "metric", "value", "low", "high", "problems"]]


def gap_record(gap: pd.DataFrame | None) -> dict:
    """{"seen": {"problems", "pass@1", "low", "high"}, "unseen": {...}}: fractions with the 95% interval;
    a part without problems has 0 problems and nulls (the whole record is nulls when seen cannot be told)."""
    out = {}
    for part in GAP_PARTS:
        rows = gap[(gap["part"] == part) & (gap["metric"] == "pass@1")] if gap is not None else gap
        if rows is None or rows.empty or not rows["problems"].iloc[0]:
            out[part] = None if gap is None else {"problems": 0, "pass@1": None, "low": None, "high": None}
            continue
        row = rows.iloc[0]
        out[part] = {"problems": int(row["problems"]), "pass@1": _number(row["value"]), "low": _number(row["low"]),
                     "high": _number(row["high"])}
    return out


def _number(value) -> float | None:
    return None if pd.isna(value) else float(value)


def gap_statement(gap: pd.DataFrame | None, contamination: Contamination) -> str:
    """The sentence above the gap's table: which problems are which, and where that comes from."""
    if gap is None:
        return ("No contamination gap: which of these problems the model trained on cannot be told "
                f"({contamination.status}), so seen and unseen cannot be separated.")
    count = {p: int(gap.loc[gap["part"] == p, "problems"].max()) if (gap["part"] == p).any() else 0
             for p in GAP_PARTS}
    return (f"Seen: the {count['seen']} problems the model trained on; unseen: the {count['unseen']} it did not "
            f"(from the contamination check above: {contamination.status}). A gap between the two is recall of "
            f"training data, not skill.")
