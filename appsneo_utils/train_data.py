"""Training examples for notebook 02: the split rules, encoding, packing, batches.

Two split rules (TrainSettings.split_rule): "grouped" holds out whole problems, shuffled with the seed;
"original" is the `--all_data true` cut of gpt-code-clippy's run_clm_apps.py (branch `main`): train then
test pooled, one example per solution in dataset order, the first int(0.9 * n) examples trained and the
rest validation, unshuffled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .prompts import encode_example, training_examples

if TYPE_CHECKING:
    from .training import TrainSettings

ORIGINAL_TRAIN_SHARE = 0.9  # run_clm_apps.py: split_id = int(0.9 * len(whole_dataset))


def split_problems(keys, val_problems: int, seed: int):
    """(train keys, validation keys): whole problems, shuffled with the seed; never the tail of the rows."""
    keys = sorted(set((str(s), int(p)) for s, p in keys))
    if len(keys) < 2:
        raise ValueError(f"need at least 2 problems to hold some out for validation, got {len(keys)}")
    n_val = min(val_problems, len(keys) // 2)  # at most half: the rest must train
    order = np.random.default_rng(seed).permutation(len(keys))
    shuffled = [keys[i] for i in order]
    return shuffled[n_val:], shuffled[:n_val]


def dataset_order(keys) -> list:
    """(split, problem_id) keys as the original loader read them: train then test, each by problem id.

    gpt-code-clippy's apps.py walks sorted([...os.walk("APPS/train")]) then test; folder names are
    zero-padded ids (0000-4999), so sorting them is sorting by id.
    """
    rank = {"train": 0, "test": 1}
    return sorted(set((str(s), int(p)) for s, p in keys), key=lambda k: (rank.get(k[0], 2), k[0], k[1]))


def original_cut(example_keys: list) -> tuple[int, list, list]:
    """run_clm_apps.py's `--all_data true` split of the pooled examples, given each example's (split, problem_id).

    (cut, seen, held_out): the first int(0.9 * n) examples train, the rest validate, unshuffled; `seen`
    lists the problems with any example before the cut, `held_out` those with any after it (a problem
    can be in both), each in dataset order.
    """
    cut = int(ORIGINAL_TRAIN_SHARE * len(example_keys))  # int() truncates, as the original does
    seen = list(dict.fromkeys(example_keys[:cut]))
    held_out = list(dict.fromkeys(example_keys[cut:]))
    return cut, seen, held_out


@dataclass
class PreparedData:
    """Encoded examples (input_ids, labels) and which problems went where."""

    train: list
    val: list
    train_problems: list
    val_problems: list
    counts: dict
    sample: dict | None = None  # one unpacked training example, to show the masking
    problems: list = field(default_factory=list)  # every (split, problem_id) with solutions, in dataset order

    @property
    def test_problems_trained(self) -> int:
        """APPS-test problems among those trained on (all_data=True): their test scores are contaminated."""
        return sum(1 for split, _ in self.train_problems if split == "test")

    def test_problems_unseen(self) -> list:
        """APPS-test problems of the data that no training example came from (their scores stay clean)."""
        trained = set(self.train_problems)
        return [k for k in self.problems if k[0] == "test" and k not in trained]

    def summary(self) -> str:
        c = self.counts
        head = f"problems: {c['problems']} with solutions ({c['no_solutions']} without, skipped) -> "
        if c["split_rule"] == "original":
            both = len(set(self.train_problems) & set(self.val_problems))
            head += (f"split_rule original: {c['pooled_examples']} examples pooled (train then test, one per "
                     f"solution), the first int(0.9 x {c['pooled_examples']}) = {c['cut']} trained, the rest "
                     f"validation, unshuffled; {len(self.train_problems)} problems seen, "
                     f"{len(self.val_problems)} in validation ({both} on both sides)")
        else:
            head += f"{len(self.train_problems)} train, {len(self.val_problems)} validation (whole problems)"
        lines = [head]
        for part in ("train", "val"):
            k = c[part]
            lines.append(
                f"{part:>5}: {k['examples']} examples, {k['kept']} kept ({k['truncated']} truncated at the end of "
                f"the answer), {k['dropped']} dropped (prompt + block_size/4 answer tokens > "
                f"block_size={c['block_size']}), {k['tokens']:,} tokens"
            )
        if c.get("packed_blocks") is not None:
            lines.append(f"packing: {c['train']['kept']} train examples in {c['packed_blocks']} blocks")
        return "\n".join(lines)


def _encode(examples, tokenizer, block_size):
    kept, stats = [], {"examples": len(examples), "kept": 0, "truncated": 0, "dropped": 0, "tokens": 0}
    for example in examples:
        encoded = encode_example(tokenizer, example, block_size)
        if encoded is None:
            stats["dropped"] += 1
            continue
        stats["kept"] += 1
        stats["truncated"] += int(encoded["truncated"])
        stats["tokens"] += len(encoded["input_ids"])
        kept.append({"input_ids": encoded["input_ids"], "labels": encoded["labels"], "truncated": encoded["truncated"]})
    return kept, stats


def pack(examples: list, block_size: int) -> list:
    """Greedy packing in order: whole examples (with their EOS and masks) concatenated up to block_size."""
    blocks, ids, labels = [], [], []
    for example in examples:
        if ids and len(ids) + len(example["input_ids"]) > block_size:
            blocks.append({"input_ids": ids, "labels": labels})
            ids, labels = [], []
        ids = ids + example["input_ids"]
        labels = labels + example["labels"]
    if ids:
        blocks.append({"input_ids": ids, "labels": labels})
    return blocks


def prepare_data(settings: "TrainSettings", tokenizer, frame=None, *, verbose: bool = True) -> PreparedData:
    """Load APPS, split by settings.split_rule, encode with prompts.encode_example (prompt masked, EOS added)."""
    from .data import has_solutions, load_apps

    if frame is None:
        frame = load_apps(settings.data, split="all" if settings.all_data else "train", verbose=verbose)
    solved = has_solutions(frame)
    usable = frame[solved]
    rows = {(str(r["split"]), int(r["problem_id"])): r for r in usable.to_dict("records")}
    counts = {"problems": len(rows), "no_solutions": int((~solved).sum()), "block_size": settings.block_size,
              "split_rule": settings.split_rule, "packed_blocks": None}
    if settings.split_rule == "original":
        if not settings.all_data or settings.max_train_problems is not None:
            raise ValueError("split_rule='original' is the '-all' run's cut of the pooled train and test examples: "
                             "set all_data=True and leave max_train_problems unset (or use split_rule='grouped')")
        pooled = [e for key in dataset_order(rows) for e in training_examples(rows[key])]
        cut, train_keys, val_keys = original_cut([(e.split, e.problem_id) for e in pooled])
        train_examples, val_examples = pooled[:cut], pooled[cut:]
        counts.update(pooled_examples=len(pooled), cut=cut)
    else:
        train_keys, val_keys = split_problems(rows, settings.val_problems, settings.seed)
        if settings.max_train_problems is not None:
            train_keys = train_keys[: settings.max_train_problems]
        train_examples = [e for key in train_keys for e in training_examples(rows[key])]
        val_examples = [e for key in val_keys for e in training_examples(rows[key])]
    train, train_stats = _encode(train_examples, tokenizer, settings.block_size)
    val, val_stats = _encode(val_examples, tokenizer, settings.block_size)
    sample = next((e for e in train if not e["truncated"]), train[0] if train else None)
    counts.update(train=train_stats, val=val_stats)
    if settings.packing:
        train = pack(train, settings.block_size)
        counts["packed_blocks"] = len(train)
    if not train:
        raise ValueError(f"no training example fits block_size={settings.block_size}: raise block_size")
    if not val:
        raise ValueError(f"no validation example fits block_size={settings.block_size}: raise block_size "
                         "or val_problems")
    data = PreparedData(train, val, train_keys, val_keys, counts, sample, dataset_order(rows))
    if verbose:
        print(data.summary())
    return data


def describe_example(example: dict, tokenizer, width: int = 70) -> str:
    """The masking of one encoded example: the prompt (no loss), the answer (loss) and its EOS."""
    ids, labels = example["input_ids"], example["labels"]
    n_prompt = sum(1 for x in labels if x == -100)
    prompt = tokenizer.decode(ids[:n_prompt])
    answer = tokenizer.decode(ids[n_prompt:])
    eos = ids[-1] == tokenizer.eos_token_id and labels[-1] == tokenizer.eos_token_id
    return "\n".join([
        f"{len(ids)} tokens: {n_prompt} prompt tokens with label -100 (no loss), "
        f"{len(ids) - n_prompt} answer tokens with loss; ends with EOS: {eos}"
        + (" (truncated at block_size)" if example.get("truncated") else ""),
        "prompt tail : " + repr(prompt[-width:]),
        "answer head : " + repr(answer[:width]),
        "answer tail : " + repr(answer[-width:]),
    ])


def collate(examples: list, pad_id: int, device=None) -> dict:
    """Right-padded tensors: input_ids, attention_mask, labels (-100 on padding)."""
    import torch

    length = max(len(e["input_ids"]) for e in examples)
    ids = torch.full((len(examples), length), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), length), -100, dtype=torch.long)
    mask = torch.zeros((len(examples), length), dtype=torch.long)
    for row, e in enumerate(examples):
        n = len(e["input_ids"])
        ids[row, :n] = torch.tensor(e["input_ids"])
        labels[row, :n] = torch.tensor(e["labels"])
        mask[row, :n] = 1
    batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    return {k: v.to(device) for k, v in batch.items()} if device is not None else batch


def epoch_batches(n: int, batch_size: int, num_processes: int, seed: int, epoch: int) -> list:
    """Global batches (batch_size * num_processes indices each) of one epoch, a function of (seed, epoch) only.

    The last batch is filled from the start of the same order, as DistributedSampler does.
    """
    order = np.random.default_rng([seed, epoch]).permutation(n).tolist()
    size = batch_size * num_processes
    while len(order) % size:
        order += order[: size - len(order) % size]
    return [order[i: i + size] for i in range(0, len(order), size)]
