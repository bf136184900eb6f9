"""Training throughput of GPT-Neo: stock transformers against the fast path, in ONE run on one device.

    python benchmarks/train_throughput.py                   # GPU: GPT-Neo-1.3B shapes, 3 x 1024 tokens
    python benchmarks/train_throughput.py --fast-batch 12   # the fast path at the largest batch that fits
    python benchmarks/train_throughput.py --model tiny      # what a CPU runs by default

Stock: transformers' eager GPT-Neo, torch AdamW, bf16 autocast. Fast: the same model with
modeling.use_fast_attention (SDPA, scale 1.0), fused AdamW, bf16 autocast and torch.compile of
each block (modeling.compile_blocks).
Both start from the same random weights and batch; the first-step losses are compared. Each step
is timed alone and the fastest is reported; on a CPU (often shared) stock and fast steps alternate.
MFU is against a bf16 (CUDA) or float32 (CPU) matrix-product peak measured in the same run.
Helpers here (machine, peaks, FLOPs, memory) are shared with sample_throughput.py.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import datetime
import gc
import json
import os
import platform
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone without installing

from appsneo_utils import modeling  # noqa: E402


@dataclass
class CommonArgs:
    """Options both benchmark scripts take."""

    model: str = field(default="auto", metadata={"help": "auto: 1.3b on CUDA, tiny elsewhere",
                                                  "choices": ("auto", "1.3b", "tiny")})
    device: str = field(default="auto", metadata={"help": "auto | cuda | cpu"})
    skip_stock: bool = field(default=False, metadata={"help": "time only the fast path (no ratio)"})
    seed: int = field(default=0, metadata={"help": "seed of the random weights and inputs"})
    out: str = field(default="", metadata={"help": "also write the results as JSON here"})


@dataclass
class Args(CommonArgs):
    batch: int = field(default=0, metadata={"help": "sequences per step (0: 3 for 1.3b, the original run's; 8 tiny)"})
    fast_batch: int = field(default=0, metadata={"help": "batch for the fast path (0: same as --batch)"})
    seq: int = field(default=0, metadata={"help": "tokens per sequence (0: 1024 for 1.3b, 256 tiny)"})
    steps: int = field(default=0, metadata={"help": "timed optimizer steps, the fastest reported (0: 10 CUDA, 5 CPU)"})
    warmup: int = field(default=0, metadata={"help": "untimed steps first (0: 3 on CUDA for compile, 1 on CPU)"})
    compile: str = field(default="auto", metadata={"help": "torch.compile the fast path's blocks (auto: on CUDA)",
                                                   "choices": ("auto", "on", "off")})
    attention: str = field(default="sdpa", metadata={"help": "fast attention backend",
                                                     "choices": ("sdpa", "flex")})


def parse(cls, argv=None):
    """A dataclass of options from the command line (one --flag per field; help and choices from metadata)."""
    parser = argparse.ArgumentParser(description=sys.modules[cls.__module__].__doc__.splitlines()[0])
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool", bool):
            parser.add_argument(flag, action="store_true", help=f.metadata["help"])
        else:
            kind = {"int": int, "float": float}.get(str(f.type), str)
            parser.add_argument(flag, type=kind, default=f.default, help=f.metadata["help"],
                                choices=f.metadata.get("choices"))
    return cls(**vars(parser.parse_args(argv)))


# ---------------------------------------------------------------------------------------------- shared helpers


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def setup(args) -> tuple[torch.device, bool, str]:
    """(device, on CUDA?, model name) from --device and --model ("auto": 1.3b on CUDA, tiny elsewhere)."""
    device = pick_device(args.device)
    cuda = device.type == "cuda"
    return device, cuda, args.model if args.model != "auto" else ("1.3b" if cuda else "tiny")


def machine(device: torch.device) -> str:
    """The accelerator's name, or the CPU's model and core count."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (1 of {torch.cuda.device_count()} GPUs)"
    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"CPU: {model}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device: torch.device) -> tuple[float, str]:
    """(FLOP/s, what was measured): bf16 8192^3 products on CUDA, float32 1024^3 on a CPU."""
    n, dtype = (8192, torch.bfloat16) if device.type == "cuda" else (1024, torch.float32)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(10):
            a @ b
        sync(device)
        best = min(best, (time.perf_counter() - start) / 10)
    name = "bf16" if dtype == torch.bfloat16 else "float32"
    return 2 * n**3 / best, f"{name} {n}x{n}x{n} matmul"


class PeakMemory:
    """Peak memory of one phase: allocator peak on CUDA, the process's peak RSS so far on a CPU."""

    def __init__(self, device):
        self.device = device

    def __enter__(self):
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            self.gib = torch.cuda.max_memory_allocated(self.device) / 2**30
            self.what = "GPU allocator peak"
        else:  # ru_maxrss is KiB on Linux, and never goes down: an upper bound for later phases
            self.gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
            self.what = "process peak RSS so far"
        return False


