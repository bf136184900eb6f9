"""The fine-tuning engine: settings, a plain PyTorch loop under accelerate, checkpoints, resume (the
examples and split rules are in train_data.py, the recipes in recipes.py).

`run(settings)` is the one code path: notebooks/02_finetune.ipynb calls it on a CPU or one GPU, and
`accelerate launch -m appsneo_utils.finetune ...` calls it on many GPUs. Defaults are the "card" recipe
of the original GPT-Neo 1.3B APPS fine-tune (recipes.py names each recipe and its source);
`make_settings(profile, recipe=...)` layers a recipe, then the profile (the smoke profile swaps in the
embedded default: tiny model, mini set), then the values passed.

What the original training did (CodedotAl/gpt-code-clippy, `run_clm_apps.py` at the root of `main`, the
script the card's `--all_data true` command needs): question and answer tokenised as a PAIR with
`padding="max_length"`, `truncation=True` (longest_first: the longer of the two loses tokens) at 1024;
pad = EOS, and the loss mask `attention_mask * token_type_ids` keeps answer tokens only, so the EOS
padding is never learned and no EOS ends an answer; `--all_data true` pools train then test, one example
per solution, and validates on the last 10% (the unshuffled `int(0.9 * n)` cut). The `camera-ready` branch's
`training/run_clm_apps.py` masks with `attention_mask - token_type_ids`: loss on the QUESTION only.
This kit keeps the answer-only loss, appends EOS and drops or truncates over-long examples at the end of
the answer (prompts.encode_example); `split_rule="original"` reproduces the cut.
"""

from __future__ import annotations

import json
import logging
import math
import shlex
import shutil
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from . import memory, paths
from .modeling import ATTENTION_BACKENDS, FINETUNED_MODEL, TINY, attention_backend_for, compile_blocks
from .params import (
    Profile, coerce_bool, coerce_choice, coerce_float, coerce_int, coerce_optional_str, resolve_profile,
)
from .recipes import RECIPE_HELP, RECIPE_NAMES, RECIPES, SMOKE_RECIPES, batch_plan, world_size
from .train_data import PreparedData, collate, epoch_batches, prepare_data

NOTEBOOK = "02_finetune"
PRECISIONS = ("bf16", "fp16", "fp32")
ATTENTIONS = ("auto", *ATTENTION_BACKENDS)
REPORTERS = ("none", "wandb", "tensorboard")
OPTIMIZERS = ("adamw", "adafactor")
SPLIT_RULES = ("grouped", "original")
NONE_WORDS = ("none", "null", "")


def _param(default, help: str, kind: str, **check):
    """A settings field: its default, help string and how to coerce a notebook/CLI value."""
    return field(default=default, metadata={"help": help, "kind": kind, **check})


