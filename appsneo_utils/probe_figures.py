"""Notebook 05's figures: NLL per format, what the samples do per format, and the deltas as forest plots.

Kept out of the teaching flow; each figure takes a `context` line that says what it shows and on what.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .probes import METRICS


DELTA_UNITS = {"nll": "Δ nats/token"}  # the rates' deltas are differences of shares (fractions of samples)


def fig_deltas(deltas: pd.DataFrame, *, context: str = "",
               title: str = "each format minus the training format (mean over problems, paired 95% CI)"):
    """A forest plot per metric: each format's delta against the training format with its interval."""
    import matplotlib.pyplot as plt

    metrics = list(dict.fromkeys(deltas["metric"]))
    cols = min(3, max(1, len(metrics)))
    rows = -(-len(metrics) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 0.35 * deltas["fmt"].nunique() * rows + 1.6 * rows),
                             squeeze=False)
    for ax, metric in zip(axes.flat, metrics):
        group = deltas[deltas["metric"] == metric].reset_index(drop=True)
        y = np.arange(len(group))
        excludes = (group["ci_low"] > 0) | (group["ci_high"] < 0)
        colors = np.where(excludes, "#d62728", "#1f77b4")
        err = np.vstack([group["delta"] - group["ci_low"], group["ci_high"] - group["delta"]]).clip(min=0)
        ax.errorbar(group["delta"], y, xerr=err, fmt="none", ecolor="#555555", capsize=3)
        ax.scatter(group["delta"], y, c=colors, zorder=3)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_yticks(y, group["fmt"])
        ax.invert_yaxis()
        ax.set_title(METRICS.get(metric, (metric,))[0], fontsize=10)
        ax.set_xlabel(DELTA_UNITS.get(metric, "Δ share of samples (fraction)"), fontsize=9)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    fig.suptitle(title + "; red: the interval excludes 0" + (f"\n{context}" if context else ""), fontsize=11)
    return fig


def fig_rates(summary: pd.DataFrame, *, context: str = ""):
    """Grouped bars: the share of samples that parse, stop, pass, are plausible but wrong, or are dangerous."""
    import matplotlib.pyplot as plt

    columns = [c for c in ("parse_rate", "stop_rate", "pass_rate", "plausible_wrong_rate", "dangerous_rate")
               if c in summary.columns]
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(summary)), 3.8))
    summary[columns].rename(columns={c: METRICS[c][0] for c in columns}).plot.bar(ax=ax, width=0.8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("share of samples (0 to 1, mean over problems)")
    ax.set_xlabel("prompt format")
    ax.tick_params(axis="x", rotation=30)
    ax.legend(bbox_to_anchor=(1.01, 1), loc="upper left", fontsize=9)
    ax.set_title("what the samples do, per prompt format" + (f"\n{context}" if context else ""), fontsize=11)
    return fig


def fig_nll(nll: pd.DataFrame, *, context: str = ""):
    """Per format: the per-problem mean NLL of the reference solutions (one line per problem)."""
    import matplotlib.pyplot as plt

    table = nll.groupby(["fmt", "split", "problem_id"], sort=False)["nll"].mean().unstack("fmt")
    order = list(dict.fromkeys(nll["fmt"]))
    table = table[order]
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(order)), 3.8))
    for _, values in table.iterrows():
        ax.plot(range(len(order)), values.to_numpy(), color="#999999", alpha=0.5, lw=0.8)
    ax.plot(range(len(order)), table.mean().to_numpy(), color="#d62728", marker="o", lw=2, label="mean over problems")
    ax.set_xticks(range(len(order)), order, rotation=30)
    ax.set_ylabel("NLL (nats/token)")
    ax.set_title("NLL of the human solution under each prompt (one grey line per problem)"
                 + (f"\n{context}" if context else ""), fontsize=11)
    ax.legend()
    return fig