def neo_config(name: str):
    """A GPTNeoConfig: '1.3b' (EleutherAI/gpt-neo-1.3B's shapes) or 'tiny' (modeling.TINY_CONFIG)."""
    from transformers import GPTNeoConfig

    if name == "1.3b":
        config = GPTNeoConfig(**modeling.GPT_NEO_1P3B)
    elif name == "tiny":
        # The tiny tokenizer's only special token, EOS, is id 0.
        config = GPTNeoConfig(vocab_size=modeling.TINY_VOCAB, bos_token_id=0, eos_token_id=0, **modeling.TINY_CONFIG)
    else:
        raise ValueError(f"--model must be auto, 1.3b or tiny, got {name!r}")
    config._attn_implementation = "eager"  # stock: the only attention transformers 5 has for GPT-Neo
    return config


def build_model(config, device, dtype=torch.float32, seed=0):
    """Random weights, the same for the same seed, made directly on `device`."""
    from transformers import GPTNeoForCausalLM

    torch.manual_seed(seed)
    with torch.device(device):  # a copy of the config: use_fast_attention changes the model's own
        model = GPTNeoForCausalLM(copy.deepcopy(config))
    return model.to(dtype)


def matmul_params(config) -> int:
    """Weights used in matrix products per token: attention and MLP projections, and the LM head."""
    hidden, inner = config.hidden_size, config.intermediate_size or 4 * config.hidden_size
    return config.num_layers * (4 * hidden * hidden + 2 * hidden * inner) + config.vocab_size * hidden


def forward_flops(config, length: int, start: int = 0) -> float:
    """FLOPs of one sequence's forward over positions start..length-1 (causal; local layers see a window)."""
    positions = torch.arange(start, length, dtype=torch.float64) + 1  # keys each position sees
    per_layer = {"global": positions.sum(), "local": positions.clamp(max=config.window_size).sum()}
    attention = sum(4 * config.hidden_size * per_layer[kind] for kind in config.attention_layers)
    return float(2 * matmul_params(config) * (length - start) + attention)


def header(device, args_obj) -> dict:
    info = {
        "date": datetime.date.today().isoformat(),
        "machine": machine(device),
        "torch": torch.__version__,
        "transformers": __import__("transformers").__version__,
        "args": dataclasses.asdict(args_obj),
    }
    print(f"{info['date']} | {info['machine']} | torch {info['torch']} | transformers {info['transformers']}")
    return info


def report(rows, peak, unit="tokens/s"):
    """Print the stock/fast table and the ratio."""
    print(f"\n{'':<46}{unit:>14}{'ms/step':>11}{'MFU':>8}{'peak mem':>11}")
    for name, row in rows.items():
        print(f"{name + ' (' + row['label'] + ')':<46}{row['rate']:>14,.0f}{row['ms']:>11.1f}"
              f"{100 * row['mfu']:>7.1f}%{row['mem_gib']:>8.2f} GiB")
    if len(rows) == 2:
        print(f"ratio fast / stock: {rows['fast']['rate'] / rows['stock']['rate']:.2f}x")
    print(f"MFU against the measured peak {peak[0] / 1e12:.2f} TFLOP/s ({peak[1]}); memory: "
          f"{next(iter(rows.values()))['mem_what']}")


def readme_row(info, rows, shape: str, last: str) -> str:
    """The results table row for benchmarks/README.md, from the numbers just measured."""
    phases = list(rows)

    def each(fmt):
        return " / ".join(fmt(rows[p]) for p in phases)

    ratio = f"{rows['fast']['rate'] / rows['stock']['rate']:.2f}x" if len(rows) == 2 else "-"
    rates = [f"{rows[p]['rate']:,.0f}" if p in rows else "-" for p in ("stock", "fast")]
    cells = [info["date"], info["machine"], shape, *rates, ratio,
             each(lambda r: f"{100 * r['mfu']:.1f}%") + f" of {info['peak_flops'] / 1e12:.3g} TFLOP/s",
             each(lambda r: f"{r['mem_gib']:.2f}") + " GiB", last]
    return "| " + " | ".join(cells) + " |"


def finish(info, rows, peak, *, shape: str, last: str, out: str, **measured) -> None:
    """Complete the results (peak, what else was `measured`, rows), print the README row, write --out."""
    info.update(peak_flops=peak[0], peak_what=peak[1], **measured, results=rows)
    print("benchmarks/README.md row:\n" + readme_row(info, rows, shape, last))
    if out:
        Path(out).write_text(json.dumps(info, indent=2))


# ---------------------------------------------------------------------------------------------- training