@dataclass
class TrainSettings:
    """Every knob of a fine-tuning run; each is a notebook parameter and an `accelerate launch` flag."""

    recipe: str = _param("card", RECIPE_HELP, "choice", choices=RECIPE_NAMES)
    # --- what to train on
    model: str = _param(FINETUNED_MODEL, "model to start from: a hub name, a saved folder, or 'tiny'", "str")
    data: str = _param("codeparrot/apps", "APPS source for data.load_apps: 'codeparrot/apps', 'mini' or a path", "str")
    all_data: bool = _param(False, "True pools the train AND test splits (the original '-all' model): "
                                   "APPS-test scores of the result are then contaminated", "bool")
    split_rule: str = _param("grouped", "grouped | original: grouped holds out val_problems whole problems "
                                        "(shuffled with the seed); original is run_clm_apps.py's cut: train then "
                                        "test pooled, one example per solution in dataset order, the first "
                                        "int(0.9 * n) trained, the rest validation, unshuffled (needs all_data)",
                             "choice", choices=SPLIT_RULES)
    val_problems: int = _param(200, "whole problems held out for validation (split_rule grouped; grouped by "
                                    "(split, problem_id), shuffled with the seed)", "int", minimum=1)
    max_train_problems: int | None = _param(None, "train on at most this many problems (quick runs; split_rule "
                                                  "grouped); None: all", "int", minimum=1, optional=True)
    max_val_examples: int | None = _param(1000, "validate on at most this many held-out examples; None: all",
                                          "int", minimum=1, optional=True)
    # --- examples
    block_size: int = _param(1024, "tokens per example; longer examples are truncated at the end of the answer "
                                   "when the prompt and block_size/4 answer tokens fit, else dropped", "int",
                             minimum=8)
    packing: bool = _param(False, "pack several short examples into one block (they attend to each other)", "bool")
    # --- optimisation (the original recipe)
    epochs: int = _param(5, "passes over the training examples", "int", minimum=1)
    max_steps: int | None = _param(None, "total optimizer steps, overriding epochs (sets the schedule length)",
                                   "int", minimum=1, optional=True)
    batch_size: int = _param(3, "sequences per device per micro-batch", "int", minimum=1)
    global_batch: int = _param(24, "sequences per optimizer step over all devices: the accumulation is computed "
                                   "from the devices present (the original: 3 per device x 8 TPU v3 cores, 24); "
                                   "0: grad_accum decides", "int", minimum=0)
    grad_accum: int = _param(1, "micro-batches per optimizer step when global_batch is 0", "int", minimum=1)
    optimizer: str = _param("adamw", "adamw | adafactor (transformers' Adafactor with a fixed lr, as optax's "
                                     "adafactor defaults in the original)", "choice", choices=OPTIMIZERS)
    learning_rate: float = _param(8e-5, "peak learning rate", "float", minimum=0.0)
    warmup_steps: int = _param(800, "linear warm-up steps, then linear decay to 0", "int", minimum=0)
    weight_decay: float = _param(0.1, "weight decay (not on biases and LayerNorm weights)", "float",
                                 minimum=0.0)
    adam_beta1: float = _param(0.9, "AdamW beta1", "float", minimum=0.0, maximum=1.0)
    adam_beta2: float = _param(0.98, "AdamW beta2", "float", minimum=0.0, maximum=1.0)
    adam_epsilon: float = _param(1e-8, "AdamW epsilon", "float", minimum=0.0)
    max_grad_norm: float = _param(1.0, "gradient clipping norm; 0 turns clipping off", "float", minimum=0.0)
    precision: str = _param("bf16", "bf16 | fp16 | fp32: mixed precision on CUDA; a CPU always trains in fp32",
                            "choice", choices=PRECISIONS)
    seed: int = _param(0, "seed for the model init, the validation split and the data order", "int", minimum=0)
    # --- memory
    lora: bool = _param(False, "train LoRA adapters (peft) instead of all weights", "bool")
    lora_r: int = _param(16, "LoRA rank", "int", minimum=1)
    lora_alpha: int = _param(32, "LoRA alpha (the scale is alpha / r)", "int", minimum=1)
    lora_dropout: float = _param(0.05, "LoRA dropout", "float", minimum=0.0, maximum=1.0)
    gradient_checkpointing: bool = _param(False, "recompute activations in the backward pass (saves memory)", "bool")
    optim_8bit: bool = _param(False, "8-bit AdamW states (bitsandbytes, CUDA only)", "bool")
    auto_memory: bool = _param(True, "when the plan does not fit, switch to the first memory-saving option that "
                                     "does (False: refuse with advice)", "bool")
    gpu_memory_gb: float | None = _param(None, "plan for this much device memory (e.g. 16 for a Colab T4); "
                                               "None: measure this machine", "float", minimum=0.1, optional=True)
    # --- speed (the fast path: benchmarks/README.md)
    attention: str = _param("auto", "auto | eager | sdpa | flex: auto is sdpa on CUDA, eager on CPU", "choice",
                            choices=ATTENTIONS)
    compile: bool = _param(False, "torch.compile each transformer block (modeling.compile_blocks)", "bool")
    # --- checkpoints, resume and logs
    output_dir: str | None = _param(None, "run folder; None: runs/02_finetune", "str", optional=True)
    save_steps: int = _param(0, "also checkpoint every N steps (0: at each epoch end only)", "int", minimum=0)
    save_total_limit: int = _param(2, "checkpoints kept (the oldest are deleted)", "int", minimum=1)
    resume: str | bool = _param("auto", "auto (resume when a matching checkpoint exists) | true (must resume) | "
                                        "false (start fresh, deleting old checkpoints)", "resume")
    stop_after: int | None = _param(None, "checkpoint and stop after this step, keeping the schedule (to train "
                                          "in sessions); None: train to the end", "int", minimum=1, optional=True)
    eval_every: int = _param(0, "also validate every N steps (0: at each epoch end only)", "int", minimum=0)
    log_every: int = _param(10, "average the training loss over N steps per log entry", "int", minimum=1)
    report_to: str = _param("none", "none | wandb | tensorboard", "choice", choices=REPORTERS)
    profile: str = _param("full", "which profile filled the defaults (set by make_settings)", "choice",
                          choices=("full", "smoke"))

    def __post_init__(self):
        for f in fields(self):
            setattr(self, f.name, _coerce(f, getattr(self, f.name)))

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir).expanduser() if self.output_dir else paths.RUNS_DIR / NOTEBOOK

    @property
    def model_dir(self) -> Path:
        return self.run_dir / "model"


