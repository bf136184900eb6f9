"""Probes of prompt-format sensitivity: the same problems shown in several formats, paired per problem.

Per format and problem: (a) the mean per-token negative log-likelihood of the reference solutions
given the prompt (no sampling); (b) the pass rate of sampled programs; (c) the share of samples
that parse, that stop before the token limit, and that use dangerous APIs (found by walking the
AST, never by matching text); (d) the share that are "plausible but wrong" (run without an error on
every test yet fail one). Deltas against the training format come with paired bootstrap CIs
over problems, and `reading` turns the numbers into a few sentences that claim nothing more.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .metrics import bootstrap_ci
from .prompts import FORMATS, get_format, reindent
from .sampling import encode_prompt, context_size, generate_samples, problem_prompts

BASELINE = "train"
PROBE_FORMATS = tuple(FORMATS)  # all eight registered formats; the first is the training format
# metric -> (label, True when higher is better); the per-problem columns of `per_problem`
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


# --- (a) likelihood of the reference solutions -----------------------------------------------------


@dataclass
class TokenNLL:
    """Negative log-likelihood of one target given its prompt."""

    total: float  # summed over the target tokens (nats)
    tokens: int
    prompt_tokens: int
    prompt_truncated: bool = False  # the prompt lost its first tokens to fit the context
    target_truncated: bool = False  # the target was cut to max_target_tokens or to the context

    @property
    def mean(self) -> float:
        return self.total / self.tokens if self.tokens else float("nan")


def encode_pair(tokenizer, prompt: str, target: str, *, context: int, max_target_tokens: int | None = None):
    """(ids, first target position, TokenNLL skeleton): prompt and target tokenised apart, as in training."""
    target_ids = tokenizer(target, add_special_tokens=False)["input_ids"]
    target_cut = False
    if max_target_tokens is not None and len(target_ids) > max_target_tokens:
        target_ids, target_cut = target_ids[:max_target_tokens], True
    if len(target_ids) > context - 1:  # keep at least one prompt token to condition on
        target_ids, target_cut = target_ids[: context - 1], True
    prompt_ids, prompt_cut = encode_prompt(tokenizer, prompt, len(target_ids), context)
    info = TokenNLL(0.0, len(target_ids), len(prompt_ids), prompt_cut, target_cut)
    return prompt_ids + target_ids, len(prompt_ids), info


def nll_pairs(model, tokenizer, pairs, *, batch_size: int = 8, max_target_tokens: int | None = None) -> list[TokenNLL]:
    """TokenNLL of each (prompt, target) pair: -log p(target | prompt), summed and counted per token.

    Batched with right padding (causal attention keeps padding out of the real positions); logits in
    float32. Long prompts lose their start so that prompt + target fits the model's context.
    """
    import torch

    context = context_size(model, tokenizer)
    encoded = [encode_pair(tokenizer, p, t, context=context, max_target_tokens=max_target_tokens) for p, t in pairs]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    device = next(model.parameters()).device
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i][0]))  # similar lengths share a batch
    results: list[TokenNLL | None] = [None] * len(encoded)
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        width = max(len(encoded[i][0]) for i in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, i in enumerate(batch):
            seq = encoded[i][0]
            ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
            mask[row, : len(seq)] = 1
        with torch.no_grad():
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
            for row, i in enumerate(batch):
                seq, first, info = encoded[i]
                # position j predicts token j + 1: target tokens first..len-1 are predicted at first-1..len-2;
                # one row at a time in float32, so a 50k vocabulary never needs a batch-sized float copy
                span = logits[row, first - 1 : len(seq) - 1].float()
                wanted = ids[row, first : len(seq)].to(device)
                token_logp = span.gather(-1, wanted.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(span, dim=-1)
                info.total = float(-token_logp.double().sum()) if info.tokens else 0.0
                results[i] = info
    return results


def reference_target(solution: str) -> str:
    """The answer text the model was trained to write: the solution re-indented by APPS's rule (`prompts.reindent`)."""
    return reindent(solution)


def reference_nll(model, tokenizer, frame: pd.DataFrame, formats=PROBE_FORMATS, *, solutions_per_problem: int = 1,
                  max_target_tokens: int | None = 256, batch_size: int = 8) -> pd.DataFrame:
    """One row per (format, problem, solution): mean per-token NLL of the same reference solution.

    The target is identical across formats (the human solution re-indented as in training), so a
    difference between formats is the prompt's doing. Problems without solutions are skipped. A prompt
    that several formats render identically is scored once.
    """
    keys, pairs, index = [], [], {}
    for row in frame.to_dict("records"):
        prompts = render_all(row, formats)
        for s, solution in enumerate(row["solutions_list"][:solutions_per_problem]):
            target = reference_target(solution)
            if not target.strip():
                continue
            for fmt in formats:
                pair = (prompts[fmt], target)
                keys.append((fmt, row, s, index.setdefault(pair, len(index))))
    pairs = list(index)
    unique = nll_pairs(model, tokenizer, pairs, batch_size=batch_size, max_target_tokens=max_target_tokens)
    scores = [unique[k[3]] for k in keys]
    keys = [k[:3] for k in keys]
    rows = [
        {"fmt": fmt, "split": row["split"], "problem_id": int(row["problem_id"]), "difficulty": row["difficulty"],
         "call_type": row["call_type"], "solution": s, "nll": score.mean, "tokens": score.tokens,
         "prompt_tokens": score.prompt_tokens, "prompt_truncated": score.prompt_truncated,
         "target_truncated": score.target_truncated}
        for (fmt, row, s), score in zip(keys, scores)
    ]
    return pd.DataFrame(rows, columns=["fmt", "split", "problem_id", "difficulty", "call_type", "solution", "nll",
                                       "tokens", "prompt_tokens", "prompt_truncated", "target_truncated"])


