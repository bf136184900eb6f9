"""The validation loss of a fine-tuning run: cross-entropy per answer token on held-out examples.

Not to be confused with `evaluation` (pass@k of generated programs): this is the loss curve's other half.
"""

from __future__ import annotations

import math

from .train_data import collate


def validation_loss(model, examples: list, pad_id: int, accelerator, batch_size: int) -> tuple[float, int]:
    """(mean loss per answer token, answer tokens) over `examples`, sharded across processes."""
    import torch
    import torch.nn.functional as F

    # The bare model: a DDP forward syncs buffers, and processes may hold unequal shares here.
    model = accelerator.unwrap_model(model)
    model.eval()
    mine = examples[accelerator.process_index:: accelerator.num_processes]
    total = torch.zeros(2, dtype=torch.float64, device=accelerator.device)
    with torch.no_grad():
        for start in range(0, len(mine), batch_size):
            batch = collate(mine[start: start + batch_size], pad_id, accelerator.device)
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            labels = batch["labels"][:, 1:]
            loss = F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.size(-1)), labels.reshape(-1),
                                   ignore_index=-100, reduction="sum")
            total += torch.stack([loss.double(), (labels != -100).sum().double()])
    model.train()
    total = accelerator.reduce(total, "sum")
    return (total[0] / total[1]).item(), int(total[1].item())


def perplexity(loss: float) -> float:
    """exp(loss), capped so that an untrained model's loss does not overflow."""
    return math.exp(min(loss, 50))