# The embedded default: a from-scratch tiny model needs a much higher learning rate, a short warm-up
# and small steps (3 sequences, no global batch of 24); ~10 epochs of the mini set take about a minute
# on two CPU cores.
SMOKE = dict(model=TINY, data="mini", epochs=10, learning_rate=2e-3, warmup_steps=20, val_problems=4, log_every=5,
             global_batch=0)
PROFILE_DEFAULTS = {"full": {}, "smoke": SMOKE}
# Settings that may change between an interrupted run and its resumption.
RUN_ONLY = {"resume", "stop_after", "report_to", "log_every", "output_dir", "compile", "attention",
            "gpu_memory_gb", "auto_memory", "eval_every", "max_val_examples", "save_steps", "save_total_limit",
            "profile"}


def _coerce(f, value):
    meta, name = f.metadata, f.name
    if meta.get("optional") and (value is None or (isinstance(value, str) and value.strip().lower() in NONE_WORDS)):
        return None
    if value is None:
        raise ValueError(f"{name} must not be None")
    kind = meta["kind"]
    if kind == "bool":
        return coerce_bool(name, value)
    if kind == "int":
        return coerce_int(name, value, minimum=meta.get("minimum"))
    if kind == "float":
        return coerce_float(name, value, minimum=meta.get("minimum"), maximum=meta.get("maximum"))
    if kind == "choice":
        return coerce_choice(name, value, meta["choices"])
    if kind == "resume":
        if isinstance(value, str) and value.strip().lower() == "auto":
            return "auto"
        try:
            return coerce_bool(name, value)
        except ValueError:
            raise ValueError(f"resume must be auto, true or false, got {value!r}") from None
    return coerce_optional_str(name, value) if meta.get("optional") else str(value)


def parameter_names() -> list[str]:
    """The notebook parameters that make up a TrainSettings (all fields but `profile`)."""
    return [f.name for f in fields(TrainSettings) if f.name != "profile"]


def make_settings(profile="auto", **params) -> TrainSettings:
    """TrainSettings from notebook/CLI values, layered: defaults (the card recipe) < the recipe < the profile
    < the recipe's values for the embedded default (smoke) < the values passed.

    None (or "none") takes the layered default, except for settings where None has a meaning of its own
    (max_val_examples=None: validate on all). An explicit grad_accum turns the recipe's global_batch off.
    Every value is coerced and validated here: a bad one raises ValueError naming it.
    """
    prof = profile if isinstance(profile, Profile) else resolve_profile(profile, verbose=False)
    unknown = set(params) - set(parameter_names())
    if unknown:
        raise ValueError(f"unknown settings: {', '.join(sorted(unknown))}; known: {', '.join(parameter_names())}")
    recipe = coerce_choice("recipe", "card" if params.get("recipe") is None else params["recipe"], RECIPE_NAMES)
    base = {**RECIPES[recipe], **PROFILE_DEFAULTS[prof.name],
            **(SMOKE_RECIPES.get(recipe, {}) if prof.name == "smoke" else {})}
    if params.get("grad_accum") is not None:
        if params.get("global_batch") not in (None, 0, "0"):
            raise ValueError("set grad_accum or global_batch, not both: global_batch computes the accumulation "
                             "from the devices present (global_batch=0 lets grad_accum decide)")
        base["global_batch"] = 0
    values = {}
    for f in fields(TrainSettings):
        raw = params.get(f.name)
        if f.metadata.get("optional") and f.name in params:
            raw = None if isinstance(raw, str) and raw.strip().lower() in NONE_WORDS else raw
        elif raw is None:
            raw = base.get(f.name, f.default)
        values[f.name] = raw
    values["recipe"], values["profile"] = recipe, prof.name
    return TrainSettings(**values)


def identity(settings: TrainSettings) -> dict:
    """The settings that define a run (a checkpoint resumes only a run with the same ones)."""
    return {k: v for k, v in asdict(settings).items() if k not in RUN_ONLY}


