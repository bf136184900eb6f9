"""Probes of prompt-format sensitivity (notebook 05): the same problems shown in several formats, paired per problem.

Per format and problem: (a) the mean per-token negative log-likelihood of the reference solutions
given the prompt (no sampling; `likelihood`); (b) the pass rate of sampled programs; (c) the share of
samples that parse, that stop before the token limit, and that use dangerous APIs (read from the syntax
tree, never by matching text; `code_facts`); (d) the share that are "plausible but wrong" (run without an
error on every test yet fail one). Deltas against the training format come with paired bootstrap CIs
over problems, and `reading` turns the numbers into a few sentences that claim nothing more. This module
holds the formats, the sampling, the per-(format, problem) table, the deltas, the reading and the
notebook's settings (`ProbeSettings`); the figures are in `probe_figures`.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from .code_facts import DANGER_CATEGORIES, analyse_code
from .data import has_solutions, usable_for_evaluation
from .execution import run_many
from .metrics import bootstrap_ci
from .modeling import APPS_MODEL, model_label, resolve_model
from .params import ALL, Profile, Settings, setting, upto
from .plotting import shown_path
from .prompts import FORMATS, get_format
from .sampling import MODEL_BY_PROFILE, SPLITS, generate_samples, problem_prompts, profile_model

BASELINE = "train"
PROBE_FORMATS = tuple(FORMATS)  # all eight registered formats; the first is the training format
# metric -> (label, True when higher is better); the columns of `format_problem_table`
METRICS = {
    "nll": ("reference NLL (nats/token)", False),
    "pass_rate": ("pass rate", True),
    "parse_rate": ("parses", True),
    "stop_rate": ("stops before the limit", True),
    "dangerous_rate": ("uses a dangerous API", False),
    "plausible_wrong_rate": ("plausible but wrong", False),
}


def probe_formats(names="all") -> list[str]:
    """Format names to probe: "all" or a comma-separated list; the training format always comes first."""
    if names is None or (isinstance(names, str) and names.strip().lower() in ("", "all")):
        chosen = list(PROBE_FORMATS)
    else:
        items = names.split(",") if isinstance(names, str) else list(names)
        chosen = [get_format(n.strip()).name for n in items if n.strip()]
    return [BASELINE] + [n for n in dict.fromkeys(chosen) if n != BASELINE]


def render_all(row, formats=PROBE_FORMATS) -> dict[str, str]:
    """The prompt of one problem (dict or DataFrame row) in each format."""
    return {f: get_format(f)(row["question"], row.get("starter_code") or "", row.get("fn_name")) for f in formats}


# --- (b), (c), (d): sample each format and judge the programs --------------------------------------

RUNS_CLEAN = ("passed", "wrong_answer")  # verdicts of a test that ran to the end without an error


def plausible_but_wrong(verdicts) -> bool:
    """Ran every test to the end without an error (no crash, timeout or compile error), yet failed one."""
    verdicts = list(verdicts or ())
    return bool(verdicts) and all(v in RUNS_CLEAN for v in verdicts) and any(v != "passed" for v in verdicts)


def sample_formats(model, tokenizer, frame: pd.DataFrame, formats=PROBE_FORMATS, *, n: int = 4,
                   temperature: float = 0.8, top_p: float = 0.95, top_k: int = 0, max_new_tokens: int = 128,
                   seed: int = 0, batch_size: int = 16, timeout: float = 4.0, workers: int | None = None,
                   progress: bool = False) -> pd.DataFrame:
    """One row per sample of each format: how it ended, what its syntax tree holds, its verdicts.

    Every format uses the same seed and settings, so rows pair up by (problem, sample_id). Formats that
    render the same prompts and cut completions the same way (apps_eval and bigcode, say) are sampled
    once and get copies of those samples: same prompts, same seed, same samples. Problems without
    tests are sampled but not judged (verdicts None).
    """
    records = frame.to_dict("records")
    rendered = {fmt: problem_prompts(frame, fmt) for fmt in formats}
    twin_of = {}  # format -> the first format that yields exactly the same programs
    for fmt in formats:
        spec = get_format(fmt)
        twin_of[fmt] = twin_of.setdefault((tuple(rendered[fmt]), spec.stop, spec.completion_is_suffix), fmt)
    rows, jobs = [], []
    for fmt in [f for f in formats if twin_of[f] == f]:
        generations = generate_samples(model, tokenizer, rendered[fmt], n=n, temperature=temperature,
                                       top_p=top_p, top_k=top_k, max_new_tokens=max_new_tokens, seed=seed,
                                       fmt=fmt, batch_size=batch_size, progress=progress)
        for row, samples in zip(records, generations):
            for sample in samples:
                if row["tests"]:
                    jobs.append((len(rows), sample.code, row["tests"]))
                rows.append(_sample_record(fmt, row, sample))
    for index, result in run_many(jobs, workers=workers, timeout=timeout):
        rows[index].update(verdicts=list(result.verdicts), passed=bool(result.passed),
                           pass_fraction=result.pass_fraction,
                           runs_clean=all(v in RUNS_CLEAN for v in result.verdicts),
                           plausible_wrong=plausible_but_wrong(result.verdicts))
    by_format = {}
    for record in rows:
        by_format.setdefault(record["fmt"], []).append(record)
    return pd.DataFrame([{**r, "fmt": fmt} for fmt in formats for r in by_format.get(twin_of[fmt], [])])


def _sample_record(fmt: str, row: dict, sample) -> dict:
    facts = analyse_code(sample.code)
    return {
        "fmt": fmt, "split": row["split"], "problem_id": int(row["problem_id"]),
        "difficulty": row["difficulty"], "call_type": row["call_type"], "sample_id": sample.sample_index,
        "n_new_tokens": sample.n_new_tokens, "stopped_by": sample.stopped_by,
        "stopped": sample.stopped_by != "length", "parses": facts.parses,
        "dangerous": bool(facts.dangerous), "dangerous_names": ",".join(facts.dangerous),
        **{f"danger_{c}": c in facts.categories for c in DANGER_CATEGORIES},
        "code": sample.code, "verdicts": None, "passed": None, "pass_fraction": None,
        "runs_clean": None, "plausible_wrong": None,
    }


def format_problem_table(samples: pd.DataFrame | None = None, nll: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per (format, problem): the rates of `METRICS` (means over samples) and the mean reference NLL.

    What `paired_deltas` pairs over (not `metrics.per_problem`, which is pass@k's table of one run)."""
    keys = ["fmt", "split", "problem_id", "difficulty"]
    parts = []
    if samples is not None and len(samples):
        judged = samples.assign(
            pass_rate=samples["passed"].astype(float), plausible_wrong_rate=samples["plausible_wrong"].astype(float),
            parse_rate=samples["parses"].astype(float), stop_rate=samples["stopped"].astype(float),
            dangerous_rate=samples["dangerous"].astype(float))
        parts.append(judged.groupby(keys, sort=False)[
            ["pass_rate", "parse_rate", "stop_rate", "dangerous_rate", "plausible_wrong_rate"]].mean())
    if nll is not None and len(nll):
        parts.append(nll.groupby(keys, sort=False)[["nll"]].mean())
    if not parts:
        raise ValueError("format_problem_table needs samples, nll, or both")
    table = parts[0] if len(parts) == 1 else parts[0].join(parts[1], how="outer")
    return table.reset_index()


