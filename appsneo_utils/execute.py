"""Judge many generated programs in the sandbox: a resumable batch command (`judge_file` in Python).

    python -m appsneo_utils.execute --problems P --samples S.jsonl --out R.jsonl [--judge apps|strict]
                                    [--workers N] [--timeout S]

P: any APPS source `load_apps` reads (a .jsonl/.parquet file, an original-layout folder, "mini",
"codeparrot/apps"); --split picks the split where the source has several (APPS ids repeat across
splits). S: one JSON object a line, {"problem_id", "code"} and optionally "sample_id" (default: the
row's rank among the rows of the same problem, 0, 1, ...). R: one line per judged sample with the
verdicts, APPS codes and timings. --judge: "apps" (default: the 2021 APPS harness's rules, comparable
with published numbers) or "strict" (the kit's exact cascade); one R holds one judge's rows. Killed
at any moment and started again, it judges only what R lacks, so every sample ends up in R exactly
once. Bad lines in S are reported (stderr and R.errors.jsonl) and the rest still runs; the exit
status is then 1. R and its side file are opened without following symlinks, and the problems,
samples and results files are hidden from the sandboxed programs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator

from .execution import APPS, DEFAULT_MEMORY_MB, DEFAULT_TIMEOUT, JUDGES, STRICT, Executor, Job
from .params import Settings, setting
from .records import complete_lines, open_append, write_jsonl, write_row


@dataclass
class Pending:
    line: int
    problem_id: Any
    sample_id: Any
    n_tests: int


def _key(problem_id: Any, sample_id: Any) -> str:
    return json.dumps([problem_id, sample_id])


def _problem_id(value: Any) -> Any:
    """Ids as the loader holds them (int); digit strings are accepted for ints."""
    if isinstance(value, bool):
        raise ValueError("problem_id must be an integer or a string, got a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    if isinstance(value, str) and value:
        return value
    raise ValueError(f"problem_id must be an integer, got {value!r}")


def tests_by_problem(source: str, split: str) -> dict:
    """problem_id -> {"tests", "difficulty"} from any APPS source."""
    from .data import load_apps

    frame = load_apps(source, split=split, verbose=False)
    problems = {}
    for row in frame.itertuples(index=False):
        problems[int(row.problem_id)] = {"tests": row.tests, "difficulty": row.difficulty}
    return problems


def resume(out: Path, judge: str = STRICT) -> set[str]:
    """Keys already judged in `out`; a partly written last line (a kill mid-write) is cut off.
    ValueError when `out` holds rows of another judge (rows without one are the strict judge's)."""
    done: set[str] = set()
    for number, line in enumerate(complete_lines(out, repair=True), 1):
        try:
            row = json.loads(line)
            key = _key(row["problem_id"], row["sample_id"])
        except (ValueError, KeyError, TypeError):
            print(f"{out}:{number}: unreadable result line, ignored (that sample is judged again)",
                  file=sys.stderr)
            continue
        if row.get("judge", STRICT) != judge:
            raise ValueError(f"{out} holds results of the {row.get('judge', STRICT)!r} judge (line {number}); "
                             f"judge into another --out, or use --judge {row.get('judge', STRICT)}")
        done.add(key)
    return done


def scan_samples(path: Path, problems: dict, done: set[str]) -> tuple[list[Pending], list[dict], int]:
    """(samples still to judge, input errors, samples already judged)."""
    pending, errors, seen, counts, skipped = [], [], set(), {}, 0

    def error(line: int, message: str) -> None:
        errors.append({"line": line, "error": message})

    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, text in enumerate(handle, 1):
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except ValueError as exc:
                error(number, f"invalid JSON ({exc})")
                continue
            if not isinstance(row, dict):
                error(number, f"expected a JSON object, got {type(row).__name__}")
                continue
            if "problem_id" not in row:
                error(number, "missing field 'problem_id'")
                continue
            try:
                pid = _problem_id(row["problem_id"])
            except ValueError as exc:
                error(number, str(exc))
                continue
            rank = counts.get(pid, 0)
            counts[pid] = rank + 1
            sid = row.get("sample_id", rank)
            if not isinstance(sid, (int, str)) or isinstance(sid, bool):
                error(number, f"sample_id must be an integer or a string, got {sid!r}")
                continue
            if not isinstance(row.get("code"), str):
                error(number, "missing field 'code' (a string)" if "code" not in row
                      else f"'code' must be a string, got {type(row['code']).__name__}")
                continue
            if pid not in problems:
                error(number, f"unknown problem_id {pid!r} (not in the problems source)")
                continue
            if problems[pid]["tests"] is None:
                error(number, f"problem {pid} has no usable tests")
                continue
            key = _key(pid, sid)
            if key in seen:
                error(number, f"duplicate sample: problem_id {pid!r}, sample_id {sid!r}")
                continue
            seen.add(key)
            if key in done:
                skipped += 1
                continue
            pending.append(Pending(number, pid, sid, len(problems[pid]["tests"]["inputs"])))
    return pending, errors, skipped


def jobs(path: Path, pending: list[Pending], problems: dict, **options) -> Iterator[Job]:
    """The pending samples as Jobs, read again from S (so no code is held in memory meanwhile)."""
    by_line = {p.line: p for p in pending}
    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, text in enumerate(handle, 1):
            item = by_line.get(number)
            if item is not None:
                code = json.loads(text)["code"]
                yield Job(code, problems[item.problem_id]["tests"], key=item, **options)


@dataclass
class JudgeSettings(Settings):
    """The judge's knobs on the command line (the file arguments are not settings)."""

    PROFILED: ClassVar[bool] = False
    judge: str = setting(APPS, "apps: the 2021 APPS harness's rules; strict: the kit's exact cascade", "choice",
                         choices=JUDGES)
    split: str = setting("test", "split of the problems source", "choice", choices=("train", "test"))
    workers: int | None = setting(None, "parallel workers; None: one per CPU core", "int", optional=True, minimum=1)
    timeout: float = setting(DEFAULT_TIMEOUT, "seconds per test (the APPS harness used 4)", "float", minimum=0.01)
    total_timeout: float | None = setting(None, "seconds per program; None: no limit", "float", optional=True,
                                          minimum=0.01)
    memory_mb: int = setting(DEFAULT_MEMORY_MB, "memory per program in MiB", "int", minimum=16)


def _files(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--problems", required=True, help="APPS source: file, folder, 'mini' or 'codeparrot/apps'")
    parser.add_argument("--samples", required=True, type=Path, help="JSONL of {problem_id, code[, sample_id]}")
    parser.add_argument("--out", required=True, type=Path, help="results JSONL (appended to; resumable)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def parse_args(argv: list[str] | None) -> tuple[JudgeSettings, argparse.Namespace]:
    settings, files = JudgeSettings.parse_args(argv, prog="python -m appsneo_utils.execute",
                                               description=__doc__.split("\n")[0], extra=_files)
    files = argparse.Namespace(**files)
    if not files.samples.is_file():
        print(f"python -m appsneo_utils.execute: error: --samples {files.samples} does not exist", file=sys.stderr)
        raise SystemExit(2)
    return settings, files


@dataclass
class Summary:
    """What one `judge_file` call did."""

    judged: int = 0
    passed: int = 0
    skipped: int = 0  # already in `out`
    errors: list[dict] = field(default_factory=list)  # bad input lines
    error_path: Path | None = None
    interrupted: bool = False


def judge_file(problems: str | os.PathLike | dict, samples: str | os.PathLike, out: str | os.PathLike, *,
               judge: str = APPS, split: str = "test", workers: int | None = None,
               timeout: float = DEFAULT_TIMEOUT, total_timeout: float | None = None,
               memory_mb: int = DEFAULT_MEMORY_MB, progress: bool | Callable[[int], None] = True,
               hide: tuple = ()) -> Summary:
    """Judges every sample of `samples` (JSONL) that `out` lacks, appending one row per sample.

    problems: an APPS source (file, folder, "mini", "codeparrot/apps") or the dict `tests_by_problem`
    returns. progress: a tqdm bar in tests (True), none (False), or a callable given test counts.
    hide: more files or folders the programs must not see (the problems, samples and out files are).
    A KeyboardInterrupt leaves `out` resumable and is raised again after the summary is printed.
    """
    if judge not in JUDGES:
        raise ValueError(f"judge must be one of {JUDGES}, got {judge!r}")
    samples, out = Path(samples), Path(out)
    hide = [samples, out, *hide]
    if not isinstance(problems, dict):
        if Path(problems).exists():
            hide.append(Path(problems))
        problems = tests_by_problem(str(problems), split)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = resume(out, judge)
    pending, errors, skipped = scan_samples(samples, problems, done)
    summary = Summary(skipped=skipped, errors=errors, error_path=out.with_name(out.name + ".errors.jsonl"))
    for e in errors:
        print(f"{samples}:{e['line']}: {e['error']}; skipped", file=sys.stderr)
    write_jsonl(({"samples": str(samples), **e} for e in errors), summary.error_path)
    if skipped:
        print(f"resuming: {skipped} samples already in {out}", file=sys.stderr)
    from tqdm.auto import tqdm

    bar = tqdm(total=sum(p.n_tests for p in pending), unit="test", desc=f"judging ({judge})",
               disable=progress is not True, dynamic_ncols=True)
    update = progress if callable(progress) else bar.update
    options = {"timeout": timeout, "total_timeout": total_timeout, "memory_mb": memory_mb, "judge": judge}
    fd = open_append(out)  # before any judging: a refused results file stops the run at once
    try:
        with Executor(workers, hide=hide) as executor:
            for item, result in executor.run_many(jobs(samples, pending, problems, **options), progress=update):
                row = {"problem_id": item.problem_id, "sample_id": item.sample_id,
                       "difficulty": problems[item.problem_id]["difficulty"], **result.to_dict()}
                write_row(fd, row)
                summary.judged += 1
                summary.passed += result.passed
                bar.set_postfix(passed=f"{summary.passed}/{summary.judged}", refresh=False)
    except KeyboardInterrupt:
        summary.interrupted = True
        raise
    finally:
        os.close(fd)
        bar.close()
        _print_summary(summary, out)
    return summary


def _print_summary(s: Summary, out: Path) -> None:
    if s.interrupted:
        print(f"\ninterrupted: {s.judged} samples judged and saved; run the same command again to go on",
              file=sys.stderr)
        return
    print(f"judged {s.judged} samples ({s.passed} passed every test) into {out}"
          + (f"; {s.skipped} were already there" if s.skipped else "")
          + (f"; {len(s.errors)} bad input lines (see {s.error_path})" if s.errors else ""), file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """The command line around `judge_file`: exit status 0, 1 (bad input lines), 2 (unusable
    problems or results file), 130 (interrupted; the same command goes on)."""
    settings, files = parse_args(argv)
    try:
        problems = tests_by_problem(files.problems, settings.split)
    except (OSError, ValueError, ConnectionError) as exc:
        print(f"cannot load problems from {files.problems!r}: {exc}", file=sys.stderr)
        return 2
    try:
        summary = judge_file(problems, files.samples, files.out, judge=settings.judge, split=settings.split,
                             workers=settings.workers, timeout=settings.timeout,
                             total_timeout=settings.total_timeout, memory_mb=settings.memory_mb,
                             progress=not files.no_progress,
                             hide=(files.problems,) if Path(files.problems).exists() else ())
    except KeyboardInterrupt:
        return 130
    except (OSError, ValueError) as exc:
        print(f"cannot judge into {files.out}: {exc}", file=sys.stderr)
        return 2
    return 1 if summary.errors else 0


if __name__ == "__main__":
    sys.exit(main())