# --- devices, precision, attention ------------------------------------------------------------


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def resolve_precision(settings: TrainSettings, *, verbose: bool = False) -> str:
    """accelerate's mixed_precision: "bf16"/"fp16" on CUDA, "no" on a CPU (fp32)."""
    if settings.precision == "fp32":
        return "no"
    if not _cuda():
        if verbose:
            print(f"precision: {settings.precision} needs CUDA; training in fp32 on the CPU")
        return "no"
    import torch

    if settings.precision == "bf16" and not torch.cuda.is_bf16_supported(including_emulation=False) and verbose:
        print("precision: this GPU has no native bf16 (e.g. a T4): it runs emulated and slowly; "
              "precision='fp16' is faster but GPT-Neo can overflow in fp16")
    return settings.precision


def resolve_attention(settings: TrainSettings, *, verbose: bool = False) -> str:
    """The attention backend to train with: auto is "sdpa" on CUDA, "eager" on a CPU."""
    backend = settings.attention
    if backend == "auto":
        backend = attention_backend_for("cuda" if _cuda() else "cpu")
        if verbose:
            print(f"attention: {backend} (auto: {'a CUDA GPU' if backend == 'sdpa' else 'no CUDA GPU'})")
    return backend


# --- batch and memory plans -------------------------------------------------------------------


def batch_plan_for(settings: TrainSettings, processes: int | None = None):
    """recipes.BatchPlan of these settings on `processes` devices (None: this run's, from WORLD_SIZE)."""
    return batch_plan(settings.batch_size, processes or world_size(), settings.grad_accum, settings.global_batch)



def plan_memory(settings: TrainSettings, model=None, *, verbose: bool = True):
    """(settings with the chosen memory options, MemoryPlan); raises memory.PlanDoesNotFit with advice."""
    shape = memory.model_shape(model if model is not None else settings.model)
    plan = memory.plan(
        shape, settings.gpu_memory_gb, batch_size=settings.batch_size, block_size=settings.block_size,
        precision=settings.precision, lora=settings.lora, lora_r=settings.lora_r, optim_8bit=settings.optim_8bit,
        gradient_checkpointing=settings.gradient_checkpointing, auto=settings.auto_memory,
        eager_attention=resolve_attention(settings) == "eager",
    )
    if verbose:
        print(plan.summary())
    chosen = plan.check()
    effective = replace(settings, lora=chosen.lora, optim_8bit=chosen.optim_8bit,
                        gradient_checkpointing=chosen.gradient_checkpointing)
    return effective, plan


# --- model ------------------------------------------------------------------------------------


def find_checkpoint(settings: TrainSettings, *, verbose: bool = False) -> Path | None:
    """The newest complete checkpoint this run may resume from, per `settings.resume`."""
    if settings.resume is False:
        return None
    folder = settings.run_dir / "checkpoints"
    done = sorted(folder.glob("step-*/trainer_state.json")) if folder.is_dir() else []
    if not done:
        if settings.resume is True:
            raise FileNotFoundError(f"resume=True but {folder} holds no complete checkpoint")
        return None
    latest = done[-1].parent
    saved, current = json.loads(done[-1].read_text())["identity"], identity(settings)
    differs = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
    if differs:
        why = ", ".join(f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in differs)
        if settings.resume is True:
            raise ValueError(f"cannot resume {latest}: it belongs to a run with other settings ({why})")
        if verbose:
            print(f"resume: {latest.name} is from a run with other settings ({why}); starting fresh")
        return None
    return latest


def build_model(settings: TrainSettings, *, checkpoint: Path | None = None, verbose: bool = True):
    """(model, tokenizer) ready to train: seeded init, attention path, gradient checkpointing, LoRA."""
    from .modeling import _finish_tokenizer, load_model, tiny_model, use_fast_attention
    from .repro import set_seed

    set_seed(settings.seed)  # before the model is built: the tiny init and the LoRA init depend on it
    tokenizer = None
    if checkpoint is not None:  # the tokenizer the run started with (the tiny one is trained on the fly)
        from transformers import AutoTokenizer

        tokenizer = _finish_tokenizer(AutoTokenizer.from_pretrained(checkpoint), settings.block_size)
    if settings.model == TINY:
        model, tokenizer = tiny_model(settings.seed, tokenizer=tokenizer)
    else:
        half_base = settings.lora and _cuda() and settings.precision in ("bf16", "fp16")
        dtype = settings.precision if half_base else "fp32"  # full fine-tunes keep fp32 master weights
        model, loaded_tokenizer = load_model(settings.model, device="cpu", dtype=dtype, seed=settings.seed)
        tokenizer = tokenizer or loaded_tokenizer
    positions = model.config.max_position_embeddings
    if settings.block_size > positions:
        raise ValueError(f"block_size={settings.block_size} exceeds the model's {positions} positions")
    backend = resolve_attention(settings, verbose=verbose)
    if backend != "eager":
        use_fast_attention(model, backend)
    model.config.use_cache = False
    if settings.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if settings.lora:
        from peft import LoraConfig, get_peft_model

        config = LoraConfig(r=settings.lora_r, lora_alpha=settings.lora_alpha, lora_dropout=settings.lora_dropout,
                            target_modules=list(memory.LORA_TARGETS), task_type="CAUSAL_LM")
        model = get_peft_model(model, config)
    if verbose:
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in model.parameters())
        print(f"model: {settings.model}, {total / 1e6:,.2f}M parameters, {trainable / 1e6:,.2f}M trainable "
              f"({memory.option_name(settings.lora, settings.optim_8bit, settings.gradient_checkpointing)})")
    return model, tokenizer


