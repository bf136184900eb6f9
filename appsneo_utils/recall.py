"""Recall probe: does a sample solve its problem, or does it reproduce a human solution it trained on?

The measure, per sample: its similarity to the CLOSEST human solution of the same problem, that
solution taken as the model was trained on it (`likelihood.reference_target`: the re-indented text).

1. Both programs become normalised token sequences (`code_tokens`): Python's own tokenizer, with
   comments, blank lines, whitespace and the encoding/end markers dropped; line ends and block
   starts/ends kept as the tokens NEWLINE, INDENT and DEDENT, so layout (tabs or spaces, spacing,
   comments) does not count and structure does. Text that Python cannot tokenize (a garbled sample)
   is split into words, numbers and single punctuation marks instead, so it still gets a score.
2. similarity(a, b) = 1 - lev(a, b) / max(len(a), len(b)), where lev is the Levenshtein distance on
   those token sequences (inserting, deleting or replacing one token costs 1), computed by rapidfuzz.
   1.0: the same token sequence; 0.0: nothing in common (also an empty sample against a solution).
3. A sample is NEAR-VERBATIM when its similarity is at least `NEAR_VERBATIM` = 0.9: at most one token in
   ten differs, e.g. a 100-token solution with one variable renamed at 5 places scores 0.95.

Seen problems are those in the model's `trained_problems.json`; everything else is unseen.
"""

from __future__ import annotations

import io
import re
import tokenize

import numpy as np
import pandas as pd
from rapidfuzz.distance import Levenshtein

from .likelihood import reference_target

NEAR_VERBATIM = 0.9
DROPPED = {tokenize.COMMENT, tokenize.NL, tokenize.ENCODING, tokenize.ENDMARKER}
MARKERS = {tokenize.NEWLINE: "NEWLINE", tokenize.INDENT: "INDENT", tokenize.DEDENT: "DEDENT"}
_FALLBACK = re.compile(r"\w+|[^\w\s]")
GROUPS = ("seen", "unseen")


def code_tokens(code: str | None) -> list[str]:
    """The normalised token sequence of a program (see the module docstring); [] for no code."""
    if not isinstance(code, str) or not code.strip():
        return []
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(code).readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return _FALLBACK.findall(re.sub(r"#[^\n]*", "", code))
    out = [MARKERS.get(t.type, t.string) for t in tokens if t.type not in DROPPED]
    # a NEWLINE that tokenize adds after a last line without one is layout, not content
    while out and out[-1] in ("NEWLINE", "DEDENT"):
        out.pop()
    return out


def similarity(a, b) -> float:
    """1 - Levenshtein distance / longer length, on normalised token sequences (code or token lists)."""
    a = code_tokens(a) if isinstance(a, str) or a is None else list(a)
    b = code_tokens(b) if isinstance(b, str) or b is None else list(b)
    if not a and not b:
        return 1.0
    return float(Levenshtein.normalized_similarity(a, b))


def closest(code: str | None, solutions) -> tuple[float, int]:
    """(similarity, index) of the human solution closest to `code`; (0.0, -1) without solutions."""
    sample = code_tokens(code)
    best, which = 0.0, -1
    for index, solution in enumerate(solutions):
        score = similarity(sample, solution if isinstance(solution, list) else code_tokens(solution))
        if score > best or which == -1:
            best, which = score, index
    return best, which


def trained_solutions(problems: pd.DataFrame) -> dict[tuple, list[list[str]]]:
    """(split, problem_id) -> token sequences of its human solutions, as the model trained on them."""
    return {(row["split"], int(row["problem_id"])): [code_tokens(reference_target(s)) for s in row["solutions_list"]]
            for row in problems.to_dict("records")}


