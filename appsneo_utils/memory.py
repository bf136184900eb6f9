"""Will this fine-tune fit? A memory estimate per plan, and the choice of a memory-saving option.

Arithmetic, not measurement: bytes per parameter for weights, gradients and optimizer states (AdamW's
two moments, or Adafactor's factored second moment: a row and a column vector per matrix), plus
activations for GPT-Neo's eager attention (Korthikanti et al. 2022, "Reducing activation
recomputation", with GPT-Neo's fp32 attention scores). Good to about 20%: it decides between
plans and refuses hopeless ones; it does not promise a run will not run out of memory.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

GB = 1024**3
# Share of the device memory a plan may use: allocator fragmentation and the odd spike take the rest.
USABLE_SHARE = 0.9
CUDA_CONTEXT_GB = 1.0  # CUDA context, cuBLAS workspaces and kernels, on every GPU
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj")  # GPT-Neo's attention projections


class PlanDoesNotFit(RuntimeError):
    """No memory plan fits (or the one requested does not and switching is off); the message says what to do."""


@dataclass(frozen=True)
class ModelShape:
    """The sizes that memory depends on."""

    name: str
    n_params: int
    n_layers: int
    hidden: int
    heads: int
    vocab: int
    intermediate: int
    max_positions: int


def shape_from_config(config, name: str = "") -> ModelShape:
    """A GPT-Neo shape from a config object or dict; the parameter count is computed exactly."""
    get = config.get if isinstance(config, dict) else (lambda key, default=None: getattr(config, key, default))
    h, layers = int(get("hidden_size")), int(get("num_layers"))
    inner = int(get("intermediate_size") or 4 * h)
    vocab, positions = int(get("vocab_size")), int(get("max_position_embeddings"))
    # per layer: q,k,v (no bias) + out_proj (bias) + MLP (biases) + two LayerNorms
    per_layer = 4 * h * h + h + 2 * h * inner + inner + h + 4 * h
    n_params = vocab * h + positions * h + layers * per_layer + 2 * h  # lm_head is tied to the embedding
    return ModelShape(name or get("_name_or_path", "") or "gpt-neo", n_params, layers, h, int(get("num_heads")),
                      vocab, inner, positions)


# The checkpoints this kit names, so a plan can be made before anything is downloaded.
KNOWN = {
    "EleutherAI/gpt-neo-125M": dict(hidden_size=768, num_layers=12, num_heads=12, vocab_size=50257,
                                    max_position_embeddings=2048),
    "EleutherAI/gpt-neo-1.3B": dict(hidden_size=2048, num_layers=24, num_heads=16, vocab_size=50257,
                                    max_position_embeddings=2048),
    "EleutherAI/gpt-neo-2.7B": dict(hidden_size=2560, num_layers=32, num_heads=20, vocab_size=50257,
                                    max_position_embeddings=2048),
}
KNOWN["flax-community/gpt-neo-1.3B-apps-all"] = KNOWN["flax-community/gpt-neo-1.3B-apps"] = KNOWN[
    "EleutherAI/gpt-neo-1.3B"
]


def model_shape(model) -> ModelShape:
    """The shape of a loaded model, a config, "tiny", a saved folder or a known/cached hub name."""
    if hasattr(model, "config") and hasattr(model.config, "hidden_size"):
        return shape_from_config(model.config)
    if hasattr(model, "hidden_size") or isinstance(model, dict):
        return shape_from_config(model)
    name = str(model)
    if name == "tiny":
        from .modeling import TINY_CONFIG, TINY_VOCAB

        return shape_from_config({**TINY_CONFIG, "vocab_size": TINY_VOCAB}, "tiny")
    folder = Path(name).expanduser()
    if (folder / "config.json").is_file():
        return shape_from_config(json.loads((folder / "config.json").read_text()), name)
    if name in KNOWN:
        return shape_from_config(KNOWN[name], name)
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(name, "config.json")
        if isinstance(cached, str):
            return shape_from_config(json.loads(Path(cached).read_text()), name)
    except ImportError:
        pass
    raise ValueError(
        f"cannot size {name!r} without loading it: pass a loaded model or a folder with config.json, "
        f"or one of {', '.join(KNOWN)}"
    )


@dataclass(frozen=True)
class Estimate:
    """Peak memory of one training plan, in GiB."""

    option: str
    lora: bool
    optim_8bit: bool
    gradient_checkpointing: bool
    weights_gb: float
    gradients_gb: float
    optimizer_gb: float
    activations_gb: float
    overhead_gb: float
    trainable: int

    @property
    def total_gb(self) -> float:
        return self.weights_gb + self.gradients_gb + self.optimizer_gb + self.activations_gb + self.overhead_gb


def option_name(lora: bool, optim_8bit: bool, gradient_checkpointing: bool) -> str:
    parts = ["LoRA" if lora else "full fine-tune"]
    if optim_8bit:
        parts.append("8-bit AdamW")
    if gradient_checkpointing:
        parts.append("gradient checkpointing")
    return " + ".join(parts)


def lora_params(shape: ModelShape, r: int) -> int:
    """Trainable LoRA parameters on the four attention projections (h x h each)."""
    return shape.n_layers * len(LORA_TARGETS) * r * 2 * shape.hidden


def adafactor_state(shape: ModelShape, *, lora: bool = False, lora_r: int = 16) -> int:
    """Numbers (fp32) Adafactor keeps without momentum (beta1=None, as training.make_optimizer builds it):
    for a matrix of r x c, a row and a column second moment (r + c); for a vector, the whole vector."""
    h, inner = shape.hidden, shape.intermediate
    if lora:  # per target projection: A is r x h, B is h x r
        return shape.n_layers * len(LORA_TARGETS) * 2 * (lora_r + h)
    # per layer: q, k, v, out_proj (h x h each), out_proj's bias, c_fc (inner x h) and its bias,
    # c_proj (h x inner) and its bias, two LayerNorms (weight and bias)
    per_layer = 4 * 2 * h + h + (inner + h) + inner + (h + inner) + h + 4 * h
    # the embeddings (lm_head is tied to wte) and the final LayerNorm
    return (shape.vocab + h) + (shape.max_positions + h) + shape.n_layers * per_layer + 2 * h


def estimate(shape: ModelShape, *, batch_size: int, block_size: int, precision: str = "bf16",
             lora: bool = False, lora_r: int = 16, optim_8bit: bool = False,
             gradient_checkpointing: bool = False, eager_attention: bool = True, cuda: bool = True,
             optimizer: str = "adamw") -> Estimate:
    """Peak training memory of one plan (per device: batch_size is per device); optimizer: adamw | adafactor."""
    b, s, h, a, n = batch_size, block_size, shape.hidden, shape.heads, shape.n_params
    half = precision in ("bf16", "fp16") and cuda  # autocast only on CUDA; CPU trains in fp32
    if lora:
        trainable = lora_params(shape, lora_r)
        weights = n * (2 if half else 4) + trainable * 4  # frozen base in bf16, adapters in fp32
    else:
        trainable = n
        weights = n * 4  # fp32 master weights; autocast makes bf16 copies on the fly
    gradients = trainable * 4
    if optimizer == "adafactor":  # factored: ~0.005 GiB for 1.3B against AdamW's 9.8
        states = adafactor_state(shape, lora=lora, lora_r=lora_r) * 4
    else:
        states = trainable * (2 if optim_8bit else 8)  # AdamW: two fp32 states (8-bit: two bytes)
    act = 2 if half else 4
    # Per layer and sequence: ~34*s*h bytes of 16-bit activations (Korthikanti et al.), plus GPT-Neo's
    # eager attention keeps fp32 softmax output and 16-bit probabilities: (4 + act) * heads * s^2.
    per_layer = b * (34 * s * h * act / 2 + ((4 + act) * a * s * s if eager_attention else 0))
    if gradient_checkpointing:
        layers = shape.n_layers * b * s * h * act + per_layer  # layer inputs + one layer recomputed
    else:
        layers = shape.n_layers * per_layer
    # logits (act) upcast to fp32 for the loss, log-softmax output and its gradient: 3 fp32 copies
    logits = b * s * shape.vocab * (act + 12)
    overhead = CUDA_CONTEXT_GB * GB if cuda else 0.0
    return Estimate(option_name(lora, optim_8bit, gradient_checkpointing), lora, optim_8bit, gradient_checkpointing,
                    weights / GB, gradients / GB, states / GB, (layers + logits) / GB, overhead / GB, trainable)


# Tried in this order when the requested plan does not fit: cheapest change in results first.
OPTIONS = (
    (False, False, False),
    (False, False, True),
    (False, True, True),
    (True, False, False),
    (True, False, True),
)


def bitsandbytes_available() -> bool:
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        return False
    return True


def device_memory_gb() -> tuple[float, str, bool]:
    """(GiB, description, is_cuda) of the device that trains: the first CUDA GPU, else the RAM."""
    try:
        import torch

        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            return props.total_memory / GB, f"{props.name}, {props.total_memory / GB:.1f} GiB", True
    except ImportError:
        pass
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GB
    return ram, f"CPU RAM, {ram:.1f} GiB", False


@dataclass(frozen=True)
class MemoryPlan:
    """The estimate for every option, the one requested, and the one that will run (None: nothing fits)."""

    shape: ModelShape
    device: str
    memory_gb: float
    budget_gb: float
    requested: Estimate
    chosen: Estimate | None
    table: tuple[Estimate, ...]
    advice: str
    optimizer: str = "adamw"

    @property
    def switched(self) -> bool:
        return self.chosen is not None and self.chosen.option != self.requested.option

    def fits(self, est: Estimate) -> bool:
        return est.total_gb <= self.budget_gb

    def summary(self) -> str:
        lines = [
            f"memory plan for {self.shape.name} ({self.shape.n_params / 1e6:,.1f}M parameters, "
            f"{'Adafactor' if self.optimizer == 'adafactor' else 'AdamW'}) on {self.device}: "
            f"budget {self.budget_gb:.1f} GiB ({USABLE_SHARE:.0%} of {self.memory_gb:.1f})",
            f"  {'option':<52}{'weights':>9}{'grads':>8}{'optim':>8}{'activ.':>8}{'total':>8}  fits",
        ]
        for est in self.table:
            mark = " <- requested" if est.option == self.requested.option else ""
            if self.chosen is not None and est.option == self.chosen.option:
                mark += " <- chosen"
            lines.append(
                f"  {est.option:<52}{est.weights_gb:9.2f}{est.gradients_gb:8.2f}{est.optimizer_gb:8.2f}"
                f"{est.activations_gb:8.2f}{est.total_gb:8.2f}  {'yes' if self.fits(est) else 'no'}{mark}"
            )
        lines.append(self.advice)
        return "\n".join(lines)

    def check(self) -> Estimate:
        """The chosen estimate, or PlanDoesNotFit with the table and the advice."""
        if self.chosen is None:
            raise PlanDoesNotFit(self.summary())
        return self.chosen


def plan(shape: ModelShape, memory_gb: float | None = None, *, batch_size: int, block_size: int,
         precision: str = "bf16", lora: bool = False, lora_r: int = 16, optim_8bit: bool = False,
         gradient_checkpointing: bool = False, auto: bool = True, eager_attention: bool = True,
         cuda: bool | None = None, device: str | None = None, have_8bit: bool | None = None,
         optimizer: str = "adamw") -> MemoryPlan:
    """Estimate every option; keep the requested one if it fits, else (auto) the first that does.

    memory_gb None measures this machine (GPU, else RAM); pass 16 to plan for a 16 GB Colab GPU.
    optimizer: adamw | adafactor (whose states are factored already: no 8-bit option is tried).
    """
    if memory_gb is None:
        memory_gb, measured, is_cuda = device_memory_gb()
        device = device or measured
        cuda = is_cuda if cuda is None else cuda
    cuda = True if cuda is None else cuda
    device = device or f"{'GPU' if cuda else 'CPU'} with {memory_gb:.1f} GiB"
    adamw = optimizer != "adafactor"
    have_8bit = (bitsandbytes_available() and cuda) if have_8bit is None else have_8bit
    common = dict(batch_size=batch_size, block_size=block_size, precision=precision, lora_r=lora_r,
                  eager_attention=eager_attention, cuda=cuda, optimizer=optimizer)
    requested = estimate(shape, lora=lora, optim_8bit=optim_8bit, gradient_checkpointing=gradient_checkpointing,
                         **common)
    table = [estimate(shape, lora=lo, optim_8bit=o8, gradient_checkpointing=gc, **common) for lo, o8, gc in OPTIONS
             if adamw or not o8]
    if requested.option not in {e.option for e in table}:
        table.append(requested)
    budget = memory_gb * USABLE_SHARE
    fits = [e for e in table if e.total_gb <= budget and (have_8bit or not e.optim_8bit)]
    if requested.total_gb <= budget:
        chosen, advice = requested, f"-> {requested.option} fits ({requested.total_gb:.1f} of {budget:.1f} GiB)."
    elif auto and fits:
        chosen = fits[0]
        advice = (f"-> {requested.option} needs ~{requested.total_gb:.1f} GiB > {budget:.1f}: switching to "
                  f"{chosen.option} ({chosen.total_gb:.1f} GiB). Set auto_memory=False to refuse instead.")
    else:
        chosen = None
        advice = _advice(requested, fits, budget, batch_size, block_size)
    if adamw and not have_8bit and chosen is not requested:
        advice += "\n   (8-bit AdamW needs a CUDA GPU and `pip install bitsandbytes`; it was not considered.)"
    return MemoryPlan(shape, device, memory_gb, budget, requested, chosen, tuple(table), advice, optimizer)


def _advice(requested, fits, budget, batch_size, block_size) -> str:
    lines = [f"-> refusing: {requested.option} needs ~{requested.total_gb:.1f} GiB but the budget is {budget:.1f} GiB."]
    if fits:  # auto is off
        best = fits[0]
        flags = [f"lora={best.lora}", f"optim_8bit={best.optim_8bit}",
                 f"gradient_checkpointing={best.gradient_checkpointing}"]
        lines.append(f"   {best.option} would fit ({best.total_gb:.1f} GiB): set {', '.join(flags)}, "
                     f"or auto_memory=True to let the plan switch.")
    else:
        lines.append("   No memory-saving option fits either. Try, in order: a smaller batch_size with "
                     f"grad_accum to keep the effective batch (batch_size=1, grad_accum={batch_size}); a "
                     f"shorter block_size (e.g. {max(block_size // 2, 64)}); a GPU with more memory (an "
                     "A100/H100 trains the full model).")
    return "\n".join(lines)
