"""Tokenising the pooled training set: today's path (from a commit) against Dataset.map and its cache.

    python benchmarks/tokenise_throughput.py                      # 230,000 examples: before, first, second launch
    python benchmarks/tokenise_throughput.py --examples 20000 --phases first,second

The set is synthetic and deterministic (seed 0): 10,000 problems in APPS's shape (5,000 train then
5,000 test, ~23 solutions each, 230,000 in all), each modelled on a real problem of
../shared/data/apps_sample (its question length, starter code, fn_name and solution lengths) with
text cut from the real questions and solutions there. The tokenizer is GPT-Neo's: the GPT-2
byte-level BPE (50,257 tokens) in ../shared/data/gpt2_tokenizer, as GPT2TokenizerFast.

Each phase runs in its own process, as a launch does, and times `train_data.prepare_data` on the
'-all' replica's settings (block_size 1024, split_rule original): *before* is train_data.py as it
was at --before (one tokenizer call per text); *first* and *second* are today's, on an empty and
then on the filled cache. The ids of every phase are hashed and must agree.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from appsneo_utils.data import load_apps  # noqa: E402
from appsneo_utils.paths import SHARED_DATA  # noqa: E402

BEFORE = "8b260ce37691a90006c2bcf33d795f5080dcfab3"  # the last commit before train_data used datasets
SAMPLE = SHARED_DATA / "apps_sample" / "apps_train_sample.jsonl"
TOKENIZER = SHARED_DATA / "gpt2_tokenizer"
# The '-all' replica (recipes "replica", profile "full"): what a full run prepares.
SETTINGS = dict(data="synthetic", all_data=True, split_rule="original", block_size=1024, max_train_problems=None,
                val_problems=500, seed=0, packing=False)


def gpt2_tokenizer():
    from transformers import GPT2TokenizerFast

    lines = (TOKENIZER / "merges.txt").read_text(encoding="utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines if line.strip() and not line.startswith("#version")]
    # vocab=/merges= (not vocab_file=/merges_file=, which transformers 5 turns into an empty tokenizer)
    return GPT2TokenizerFast(vocab=json.loads((TOKENIZER / "vocab.json").read_text(encoding="utf-8")), merges=merges)


def synthetic_frame(examples: int, problems: int, seed: int = 0) -> pd.DataFrame:
    """`problems` APPS-like problems with `examples` solutions in all, modelled on the real sample."""
    real = load_apps(SAMPLE, verbose=False).to_dict("records")
    questions = "\n".join(r["question"] for r in real)
    code = "".join(s for r in real for s in r["solutions_list"])
    rng = np.random.default_rng(seed)
    # APPS: ~232k solutions over 10,000 problems, few for most and hundreds for some (a long tail)
    weights = rng.lognormal(0.0, 1.0, problems)
    counts = np.maximum(1, np.floor(weights / weights.sum() * examples)).astype(int)
    short = examples - counts.sum()
    if short > 0:
        counts[np.argsort(-weights)[:short]] += 1
    while counts.sum() > examples:  # the floor of 1 can overshoot on tiny runs
        counts[np.argmax(counts)] -= 1
    rows = []
    for pid, n in enumerate(counts):
        model = real[rng.integers(len(real))]
        q_len = int(len(model["question"]) * rng.uniform(0.8, 1.2))
        start = int(rng.integers(0, len(questions) - q_len))
        lengths = rng.choice([len(s) for s in model["solutions_list"]], size=n) * rng.uniform(0.8, 1.2, size=n)
        starts = rng.integers(0, len(code) - int(lengths.max()) - 1, size=n)
        split, number = ("train", pid) if pid < problems // 2 else ("test", pid - problems // 2)
        question = f"Problem {pid}.\n" + questions[start:start + q_len]
        rows.append({"split": split, "problem_id": number, "question": question,
                     "starter_code": model["starter_code"], "fn_name": model["fn_name"],
                     "solutions_list": [code[a:a + int(k)] for a, k in zip(starts, lengths)]})
    return pd.DataFrame(rows)


def load_before(commit: str):
    """train_data.py as it was at `commit`, imported inside the package (its relative imports resolve)."""
    source = subprocess.run(["git", "show", f"{commit}:appsneo_utils/train_data.py"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout
    spec = importlib.util.spec_from_loader("appsneo_utils._train_data_before", loader=None)
    module = importlib.util.module_from_spec(spec)
    module.__package__ = "appsneo_utils"
    sys.modules[spec.name] = module
    exec(compile(source, f"{commit[:8]}:appsneo_utils/train_data.py", "exec"), module.__dict__)
    return module


def ids_digest(data) -> str:
    digest = hashlib.sha256()
    for part in (data.train, data.val):
        for row in part:
            digest.update(np.asarray(row["input_ids"], np.int32).tobytes() + b"|")
            digest.update(np.asarray(row["labels"], np.int32).tobytes() + b"#")
    return digest.hexdigest()


def run_phase(args) -> dict:
    """One launch: build the set, time prepare_data, report (printed as one JSON line)."""
    frame = synthetic_frame(args.examples, args.problems)
    tokenizer = gpt2_tokenizer()
    settings = SimpleNamespace(**{**SETTINGS, "block_size": args.block_size})
    load_start = os.getloadavg()[0]
    start = time.perf_counter()
    if args.phase == "before":
        data = load_before(args.before).prepare_data(settings, tokenizer, frame=frame, verbose=False)
    else:
        from appsneo_utils import train_data

        data = train_data.prepare_data(settings, tokenizer, frame=frame, verbose=False, cache=True,
                                       cache_dir=args.cache_dir, num_proc=args.num_proc)
    seconds = time.perf_counter() - start
    self_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    c = data.counts
    return {"phase": args.phase, "seconds": seconds, "load_start": load_start, "load_end": os.getloadavg()[0],
            "examples": c["train"]["examples"] + c["val"]["examples"], "kept": c["train"]["kept"] + c["val"]["kept"],
            "dropped": c["train"]["dropped"] + c["val"]["dropped"],
            "truncated": c["train"]["truncated"] + c["val"]["truncated"],
            "tokens": c["train"]["tokens"] + c["val"]["tokens"], "tokenised": c.get("tokenised", ""),
            "peak_rss_gib": max(self_kib, children_kib) / 2**20, "ids": ids_digest(data)}


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    import datasets
    import tokenizers
    import transformers

    return (f"{platform.node()}: {cpu}, {os.cpu_count()} cores, {memory:.0f} GiB; Python {platform.python_version()}, "
            f"tokenizers {tokenizers.__version__}, transformers {transformers.__version__}, "
            f"datasets {datasets.__version__}")


def main(argv=None) -> list:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", type=int, default=230_000, help="examples (solutions) in all")
    parser.add_argument("--problems", type=int, default=10_000, help="problems, half train then half test")
    parser.add_argument("--block-size", type=int, default=1024)
    parser.add_argument("--phases", default="before,first,second", help="before, first, second (comma-separated)")
    parser.add_argument("--before", default=BEFORE, help="the commit whose train_data.py is 'before'")
    parser.add_argument("--num-proc", type=int, default=None, help="Dataset.map processes (default: train_data's)")
    parser.add_argument("--cache-dir", default=None, help="default: a temporary folder, removed at the end")
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not (SAMPLE.is_file() and (TOKENIZER / "vocab.json").is_file()):
        sys.exit(f"needs the real APPS sample and the GPT-2 tokenizer in {SHARED_DATA} (beside the project)")
    if args.phase:
        print(json.dumps(run_phase(args)))
        return []
    phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    cache_dir = Path(args.cache_dir or tempfile.mkdtemp(prefix="appsneo-tokenise-"))
    if "first" in phases:
        shutil.rmtree(cache_dir, ignore_errors=True)  # the first launch starts from an empty cache
    print(f"machine: {machine()}")
    print(f"set: {args.examples:,} synthetic APPS-like examples over {args.problems:,} problems, GPT-2 BPE "
          f"(GPT-Neo's), block_size {args.block_size}; before = train_data.py at {args.before[:8]}")
    results = []
    for phase in phases:
        command = [sys.executable, __file__, "--phase", phase, "--examples", str(args.examples), "--problems",
                   str(args.problems), "--block-size", str(args.block_size), "--before", args.before,
                   "--cache-dir", str(cache_dir)] + (["--num-proc", str(args.num_proc)] if args.num_proc else [])
        out = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        if out.returncode:
            sys.exit(f"phase {phase} failed:\n{out.stderr[-3000:]}")
        result = json.loads(out.stdout.strip().splitlines()[-1])
        results.append(result)
        print(f"{phase:>6}: prepare_data {result['seconds']:7.1f} s  (load {result['load_start']:.1f} -> "
              f"{result['load_end']:.1f}; peak RSS {result['peak_rss_gib']:.1f} GiB)  {result['tokenised']}")
    first = results[0]
    print(f"examples {first['examples']:,}: {first['kept']:,} kept ({first['truncated']:,} truncated), "
          f"{first['dropped']:,} dropped, {first['tokens']:,} tokens")
    same = len({r["ids"] for r in results}) == 1
    print(f"ids and labels identical across phases: {same} (sha256 {first['ids'][:16]})")
    size = sum(f.stat().st_size for f in cache_dir.rglob("*.arrow")) / 2**20
    print(f"cache: {size:,.0f} MiB of Arrow files in {cache_dir}")
    if not args.cache_dir:
        shutil.rmtree(cache_dir, ignore_errors=True)
    if not same:
        sys.exit("the phases disagree on the ids")
    return results


if __name__ == "__main__":
    main()