class TrainRun:
    """One model, optimizer and random batch; `step()` is one AdamW step, timed alone."""

    def __init__(self, config, device, args, *, batch, fast):
        self.device, self.batch, self.seq = device, batch, args.seq
        self.model = build_model(config, device, seed=args.seed).train()
        if fast:
            modeling.use_fast_attention(self.model, args.attention)
            self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-5, fused=True)
            if args.compile == "on":  # main() has resolved "auto"
                modeling.compile_blocks(self.model)
        else:
            self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-5)
        data = torch.randint(config.vocab_size, (batch, args.seq), generator=torch.Generator().manual_seed(args.seed))
        self.data = data.to(device)
        self.times, self.first_loss = [], None

    def step(self, timed=True):
        sync(self.device)
        start = time.perf_counter()
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            loss = self.model(input_ids=self.data, labels=self.data, use_cache=False).loss
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        sync(self.device)
        if timed:
            self.times.append(time.perf_counter() - start)
        if self.first_loss is None:
            self.first_loss = float(loss.detach())

    def row(self, memory):
        best = min(self.times)  # the least disturbed step (a shared machine only ever slows one down)
        mean = sum(self.times) / len(self.times)
        return dict(rate=self.batch * self.seq / best, ms=1000 * best, mean_ms=1000 * mean,
                    first_loss=self.first_loss, mem_gib=memory.gib, mem_what=memory.what, batch=self.batch)


def train_rows(config, device, args, phases, batches):
    """{phase: row}: on CUDA one phase after the other (own memory peak); on a CPU, which is often
    shared, both at once with their steps alternating, so that both see the same load."""
    groups = [[phase] for phase in phases] if device.type == "cuda" else [phases]
    rows = {}
    for group in groups:
        with PeakMemory(device) as memory:  # collects the previous group's garbage first
            runs = {p: TrainRun(config, device, args, batch=batches[p], fast=p == "fast") for p in group}
            for timed, count in ((False, args.warmup), (True, args.steps)):
                for _ in range(count):
                    for run in runs.values():
                        run.step(timed)
        rows.update((phase, run.row(memory)) for phase, run in runs.items())
        del runs, run
    return rows


def main(argv=None):
    args = parse(Args, argv)
    device, cuda, name = setup(args)
    big = name == "1.3b"
    args.batch = args.batch or (3 if big else 8)
    args.fast_batch = args.fast_batch or args.batch
    args.seq = args.seq or (1024 if big else 256)
    args.steps = args.steps or (10 if cuda else 5)
    args.warmup = max(1, args.warmup or (3 if cuda else 1))
    if args.compile == "auto":
        args.compile = "on" if cuda else "off"
    compiled = args.compile == "on"
    config = neo_config(name)
    if args.seq > config.max_position_embeddings:
        raise ValueError(f"--seq {args.seq} exceeds the model's {config.max_position_embeddings} positions")
    info = header(device, args)
    peak = matmul_peak(device)
    precision = "bf16 autocast, float32 weights" if cuda else "float32 (a CPU: no bf16 autocast)"
    print(f"model: GPT-Neo {name} shapes, random weights, {matmul_params(config) / 1e6:,.1f}M matmul params; "
          f"{precision}; {args.seq} tokens per sequence")
    flops_per_token = 3 * forward_flops(config, args.seq) / args.seq  # forward + backward = 3 forwards
    labels = {"stock": "eager, AdamW",
              "fast": f"{args.attention}{', compile' if compiled else ''}, fused AdamW"}
    phases = ["fast"] if args.skip_stock else ["stock", "fast"]
    rows = train_rows(config, device, args, phases, {"stock": args.batch, "fast": args.fast_batch})
    for phase, row in rows.items():
        row["mfu"] = row["rate"] * flops_per_token / peak[0]
        row["label"] = f"{labels[phase]}, batch {row['batch']}"
    report(rows, peak)
    if len(rows) == 2:
        a, b = rows["stock"]["first_loss"], rows["fast"]["first_loss"]
        same = " (same batch)" if args.batch == args.fast_batch else " (batches differ: not comparable)"
        print(f"first-step loss: stock {a:.5f}, fast {b:.5f}, relative difference {abs(a - b) / abs(a):.2e}{same}")
    if not cuda:
        print("note: this is a CPU; the goal (fast >= 2.5x stock) is for an H100/H200 at GPT-Neo-1.3B shapes")
    batches = " / ".join(dict.fromkeys(str(row["batch"]) for row in rows.values()))  # "3", or "3 / 12"
    finish(info, rows, peak, shape=f"{name}, {batches} x {args.seq}, {'bf16 autocast' if cuda else 'float32'}",
           last=" / ".join(f"{row['first_loss']:.5f}" for row in rows.values()), out=args.out,
           flops_per_token=flops_per_token)
    return rows


if __name__ == "__main__":
    main()
