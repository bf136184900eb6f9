"""Statistics and figures of an APPS table, for notebook 01."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tqdm.auto import tqdm

from .data import DIFFICULTIES
from .modeling import train_tiny_tokenizer
from .params import ALL, Settings, setting
from .plotting import shown_path
from .prompts import training_examples

SPLITS = ("train", "test", "all")


@dataclass
class ExploreSettings(Settings):
    """Notebook 01's settings: which APPS table to read and which tokenizer measures its examples."""

    data: str = setting("codeparrot/apps", "any load_apps source (mini, codeparrot/apps, a .jsonl or .parquet "
                        "file, an APPS folder)", "str", smoke="mini")
    split: str = setting("all", "train | test | all", "choice", choices=SPLITS)
    tokenizer_name: str = setting("EleutherAI/gpt-neo-1.3B", "tokenizer for the token lengths (tiny, a hub name "
                                  "or a folder)", "str", smoke="tiny")
    block_size: int = setting(1024, "training context length to compare against", "int", minimum=16)
    limit: int | str = setting(ALL, "read at most this many problems, or all", "count", minimum=1)
    seed: int = setting(0, "random seed", "int")


def tokenizer_for(name: str, max_length: int = 2048):
    """"tiny" (BPE trained on the mini set), a hub name, a saved folder, or a folder holding
    only GPT-2's vocab.json and merges.txt."""
    from transformers import AutoTokenizer, GPT2TokenizerFast

    if name == "tiny":
        return train_tiny_tokenizer(max_length=max_length)
    folder = Path(name).expanduser()
    if folder.is_dir() and not (folder / "tokenizer_config.json").is_file() and (folder / "vocab.json").is_file():
        vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
        merges = [tuple(line.split()) for line in (folder / "merges.txt").read_text(encoding="utf-8").splitlines()
                  if line and not line.startswith("#version")]
        # transformers 5: GPT2TokenizerFast(vocab_file=..., merges_file=...) builds an EMPTY tokenizer.
        tokenizer = GPT2TokenizerFast(vocab=vocab, merges=merges, eos_token="<|endoftext|>")
    else:
        tokenizer = AutoTokenizer.from_pretrained(name)
    if len(tokenizer) < 2:
        raise ValueError(f"the tokenizer from {name} is empty; check its files")
    tokenizer.model_max_length = max_length  # transformers 5 defaults to 1e30
    return tokenizer


def overview(frame: pd.DataFrame) -> pd.DataFrame:
    """Problems per split and difficulty, with totals."""
    table = pd.crosstab(frame["split"], frame["difficulty"], margins=True, margins_name="total")
    order = [d for d in DIFFICULTIES if d in table.columns] + [c for c in table.columns if c not in DIFFICULTIES]
    return table[order]