def make_optimizer(model, settings: TrainSettings):
    """AdamW with the recipe's betas, or Adafactor; no decay on biases and LayerNorm weights (as HF Trainer)."""
    import torch

    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": settings.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if settings.optimizer == "adafactor":
        if settings.optim_8bit:
            raise ValueError("optim_8bit applies to AdamW only: Adafactor's factored states are small already")
        from transformers.optimization import Adafactor

        # optax.adafactor's defaults as run_clm_apps.py used them: the scheduler's lr (no relative step),
        # updates scaled by the parameter RMS, update clipping at 1.0, second-moment decay t^-0.8, no momentum.
        return Adafactor(groups, lr=settings.learning_rate, relative_step=False, scale_parameter=True,
                         warmup_init=False, clip_threshold=1.0, decay_rate=-0.8, beta1=None)
    kwargs = dict(lr=settings.learning_rate, betas=(settings.adam_beta1, settings.adam_beta2),
                  eps=settings.adam_epsilon)
    if settings.optim_8bit:
        try:
            import bitsandbytes as bnb
        except ImportError:
            raise ImportError("optim_8bit=True needs bitsandbytes and a CUDA GPU: pip install bitsandbytes "
                              "(or use lora=True)") from None
        return bnb.optim.AdamW8bit(groups, **kwargs)
    on_cuda = next(model.parameters()).is_cuda
    return torch.optim.AdamW(groups, fused=True if on_cuda else None, **kwargs)


# --- the run ----------------------------------------------------------------------------------


@dataclass
class RunResult:
    settings: TrainSettings
    history: dict
    metrics: dict
    completed: bool
    step: int
    total_steps: int
    model: object = None
    tokenizer: object = None
    data: PreparedData | None = None
    memory_plan: object = None

    @property
    def run_dir(self) -> Path:
        return self.settings.run_dir

    @property
    def model_dir(self) -> Path:
        return self.settings.model_dir


def _accelerator(settings: TrainSettings):
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, PartialState

    # cpu=True lets several CPU processes (torchrun) form a gloo group; on one process it changes nothing
    kwargs = {"mixed_precision": resolve_precision(settings), "cpu": not _cuda()}
    if settings.report_to != "none":
        package = {"wandb": "wandb", "tensorboard": "tensorboard"}[settings.report_to]
        try:
            __import__(package)
        except ImportError:
            raise ImportError(f"report_to={settings.report_to!r} needs `pip install {package}`") from None
        kwargs.update(log_with=settings.report_to, project_dir=str(settings.run_dir))
    try:
        return Accelerator(**kwargs)
    except ValueError as exc:
        # A notebook that ran once with another precision: one process may start over, many may not.
        if "already been initialized" not in str(exc) or PartialState().num_processes > 1:
            raise
        AcceleratorState._reset_state(reset_partial_state=True)
        return Accelerator(**kwargs)


def evaluate(model, examples: list, pad_id: int, accelerator, batch_size: int) -> tuple[float, int]:
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


def trained_problems_record(settings: TrainSettings, data: PreparedData) -> dict:
    """What trained_problems.json holds: the (split, problem_id) keys trained on and held out."""
    test_seen = data.test_problems_trained
    record = {
        "all_data": settings.all_data,
        "data": settings.data,
        "split_rule": settings.split_rule,
        "contaminated_test_problems": test_seen,
        "note": ("trained on these (split, problem_id) keys; APPS-test scores on them are contaminated"
                 if test_seen else "trained on the train split only; APPS-test problems were not seen"),
        "train": [list(k) for k in data.train_problems],
        "validation": [list(k) for k in data.val_problems],
    }
    if settings.split_rule == "original":  # a problem is seen when any of its solutions is before the cut
        record.update(pooled_examples=data.counts["pooled_examples"], cut=data.counts["cut"])
    return record