def recall_table(samples: pd.DataFrame, problems: pd.DataFrame, seen=None, *,
                 threshold: float = NEAR_VERBATIM) -> pd.DataFrame:
    """`samples` (split, problem_id, code, passed) with similarity, closest_solution, near_verbatim and seen.

    seen: the (split, problem_id) keys the model trained on (a set, or None when unknown: then the
    `seen` column is None). Samples of problems without solutions get similarity NaN.
    """
    references = trained_solutions(problems)
    scores, which = [], []
    for key, code in zip(zip(samples["split"], samples["problem_id"].astype(int)), samples["code"]):
        solutions = references.get(key, [])
        best, index = closest(code, solutions) if solutions else (float("nan"), -1)
        scores.append(best)
        which.append(index)
    table = samples.copy()
    table["similarity"] = scores
    table["closest_solution"] = which
    table["near_verbatim"] = table["similarity"] >= threshold
    seen_keys = None if seen is None else {(s, int(p)) for s, p in seen}
    table["seen"] = [None if seen_keys is None else (s, int(p)) in seen_keys
                     for s, p in zip(table["split"], table["problem_id"])]
    return table


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per group (seen/unseen) and outcome (passing/failing/all): samples, problems, mean similarity, near-verbatim share."""
    scored = table[table["similarity"].notna()].copy()
    scored["group"] = scored["seen"].map({True: "seen", False: "unseen"}).fillna("unknown")
    scored["outcome"] = scored["passed"].map({True: "passing", False: "failing"}).fillna("not judged")
    rows = []
    for group, part in scored.groupby("group", sort=False):
        for outcome, cut in [("all", part), *part.groupby("outcome", sort=False)]:
            rows.append({"group": group, "outcome": outcome, "samples": len(cut),
                         "problems": cut[["split", "problem_id"]].drop_duplicates().shape[0],
                         "mean_similarity": float(cut["similarity"].mean()),
                         "median_similarity": float(cut["similarity"].median()),
                         "near_verbatim": float(cut["near_verbatim"].mean())})
    order = {g: i for i, g in enumerate(GROUPS + ("unknown",))}
    frame = pd.DataFrame(rows, columns=["group", "outcome", "samples", "problems", "mean_similarity",
                                        "median_similarity", "near_verbatim"])
    return frame.sort_values("group", key=lambda g: g.map(order), kind="stable").reset_index(drop=True)


def by_format(table: pd.DataFrame) -> pd.DataFrame:
    """Share of near-verbatim samples per prompt format (rows) and group (columns: seen, unseen or unknown)."""
    group = table["seen"].map({True: "seen", False: "unseen"}).fillna("unknown")
    scored = table.assign(group=group)[table["similarity"].notna()]
    wide = scored.pivot_table(index="fmt", columns="group", values="near_verbatim", aggfunc="mean", sort=False)
    wide.columns.name = "near-verbatim share"
    return wide[[g for g in (*GROUPS, "unknown") if g in wide.columns]]


def summary_json(table: pd.DataFrame) -> dict:
    """{"seen": {samples, mean_similarity, near_verbatim}, "unseen": {...}}: all samples of each group."""
    rows = summary(table)
    out = {}
    for group in GROUPS:
        row = rows[(rows["group"] == group) & (rows["outcome"] == "all")]
        out[group] = ({"samples": 0, "mean_similarity": None, "near_verbatim": None} if row.empty else
                      {"samples": int(row["samples"].iloc[0]), "mean_similarity": round(row["mean_similarity"].iloc[0], 4),
                       "near_verbatim": round(row["near_verbatim"].iloc[0], 4)})
    out["threshold"] = NEAR_VERBATIM
    return out


def fig_recall(table: pd.DataFrame, *, title: str):
    """Histograms of the similarity to the closest human solution: seen against unseen, passing against failing."""
    import matplotlib.pyplot as plt

    scored = table[table["similarity"].notna()]
    bins = np.linspace(0, 1, 21)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), sharey=False)
    panels = [("seen", {"seen": scored["seen"] == True, "unseen": scored["seen"] == False}),  # noqa: E712
              ("outcome", {"passing": scored["passed"] == True, "failing": scored["passed"] == False})]  # noqa: E712
    for ax, (name, masks) in zip(axes, panels):
        for label, mask in masks.items():
            values = scored.loc[mask, "similarity"]
            if len(values):
                share = (values >= NEAR_VERBATIM).mean()
                ax.hist(values, bins=bins, alpha=0.6,
                        label=f"{label}: {len(values)} samples, {share:.0%} near-verbatim")
        ax.axvline(NEAR_VERBATIM, color="black", linestyle="--", lw=1)
        ax.set(xlabel="similarity to the closest human solution (0 to 1)", ylabel="samples",
               xlim=(0, 1), title=f"by {'training exposure' if name == 'seen' else 'test outcome'}")
        ax.legend(fontsize=9)
    fig.suptitle(title + f"\ndashed line: near-verbatim threshold {NEAR_VERBATIM}", fontsize=11)
    return fig


__all__ = ["NEAR_VERBATIM", "code_tokens", "similarity", "closest", "trained_solutions", "recall_table", "summary",
           "by_format", "summary_json", "fig_recall"]