def problem_stats(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per problem: question length, tests, solutions, call type, starter code, issues."""
    return pd.DataFrame({
        "split": frame["split"],
        "problem_id": frame["problem_id"],
        "difficulty": frame["difficulty"],
        "question_words": frame["question"].map(lambda q: len(q.split())),
        "tests": frame["tests"].map(lambda t: len(t["inputs"]) if t else 0),
        "solutions": frame["solutions_list"].map(len),
        "call_type": frame["call_type"],
        "starter_code": frame["starter_code"].map(bool),
        "issues": frame["issues"].map(lambda i: "; ".join(i)),
    })


def token_lengths(frame: pd.DataFrame, tokenizer, block_size: int = 1024, progress: bool = True) -> pd.DataFrame:
    """Token length of every formatted training example (prompt + answer + EOS)."""
    rows = []
    records = frame.to_dict("records")
    for row in tqdm(records, desc="tokenising", disable=not progress):
        for example in training_examples(row):
            prompt = len(tokenizer(example.prompt, add_special_tokens=False)["input_ids"])
            answer = len(tokenizer(example.answer, add_special_tokens=False)["input_ids"]) + 1  # + EOS
            rows.append({"split": example.split, "problem_id": example.problem_id, "difficulty": row["difficulty"],
                         "prompt_tokens": prompt, "answer_tokens": answer, "tokens": prompt + answer})
    lengths = pd.DataFrame(rows, columns=["split", "problem_id", "difficulty", "prompt_tokens", "answer_tokens", "tokens"])
    lengths["over_block"] = lengths["tokens"] > block_size
    return lengths


def summary(frame: pd.DataFrame, stats: pd.DataFrame, lengths: pd.DataFrame, block_size: int) -> dict:
    """The numbers notebook 01 reports, as plain JSON-ready values."""
    report = frame.attrs.get("report")
    return {
        "problems": int(len(frame)),
        "by_split_and_difficulty": {
            s: {d: int(n) for d, n in g["difficulty"].value_counts().items()} for s, g in frame.groupby("split")
        },
        "call_based_share": float((stats["call_type"] == "call").mean()) if len(stats) else 0.0,
        "starter_code_share": float(stats["starter_code"].mean()) if len(stats) else 0.0,
        "question_words_median": float(stats["question_words"].median()) if len(stats) else 0.0,
        "tests_per_problem_mean": float(stats["tests"].mean()) if len(stats) else 0.0,
        "solutions_per_problem_mean": float(stats["solutions"].mean()) if len(stats) else 0.0,
        "without_tests": [f"{s}:{p}" for s, p in stats.loc[stats["tests"] == 0, ["split", "problem_id"]].values],
        "without_solutions": [f"{s}:{p}" for s, p in stats.loc[stats["solutions"] == 0, ["split", "problem_id"]].values],
        "training_examples": int(len(lengths)),
        "block_size": int(block_size),
        "tokens_median": float(lengths["tokens"].median()) if len(lengths) else 0.0,
        "tokens_p95": float(lengths["tokens"].quantile(0.95)) if len(lengths) else 0.0,
        "share_over_block_size": float(lengths["over_block"].mean()) if len(lengths) else 0.0,
        "dropped_rows": (report or {}).get("dropped", {}),
        "flagged_rows": (report or {}).get("flagged", {}),
    }


# --- figures (kept out of the notebook's teaching flow) ----------------------------------------
# Each title says what is shown and on what (`data_label`), so a figure still reads when shared alone.


def data_label(frame: pd.DataFrame, source: str) -> str:
    """ "mini, train+test: 36 problems": the data a figure shows, for its title (never a machine path)."""
    splits = "+".join(s for s in ("train", "test") if s in set(frame["split"])) or "no split"
    return f"{shown_path(source)}, {splits}: {len(frame)} problems"


def fig_counts(frame: pd.DataFrame, label: str = ""):
    import matplotlib.pyplot as plt
    import seaborn as sns

    fig, ax = plt.subplots(figsize=(6, 3.5))
    sns.countplot(data=frame, x="difficulty", hue="split", order=[d for d in DIFFICULTIES], ax=ax)
    ax.set(title=_titled("Problems per difficulty and split", label), xlabel="", ylabel="problems")
    return fig


def fig_problem_stats(stats: pd.DataFrame, label: str = ""):
    import matplotlib.pyplot as plt
    import seaborn as sns

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    order = list(DIFFICULTIES)
    sns.boxplot(data=stats, x="difficulty", y="question_words", order=order, ax=axes[0])
    axes[0].set(title="Question length", xlabel="", ylabel="words per question")
    sns.boxplot(data=stats, x="difficulty", y="tests", order=order, ax=axes[1])
    axes[1].set(title="Tests per problem", xlabel="", ylabel="tests")
    sns.boxplot(data=stats, x="difficulty", y="solutions", order=order, ax=axes[2])
    axes[2].set(title="Human solutions per problem", xlabel="", ylabel="solutions")
    fig.suptitle(_titled("Questions, tests and solutions per difficulty (one point per problem)", label))
    return fig


def fig_formats(stats: pd.DataFrame, label: str = ""):
    import matplotlib.pyplot as plt

    share = stats.groupby("difficulty")[["starter_code"]].mean() * 100
    share["call-based"] = stats.groupby("difficulty")["call_type"].apply(lambda c: (c == "call").mean() * 100)
    share = share.rename(columns={"starter_code": "has starter code"}).reindex([d for d in DIFFICULTIES if d in share.index])
    fig, ax = plt.subplots(figsize=(6, 3.5))
    share.plot.bar(ax=ax, rot=0)
    ax.set(title=_titled("Call-based problems and starter code", label), xlabel="", ylabel="% of problems",
           ylim=(0, 100))
    return fig


def fig_token_lengths(lengths: pd.DataFrame, block_size: int, label: str = ""):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    if len(lengths):
        bins = np.linspace(0, max(lengths["tokens"].max(), block_size) * 1.05, 40)
        for difficulty in [d for d in DIFFICULTIES if d in set(lengths["difficulty"])]:
            ax.hist(lengths.loc[lengths["difficulty"] == difficulty, "tokens"], bins=bins, alpha=0.6, label=difficulty)
    ax.axvline(block_size, color="black", linestyle="--", label=f"block_size {block_size}")
    over = lengths["over_block"].mean() if len(lengths) else 0.0
    ax.set(title=_titled(f"Tokens per training example ({len(lengths)} examples, {over:.1%} over block_size)", label),
           xlabel="tokens (prompt + answer + EOS)", ylabel="examples")
    ax.legend()
    return fig


def _titled(what: str, label: str) -> str:
    return f"{what}\n{label}" if label else what
