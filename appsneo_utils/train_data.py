"""Training examples for notebook 02: the split rules, encoding, packing, batches.

Two split rules (TrainSettings.split_rule): "grouped" holds out whole problems, shuffled with the seed;
"original" is the `--all_data true` cut of gpt-code-clippy's run_clm_apps.py (branch `main`): train then
test pooled, one example per solution in dataset order, the first int(0.9 * n) examples trained and the
rest validation, unshuffled.
Encoding is prompts.encode_example's rule, one tokenizer call per batch; a large set (the ~230k APPS
solutions) goes through `datasets.Dataset.map` once and is read back from runs/cache on later launches
(`tokenise`).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import paths
from .params import upto
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
    """Encoded examples (input_ids, labels) and which problems went where.

    train and val are lists of rows, or TokenRows (the same rows, made on access) when read from the cache.
    """

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
        if c.get("tokenised"):
            lines.append(c["tokenised"])
        return "\n".join(lines)


# --- tokenisation: one tokenizer call per batch, cached on disk for large sets ---------------------------

# Below this many examples the set is tokenised in memory: importing `datasets` alone takes ~2 s, while
# the 72 examples of the mini set take ~0.05 s (benchmarks/README.md, "Tokenising the training set").
CACHE_FROM_EXAMPLES = 20_000
# Worker processes only from this size: each one costs a fork and a copy of its shard.
PROCESSES_FROM_EXAMPLES = 50_000
MAX_PROCESSES = 8


def encode_batch(batch: dict, tokenizer, block_size: int) -> dict:
    """prompts.encode_example over columns `prompt` and `answer`: one tokenizer call per column, same ids.

    Every example keeps its row, so rows stay aligned with the examples: a dropped one has `kept` False
    and no ids. This is the function `Dataset.map` runs (batched).
    """
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no EOS token; set tokenizer.eos_token first")
    eos = tokenizer.eos_token_id
    # Each problem's prompt repeats once per solution (~23 on APPS, next to each other): tokenise it once.
    unique = list(dict.fromkeys(batch["prompt"]))
    by_prompt = dict(zip(unique, tokenizer(unique, add_special_tokens=False)["input_ids"]))
    prompts = [by_prompt[p] for p in batch["prompt"]]
    answers = tokenizer(list(batch["answer"]), add_special_tokens=False)["input_ids"]
    out = {"input_ids": [], "labels": [], "truncated": [], "kept": []}
    for prompt_ids, answer_ids in zip(prompts, answers):
        answer_ids = answer_ids + [eos]
        # encode_example's rule: the prompt and a quarter block of answer must fit, the answer's end may go
        kept = len(prompt_ids) + min(len(answer_ids), block_size // 4) <= block_size
        out["kept"].append(kept)
        out["input_ids"].append((prompt_ids + answer_ids)[:block_size] if kept else [])
        out["labels"].append(([-100] * len(prompt_ids) + answer_ids)[:block_size] if kept else [])
        out["truncated"].append(kept and len(prompt_ids) + len(answer_ids) > block_size)
    return out


class TokenRows(Sequence):
    """Encoded examples as rows ({input_ids, labels, truncated}, lists) made on access from flat arrays.

    What a cached set becomes: 230k examples as Python lists of ints would take several GB, the
    arrays one int32 per token. Slices are views; `+` gives a list, as lists do.
    """

    def __init__(self, arrays: dict, index):
        self.arrays = arrays  # offsets, input_ids, labels, truncated
        self.index = np.asarray(index, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return TokenRows(self.arrays, self.index[i])
        row = int(self.index[i])
        a, b = int(self.arrays["offsets"][row]), int(self.arrays["offsets"][row + 1])
        return {"input_ids": self.arrays["input_ids"][a:b].tolist(), "labels": self.arrays["labels"][a:b].tolist(),
                "truncated": bool(self.arrays["truncated"][row])}

    def __add__(self, other):
        return list(self) + list(other)

    def __radd__(self, other):
        return list(other) + list(self)

    def __eq__(self, other):
        return isinstance(other, Sequence) and len(self) == len(other) and all(a == b for a, b in zip(self, other))

    def __repr__(self) -> str:
        return f"TokenRows({len(self)} rows)"


@dataclass
class Tokenised:
    """Encoded examples aligned with the examples given, and where they came from.

    `columns` hold input_ids, labels, truncated, kept: Python lists (in memory) or, read from the cache,
    flat arrays with `offsets` (row i is input_ids[offsets[i]:offsets[i + 1]]).
    """

    columns: dict
    cache_path: Path | None = None  # the folder of the cached set; None when tokenised in memory
    reused: bool = False  # True: read from the cache, nothing was tokenised
    seconds: float = 0.0

    def __len__(self) -> int:
        return len(self.columns["kept"])

    def part(self, start: int, stop: int) -> tuple:
        """(kept rows, counts) of the examples start:stop."""
        c = self.columns
        if "offsets" not in c:
            rows = [{"input_ids": ids, "labels": labels, "truncated": truncated}
                    for ids, labels, truncated, kept in zip(c["input_ids"][start:stop], c["labels"][start:stop],
                                                            c["truncated"][start:stop], c["kept"][start:stop]) if kept]
            lengths = [len(r["input_ids"]) for r in rows]
            truncated = sum(r["truncated"] for r in rows)
        else:
            index = np.flatnonzero(c["kept"][start:stop]) + start
            rows = TokenRows(c, index)
            lengths = c["offsets"][index + 1] - c["offsets"][index]
            truncated = int(c["truncated"][index].sum())
        n = len(c["kept"][start:stop])
        return rows, {"examples": n, "kept": len(rows), "truncated": int(truncated), "dropped": n - len(rows),
                      "tokens": int(sum(lengths))}

    @property
    def rows(self) -> list:
        """Every example as a row, None where dropped (all in memory: for checks, not for 230k examples)."""
        kept = iter(self.part(0, len(self))[0])
        return [next(kept) if k else None for k in self.columns["kept"]]

    def describe(self) -> str:
        n = f"{len(self):,} examples"
        if self.cache_path is None:
            return f"tokenised {n} in memory in {self.seconds:.1f} s"
        verb = "read from the cache" if self.reused else "tokenised into the cache"
        return f"{n} {verb} {self.cache_path} in {self.seconds:.1f} s"


def default_cache_dir() -> Path:
    """Where tokenised sets are kept: $APPSNEO_CACHE, else runs/cache (moved with $APPSNEO_RUNS)."""
    return Path(os.environ.get("APPSNEO_CACHE") or paths.RUNS_DIR / "cache").expanduser()


def tokenise(examples: list, tokenizer, block_size: int, *, cache=None, cache_dir=None,
             num_proc: int | None = None) -> Tokenised:
    """Encode examples as prompts.encode_example does; large sets through `Dataset.map`, cached on disk.

    cache: None decides by size (from CACHE_FROM_EXAMPLES examples), True/False force it. The cache
    lives in cache_dir (default: default_cache_dir()) under a key of everything that changes the ids:
    the tokenizer's content, block_size, the encoding rule's source and every example's text, so a
    second launch reads the ids back from its Arrow files instead of tokenising again.
    num_proc: worker processes for the map; None: min(cores, MAX_PROCESSES) from PROCESSES_FROM_EXAMPLES.
    """
    start = time.perf_counter()
    use_cache = len(examples) >= CACHE_FROM_EXAMPLES if cache is None else bool(cache)
    if not use_cache:
        columns = encode_batch({"prompt": [e.prompt for e in examples], "answer": [e.answer for e in examples]},
                               tokenizer, block_size)
        return Tokenised(columns, seconds=time.perf_counter() - start)
    if num_proc is None:
        num_proc = min(os.cpu_count() or 1, MAX_PROCESSES) if len(examples) >= PROCESSES_FROM_EXAMPLES else 1
    key = cache_key(examples, tokenizer, block_size)
    folder = Path(cache_dir or default_cache_dir()).expanduser() / f"tokenised-{key[:20]}"
    reused = _read_cache(folder, key)
    if reused is None:
        _write_cache(folder, key, examples, tokenizer, block_size, max(1, int(num_proc)))
        columns = _read_cache(folder, key)
    else:
        columns = reused
    return Tokenised(columns, folder, reused is not None, time.perf_counter() - start)


def cache_key(examples: list, tokenizer, block_size: int) -> str:
    """sha256 of everything that changes the ids (not the tokenizer's path: a checkpoint's copy is the same)."""
    digest = hashlib.sha256()
    for part in (_tokenizer_fingerprint(tokenizer), str(int(block_size)), _RULE_SOURCE, str(len(examples))):
        digest.update(part.encode() + b"\0")
    for e in examples:
        digest.update(e.prompt.encode("utf-8", "surrogatepass") + b"\0" + e.answer.encode("utf-8", "surrogatepass")
                      + b"\0")
    return digest.hexdigest()


def _tokenizer_fingerprint(tokenizer) -> str:
    """The tokenizer's content: vocabulary, merges, normalisation, special tokens, library version."""
    import tokenizers

    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        spec = json.loads(backend.to_str())
        spec.pop("truncation", None)  # set per call by transformers; never changes what we encode
        spec.pop("padding", None)
        body = json.dumps(spec, sort_keys=True)
    else:  # a slow (pure Python) tokenizer
        body = json.dumps(sorted(tokenizer.get_vocab().items())) + repr(getattr(tokenizer, "bpe_ranks", ""))
    special = json.dumps([type(tokenizer).__name__, len(tokenizer), tokenizer.eos_token_id,
                          tokenizer.all_special_tokens, tokenizers.__version__])
    return hashlib.sha256((body + special).encode()).hexdigest()


