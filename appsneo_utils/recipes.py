"""The original GPT-Neo APPS runs as named recipes, with their sources, and the global-batch arithmetic.

Sources (read in CodedotAl/gpt-code-clippy and on the hub; file and branch named for each):
- "card": the command on the model card of flax-community/gpt-neo-1.3B-apps-all, `--all_data true`, which
  only the `main` branch's `run_clm_apps.py` (repository root) accepts; the script the card links,
  `training/run_clm_apps.py` on `camera-ready`, has no such flag. A Flax script: `per_device_train_batch_size=3`
  on `jax.device_count()` devices, 3 x 8 TPU v3 cores = 24 sequences per step. The card text stored for the
  sibling `-all-2` reads: 5 epochs, AdamW, linear decay after 800 warm-up steps, block 1024, 3 per device;
  main's AdamW branch chains global-norm clipping at 1.0. The peak lr 8e-5, betas 0.9/0.98, weight decay
  0.1 and bf16 are the values this kit has carried as the card's (the stored card text we could read ends
  before them). TrainSettings' defaults are this recipe.
- "repo": the GPT-CC README (`camera-ready`, "Training") for the 1.3B APPS model: Adafactor, 5k warm-up steps
  to 2e-5 then linear decay to 0, batch size 24, sequence length 1024, 5 epochs; `finetune_apps.sh` on `main`
  passes the same (`--adafactor true --learning_rate 2e-5 --warmup_steps 5000`, 3 per device). The README
  also says weight decay 0.1, but main's run_clm_apps.py builds `optax.adafactor(learning_rate=...)` with
  optax's defaults (no weight decay) and chains global-norm clipping only on its AdamW branch, so this
  recipe has neither.
- "replica": the card's run as the '-all' model was trained: train and test pooled (`all_data`), the
  unshuffled 90% cut (`split_rule="original"`). On the embedded default (tiny model, mini set) it also
  trains long enough to memorise: 60 epochs at lr 3e-3 (training loss about 0.01).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

RECIPE_NAMES = ("card", "repo", "replica")
# No "=" in a help string: it becomes a comment in the notebook's parameters cell, which papermill parses.
RECIPE_HELP = ("card | repo | replica: card, the -all model card's command on main's run_clm_apps.py (AdamW, "
               "lr 8e-5, 800 warm-up steps, global batch 3 per device x 8 TPU v3 cores, 24); repo, the GPT-CC "
               "README's 1.3B settings (Adafactor, lr 2e-5, 5,000 warm-up steps, batch 24); replica, card with "
               "all_data and split_rule original, as the -all model was trained (on the embedded default: 60 epochs "
               "at lr 3e-3)")

# 3 sequences per device (per_device_train_batch_size) x 8 TPU v3 cores (jax.device_count()) = 24 per step
ORIGINAL_GLOBAL_BATCH = 3 * 8

# Values a recipe sets over TrainSettings' defaults (which are the card's); a profile then overrides them.
RECIPES = {
    "card": {},
    "repo": dict(optimizer="adafactor", learning_rate=2e-5, warmup_steps=5000, weight_decay=0.0, max_grad_norm=0.0),
    "replica": dict(all_data=True, split_rule="original"),
}
# Values a recipe sets on the embedded default, after the smoke profile's own: the tiny model from
# scratch needs far more steps at a higher rate to memorise the mini set than 1.3B needs on APPS.
SMOKE_RECIPES = {"replica": dict(epochs=60, learning_rate=3e-3)}


@dataclass(frozen=True)
class BatchPlan:
    """Sequences per optimizer step: per device x processes x accumulation."""

    per_device: int
    processes: int
    accumulation: int
    requested: int  # the global batch asked for (0: none, grad_accum decided)

    @property
    def global_batch(self) -> int:
        return self.per_device * self.processes * self.accumulation

    def summary(self) -> str:
        line = (f"global batch: {self.per_device} per device x {self.processes} processes x {self.accumulation} "
                f"accumulation = {self.global_batch} sequences per optimizer step")
        if not self.requested:
            return line + " (grad_accum as set; global_batch=0)"
        if self.global_batch == self.requested:
            return line + f" (global_batch={self.requested}: accumulation computed from the devices present)"
        return line + (f"; global_batch={self.requested} is not a multiple of {self.per_device * self.processes} "
                       f"(batch_size x processes): choose a batch_size that divides it to train with exactly "
                       f"{self.requested}")


def batch_plan(batch_size: int, processes: int, grad_accum: int, global_batch: int) -> BatchPlan:
    """The accumulation that gives `global_batch` sequences per step on `processes` devices (0: grad_accum)."""
    if not global_batch:
        return BatchPlan(batch_size, processes, grad_accum, 0)
    accumulation = max(1, round(global_batch / (batch_size * processes)))
    return BatchPlan(batch_size, processes, accumulation, global_batch)


def world_size() -> int:
    """Processes of this run: `accelerate launch` and torchrun set WORLD_SIZE; a notebook is one process."""
    return int(os.environ.get("WORLD_SIZE", "1"))