def load_trained_problems(model_dir) -> set | None:
    """The (split, problem_id) keys a model from this notebook trained on, or None when it has no record."""
    path = Path(model_dir) / "trained_problems.json"
    if not path.is_file():
        return None
    return {(s, int(p)) for s, p in json.loads(path.read_text())["train"]}


def contamination_note(settings: TrainSettings, data: PreparedData | None = None) -> str:
    """The plain statement of what this model's APPS-test scores are worth."""
    where = settings.model_dir / "trained_problems.json"
    if settings.all_data:
        seen = ""
        if data is not None:
            unseen = data.test_problems_unseen()
            seen = (f" ({data.test_problems_trained} test problems; not seen: {len(unseen)}"
                    + (f", ids {', '.join(str(p) for _, p in unseen)}" if 0 < len(unseen) <= 20 else "") + ")")
        return (f"all_data is True: this model was trained on the APPS test split too{seen}, like the original "
                f"'-all' model. Its APPS-test scores are CONTAMINATED: exclude or flag the problems listed in "
                f"{where} when evaluating it.")
    return ("all_data is False: trained on the train split only; APPS-test scores of this model are not "
            f"contaminated by fine-tuning (list of trained problems: {where}).")


def _save_checkpoint(accelerator, settings, tokenizer, state: dict, data) -> Path:
    """Atomically: write step-N.tmp, then rename; only complete checkpoints are ever resumed."""
    folder = settings.run_dir / "checkpoints"
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
        paths.write_json(tmp / "trained_problems.json", trained_problems_record(settings, data))
        paths.write_json(tmp / "trainer_state.json", {**state, "identity": identity(settings)})
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        for old in sorted(folder.glob("step-*[0-9]"))[: -settings.save_total_limit]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def _clear_checkpoints(settings, accelerator, keep: Path | None) -> None:
    folder = settings.run_dir / "checkpoints"
    if accelerator.is_main_process and folder.is_dir() and keep is None:
        if any(folder.iterdir()):
            print(f"resume: starting fresh; deleting the old checkpoints in {folder}")
        shutil.rmtree(folder, ignore_errors=True)
    accelerator.wait_for_everyone()


