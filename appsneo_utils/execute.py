"""Judge many generated programs in the sandbox: a resumable batch command.

    python -m appsneo_utils.execute --problems P --samples S.jsonl --out R.jsonl [--workers N] [--timeout S]

P: any APPS source `load_apps` reads (a .jsonl/.parquet file, an original-layout folder, "mini",
"codeparrot/apps"); --split picks the split where the source has several (APPS ids repeat across
splits). S: one JSON object a line, {"problem_id", "code"} and optionally "sample_id" (default: the
row's rank among the rows of the same problem, 0, 1, ...). R: one line per judged sample with the
verdicts, APPS codes and timings. Killed at any moment and started again, it judges only what R
lacks, so every sample ends up in R exactly once. Bad lines in S are reported (stderr and
R.errors.jsonl) and the rest still runs; the exit status is then 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from .execution import DEFAULT_MEMORY_MB, DEFAULT_TIMEOUT, Executor, Job


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


def load_problems(source: str, split: str) -> dict:
    """problem_id -> {"tests", "difficulty"} from any APPS source."""
    from .data import load_apps

    frame = load_apps(source, split=split, verbose=False)
    problems = {}
    for row in frame.itertuples(index=False):
        problems[int(row.problem_id)] = {"tests": row.tests, "difficulty": row.difficulty}
    return problems


def complete_lines(path, *, repair: bool = False) -> list[bytes]:
    """The whole lines of a JSONL file: a partly written last line (a kill mid-write) is left out,
    and with repair cut off the file, so that appending can go on."""
    path = Path(path)
    if not path.is_file():
        return []
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if repair and end != len(data):
        with open(path, "rb+") as handle:
            handle.truncate(end)
    return data[:end].splitlines()


def resume(out: Path) -> set[str]:
    """Keys already judged in `out`; a partly written last line (a kill mid-write) is cut off."""
    done: set[str] = set()
    for number, line in enumerate(complete_lines(out, repair=True), 1):
        try:
            row = json.loads(line)
            done.add(_key(row["problem_id"], row["sample_id"]))
        except (ValueError, KeyError, TypeError):
            print(f"{out}:{number}: unreadable result line, ignored (that sample is judged again)",
                  file=sys.stderr)
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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m appsneo_utils.execute", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--problems", required=True, help="APPS source: file, folder, 'mini' or 'codeparrot/apps'")
    parser.add_argument("--samples", required=True, type=Path, help="JSONL of {problem_id, code[, sample_id]}")
    parser.add_argument("--out", required=True, type=Path, help="results JSONL (appended to; resumable)")
    parser.add_argument("--split", default="test", choices=("train", "test"),
                        help="split of the problems source (default: test)")
    parser.add_argument("--workers", type=int, default=None, help="parallel workers (default: CPU count)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds per test (default: 4)")
    parser.add_argument("--total-timeout", type=float, default=None, help="seconds per program (default: none)")
    parser.add_argument("--memory-mb", type=int, default=DEFAULT_MEMORY_MB, help="memory per program in MiB")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.timeout <= 0:
        parser.error(f"--timeout must be positive, got {args.timeout}")
    if args.workers is not None and args.workers < 1:
        parser.error(f"--workers must be at least 1, got {args.workers}")
    if not args.samples.is_file():
        parser.error(f"--samples {args.samples} does not exist")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from tqdm.auto import tqdm

    try:
        problems = load_problems(args.problems, args.split)
    except (OSError, ValueError, ConnectionError) as exc:
        print(f"cannot load problems from {args.problems!r}: {exc}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    done = resume(args.out)
    pending, errors, skipped = scan_samples(args.samples, problems, done)
    error_path = args.out.with_name(args.out.name + ".errors.jsonl")
    with open(error_path, "w", encoding="utf-8") as handle:
        for e in errors:
            print(f"{args.samples}:{e['line']}: {e['error']}; skipped", file=sys.stderr)
            handle.write(json.dumps({"samples": str(args.samples), **e}) + "\n")
    if skipped:
        print(f"resuming: {skipped} samples already in {args.out}", file=sys.stderr)
    total = sum(p.n_tests for p in pending)
    options = {"timeout": args.timeout, "total_timeout": args.total_timeout, "memory_mb": args.memory_mb}
    judged = passed = 0
    bar = tqdm(total=total, unit="test", desc="judging", disable=args.no_progress, dynamic_ncols=True)
    fd = os.open(args.out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        with Executor(args.workers) as executor:
            for item, result in executor.run_many(jobs(args.samples, pending, problems, **options),
                                                  progress=bar.update):
                row = {"problem_id": item.problem_id, "sample_id": item.sample_id,
                       "difficulty": problems[item.problem_id]["difficulty"], **result.to_dict()}
                os.write(fd, (json.dumps(row) + "\n").encode())  # one write per line: resumable
                judged += 1
                passed += result.passed
                bar.set_postfix(passed=f"{passed}/{judged}", refresh=False)
    except KeyboardInterrupt:
        print(f"\ninterrupted: {judged} samples judged and saved; run the same command again to go on",
              file=sys.stderr)
        return 130
    finally:
        os.close(fd)
        bar.close()
    print(f"judged {judged} samples ({passed} passed every test) into {args.out}"
          + (f"; {skipped} were already there" if skipped else "")
          + (f"; {len(errors)} bad input lines (see {error_path})" if errors else ""), file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
