"""The figures of an evaluation (notebook 04), and the published APPS numbers shown beside ours, never mixed in.

Every figure says in its title what it shows and on what; a "%" axis holds percentages.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .sampling import VERDICT_COLORS
from .scoring import DIFFICULTY_ORDER, GAP_PARTS, METRIC_ORDER

# --- published figures (never mixed with ours) -------------------------------------------------

# Each figure was checked against its source before it was written here; figures that could not
# be confirmed were dropped. Values are percentages on the APPS test split.
PUBLISHED = (
    {"source": "APPS paper: Hendrycks et al. 2021, 'Measuring Coding Challenge Competence With APPS', "
               "arXiv:2105.09938, results table (GPT-Neo 2.7B fine-tuned on APPS train, top-1 sample)",
     "checked": "paperswithcode.com/paper/measuring-coding-challenge-competence-with (results from the paper)",
     "model": "GPT-Neo 2.7B (APPS paper)", "metric": "strict_accuracy",
     "introductory": 3.90, "interview": 0.57, "competition": 0.00},
    {"source": "Codex paper: Chen et al. 2021, 'Evaluating Large Language Models Trained on Code', "
               "arXiv:2107.03374, APPS results table (raw, 1-shot)",
     "checked": "paperswithcode.com/paper/evaluating-large-language-models-trained-on (results from the paper)",
     "model": "Codex-12B raw (Codex paper)", "metric": "pass@1",
     "introductory": 4.14, "interview": 0.14, "competition": 0.02},
    {"source": "Codex paper: Chen et al. 2021, 'Evaluating Large Language Models Trained on Code', "
               "arXiv:2107.03374, APPS results table (raw, 1-shot)",
     "checked": "paperswithcode.com/paper/evaluating-large-language-models-trained-on (results from the paper)",
     "model": "Codex-12B raw (Codex paper)", "metric": "pass@5",
     "introductory": 9.65, "interview": 0.51, "competition": 0.09},
)


def published_table() -> pd.DataFrame:
    """The published APPS figures (percent), one row per (model, metric), with their sources."""
    frame = pd.DataFrame(PUBLISHED)
    return frame[["model", "metric", "introductory", "interview", "competition", "source", "checked"]]


# --- figures --------------------------------------------------------------------------------------


def fig_metrics(long: pd.DataFrame, *, title: str):
    """Bars per difficulty and metric, in percent, with bootstrap intervals."""
    order = [d for d in DIFFICULTY_ORDER if d in set(long["difficulty"])]
    metric_list = [m for m in long["metric"].unique() if m.startswith("pass@")] + \
        [m for m in METRIC_ORDER if m in set(long["metric"])]
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(order) + 2), 3.8))
    width = 0.8 / len(metric_list)
    for j, metric in enumerate(metric_list):
        part = long[long["metric"] == metric].set_index("difficulty").reindex(order)
        x = np.arange(len(order)) + (j - (len(metric_list) - 1) / 2) * width
        values = part["value"].to_numpy(float) * 100
        err = np.vstack([values - part["low"].to_numpy(float) * 100, part["high"].to_numpy(float) * 100 - values])
        bars = ax.bar(x, np.nan_to_num(values), width, label=metric.replace("_", " "))
        ax.bar_label(bars, fmt="%.1f", fontsize=7, padding=2)
        ax.errorbar(x, np.nan_to_num(values), yerr=np.nan_to_num(err).clip(min=0), fmt="none", ecolor="black",
                    capsize=2, lw=0.8)
    ax.set_xticks(range(len(order)), [f"{d}\n({int(long[long.difficulty == d].problems.max())} problems)"
                                      for d in order])
    top = np.nanmax(long["high"].to_numpy(float)) * 100 if long["high"].notna().any() else 0
    ax.set_ylim(0, max(1.0, top * 1.15))
    ax.set_ylabel("% (95% bootstrap CI)")
    ax.set_title(title)
    ax.legend(bbox_to_anchor=(1.01, 1), loc="upper left", fontsize=9)
    return fig


def fig_contamination_gap(gap: pd.DataFrame, *, title: str):
    """pass@k on seen and on unseen problems side by side, in percent, with 95% bootstrap intervals."""
    metrics = list(dict.fromkeys(gap["metric"]))
    fig, ax = plt.subplots(figsize=(max(5.5, 1.5 * len(metrics) + 3), 3.8))
    width = 0.38
    for j, (part, color) in enumerate(zip(GAP_PARTS, ("#c0392b", "#2e86c1"))):
        rows = gap[gap["part"] == part].set_index("metric").reindex(metrics)
        values = rows["value"].to_numpy(float) * 100
        err = np.vstack([values - rows["low"].to_numpy(float) * 100, rows["high"].to_numpy(float) * 100 - values])
        count = int(rows["problems"].max()) if rows["problems"].notna().any() else 0
        x = np.arange(len(metrics)) + (j - 0.5) * width
        words = "trained on" if part == "seen" else "not trained on"
        bars = ax.bar(x, np.nan_to_num(values), width, color=color, label=f"{part}: {words} ({count} problems)")
        ax.bar_label(bars, fmt="%.1f", fontsize=8, padding=2)
        ax.errorbar(x, np.nan_to_num(values), yerr=np.nan_to_num(err).clip(min=0), fmt="none", ecolor="black",
                    capsize=3, lw=0.8)
    ax.set_xticks(range(len(metrics)), metrics)
    ax.set_ylim(0, 125)  # room for the legend above the 100% bars
    ax.set_yticks(range(0, 101, 20))
    ax.set_ylabel("% of problems (95% bootstrap CI)")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="upper center", ncol=2, fontsize=9)
    return fig


def fig_verdicts(results: pd.DataFrame, *, title: str):
    """Share of test verdicts per difficulty, in percent (all tests of all judged samples); the title says on what."""
    judged = results[results["judged"]]
    rows = [(d, v) for d, vs in zip(judged["difficulty"], judged["verdicts"]) for v in vs]
    fig, ax = plt.subplots(figsize=(7, 3.2))
    if rows:
        table = pd.crosstab(*zip(*rows), normalize="index") * 100
        table = table.reindex([d for d in DIFFICULTY_ORDER if d in table.index])
        table = table[[c for c in VERDICT_COLORS if c in table.columns]]
        table.plot.barh(stacked=True, ax=ax, color=[VERDICT_COLORS[c] for c in table.columns], width=0.7)
        ax.invert_yaxis()
        ax.legend(bbox_to_anchor=(1.01, 1), loc="upper left", fontsize=9)
    ax.set_xlabel("% of test runs")
    ax.set_ylabel("")
    ax.set_title(title)
    return fig


def fig_published(ours: pd.DataFrame, *, label: str):
    """Two panels, never one: our numbers (left) and the published ones with their sources (right)."""
    difficulties = ["introductory", "interview", "competition"]
    published = published_table()
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 3.8), sharey=True)
    metric_list = [m for m in ("strict_accuracy", "pass@1", "pass@5") if m in set(ours["metric"])]
    width = 0.8 / max(1, len(metric_list))
    for j, metric in enumerate(metric_list):
        part = ours[ours["metric"] == metric].set_index("difficulty").reindex(difficulties)
        x = np.arange(3) + (j - (len(metric_list) - 1) / 2) * width
        bars = left.bar(x, np.nan_to_num(part["value"].to_numpy(float) * 100), width, label=metric)
        left.bar_label(bars, fmt="%.2f", fontsize=7)
    left.set_xticks(range(3), difficulties)
    left.set_ylabel("% of problems")
    left.set_title(f"ours: {label}", fontsize=10)
    left.legend(fontsize=8)
    width = 0.8 / len(published)
    for j, row in enumerate(published.itertuples()):
        x = np.arange(3) + (j - (len(published) - 1) / 2) * width
        bars = right.bar(x, [getattr(row, d) for d in difficulties], width, hatch="//", alpha=0.8,
                         label=f"{row.model}: {row.metric}")
        right.bar_label(bars, fmt="%.2f", fontsize=7)
    right.set_xticks(range(3), difficulties)
    right.set_title("published (APPS paper; Codex paper), not re-run here", fontsize=10)
    right.legend(fontsize=8)
    fig.suptitle("% of problems solved: ours (left) beside the published APPS-test numbers (right; separate panels: "
                 "different models, data, settings)")
    return fig