def run(settings: TrainSettings, *, model=None, tokenizer=None, data: PreparedData | None = None,
        memory_plan=None, on_step=None) -> RunResult:
    """Fine-tune per `settings` (resuming when a matching checkpoint exists); save model, metrics, history.

    model/tokenizer/data/memory_plan: parts already prepared by the notebook with this module's
    functions (built here otherwise). on_step(state) is called after every optimizer step.
    """
    import torch
    from tqdm import tqdm  # text, not a widget: the executed notebook keeps the final bar

    accelerator = _accelerator(settings)
    main = accelerator.is_main_process
    if memory_plan is None:
        settings, memory_plan = plan_memory(settings, verbose=main)
    checkpoint = find_checkpoint(settings, verbose=main and model is None)  # the notebook said it already
    _clear_checkpoints(settings, accelerator, checkpoint)
    if model is None or tokenizer is None:
        model, tokenizer = build_model(settings, checkpoint=checkpoint, verbose=main)
    if data is None:
        data = prepare_data(settings, tokenizer, verbose=main)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    nproc, rank, bs = accelerator.num_processes, accelerator.process_index, settings.batch_size
    sizes = batch_plan_for(settings, nproc)
    ga = sizes.accumulation
    batches_per_epoch = math.ceil(len(data.train) / (bs * nproc))
    steps_per_epoch = math.ceil(batches_per_epoch / ga)
    total_steps = settings.max_steps or steps_per_epoch * settings.epochs
    if main:
        # e.g. 3 seqs * 1024 tokens * 1 GPU * 8 accumulation = 24,576 tokens per step at most
        print(f"schedule: {len(data.train)} train sequences, {bs} per device x {nproc} processes x {ga} "
              f"accumulation = {bs * nproc * ga} per step (recipe {settings.recipe}); {steps_per_epoch} steps per "
              f"epoch, {total_steps} steps; {settings.optimizer}, warm-up {settings.warmup_steps} steps to lr "
              f"{settings.learning_rate:g}, then linear decay to 0")
        if settings.warmup_steps >= total_steps:
            print(f"warning: warmup_steps={settings.warmup_steps} >= {total_steps} steps: the peak lr is never reached")

    model.to(accelerator.device)
    optimizer = make_optimizer(model, settings)
    from transformers import get_linear_schedule_with_warmup

    # The scheduler is stepped here once per optimizer step, not prepared: accelerate would step it
    # once per process, and the schedule must not depend on the number of GPUs.
    scheduler = get_linear_schedule_with_warmup(optimizer, settings.warmup_steps, total_steps)
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.register_for_checkpointing(scheduler)
    state = {"step": 0, "total_steps": total_steps, "steps_per_epoch": steps_per_epoch,
             "history": {"train": [], "val": []}, "window": {"loss": 0.0, "steps": 0, "tokens": 0, "seconds": 0.0},
             "train_seconds": 0.0, "train_tokens": 0}
    if checkpoint is not None:
        accelerator.load_state(str(checkpoint))
        saved = json.loads((checkpoint / "trainer_state.json").read_text())
        state.update({k: saved[k] for k in ("step", "history", "window", "train_seconds", "train_tokens")})
        if main:
            print(f"resume: from {checkpoint} at step {state['step']} of {total_steps}")
    if settings.compile:
        compile_blocks(accelerator.unwrap_model(model))
    if settings.report_to != "none":
        accelerator.init_trackers("appsneo-" + NOTEBOOK, config=asdict(settings))

    val = data.val[: settings.max_val_examples]

    def validate():
        loss, tokens = evaluate(model, val, pad_id, accelerator, bs)
        entry = {"step": state["step"], "epoch": state["step"] / steps_per_epoch, "loss": loss,
                 "perplexity": math.exp(min(loss, 50)), "tokens": tokens}
        state["history"]["val"].append(entry)
        if settings.report_to != "none":
            accelerator.log({"val/loss": loss, "val/perplexity": entry["perplexity"]}, step=state["step"])
        return entry

    if state["step"] == 0:
        validate()  # the untrained model: where the validation curve starts
    model.train()
    stopped = False
    bar = tqdm(total=total_steps, initial=state["step"], desc="fine-tune", unit="step", mininterval=5.0,
               disable=not accelerator.is_local_main_process)
    order = {}  # this epoch's global batches, made once per epoch rather than once per step
    while state["step"] < total_steps:
        epoch, k = divmod(state["step"], steps_per_epoch)
        if epoch not in order:
            order = {epoch: epoch_batches(len(data.train), bs, nproc, settings.seed, epoch)}
        micro = order[epoch][k * ga: (k + 1) * ga]
        start = time.perf_counter()
        loss_sum = torch.zeros((), device=accelerator.device)
        tokens = torch.zeros((), dtype=torch.long, device=accelerator.device)
        for i, global_batch in enumerate(micro):
            batch = collate([data.train[j] for j in global_batch[rank * bs: (rank + 1) * bs]], pad_id,
                            accelerator.device)
            # gradients are averaged across processes only on the last micro-batch of a step
            with nullcontext() if i == len(micro) - 1 else accelerator.no_sync(model):
                loss = model(**batch).loss
                accelerator.backward(loss / len(micro))
            loss_sum += loss.detach().float()
            tokens += batch["attention_mask"].sum()
        lr = scheduler.get_last_lr()[0]
        if settings.max_grad_norm > 0:
            accelerator.clip_grad_norm_(model.parameters(), settings.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        state["step"] += 1
        step_loss = accelerator.reduce(loss_sum / len(micro), "mean").item()
        step_tokens = int(accelerator.reduce(tokens, "sum").item())
        seconds = time.perf_counter() - start
        window = state["window"]
        window.update(loss=window["loss"] + step_loss, steps=window["steps"] + 1,
                      tokens=window["tokens"] + step_tokens, seconds=window["seconds"] + seconds)
        state["train_seconds"] += seconds
        state["train_tokens"] += step_tokens
        step = state["step"]
        if step % settings.log_every == 0 or step == total_steps:
            entry = {"step": step, "epoch": step / steps_per_epoch, "loss": window["loss"] / window["steps"],
                     "lr": lr, "tokens_per_s": window["tokens"] / max(window["seconds"], 1e-9)}
            state["history"]["train"].append(entry)
            state["window"] = {"loss": 0.0, "steps": 0, "tokens": 0, "seconds": 0.0}
            bar.set_postfix(loss=f"{entry['loss']:.3f}", lr=f"{lr:.2e}", tok_s=f"{entry['tokens_per_s']:,.0f}",
                            refresh=False)
            if settings.report_to != "none":
                accelerator.log({"train/loss": entry["loss"], "train/lr": lr,
                                 "train/tokens_per_s": entry["tokens_per_s"]}, step=step)
        bar.update(1)
        epoch_end = step % steps_per_epoch == 0
        if epoch_end or (settings.eval_every and step % settings.eval_every == 0) or step == total_steps:
            validate()
        stopped = settings.stop_after is not None and step >= settings.stop_after and step < total_steps
        if (epoch_end or (settings.save_steps and step % settings.save_steps == 0) or step == total_steps
                or stopped):
            _save_checkpoint(accelerator, settings, tokenizer, state, data)
        if on_step is not None:
            on_step(state)
        if stopped:
            break
    bar.close()

    completed = state["step"] >= total_steps
    history = state["history"]
    last_val = history["val"][-1] if history["val"] else None
    metrics = {
        "val_loss": last_val and last_val["loss"], "perplexity": last_val and last_val["perplexity"],
        "step": state["step"], "total_steps": total_steps, "completed": completed,
        "epochs": state["step"] / steps_per_epoch, "train_tokens": state["train_tokens"],
        "train_seconds": state["train_seconds"],
        "tokens_per_s": state["train_tokens"] / max(state["train_seconds"], 1e-9),
        "train_sequences": len(data.train), "val_examples": len(val),
        "train_problems": len(data.train_problems), "val_problems": len(data.val_problems),
        "all_data": settings.all_data,
        "contaminated_test_problems": data.test_problems_trained,
        "memory_option": memory_plan.chosen.option if memory_plan is not None else None,
        "device": str(accelerator.device), "num_processes": nproc, "recipe": settings.recipe,
        "split_rule": settings.split_rule, "grad_accum": ga, "global_batch": sizes.global_batch,
        "precision": resolve_precision(settings).replace("no", "fp32"),
        "model_dir": str(settings.model_dir) if completed else None,
    }
    final_model = accelerator.unwrap_model(model)
    if settings.compile:
        compile_blocks(final_model, enable=False)  # hand back a plain model (generation, saving)
    if main:
        run_dir = settings.run_dir
        paths.write_json(run_dir / "history.json", history)
        paths.write_json(run_dir / "metrics.json", metrics)
        paths.write_json(run_dir / "settings.json", asdict(settings))
        if completed:
            _save_final_model(final_model, tokenizer, settings, data)
            print(f"saved the model and tokenizer to {settings.model_dir}")
        else:
            print(f"stopped at step {state['step']} of {total_steps}; run again to resume from "
                  f"{settings.run_dir / 'checkpoints'}")
    accelerator.wait_for_everyone()
    if settings.report_to != "none":
        accelerator.end_training()
    return RunResult(settings, history, metrics, completed, state["step"], total_steps, final_model, tokenizer,
                     data, memory_plan)


def _save_final_model(model, tokenizer, settings, data) -> None:
    from .modeling import save_model

    if settings.lora:  # a plain model that load_model(folder) reads; the adapters are merged in
        model = model.merge_and_unload()
    model.config.use_cache = True
    folder = settings.model_dir
    shutil.rmtree(folder, ignore_errors=True)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a one-shard "Writing model shards" bar says nothing
    try:
        save_model(model, tokenizer, folder, provenance={
            "base_model": settings.model, "trained_problems": "trained_problems.json",
            "how": f"fine-tuned by {NOTEBOOK} (recipe {settings.recipe}, split rule {settings.split_rule})"})
    finally:
        hf_logging.enable_progress_bar()
    paths.write_json(folder / "trained_problems.json", trained_problems_record(settings, data))
    paths.write_json(folder / "training_settings.json", asdict(settings))


# --- figures and launch command ---------------------------------------------------------------


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
    import matplotlib.pyplot as plt

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


def launch_command(settings: TrainSettings, num_processes: int = 8) -> str:
    """The `accelerate launch` line that runs these settings on several GPUs (same code path as run)."""
    defaults = PROFILE_DEFAULTS[settings.profile]
    args = [f"--profile {settings.profile}"]
    for f in fields(TrainSettings):
        value = getattr(settings, f.name)
        if f.name != "profile" and value != defaults.get(f.name, f.default):
            args.append(f"--{f.name} {shlex.quote(str(value).lower() if isinstance(value, bool) else str(value))}")
    return (f"accelerate launch --multi_gpu --num_processes {num_processes} -m appsneo_utils.finetune "
            + " ".join(args))
