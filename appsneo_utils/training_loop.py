"""The fine-tuning loop's named steps: the schedule, the state a checkpoint carries, one optimizer step,
the training log, validation, and when to validate, save or stop. `training.run` strings them together.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field

from .params import upto
from .train_data import PreparedData, collate, epoch_batches
from .validation import perplexity, validation_loss


@dataclass(frozen=True)
class Schedule:
    """Optimizer steps of a run: sequences per step = per device x processes x accumulation."""

    train_sequences: int
    batch_size: int  # per device
    processes: int
    accumulation: int
    steps_per_epoch: int
    total_steps: int

    @classmethod
    def of(cls, settings, train_sequences: int, processes: int, accumulation: int) -> Schedule:
        batches_per_epoch = -(-train_sequences // (settings.batch_size * processes))
        steps_per_epoch = -(-batches_per_epoch // accumulation)
        return cls(train_sequences, settings.batch_size, processes, accumulation, steps_per_epoch,
                   settings.max_steps or steps_per_epoch * settings.epochs)

    @property
    def per_step(self) -> int:
        return self.batch_size * self.processes * self.accumulation

    def summary(self, settings) -> str:
        # e.g. 3 seqs * 1024 tokens * 1 GPU * 8 accumulation = 24,576 tokens per step at most
        line = (f"schedule: {self.train_sequences} train sequences, {self.batch_size} per device x {self.processes} "
                f"processes x {self.accumulation} accumulation = {self.per_step} per step (recipe {settings.recipe}); "
                f"{self.steps_per_epoch} steps per epoch, {self.total_steps} steps; {settings.optimizer}, warm-up "
                f"{settings.warmup_steps} steps to lr {settings.learning_rate:g}, then linear decay to 0")
        if settings.warmup_steps >= self.total_steps:
            line += (f"\nwarning: warmup_steps={settings.warmup_steps} >= {self.total_steps} steps: the peak lr is "
                     "never reached")
        return line


def _empty_window() -> dict:
    return {"loss": 0.0, "steps": 0, "tokens": 0, "seconds": 0.0}


@dataclass
class LoopState:
    """What a checkpoint carries besides the weights: the step, the curves, the open log window, totals."""

    step: int = 0
    history: dict = field(default_factory=lambda: {"train": [], "val": []})
    window: dict = field(default_factory=_empty_window)  # training steps since the last log entry
    train_seconds: float = 0.0
    train_tokens: int = 0

    @classmethod
    def from_saved(cls, saved: dict) -> LoopState:
        return cls(**{k: saved[k] for k in ("step", "history", "window", "train_seconds", "train_tokens")})


@dataclass
class StepResult:
    """One optimizer step: mean loss over its micro-batches, tokens over all processes, lr used, seconds."""

    loss: float
    tokens: int
    lr: float
    seconds: float


@dataclass
class Loop:
    """Everything a training step touches; its methods are the loop's named steps."""

    settings: object
    accelerator: object
    model: object
    optimizer: object
    scheduler: object  # stepped here once per optimizer step (see training.start_loop)
    data: PreparedData
    pad_id: int
    schedule: Schedule
    state: LoopState
    _order: dict = field(default_factory=dict)  # this epoch's global batches, made once per epoch

    @property
    def done(self) -> bool:
        return self.state.step >= self.schedule.total_steps

    @property
    def val_examples(self) -> list:
        return self.data.val[: upto(self.settings.max_val_examples)]

    def micro_batches(self) -> list:
        """The global batches of the next optimizer step, in the (seed, epoch) order of train_data."""
        epoch, k = divmod(self.state.step, self.schedule.steps_per_epoch)
        if epoch not in self._order:
            s = self.schedule
            self._order = {epoch: epoch_batches(len(self.data.train), s.batch_size, s.processes,
                                                self.settings.seed, epoch)}
        ga = self.schedule.accumulation
        return self._order[epoch][k * ga: (k + 1) * ga]

    def train_step(self) -> StepResult:
        """Forward and backward over the step's micro-batches, clip, step optimizer and scheduler."""
        import torch

        acc, model, bs = self.accelerator, self.model, self.schedule.batch_size
        rank = acc.process_index
        micro = self.micro_batches()
        start = time.perf_counter()
        loss_sum = torch.zeros((), device=acc.device)
        tokens = torch.zeros((), dtype=torch.long, device=acc.device)
        for i, global_batch in enumerate(micro):
            batch = collate([self.data.train[j] for j in global_batch[rank * bs: (rank + 1) * bs]], self.pad_id,
                            acc.device)
            # gradients are averaged across processes only on the last micro-batch of a step
            with nullcontext() if i == len(micro) - 1 else acc.no_sync(model):
                loss = model(**batch).loss
                acc.backward(loss / len(micro))
            loss_sum += loss.detach().float()
            tokens += batch["attention_mask"].sum()
        lr = self.scheduler.get_last_lr()[0]
        if self.settings.max_grad_norm > 0:
            acc.clip_grad_norm_(model.parameters(), self.settings.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.state.step += 1
        step_loss = acc.reduce(loss_sum / len(micro), "mean").item()
        step_tokens = int(acc.reduce(tokens, "sum").item())
        return StepResult(step_loss, step_tokens, lr, time.perf_counter() - start)

    def record(self, result: StepResult) -> dict | None:
        """Add a step to the log window; every `log_every` steps (and at the end) close it into a log entry."""
        state, window = self.state, self.state.window
        window.update(loss=window["loss"] + result.loss, steps=window["steps"] + 1,
                      tokens=window["tokens"] + result.tokens, seconds=window["seconds"] + result.seconds)
        state.train_seconds += result.seconds
        state.train_tokens += result.tokens
        step = state.step
        if step % self.settings.log_every and step != self.schedule.total_steps:
            return None
        entry = {"step": step, "epoch": step / self.schedule.steps_per_epoch,
                 "loss": window["loss"] / window["steps"], "lr": result.lr,
                 "tokens_per_s": window["tokens"] / max(window["seconds"], 1e-9)}
        state.history["train"].append(entry)
        state.window = _empty_window()
        self.track({"train/loss": entry["loss"], "train/lr": result.lr, "train/tokens_per_s": entry["tokens_per_s"]})
        return entry

    def validate(self) -> dict:
        """The validation loss now, appended to the history."""
        loss, tokens = validation_loss(self.model, self.val_examples, self.pad_id, self.accelerator,
                                       self.schedule.batch_size)
        step = self.state.step
        entry = {"step": step, "epoch": step / self.schedule.steps_per_epoch, "loss": loss,
                 "perplexity": perplexity(loss), "tokens": tokens}
        self.state.history["val"].append(entry)
        self.track({"val/loss": loss, "val/perplexity": entry["perplexity"]})
        return entry

    def track(self, values: dict) -> None:
        if self.settings.report_to != "none":
            self.accelerator.log(values, step=self.state.step)

    def _every(self, n: int) -> bool:
        return bool(n) and self.state.step % n == 0

    def epoch_end(self) -> bool:
        return self._every(self.schedule.steps_per_epoch)

    def validation_due(self) -> bool:
        """At each epoch end, every `eval_every` steps, and at the end."""
        return self.epoch_end() or self._every(self.settings.eval_every) or self.done

    def stop_due(self) -> bool:
        """`stop_after` reached before the end: checkpoint and stop, keeping the schedule."""
        stop_after = self.settings.stop_after
        return stop_after is not None and self.state.step >= stop_after and not self.done

    def checkpoint_due(self) -> bool:
        """At each epoch end, every `save_steps` steps, at the end, and before a stop."""
        return self.epoch_end() or self._every(self.settings.save_steps) or self.done or self.stop_due()

    def saved_state(self) -> dict:
        """The loop's state as trainer_state.json holds it (with the schedule, for a reader)."""
        return {**asdict(self.state), "total_steps": self.schedule.total_steps,
                "steps_per_epoch": self.schedule.steps_per_epoch}
