"""Checkpoints of a fine-tuning run: which settings a checkpoint belongs to, find, save, rotate, resume.

A checkpoint is `runs/02_finetune/checkpoints/step-NNNNNNNN/`: accelerate's state (model, optimizer, scheduler,
RNGs), the tokenizer, `trained_problems.json` and `trainer_state.json` (the loop's state and the run's
identity). It is written as `step-N.tmp` and renamed, so only complete checkpoints are ever resumed, and a
run resumes only a checkpoint whose identity (the settings that define the run) equals its own.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict
from pathlib import Path

from . import paths

# Settings that may change between an interrupted run and its resumption.
RUN_ONLY = {"resume", "stop_after", "report_to", "log_every", "output_dir", "compile", "attention",
            "gpu_memory_gb", "auto_memory", "eval_every", "max_val_examples", "save_steps", "save_total_limit",
            "profile"}
STATE_FILE = "trainer_state.json"


def identity(settings) -> dict:
    """The settings that define a run (a checkpoint resumes only a run with the same ones)."""
    return {k: v for k, v in asdict(settings).items() if k not in RUN_ONLY}


def folder_of(settings) -> Path:
    return settings.run_dir / "checkpoints"


def find_checkpoint(settings, *, verbose: bool = False) -> Path | None:
    """The newest complete checkpoint this run may resume from, per `settings.resume` (auto | true | false)."""
    if settings.resume == "false":
        return None
    folder = folder_of(settings)
    done = sorted(folder.glob(f"step-*/{STATE_FILE}")) if folder.is_dir() else []
    if not done:
        if settings.resume == "true":
            raise FileNotFoundError(f"resume=true but {folder} holds no complete checkpoint")
        return None
    latest = done[-1].parent
    saved, current = json.loads(done[-1].read_text())["identity"], identity(settings)
    differs = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
    if differs:
        why = ", ".join(f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in differs)
        if settings.resume == "true":
            raise ValueError(f"cannot resume {latest}: it belongs to a run with other settings ({why})")
        if verbose:
            print(f"resume: {latest.name} is from a run with other settings ({why}); starting fresh")
        return None
    return latest


def clear_checkpoints(settings, accelerator, keep: Path | None) -> None:
    """Delete the run's old checkpoints when it starts fresh (`keep` None), so none of them is resumed later."""
    folder = folder_of(settings)
    if accelerator.is_main_process and folder.is_dir() and keep is None:
        if any(folder.iterdir()):
            print(f"resume: starting fresh; deleting the old checkpoints in {folder}")
        shutil.rmtree(folder, ignore_errors=True)
    accelerator.wait_for_everyone()


def save_checkpoint(accelerator, settings, tokenizer, state: dict, trained_problems: dict) -> Path:
    """Atomically: write step-N.tmp, then rename; keep the newest `settings.save_total_limit`.

    state: the loop's state as JSON (its "step" names the folder); trained_problems: the record
    written beside it (training.trained_problems_record).
    """
    folder = folder_of(settings)
    final = folder / f"step-{state['step']:08d}"
    tmp = folder / (final.name + ".tmp")
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    # GPT-Neo ties lm_head to the embedding: safetensors stores it once and accelerate warns each
    # time; load_state ties it back (checked in tests/test_training.py).
    quiet = logging.getLogger("accelerate.utils.other")
    level, quiet.level = quiet.level, logging.ERROR
    try:
        accelerator.save_state(str(tmp))
    finally:
        quiet.setLevel(level)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        tokenizer.save_pretrained(tmp)
        paths.write_json(tmp / "trained_problems.json", trained_problems)
        paths.write_json(tmp / STATE_FILE, {**state, "identity": identity(settings)})
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        for old in sorted(folder.glob("step-*[0-9]"))[: -settings.save_total_limit]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator, checkpoint: Path) -> dict:
    """Restore model, optimizer, scheduler and RNG states from `checkpoint`; return its saved loop state."""
    accelerator.load_state(str(checkpoint))
    return json.loads((checkpoint / STATE_FILE).read_text())
