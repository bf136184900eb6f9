"""Load APPS from every source a user has, into one table.

Sources: the Hugging Face dataset `codeparrot/apps` (its JSONL files read directly, since
`datasets` 4+ refuses the dataset's loading script), a local `.jsonl`/`.parquet` file in that
schema, the original APPS folder layout, or `"mini"`, the embedded set in `data/mini/`.
Malformed rows are kept where they are still useful, flagged in the `issues` column and reported;
rows that cannot be used at all are dropped *and* reported. Nothing is dropped silently.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .apps_judge import tests_problem
from .paths import MINI_DIR
from .params import hub_reachable

COLUMNS = ["problem_id", "question", "solutions", "input_output", "difficulty", "url", "starter_code"]
PARSED = ["split", "solutions_list", "tests", "fn_name", "call_type", "issues"]
DIFFICULTIES = ("introductory", "interview", "competition")
SPLITS = ("train", "test")
HF_REPO = "codeparrot/apps"
_HF_PREFIX = "hf://datasets/"
_FOLDER_NAME = re.compile(r"^\d+$")


@dataclass
class LoadReport:
    """What `load_apps` found wrong, by issue, as problem ids (split:id)."""

    source: str
    rows_read: int = 0
    kept: int = 0
    dropped: dict = field(default_factory=lambda: defaultdict(list))
    flagged: dict = field(default_factory=lambda: defaultdict(list))

    def to_dict(self) -> dict:
        """Plain JSON-ready values (what `df.attrs["report"]` holds)."""
        return {"source": self.source, "rows_read": self.rows_read, "kept": self.kept,
                "dropped": dict(self.dropped), "flagged": dict(self.flagged)}

    def summary(self) -> str:
        lines = [f"loaded {self.kept} problems from {self.source} ({self.rows_read} rows read)"]
        for title, group in (("dropped", self.dropped), ("kept but flagged", self.flagged)):
            for issue, ids in sorted(group.items()):
                shown = ", ".join(map(str, ids[:10])) + (" ..." if len(ids) > 10 else "")
                lines.append(f"  {title}: {len(ids)} with {issue}: {shown}")
        return "\n".join(lines)


def load_apps(source="mini", split="train", difficulties=None, limit=None, *, verbose=True) -> pd.DataFrame:
    """APPS problems as a DataFrame: the dataset's columns, `split`, and parsed helpers.

    source: "mini", "codeparrot/apps" (or "hf://datasets/codeparrot/apps"), a .jsonl/.parquet
    file, a folder holding train.jsonl/test.jsonl, or an original-layout folder (`train/0000/...`).
    split: "train", "test" or "all" (both, pooled). `df.attrs["report"]` holds what was dropped or flagged.
    """
    splits = _splits(split)
    if difficulties is not None:
        difficulties = [difficulties] if isinstance(difficulties, str) else list(difficulties)
        unknown = set(difficulties) - set(DIFFICULTIES)
        if unknown:
            raise ValueError(f"difficulties must be among {DIFFICULTIES}, got {sorted(unknown)}")
    report = LoadReport(source=str(source))
    rows = ((name, raw) for name in splits for raw in _read_split(source, name))
    return _frame(rows, report, difficulties, limit, verbose)


def _frame(rows, report: LoadReport, difficulties=None, limit=None, verbose=True) -> pd.DataFrame:
    """The table of (split, raw row) pairs: each row normalised, what was wrong reported."""
    records = []
    for name, raw in rows:
        report.rows_read += 1
        record = _normalise(raw, name, report)
        if record is not None:
            records.append(record)
    # object dtype keeps None as None (pandas 3 would turn it into NaN in text columns)
    frame = pd.DataFrame({c: pd.Series([r[c] for r in records], dtype=object) for c in COLUMNS + PARSED})
    frame["problem_id"] = frame["problem_id"].astype("int64")
    if difficulties is not None:
        frame = frame[frame["difficulty"].isin(difficulties)]
    if limit is not None:
        frame = frame.head(int(limit))
    frame = frame.reset_index(drop=True)
    report.kept = len(frame)
    frame.attrs["report"] = report.to_dict()  # plain values: attrs travel through to_json/parquet
    if verbose:
        print(report.summary())
    return frame


# --- datasets interop -------------------------------------------------------------------------

# What to_dataset writes: the dataset's columns, the split, and the parsed helpers that Arrow can hold
# (`tests` cannot: call-based inputs mix types; its JSON is in `input_output`).
DATASET_COLUMNS = COLUMNS + ["split", "solutions_list", "fn_name", "call_type", "issues"]


def to_dataset(problems: pd.DataFrame):
    """`load_apps`'s table as a `datasets.Dataset`: codeparrot/apps's columns plus split and parsed helpers.

    from_dataset reads it back to the same table; `datasets` is imported here, not with the kit (it is heavy).
    """
    from datasets import Dataset, Features, List, Value

    text = Value("string")
    features = Features({"problem_id": Value("int64"), **{c: text for c in COLUMNS[1:]}, "split": text,
                         "solutions_list": List(text), "fn_name": text, "call_type": text, "issues": List(text)})
    missing = [c for c in DATASET_COLUMNS if c not in problems]
    if missing:
        raise ValueError(f"to_dataset needs load_apps's table; missing columns: {', '.join(missing)}")
    return Dataset.from_dict({c: [_plain(v) for v in problems[c]] for c in DATASET_COLUMNS}, features=features)


def from_dataset(dataset, split: str = "train", *, verbose: bool = True) -> pd.DataFrame:
    """A `datasets.Dataset` (or DatasetDict) in codeparrot/apps's schema as `load_apps`'s table.

    Rows are read as load_apps reads a file: parsed again, malformed ones flagged or dropped and reported.
    A `split` column (as to_dataset writes) wins over `split`; a DatasetDict pools its train then test.
    """
    from datasets import DatasetDict

    if isinstance(dataset, (DatasetDict, dict)):
        names = _splits([s for s in SPLITS if s in dataset] or list(dataset))
        parts = [(name, dataset[name]) for name in names]
    else:
        parts = [(_splits(split)[0], dataset)]
    report = LoadReport(source=f"a datasets.{type(dataset).__name__}")
    rows = ((raw.get("split") or name, raw) for name, part in parts for raw in part)
    return _frame(rows, report, verbose=verbose)


def _plain(value):
    """numpy arrays and scalars (a table read from parquet holds them) as Python lists and values."""
    return value.tolist() if hasattr(value, "tolist") else value


def _splits(split) -> list[str]:
    if isinstance(split, str):
        split = list(SPLITS) if split == "all" else [split]
    split = list(split)
    bad = [s for s in split if s not in SPLITS]
    if bad or not split:
        raise ValueError(f"split must be 'train', 'test' or 'all', got {bad or split!r}")
    return split


def _read_split(source, split):
    """Raw rows (dicts) of one split of `source`."""
    if isinstance(source, str) and source == "mini":
        return _read_file(MINI_DIR / f"{split}.jsonl")
    if isinstance(source, str) and (source == HF_REPO or source.startswith(_HF_PREFIX)):
        return _read_file(_hf_file(source, split))
    path = Path(source).expanduser()
    if path.is_file():
        return _read_file(path)
    if path.is_dir():
        for candidate in (path / f"{split}.jsonl", path / f"{split}.parquet"):
            if candidate.is_file():
                return _read_file(candidate)
        folder = path / split if (path / split).is_dir() else path
        if any(_FOLDER_NAME.match(p.name) for p in folder.iterdir() if p.is_dir()):
            return _read_folder(folder)
        raise FileNotFoundError(
            f"{path} holds neither {split}.jsonl/{split}.parquet nor an original APPS layout "
            f"({split}/0000/question.txt, ...)"
        )
    raise FileNotFoundError(
        f"APPS source {source!r} is not 'mini', '{HF_REPO}', a .jsonl/.parquet file or a folder"
    )


def _read_file(path: Path):
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no APPS file at {path}")
    if path.suffix == ".parquet":
        yield from pd.read_parquet(path).to_dict("records")
        return
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as exc:
                yield {"_invalid": f"line {number}: {exc.msg}"}


def _read_folder(folder: Path):
    """Rows from the original APPS layout: one numbered folder per problem."""
    for problem in sorted(p for p in folder.iterdir() if p.is_dir() and _FOLDER_NAME.match(p.name)):
        row = {"problem_id": int(problem.name)}
        for key, name in (("question", "question.txt"), ("starter_code", "starter_code.py")):
            file = problem / name
            row[key] = file.read_text(encoding="utf-8") if file.is_file() else ""
        for key, name in (("solutions", "solutions.json"), ("input_output", "input_output.json")):
            file = problem / name
            # The files hold JSON; the HF dataset holds the same JSON as a compact string.
            text = file.read_text(encoding="utf-8") if file.is_file() else ""
            try:
                row[key] = json.dumps(json.loads(text)) if text.strip() else ""
            except json.JSONDecodeError:
                row[key] = text
        meta = problem / "metadata.json"
        try:
            info = json.loads(meta.read_text(encoding="utf-8")) if meta.is_file() else {}
        except json.JSONDecodeError:
            info = {}
        row["difficulty"] = info.get("difficulty", "")
        row["url"] = info.get("url", "")
        yield row


def _hf_file(source: str, split: str) -> str:
    """Local path of `<split>.jsonl` of the hub dataset: from the cache, else downloaded."""
    from huggingface_hub import hf_hub_download

    repo = source[len(_HF_PREFIX):] if source.startswith(_HF_PREFIX) else source
    repo = repo.rstrip("/")
    filename = f"{split}.jsonl"
    if repo.endswith(".jsonl"):  # hf://datasets/codeparrot/apps/train.jsonl
        repo, filename = repo.rsplit("/", 1)
    try:
        return hf_hub_download(repo, filename, repo_type="dataset", local_files_only=True)
    except Exception:
        pass
    reachable, why = hub_reachable()
    if not reachable:
        raise ConnectionError(
            f"cannot download {filename} of the dataset {repo}: the hub is out of reach ({why}). "
            f"To work offline, use source='mini' (the embedded set), or download "
            f"https://huggingface.co/datasets/{repo}/resolve/main/{filename} on a machine with "
            f"network and pass its local path as source."
        )
    return hf_hub_download(repo, filename, repo_type="dataset")


def _normalise(raw: dict, split: str, report: LoadReport) -> dict | None:
    """One row in the common schema with parsed helpers, or None (reported) when unusable."""
    if "_invalid" in raw:
        report.dropped["a line that is not JSON"].append(f"{split}:{raw['_invalid']}")
        return None
    pid = raw.get("problem_id")
    try:
        pid = int(pid)
        if isinstance(raw.get("problem_id"), float) and not raw["problem_id"].is_integer():
            raise ValueError
    except (TypeError, ValueError):
        report.dropped["no valid problem_id"].append(f"{split}:{pid!r}")
        return None
    key = f"{split}:{pid}"
    question = raw.get("question")
    if not isinstance(question, str) or not question.strip():
        report.dropped["no question text"].append(key)
        return None
    issues = []

    solutions_text, solutions = _json_field(raw.get("solutions"), list, "solutions", issues)
    if solutions is not None and not all(isinstance(s, str) for s in solutions):
        issues.append("solutions that are not strings")
        solutions = [s for s in solutions if isinstance(s, str)]
    if not solutions and not any(i.startswith("invalid solutions") for i in issues):
        issues.append("no solutions")
    io_text, tests = _json_field(raw.get("input_output"), dict, "input_output", issues)
    if tests is not None:
        tests = _check_tests(tests, issues)
    elif not any(i.startswith("invalid input_output") for i in issues):
        issues.append("no tests")

    difficulty = raw.get("difficulty")
    if difficulty not in DIFFICULTIES:
        issues.append("unknown difficulty")
        difficulty = str(difficulty) if difficulty is not None else ""
    starter = raw.get("starter_code") or ""
    if not isinstance(starter, str):
        issues.append("starter_code that is not text")
        starter = ""
    # The HF copy prefixes LeetCode starter code with a newline the original files lack.
    starter = starter.lstrip("\n")
    url = raw.get("url") if isinstance(raw.get("url"), str) else ""
    fn_name = tests.get("fn_name") if tests else None
    for issue in issues:
        report.flagged[issue].append(key)
    return {
        "problem_id": pid,
        "question": question,
        "solutions": solutions_text,
        "input_output": io_text,
        "difficulty": difficulty,
        "url": url,
        "starter_code": starter,
        "split": split,
        "solutions_list": solutions or [],
        "tests": tests,
        "fn_name": fn_name,
        "call_type": "call" if fn_name else "stdin",
        "issues": issues,
    }


def _json_field(value, kind, name, issues):
    """(canonical JSON string, parsed value or None); already-parsed values are accepted."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return "", None
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            issues.append(f"invalid {name} JSON")
            return value, None
    else:
        parsed = value.tolist() if hasattr(value, "tolist") else value
    if not isinstance(parsed, kind):
        issues.append(f"invalid {name} (not a {kind.__name__})")
        return value if isinstance(value, str) else json.dumps(parsed, default=str), None
    return (value if isinstance(value, str) else json.dumps(parsed)), parsed


def _check_tests(tests: dict, issues: list) -> dict | None:
    problem = tests_problem(tests, text_stdin=True)
    if problem:
        issues.append(problem if problem == "no tests" else f"invalid input_output ({problem})")
        return None
    return tests


def usable_for_evaluation(frame: pd.DataFrame) -> pd.Series:
    """Rows with tests (needed to judge generated programs)."""
    return frame["tests"].notna()


def has_solutions(frame: pd.DataFrame) -> pd.Series:
    """Rows with at least one solution (needed to build training examples)."""
    return frame["solutions_list"].map(len) > 0
