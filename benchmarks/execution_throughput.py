"""Throughput of the sandboxed executor against a fresh-interpreter-per-test baseline.

    .venv/bin/python benchmarks/execution_throughput.py [--per-problem 1] [--workers N]

Judges the human solutions of the shared real problems (../shared/data/apps_sample, when present)
and of the embedded mini set, two ways in one run, both on all cores:
- kit: `appsneo_utils.execution.Executor` (warm workers, one fork per test);
- baseline: a new `python` process per test (`subprocess.run`, N at a time), the program run as a
  script on the test's stdin, or a tiny driver that calls the function (same import prelude, minus
  numpy, whose import alone would cost the baseline about 0.1 s a test).
Prints tests/s for both, the ratio, CPU use, and how often the two agree on verdicts.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from appsneo_utils._sandbox_worker import PRELUDE as WORKER_PRELUDE  # noqa: E402  (the workers' own prelude)
from appsneo_utils.data import load_apps  # noqa: E402
from appsneo_utils.execution import (PASSED, RUNTIME_ERROR, TIMEOUT, WRONG_ANSWER, Executor,  # noqa: E402
                                     compare_return, compare_stdout)

SHARED = ROOT.parent / "shared" / "data" / "apps_sample" / "apps_train_sample.jsonl"
PRELUDE = WORKER_PRELUDE.replace("try:\n    import numpy as np\nexcept ImportError:\n    pass\n", "")
DRIVER = PRELUDE + """
import json
_args = json.loads(sys.stdin.read())
_code = open(sys.argv[1]).read()
_g = {k: v for k, v in globals().items() if not k.startswith("_")}
_g["__name__"] = "__main__"
exec(compile(_code, "solution.py", "exec"), _g)
_f = getattr(_g["Solution"](), sys.argv[2]) if "Solution" in _g else _g[sys.argv[2]]
_r = _f(*_args)
print(json.dumps(_r))
"""


def collect(per_problem: int) -> list[tuple]:
    """(key, code, tests) for the first `per_problem` human solutions of every problem with tests."""
    sources = [("mini", "train"), ("mini", "test")]
    if SHARED.is_file():
        sources.insert(0, (str(SHARED), "train"))
    else:
        print(f"note: {SHARED} is absent; benchmarking the mini set only")
    jobs = []
    for source, split in sources:
        frame = load_apps(source, split=split, verbose=False)
        for row in frame.itertuples():
            if row.tests is None:
                continue
            for i, code in enumerate(row.solutions_list[:per_problem]):
                jobs.append(((Path(source).name, split, row.problem_id, i), code, row.tests))
    return jobs


def baseline_test(code_path: str, fn_name: str | None, test_input, expected, driver: str, timeout: float) -> str:
    """Verdict of one test in a brand-new interpreter."""
    if fn_name is None:
        cmd, data = [sys.executable, code_path], test_input
    else:
        cmd, data = [sys.executable, driver, code_path, fn_name], json.dumps(test_input)
    try:
        proc = subprocess.run(cmd, input=data, capture_output=True, text=True, timeout=timeout, cwd=tempfile.gettempdir())
    except subprocess.TimeoutExpired:
        return TIMEOUT
    if proc.returncode != 0:
        return RUNTIME_ERROR
    if fn_name is None:
        return PASSED if compare_stdout(proc.stdout, expected) else WRONG_ANSWER
    try:
        return PASSED if compare_return(json.loads(proc.stdout), expected) else WRONG_ANSWER
    except ValueError:
        return WRONG_ANSWER


def run_baseline(jobs, workers: int, timeout: float, folder: Path) -> tuple[dict, float]:
    driver = folder / "driver.py"
    driver.write_text(DRIVER)
    tasks = []
    for n, (key, code, tests) in enumerate(jobs):
        path = folder / f"prog{n}.py"
        path.write_text(code)
        for i, (x, y) in enumerate(zip(tests["inputs"], tests["outputs"])):
            tasks.append((key, i, str(path), tests.get("fn_name"), x, y))
    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        verdicts = list(pool.map(lambda t: baseline_test(t[2], t[3], t[4], t[5], str(driver), timeout), tasks))
    seconds = time.perf_counter() - start
    out: dict = {}
    for (key, i, *_), verdict in zip(tasks, verdicts):
        out.setdefault(key, []).append(verdict)
    return out, seconds


def cpu_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--per-problem", type=int, default=1, help="human solutions per problem (default 1)")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="parallelism of both (default: CPUs)")
    parser.add_argument("--timeout", type=float, default=4.0)
    args = parser.parse_args()
    jobs = collect(args.per_problem)
    n_tests = sum(len(t["inputs"]) for _, _, t in jobs)
    cpus = os.cpu_count()
    print(f"{len(jobs)} programs, {n_tests} tests, {args.workers} workers on {cpus} CPUs, "
          f"load average before: {os.getloadavg()[0]:.2f}")

    cpu0, start = cpu_children(), time.perf_counter()
    with Executor(args.workers) as executor:
        kit = {key: r.verdicts for key, r in executor.run_many(jobs, timeout=args.timeout)}
    kit_s = time.perf_counter() - start
    kit_cpu = cpu_children() - cpu0

    cpu0 = cpu_children()
    with tempfile.TemporaryDirectory() as folder:
        base, base_s = run_baseline(jobs, args.workers, args.timeout, Path(folder))
    base_cpu = cpu_children() - cpu0

    same = sum(kit[k] == base[k] for k in kit)
    kit_rate, base_rate = n_tests / kit_s, n_tests / base_s
    print(f"kit       {kit_rate:8.1f} tests/s  ({kit_s:6.2f} s wall, worker start-up included; "
          f"CPU busy {kit_cpu / (kit_s * cpus):.0%} of {cpus} cores)")
    print(f"baseline  {base_rate:8.1f} tests/s  ({base_s:6.2f} s wall; "
          f"CPU busy {base_cpu / (base_s * cpus):.0%} of {cpus} cores)")
    print(f"ratio     {kit_rate / base_rate:8.1f}x")
    print(f"programs with identical per-test verdicts: {same}/{len(kit)} "
          f"(differences: the kit's APPS leniencies such as top-level return/nonlocal, and its prelude)")
    for key in [k for k in kit if kit[k] != base[k]][:8]:
        print(f"  differs: {key}: kit {kit[key]} baseline {base[key]}")
    passed = sum(all(v == PASSED for v in vs) for vs in kit.values())
    print(f"kit: {passed}/{len(kit)} programs pass every test")


if __name__ == "__main__":
    main()