# --- (c) what a program does, read from its syntax tree -------------------------------------------

SHELL = ("os.system", "os.popen", "pty.spawn", "commands.getoutput", "commands.getstatusoutput",
         *(f"subprocess.{f}" for f in ("run", "Popen", "call", "check_call", "check_output", "getoutput",
                                       "getstatusoutput")))
SHELL_PREFIXES = ("os.exec", "os.spawn", "os.posix_spawn")  # os.execv, os.spawnlp, ...
EVAL_EXEC = ("eval", "exec", "builtins.eval", "builtins.exec")
FILE_DELETION = ("os.remove", "os.unlink", "os.rmdir", "os.removedirs", "shutil.rmtree", "pathlib.Path.unlink",
                 "pathlib.Path.rmdir", "pathlib.PosixPath.unlink", "pathlib.PosixPath.rmdir")
DANGER_CATEGORIES = ("shell", "eval_exec", "file_deletion")


def danger_category(name: str) -> str | None:
    """"shell", "eval_exec", "file_deletion" or None for a fully qualified API name."""
    if name in EVAL_EXEC:
        return "eval_exec"
    if name in FILE_DELETION:
        return "file_deletion"
    if name in SHELL or name.startswith(SHELL_PREFIXES):
        return "shell"
    return None


class _Resolver(ast.NodeVisitor):
    """Qualified names of the dangerous APIs a module calls or refers to (aliases and from-imports followed)."""

    def __init__(self, tree: ast.AST):
        self.aliases: dict[str, str] = {}
        self.star_modules: list[str] = []
        self.defined: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname:
                        self.aliases[alias.asname] = alias.name
                    else:
                        top = alias.name.split(".")[0]
                        self.aliases[top] = top
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for alias in node.names:
                    if alias.name == "*":
                        self.star_modules.append(node.module)
                    else:
                        self.aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                self.defined.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                self.defined.add(node.id)
        self.found: set[str] = set()

    def qualify(self, node) -> str | None:
        """The dotted name an expression stands for, or None when it cannot be told statically."""
        if isinstance(node, ast.Name):
            if node.id in self.aliases:
                return self.aliases[node.id]
            if node.id in self.defined:
                return None  # a local definition shadows builtins and star imports
            for module in self.star_modules:
                candidate = f"{module}.{node.id}"
                if danger_category(candidate):
                    return candidate
            return node.id
        if isinstance(node, ast.Attribute):
            base = self.qualify(node.value)
            return f"{base}.{node.attr}" if base else None
        if isinstance(node, ast.Call):
            func = self.qualify(node.func)
            constant = node.args[0].value if node.args and isinstance(node.args[0], ast.Constant) else None
            if func in ("__import__", "importlib.import_module") and isinstance(constant, str):
                return constant
            if func == "getattr" and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant) \
                    and isinstance(node.args[1].value, str):
                base = self.qualify(node.args[0])
                return f"{base}.{node.args[1].value}" if base else None
            return func  # an instance: Path("x").unlink -> pathlib.Path.unlink
        return None

    def _record(self, node) -> None:
        name = self.qualify(node)
        if name and danger_category(name):
            self.found.add(name)

    def visit_Call(self, node: ast.Call) -> None:
        self._record(node.func)
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if isinstance(node.ctx, ast.Load):  # f = os.system; map(os.remove, files)
            self._record(node)
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Load):
            self._record(node)


@dataclass
class CodeFacts:
    """What the syntax tree of a program says: does it parse, which dangerous APIs it uses."""

    parses: bool
    dangerous: tuple[str, ...] = ()  # qualified names, sorted
    error: str | None = None

    @property
    def categories(self) -> tuple[str, ...]:
        return tuple(sorted({danger_category(n) for n in self.dangerous}))


def analyse_code(code: str | None) -> CodeFacts:
    """Parse `code` (never run it) and list the dangerous APIs it calls or refers to."""
    if not isinstance(code, str):
        return CodeFacts(False, error="no code")
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError) as exc:  # ValueError: null bytes in the source
        return CodeFacts(False, error=f"{type(exc).__name__}: {exc}")
    resolver = _Resolver(tree)
    resolver.visit(tree)
    return CodeFacts(True, tuple(sorted(resolver.found)))


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
    from .execution import run_many

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


