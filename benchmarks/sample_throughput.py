"""Sampling throughput of GPT-Neo: stock `model.generate` against fast_sampling.generate, in ONE run.

    python benchmarks/sample_throughput.py                # GPU: 1.3B shapes, 16 samples of 512 + 256 tokens
    python benchmarks/sample_throughput.py --model tiny   # what a CPU runs by default

Both sample the same random prompts with the same settings (top-p 0.95) and always generate
--new tokens (stock: min_new_tokens; fast: no EOS), so new tokens/s compare like for like. Each
timed fast call includes its CUDA-graph capture; stock and fast calls alternate. A greedy run of
both on float32 weights checks that they agree.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from train_throughput import (  # noqa: E402  (shared benchmark helpers)
    CommonArgs, PeakMemory, build_model, finish, forward_flops, header, matmul_params, matmul_peak, neo_config,
    parse, report, setup, sync,
)

from appsneo_utils import fast_sampling  # noqa: E402


@dataclass
class Args(CommonArgs):
    batch: int = field(default=0, metadata={"help": "samples per call (0: 16 for 1.3b, 8 tiny)"})
    prompt: int = field(default=0, metadata={"help": "prompt tokens (0: 512 for 1.3b, 64 tiny)"})
    new: int = field(default=0, metadata={"help": "new tokens per sample (0: 256 for 1.3b, 64 tiny)"})
    repeats: int = field(default=3, metadata={"help": "timed calls of each, interleaved; the fastest is reported"})
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature"})
    top_p: float = field(default=0.95, metadata={"help": "nucleus sampling (1.0: off)"})
    top_k: int = field(default=0, metadata={"help": "top-k sampling (0: off)"})
    cuda_graph: str = field(default="auto", metadata={"help": "fast path CUDA graphs (auto: on CUDA)",
                                                      "choices": ("auto", "on", "off")})
    agreement: int = field(default=32, metadata={"help": "greedy tokens compared between stock and fast (0: skip)"})


def stock_generate(model, ids, args, new, do_sample=True):
    eos = model.config.eos_token_id
    warpers = dict(temperature=args.temperature, top_p=args.top_p, top_k=args.top_k) if do_sample else {}
    return model.generate(
        input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=new, min_new_tokens=new,
        do_sample=do_sample, eos_token_id=eos, pad_token_id=eos, **warpers,
    )


def fast_generate(model, ids, args, new, do_sample=True):
    return fast_sampling.generate(
        model, ids, torch.ones_like(ids), max_new_tokens=new, do_sample=do_sample, temperature=args.temperature,
        top_p=args.top_p, top_k=args.top_k, eos_token_id=None, pad_token_id=0, cuda_graph=args.cuda_graph == "on",
    )


def timed_call(fn, device):
    """(seconds, peak memory in GiB, what the memory is) of one call."""
    with torch.no_grad(), PeakMemory(device) as memory:
        sync(device)
        start = time.perf_counter()
        out = fn()
        sync(device)
        seconds = time.perf_counter() - start
    assert out.shape[1] > 0
    return seconds, memory.gib, memory.what


def main(argv=None):
    args = parse(Args, argv)
    device, cuda, name = setup(args)
    if args.cuda_graph == "auto":
        args.cuda_graph = "on" if cuda else "off"
    big = name == "1.3b"
    args.batch = args.batch or (16 if big else 8)
    args.prompt = args.prompt or (512 if big else 64)
    args.new = args.new or (256 if big else 64)
    config = neo_config(name)
    if args.prompt + args.new > config.max_position_embeddings:
        raise ValueError(f"--prompt + --new exceeds the model's {config.max_position_embeddings} positions")
    info = header(device, args)
    peak = matmul_peak(device)
    dtype = torch.bfloat16 if cuda else torch.float32
    model = build_model(config, device, dtype=dtype, seed=args.seed).eval()
    print(f"model: GPT-Neo {name} shapes, random weights, {matmul_params(config) / 1e6:,.1f}M matmul params, "
          f"{str(dtype).replace('torch.', '')}; {args.batch} samples x ({args.prompt} prompt + {args.new} new) "
          f"tokens, top-p {args.top_p}, temperature {args.temperature}, top-k {args.top_k or 'off'}")
    prompts = torch.Generator().manual_seed(args.seed)
    ids = torch.randint(config.vocab_size, (args.batch, args.prompt), generator=prompts).to(device)
    flops = args.batch * forward_flops(config, args.prompt + args.new - 1)  # the last new token is never fed
    labels = {"stock": "model.generate, eager",
              "fast": "static cache" + (", CUDA graph" if args.cuda_graph == "on" else "")}
    runners = {"stock": stock_generate, "fast": fast_generate}
    phases = ["fast"] if args.skip_stock else ["stock", "fast"]
    calls = {phase: [] for phase in phases}
    for _ in range(args.repeats + 1):  # interleaved, so both see the same machine; call 0 warms up
        for phase in phases:
            torch.manual_seed(args.seed)
            calls[phase].append(timed_call(lambda: runners[phase](model, ids, args, args.new), device))
    rows = {}
    for phase, runs in calls.items():
        best = min(seconds for seconds, _, _ in runs[1:])
        rows[phase] = dict(rate=args.batch * args.new / best, ms=1000 * best / args.new, mfu=flops / best / peak[0],
                           mem_gib=max(gib for _, gib, _ in runs), mem_what=runs[-1][2], seconds=best,
                           first_call_s=runs[0][0], label=labels[phase])
    report(rows, peak, unit="new tokens/s")
    print("ms/step = one call's time / new tokens (prefill included); first calls: "
          + ", ".join(f"{k} {v['first_call_s']:.2f} s" for k, v in rows.items()))
    agreed = "-"
    if args.agreement and not args.skip_stock:
        # In float32: random weights give near-flat logits, whose near-ties bf16 rounding would flip.
        if dtype != torch.float32:
            model = build_model(config, device, dtype=torch.float32, seed=args.seed).eval()
        with torch.no_grad():
            a = stock_generate(model, ids, args, args.agreement, do_sample=False)[:, args.prompt:]
            b = fast_generate(model, ids, args, args.agreement, do_sample=False)[:, args.prompt:]
        same_rows = int((a == b).all(dim=1).sum())
        first_diff = (a != b).int().argmax(dim=1)[~(a == b).all(dim=1)]
        note = f"; first differences at steps {first_diff.tolist()}" if len(first_diff) else ""
        print(f"greedy agreement over {args.agreement} tokens (float32 weights): {same_rows}/{args.batch} rows "
              f"identical, {100 * float((a == b).float().mean()):.1f}% of tokens{note}")
        info["greedy_rows_identical"] = same_rows
        agreed = f"{same_rows} / {args.batch}"
    if not cuda:
        print("note: this is a CPU; the goal (fast >= 10x stock new tokens/s) is for an H100/H200 at 1.3B shapes")
    finish(info, rows, peak, shape=f"{name}, {args.batch} x ({args.prompt} + {args.new}), "
           f"{str(dtype).replace('torch.', '')}", last=agreed, out=args.out, flops_per_call=flops)
    return rows


if __name__ == "__main__":
    main()
