"""The figures of a fine-tuning run (notebook 02): loss, learning rate and throughput over the steps.

Every figure says in its title what it shows and on what (model, data, split rule, recipe), by name only.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt

from .modeling import TINY

if TYPE_CHECKING:
    from .training import TrainSettings


def run_label(settings: TrainSettings) -> str:
    """What a figure of this run shows it on: model, data, split rule, recipe (names, never absolute paths)."""
    def name(value: str) -> str:  # a hub name as it is; a local file or folder by its name only
        return Path(value).name if Path(value).expanduser().exists() else value

    model = "tiny GPT-Neo" if settings.model == TINY else name(settings.model)
    data = "mini APPS" if settings.data == "mini" else name(settings.data)
    pooled = "train+test pooled" if settings.all_data else "train split"
    split = ("the original unshuffled 90% cut" if settings.split_rule == "original"
             else "grouped held-out problems")
    return f"{model} on {data} ({pooled}), validation: {split}, recipe {settings.recipe}"


def plot_history(history: dict, settings: TrainSettings | None = None) -> dict:
    """{"loss", "learning_rate", "tokens_per_s"}: matplotlib figures of a run's history, titled with what they show."""
    label = "\n" + run_label(settings) if settings is not None else ""
    train, val = history["train"], history["val"]
    figs = {}
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot([e["step"] for e in train], [e["loss"] for e in train], label="train (answer tokens)")
    ax.plot([e["step"] for e in val], [e["loss"] for e in val], "o-", label="validation")
    ax.set(xlabel="optimizer step", ylabel="cross-entropy per answer token (nats)",
           title="Fine-tuning loss per answer token" + label)
    ax.legend()
    figs["loss"] = fig
    fig, ax = plt.subplots(figsize=(7, 3))
    ax.plot([e["step"] for e in train], [e["lr"] for e in train])
    ax.set(xlabel="optimizer step", ylabel="learning rate",
           title="Learning rate: linear warm-up, then linear decay to 0" + label)
    figs["learning_rate"] = fig
    fig, ax = plt.subplots(figsize=(7, 3))
    ax.plot([e["step"] for e in train], [e["tokens_per_s"] for e in train])
    ax.set(xlabel="optimizer step", ylabel="tokens / s (all processes)", title="Training throughput" + label,
           ylim=(0, None))
    figs["tokens_per_s"] = fig
    for fig in figs.values():
        fig.tight_layout()
    return figs