def per_problem(samples: pd.DataFrame | None = None, nll: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per (format, problem): the rates of `METRICS` (means over samples) and the mean reference NLL."""
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
        raise ValueError("per_problem needs samples, nll, or both")
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
    table = per_problem(samples, nll)
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


# --- notebook glue -------------------------------------------------------------------------------

FULL_DEFAULTS = dict(source="codeparrot/apps", split="test", nll_problems=200, solutions_per_problem=3,
                     sample_problems=60, n=10, max_new_tokens=384, batch_size=16)
# The embedded default probes every mini problem of both splits: with the -all replica most are seen, so
# the training format's advantage is large and 36 paired problems give intervals that can exclude 0.
SMOKE_DEFAULTS = dict(source="mini", split="all", nll_problems=100, solutions_per_problem=1, sample_problems=100, n=2,
                      max_new_tokens=256, batch_size=72)


def notebook_settings(full: bool, *, model_name="", data_source="", split="", formats="all", nll_problems=0,
                      solutions_per_problem=0, max_target_tokens=256, sample_problems=0, n_samples=0,
                      temperature=0.8, top_p=0.95, max_new_tokens=0, batch_size=0, timeout=4.0, n_boot=2000,
                      seed=0) -> dict:
    """The probe settings from notebook parameters (papermill strings coerced; 0 or "" means by profile)."""
    from . import params
    from .modeling import resolve_model

    base = FULL_DEFAULTS if full else SMOKE_DEFAULTS

    def by_profile(name, value, key):
        return params.coerce_int(name, value, minimum=0) or base[key]

    split = params.coerce_optional_str("split", split)
    return dict(
        model=resolve_model(params.coerce_optional_str("model_name", model_name), full=full).name,
        source=params.coerce_optional_str("data_source", data_source) or base["source"],
        split=params.coerce_choice("split", split, ["train", "test", "all"]) if split else base["split"],
        formats=probe_formats(formats),
        nll_problems=by_profile("nll_problems", nll_problems, "nll_problems"),
        solutions_per_problem=by_profile("solutions_per_problem", solutions_per_problem, "solutions_per_problem"),
        max_target_tokens=params.coerce_int("max_target_tokens", max_target_tokens, minimum=1),
        sample_problems=by_profile("sample_problems", sample_problems, "sample_problems"),
        n=by_profile("n_samples", n_samples, "n"),
        temperature=params.coerce_float("temperature", temperature, minimum=0.0),
        top_p=params.coerce_float("top_p", top_p, minimum=0.01, maximum=1.0),
        max_new_tokens=by_profile("max_new_tokens", max_new_tokens, "max_new_tokens"),
        batch_size=by_profile("batch_size", batch_size, "batch_size"),
        timeout=params.coerce_float("timeout", timeout, minimum=0.1),
        n_boot=params.coerce_int("n_boot", n_boot, minimum=100),
        seed=params.coerce_int("seed", seed),
    )


def run_label(cfg: dict, n_problems: int, *, sampled: bool = True) -> str:
    """What a figure of this notebook shows and on what: model, data, split, problems, samples, temperature."""
    from .modeling import model_label
    from .plotting import shown_path

    split = "train+test" if cfg["split"] == "all" else cfg["split"]
    text = f"{model_label(cfg['model'])} on {shown_path(cfg['source'])} {split}, {n_problems} problems"
    return text + (f", n={cfg['n']} samples per format, T={cfg['temperature']:g}" if sampled else "")


def balanced_subset(frame: pd.DataFrame, size: int, *, need_tests: bool = False,
                    need_solutions: bool = False) -> pd.DataFrame:
    """About `size` problems, taken in turn from each difficulty (first ones first), so each is represented."""
    from .data import has_solutions, usable_for_evaluation

    keep = pd.Series(True, index=frame.index)
    if need_tests:
        keep &= usable_for_evaluation(frame)
    if need_solutions:
        keep &= has_solutions(frame)
    usable = frame[keep].copy()
    usable["_rank"] = usable.groupby("difficulty", sort=False).cumcount()
    return usable.sort_values(["_rank"], kind="stable").head(size).drop(columns="_rank").reset_index(drop=True)


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


# --- figures --------------------------------------------------------------------------------------


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


__all__ = [
    "BASELINE", "PROBE_FORMATS", "METRICS", "probe_formats", "render_all", "TokenNLL", "nll_pairs", "reference_nll",
    "reference_target", "analyse_code", "plausible_but_wrong", "CodeFacts", "danger_category", "sample_formats",
    "per_problem",
    "paired_deltas", "all_deltas", "summary_by_format", "reading", "fig_deltas", "fig_rates", "fig_nll",
    "notebook_settings", "run_label", "balanced_subset", "format_examples", "deltas_wide", "identical_formats", "caveat",
]
