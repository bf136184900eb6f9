"""Probe (a) of notebook 05: how likely is the human solution under each prompt format?

The mean per-token negative log-likelihood of a reference solution given its prompt, no sampling. The
target is the same in every format (the solution re-indented as the model trained on it), so a
difference between formats is the prompt's doing.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from .probes import PROBE_FORMATS, render_all
from .prompts import reindent
from .sampling import context_size, encode_prompt


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