def _read_cache(folder: Path, key: str):
    """The cached columns, or None when the folder holds no complete set for this key."""
    info = _manifest(folder, key)
    if info is None:
        return None
    import pyarrow as pa

    # Dataset.map writes Arrow IPC streams; pyarrow reads them without importing datasets (~2 s)
    table = pa.concat_tables([pa.ipc.open_stream(pa.memory_map(str(folder / name))).read_all()
                              for name in info["files"]])
    # one copy of the ids into memory (int32; ~1 GB for 230k examples); the files may go afterwards
    ids, labels = table.column("input_ids").combine_chunks(), table.column("labels").combine_chunks()
    offsets = ids.offsets.to_numpy()
    if not np.array_equal(offsets, labels.offsets.to_numpy()):
        raise ValueError(f"the cached set in {folder} is damaged (ids and labels differ in length): delete the folder")
    return {"offsets": offsets - offsets[0], "input_ids": ids.values.to_numpy()[offsets[0]:offsets[-1]],
            "labels": labels.values.to_numpy()[offsets[0]:offsets[-1]],
            "truncated": table.column("truncated").to_numpy(), "kept": table.column("kept").to_numpy()}


def _manifest(folder: Path, key: str) -> dict | None:
    """The manifest of a complete cached set for this key (written last, after the ids), else None."""
    try:
        info = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    return info if info.get("key") == key else None