def paired_deltas(table: pd.DataFrame, metric: str, *, baseline: str = BASELINE, n_boot: int = 2000,
                  level: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Per format: mean of `metric` minus the baseline's on the same problems, with a paired bootstrap CI.

    Problems are resampled with replacement, with the same draws for every format (one seed), so
    formats that coincide get the same interval; a problem counts only where both the format and the
    baseline have a value.
    """
    wide = table.pivot_table(index=["split", "problem_id"], columns="fmt", values=metric, aggfunc="mean")
    if baseline not in wide.columns:
        raise ValueError(f"the baseline format {baseline!r} has no {metric} values")
    rows = []
    for fmt in [c for c in wide.columns if c != baseline]:
        pair = wide[[fmt, baseline]].dropna()
        diff = (pair[fmt] - pair[baseline]).to_numpy(dtype=float)
        lo, hi = bootstrap_ci(diff, n_boot, level, seed)  # (nan, nan) when no problem has both
        rows.append({"metric": metric, "fmt": fmt, "n_problems": len(diff),
                     "baseline_mean": float(pair[baseline].mean()) if len(diff) else float("nan"),
                     "format_mean": float(pair[fmt].mean()) if len(diff) else float("nan"),
                     "delta": float(diff.mean()) if len(diff) else float("nan"), "ci_low": lo, "ci_high": hi})
    return pd.DataFrame(rows)


def all_deltas(table: pd.DataFrame, metrics=None, **options) -> pd.DataFrame:
    """`paired_deltas` for every metric present in `table`."""
    metrics = [m for m in (metrics or METRICS) if m in table.columns and table[m].notna().any()]
    return pd.concat([paired_deltas(table, m, **options) for m in metrics], ignore_index=True)


def summary_by_format(samples: pd.DataFrame | None, nll: pd.DataFrame | None) -> pd.DataFrame:
    """Means per format over problems (problems weigh equally), rounded for display."""
    table = format_problem_table(samples, nll)
    columns = [m for m in METRICS if m in table.columns]
    order = list(dict.fromkeys(pd.concat([f["fmt"] for f in (nll, samples) if f is not None and len(f)])))
    return table.groupby("fmt")[columns].mean().loc[order].round(4)


def deltas_wide(deltas: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """Formats as rows, metrics as columns, "delta [low, high]" (display only); * marks an interval without 0."""
    def cell(r):
        mark = "*" if (r.ci_low > 0 or r.ci_high < 0) else ""
        return f"{r.delta:+.{digits}f} [{r.ci_low:+.{digits}f}, {r.ci_high:+.{digits}f}]{mark}"

    table = deltas.assign(cell=[cell(r) for r in deltas.itertuples()]).pivot(index="fmt", columns="metric",
                                                                             values="cell")
    table = table.loc[list(dict.fromkeys(deltas["fmt"])), list(dict.fromkeys(deltas["metric"]))]
    table.columns = [METRICS.get(c, (c,))[0] for c in table.columns]
    table.columns.name = None
    return table


def identical_formats(frame: pd.DataFrame, formats=PROBE_FORMATS) -> list[list[str]]:
    """Groups of formats that render exactly the same prompt for every problem of `frame` (their results coincide)."""
    rendered = {f: tuple(render_all(r, [f])[f] for r in frame.to_dict("records")) for f in formats}
    groups: dict[tuple, list[str]] = {}
    for fmt, prompts in rendered.items():
        groups.setdefault(prompts, []).append(fmt)
    return [g for g in groups.values() if len(g) > 1]


# --- a reading of the numbers ---------------------------------------------------------------------


def reading(deltas: pd.DataFrame, *, n_problems: dict | None = None, n_samples: int | None = None,
            level: float = 0.95, note: str | None = None) -> str:
    """A few markdown sentences generated from `deltas`; each claim cites its number and interval.

    A difference is called one only when its interval excludes 0; everything else is reported as
    not detected, which is not the same as absent.
    """
    pct = f"{level:.0%}"
    lines = []
    if note:
        lines.append(note)
    if deltas.empty:
        return "\n".join(lines + ["No deltas were computed (too few problems or formats)."])
    def degenerate(metric, group):  # a rate that is 0 everywhere: nothing to compare
        return metric != "nll" and group["format_mean"].fillna(0).eq(0).all() and group["baseline_mean"].eq(0).all()

    comparisons = sum(len(g.dropna(subset=["ci_low"])) for m, g in deltas.groupby("metric") if not degenerate(m, g))
    for metric, group in deltas.groupby("metric", sort=False):
        label, higher_better = METRICS.get(metric, (metric, True))
        n = int(group["n_problems"].max())
        base = group["baseline_mean"].iloc[0]
        if degenerate(metric, group):
            lines.append(f"- **{label}**: 0 under every format on {n} problems, so its deltas are 0 by "
                         f"construction and say nothing about format sensitivity.")
            continue
        found = group[(group["ci_low"] > 0) | (group["ci_high"] < 0)]
        if found.empty:
            lines.append(f"- **{label}** (train format: {base:.3g}, {n} problems): no format differs detectably "
                         f"from the training format (every {pct} interval includes 0).")
            continue
        parts = []
        for r in found.itertuples():
            worse = (r.delta < 0) if higher_better else (r.delta > 0)
            verdict = "worse" if worse else "better"
            parts.append(f"`{r.fmt}` {r.delta:+.3g} [{r.ci_low:+.3g}, {r.ci_high:+.3g}] ({verdict})")
        rest = len(group) - len(found)
        lines.append(f"- **{label}** (train format: {base:.3g}, {n} problems): " + "; ".join(parts)
                     + (f"; the other {rest} format(s) show no detectable difference." if rest else "."))
    lines.append(
        f"\nIntervals are {pct} paired bootstrap intervals over problems, not corrected for the "
        f"{comparisons} informative comparisons made: about {comparisons * (1 - level):.1f} of them would "
        f"exclude 0 by chance alone when nothing differs."
        + (f" Each format was sampled {n_samples} time(s) per problem." if n_samples else "")
    )
    if n_problems:
        lines.append("Problems per measurement: " + ", ".join(f"{k} {v}" for k, v in n_problems.items()) + ".")
    return "\n".join(lines)


# --- notebook 05's settings and glue -------------------------------------------------------------


@dataclass
class ProbeSettings(Settings):
    """Notebook 05's settings: the model and problems probed, the formats, and how each probe samples."""

    model: str = setting(APPS_MODEL, "a model folder, a hub name, or tiny", "str",
                         by_profile=MODEL_BY_PROFILE)
    data: str = setting("codeparrot/apps", "any load_apps source", "str", smoke="mini")
    # The embedded default probes every mini problem of both splits: with the -all replica most are seen, so
    # the training format's advantage is large and 36 paired problems give intervals that can exclude 0.
    split: str = setting("test", "train | test | all", "choice", choices=SPLITS, smoke="all")
    formats: tuple = setting(ALL, "prompts.FORMATS names to probe, or all (train is always included, first)",
                             "list", choices=PROBE_FORMATS)
    nll_problems: int | str = setting(200, "problems for the likelihood probe, or all", "count", minimum=1,
                                      smoke=ALL)
    solutions_per_problem: int = setting(3, "human solutions scored per problem", "int", minimum=1, smoke=1)
    max_target_tokens: int = setting(256, "score at most this many tokens of each solution", "int", minimum=1)
    sample_problems: int | str = setting(60, "problems sampled in every format, or all", "count", minimum=1,
                                         smoke=ALL)
    n_samples: int = setting(10, "samples per problem and format", "int", minimum=1, smoke=2)
    temperature: float = setting(0.8, "sampling temperature (0 means greedy)", "float", minimum=0.0)
    top_p: float = setting(0.95, "nucleus sampling mass", "float", minimum=0.01, maximum=1.0)
    max_new_tokens: int = setting(384, "new tokens per sample", "int", minimum=1, smoke=256)
    batch_size: int = setting(16, "sequences per forward pass", "int", minimum=1, smoke=72)
    timeout: float = setting(4.0, "seconds per test in the sandbox", "float", minimum=0.1)
    n_boot: int = setting(2000, "bootstrap resamples of the problems", "int", minimum=100)
    seed: int = setting(0, "random seed (sampling and bootstrap)", "int")

    def __post_init__(self):
        super().__post_init__()
        self.formats = tuple(probe_formats(self.formats))  # the baseline first, whatever the order given
        self.model = resolve_model(self.model).name  # what load_model takes: a folder made absolute

    @classmethod
    def layered_defaults(cls, profile: Profile, values: dict) -> dict:
        return {"model": profile_model(profile)}


def run_label(settings: ProbeSettings, n_problems: int, *, sampled: bool = True) -> str:
    """What a figure of this notebook shows and on what: model, data, split, problems, samples, temperature."""
    split = "train+test" if settings.split == "all" else settings.split
    text = f"{model_label(settings.model)} on {shown_path(settings.data)} {split}, {n_problems} problems"
    return text + (f", n={settings.n_samples} samples per format, T={settings.temperature:g}" if sampled else "")


def balanced_subset(frame: pd.DataFrame, size: int | str | None, *, need_tests: bool = False,
                    need_solutions: bool = False) -> pd.DataFrame:
    """About `size` problems (a count setting: "all" or None for every one), taken in turn from each
    difficulty (first ones first), so each is represented."""
    keep = pd.Series(True, index=frame.index)
    if need_tests:
        keep &= usable_for_evaluation(frame)
    if need_solutions:
        keep &= has_solutions(frame)
    usable = frame[keep].copy()
    usable["_rank"] = usable.groupby("difficulty", sort=False).cumcount()
    return usable.sort_values(["_rank"], kind="stable").head(len(usable) if upto(size) is None else size).drop(columns="_rank").reset_index(drop=True)


def format_examples(frame: pd.DataFrame, formats=PROBE_FORMATS, *, width: int = 60, lines: int = 8) -> pd.DataFrame:
    """The head and the tail of each format's prompt for one call-based and one standard-input problem."""
    picks = {}
    for kind in ("call", "stdin"):
        rows = frame[frame["call_type"] == kind]
        if len(rows):
            picks[kind] = rows.iloc[0].to_dict()
    table = {}
    for kind, row in picks.items():
        column = {}
        for fmt, prompt in render_all(row, formats).items():
            parts = prompt.strip("\n").splitlines()
            shown = parts if len(parts) <= lines else parts[:2] + ["..."] + parts[-(lines - 3):]
            column[fmt] = " | ".join(p[:width] for p in shown)
        table[f"{kind} (problem {row['problem_id']})"] = column
    return pd.DataFrame(table)


def caveat(model: str, contamination=None) -> str | None:
    """What the reader must know before the numbers: a random model, or one that trained on these problems."""
    if str(model) == "tiny":
        return ("*The tiny model has random weights: differences here reflect how the prompts tokenize, not a "
                "learned format preference.*")
    if contamination is not None and contamination.contaminated:
        return ("*The model trained on some of these problems (see the contamination statement above): its NLL "
                "levels partly measure recall of those solutions; the deltas still compare prompts on the same "
                "solutions.*")
    return None


__all__ = [
    "BASELINE", "PROBE_FORMATS", "METRICS", "ProbeSettings", "probe_formats", "render_all", "plausible_but_wrong",
    "sample_formats", "format_problem_table", "paired_deltas", "all_deltas", "summary_by_format", "deltas_wide",
    "identical_formats", "reading", "run_label", "balanced_subset", "format_examples", "caveat",
]
