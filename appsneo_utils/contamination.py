"""What a model saw of the problems it is evaluated on, and the statement printed above its scores."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd


def key_set(frame: pd.DataFrame) -> set[tuple]:
    """The frame's problems as a set of (split, problem_id)."""
    return {(s, int(p)) for s, p in zip(frame["split"], frame["problem_id"])}


# --- the seen set of the '-all' model --------------------------------------------------------------------------------

APPS_ALL_SPLIT = 0.9  # run_clm_apps.py: the first 90% of the concatenated train+test examples are trained on
APPS_ALL_SOURCE = ("CodedotAl/gpt-code-clippy run_clm_apps.py: concatenate_datasets([train, test]) of apps.py's "
                   "one-example-per-solution 'formatted' config, split_id = int(0.9 * len); model card of "
                   "flax-community/gpt-neo-1.3B-apps-all: fine-tuned on most of APPS, train and test splits")


@dataclass
class Contamination:
    """What the model saw of the evaluated problems, and the statement to print above the results."""

    status: str  # "clean" | "record" | "apps-all" | "unknown"
    statement: str
    seen: frozenset | None = None  # (split, problem_id) keys trained on; None where unknown

    def clean_keys(self, frame: pd.DataFrame) -> set | None:
        """Keys of the evaluated problems the model did not train on (None when that cannot be told)."""
        keys = key_set(frame)
        if self.status == "clean":
            return keys
        if self.seen is None:
            return None
        return keys - set(self.seen)

    @property
    def contaminated(self) -> bool:
        return self.status != "clean"


def is_apps_all(model: str) -> bool:
    """The published '-all' model (or a copy whose name says so)."""
    name = str(model).rstrip("/").lower()
    return name == "flax-community/gpt-neo-1.3b-apps-all" or name.endswith("apps-all")


def apps_all_seen(train: pd.DataFrame, test: pd.DataFrame) -> tuple[frozenset, dict]:
    """Test problems the '-all' model trained on, rebuilt from its training script; and counts.

    One example per human solution, train problems then test problems in id order (the original
    folders, sorted); the first int(0.9 * total) examples were trained on. A test problem with any
    example before the cut was seen. Needs the whole of both splits (the counts decide the cut).
    """
    counts_train = int(train["solutions_list"].map(len).sum())
    test = test.sort_values("problem_id")
    sizes = test["solutions_list"].map(len).to_numpy()
    total = counts_train + int(sizes.sum())
    cut = int(APPS_ALL_SPLIT * total)
    starts = counts_train + np.concatenate([[0], np.cumsum(sizes)[:-1]])
    seen_mask = (starts < cut) & (sizes > 0)
    seen = frozenset(("test", int(p)) for p in test["problem_id"].to_numpy()[seen_mask])
    seen_solutions = int(np.clip(cut - starts, 0, sizes).sum())
    info = {"examples": total, "cut": cut, "test_problems": len(test), "test_problems_seen": len(seen),
            "test_solutions": int(sizes.sum()), "test_solutions_seen": seen_solutions}
    return seen, info


def detect_contamination(model: str, frame: pd.DataFrame, *, override: str = "auto", source: str | None = None,
                         verbose: bool = True) -> Contamination:
    """Contamination of `model` on the problems of `frame`.

    override: "auto" (a trained_problems.json next to a local model, or the known '-all' model), "none"
    (assert a clean model), "apps-all", or the path of a trained_problems.json.
    source: the APPS source, to rebuild the '-all' model's seen set (needs the full splits).
    """
    override = (override or "auto").strip()
    on_test = set(frame["split"]) == {"test"}
    n = len(frame)
    if override.lower() == "none":
        return Contamination("clean", "Contamination: declared none (override). Scores are taken at face value.")
    record = None
    if override.lower() not in ("auto", "apps-all"):
        record = Path(override).expanduser()
        record = record / "trained_problems.json" if record.is_dir() else record
    elif override.lower() == "auto" and Path(str(model)).is_dir():
        for folder in (Path(model), Path(model).parent):
            if (folder / "trained_problems.json").is_file():
                record = folder / "trained_problems.json"
                break
    if record is not None:
        from .training import load_trained_problems

        seen = load_trained_problems(record.parent) if record.name == "trained_problems.json" else None
        if seen is None:
            raise FileNotFoundError(f"no trained_problems.json at {record}: pass the file written by 02_finetune "
                                    f"(next to its model) or contamination='auto'")
        overlap = key_set(frame) & seen
        if not overlap:
            return Contamination("clean", f"Contamination: none. The training record {record} lists "
                                          f"{len(seen)} problems and none of the {n} used here.", frozenset(seen))
        return Contamination("record", f"CONTAMINATED: the training record {record} shows this model trained on "
                                       f"{len(overlap)} of the {n} problems used here. Scores on them measure recall, "
                                       f"not skill; the other {n - len(overlap)} form the clean subset.",
                             frozenset(seen))
    if override.lower() == "apps-all" or is_apps_all(model):
        if not on_test:
            return Contamination("unknown", "CONTAMINATED: the '-all' model trained on (most of) both APPS splits; "
                                            "these problems are very likely in its training data.")
        seen, info = None, None
        if source is not None:
            try:
                from .data import load_apps

                train = load_apps(source, split="train", verbose=False)
                test = load_apps(source, split="test", verbose=False)
                if len(train) >= 4000 and len(test) >= 4000:  # the rule needs the whole dataset
                    seen, info = apps_all_seen(train, test)
            except (OSError, ConnectionError, ValueError) as exc:
                if verbose:
                    print(f"could not rebuild the '-all' model's training set from {source}: {exc}")
        head = ("CONTAMINATED: flax-community/gpt-neo-1.3B-apps-all was fine-tuned on the APPS train split AND on "
                "most of the test split (about 90% of the pooled examples; source: " + APPS_ALL_SOURCE + ").")
        if seen is None:
            return Contamination("unknown", head + " Which test problems it saw cannot be rebuilt from this source, "
                                                   "so every score below is an upper bound of recall, not of skill.")
        clean = n - len(key_set(frame) & seen)
        return Contamination(
            "apps-all",
            head + f" Rebuilt from that script: it saw {info['test_problems_seen']} of {info['test_problems']} test "
                   f"problems ({info['test_solutions_seen']} of {info['test_solutions']} test solutions); "
                   f"{clean} of the {n} problems used here are outside its training data (the clean subset).", seen)
    if str(model) == "tiny":
        return Contamination("clean", "Contamination: none. The tiny model has random weights and learned nothing "
                                      "(its tokenizer's vocabulary was fitted to the mini set's text, test split "
                                      "included, which teaches no solution).")
    return Contamination("clean", f"Contamination: no training record found for {model}; nothing is known to overlap "
                                  f"(pass contamination='path/to/trained_problems.json' if there is one).")