def _write_cache(folder: Path, key: str, examples, tokenizer, block_size: int, num_proc: int) -> None:
    """Tokenise with Dataset.map into a temporary folder, then rename it into place (a kill leaves no half set).

    A file lock makes the processes of one launch (accelerate starts one per device) tokenise once:
    the others wait and read.
    """
    from datasets import Dataset, Features, List, Value
    from filelock import FileLock

    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        if _manifest(folder, key) is not None:  # another process wrote it while this one waited
            return
        tmp = folder.with_name(f"{folder.name}.tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        source = Dataset.from_dict({"prompt": [e.prompt for e in examples], "answer": [e.answer for e in examples]})
        # int32: GPT-Neo's 50,257 ids fit, in half of int64's disk
        features = Features({"input_ids": List(Value("int32")), "labels": List(Value("int32")),
                             "truncated": Value("bool"), "kept": Value("bool")})
        encoded = source.map(encode_batch, batched=True, batch_size=1000, num_proc=num_proc if num_proc > 1 else None,
                             fn_kwargs={"tokenizer": tokenizer, "block_size": block_size},
                             remove_columns=["prompt", "answer"], features=features, new_fingerprint=key[:32],
                             cache_file_name=str(tmp / "tokens.arrow"), desc="tokenising")
        files = [Path(f["filename"]).name for f in encoded.cache_files]
        (tmp / "manifest.json").write_text(json.dumps({"key": key, "examples": len(examples),
                                                       "block_size": block_size, "files": files}, indent=1))
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)


# The encoding rule's code is part of the cache key: a change to it re-tokenises (comments included).
_RULE_SOURCE = hashlib.sha256((inspect.getsource(encode_example) + inspect.getsource(encode_batch)).encode()
                              ).hexdigest()


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


def prepare_data(settings: "TrainSettings", tokenizer, frame=None, *, verbose: bool = True, cache=None,
                 cache_dir=None, num_proc: int | None = None) -> PreparedData:
    """Load APPS, split by settings.split_rule, encode as prompts.encode_example does (prompt masked, EOS added).

    cache, cache_dir, num_proc: see `tokenise` (large sets are tokenised once and read back on later launches).
    """
    from .data import has_solutions, load_apps

    if frame is None:
        frame = load_apps(settings.data, split="all" if settings.all_data else "train", verbose=verbose)
    solved = has_solutions(frame)
    usable = frame[solved]
    rows = {(str(r["split"]), int(r["problem_id"])): r for r in usable.to_dict("records")}
    counts = {"problems": len(rows), "no_solutions": int((~solved).sum()), "block_size": settings.block_size,
              "split_rule": settings.split_rule, "packed_blocks": None}
    if settings.split_rule == "original":
        if not settings.all_data or upto(settings.max_train_problems) is not None:
            raise ValueError("split_rule='original' is the '-all' run's cut of the pooled train and test examples: "
                             "set all_data=True and leave max_train_problems at all (or use split_rule='grouped')")
        pooled = [e for key in dataset_order(rows) for e in training_examples(rows[key])]
        cut, train_keys, val_keys = original_cut([(e.split, e.problem_id) for e in pooled])
        train_examples, val_examples = pooled[:cut], pooled[cut:]
        counts.update(pooled_examples=len(pooled), cut=cut)
    else:
        train_keys, val_keys = split_problems(rows, settings.val_problems, settings.seed)
        if upto(settings.max_train_problems) is not None:
            train_keys = train_keys[: upto(settings.max_train_problems)]
        train_examples = [e for key in train_keys for e in training_examples(rows[key])]
        val_examples = [e for key in val_keys for e in training_examples(rows[key])]
    encoded = tokenise(train_examples + val_examples, tokenizer, settings.block_size, cache=cache,
                       cache_dir=cache_dir, num_proc=num_proc)
    train, train_stats = encoded.part(0, len(train_examples))
    val, val_stats = encoded.part(len(train_examples), len(encoded))
    sample = next((e for e in train if not e["truncated"]), train[0] if train else None)
    counts.update(train=train_stats, val=val_stats, tokenised=encoded.describe())
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
