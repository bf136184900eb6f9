"""The fine-tuning engine: settings, the model and optimizer, and `run`, a loop over named steps under
accelerate (the steps are in training_loop.py, checkpoints in checkpoints.py, the validation loss in
validation.py, figures in training_figures.py, the examples and split rules in train_data.py, the recipes in
recipes.py).

`run(settings)` is the one code path: notebooks/02_finetune.ipynb calls it on a CPU or one GPU, and
`accelerate launch -m appsneo_utils.finetune ...` calls it on many GPUs. Defaults are the "card" recipe
of the original GPT-Neo 1.3B APPS fine-tune (recipes.py names each recipe and its source);
`TrainSettings.from_params(profile=..., recipe=...)` layers a recipe, then the profile (the smoke profile
swaps in the embedded default: tiny model, mini set), then the values passed.

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
import shlex
import shutil
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from tqdm import tqdm  # text, not a widget: the executed notebook keeps the final bar

from . import checkpoints, memory, modeling, paths
from .modeling import ATTENTION_BACKENDS, FINETUNED_MODEL, TINY, attention_backend_for, compile_blocks
from .params import ALL, Profile, Settings, coerce_choice, coerce_int, setting
from .repro import set_seed
from .recipes import ORIGINAL_GLOBAL_BATCH, RECIPE_HELP, RECIPE_NAMES, RECIPES, SMOKE_RECIPES, batch_plan, world_size
from .train_data import PreparedData, prepare_data
from .training_loop import Loop, LoopState, Schedule

NOTEBOOK = "02_finetune"
PRECISIONS = ("bf16", "fp16", "fp32")
ATTENTIONS = ("auto", *ATTENTION_BACKENDS)
REPORTERS = ("none", "wandb", "tensorboard")
OPTIMIZERS = ("adamw", "adafactor")
SPLIT_RULES = ("grouped", "original")
RESUME = ("auto", "true", "false")


@dataclass
class TrainSettings(Settings):
    """Every knob of a fine-tuning run; each is a notebook parameter and an `accelerate launch` flag.

    A default is the full profile's with the card recipe; `smoke=` is the embedded default's (tiny model,
    mini set: a from-scratch tiny model needs a much higher learning rate, a short warm-up and small steps,
    3 sequences and no global batch of 24; ~10 epochs of the mini set take about a minute on two idle CPU
    cores). A recipe's values (recipes.py) come between the two (`below_profile`), and the recipe's own values
    for the embedded default over both (`layered_defaults`).
    """

    recipe: str = setting("card", RECIPE_HELP, "choice", choices=RECIPE_NAMES)
    # --- what to train on
    model: str = setting(FINETUNED_MODEL, "model to start from: a hub name, a saved folder, or 'tiny'", "str",
                         smoke=TINY)
    data: str = setting("codeparrot/apps", "APPS source for data.load_apps: 'codeparrot/apps', 'mini' or a path",
                        "str", smoke="mini")
    all_data: bool = setting(False, "True pools the train AND test splits (the original '-all' model): "
                                    "APPS-test scores of the result are then contaminated", "bool",
                             by_profile="by recipe (card and repo False, replica True)")
    split_rule: str = setting("grouped", "grouped | original: grouped holds out val_problems whole problems "
                                         "(shuffled with the seed); original is run_clm_apps.py's cut: train then "
                                         "test pooled, one example per solution in dataset order, the first "
                                         "int(0.9 * n) trained, the rest validation, unshuffled (needs all_data)",
                              "choice", choices=SPLIT_RULES,
                              by_profile="by recipe (card and repo 'grouped', replica 'original')")
    val_problems: int = setting(200, "whole problems held out for validation (split_rule grouped; grouped by "
                                     "(split, problem_id), shuffled with the seed)", "int", minimum=1, smoke=4)
    max_train_problems: int | str = setting(ALL, "train on at most this many problems, or all (quick runs; "
                                                  "split_rule grouped)", "count", minimum=1)
    max_val_examples: int | str = setting(1000, "validate on at most this many held-out examples, or all", "count",
                                          minimum=1)
    # --- examples
    block_size: int = setting(1024, "tokens per example; longer examples are truncated at the end of the answer "
                                    "when the prompt and block_size/4 answer tokens fit, else dropped", "int",
                              minimum=8)
    packing: bool = setting(False, "pack several short examples into one block (they attend to each other)", "bool")
    # --- optimisation (the original recipe)
    epochs: int = setting(5, "passes over the training examples", "int", minimum=1, smoke=10,
                          by_profile="by recipe and profile (full 5; smoke 10, smoke replica 60)")
    max_steps: int | None = setting(None, "total optimizer steps, overriding epochs (sets the schedule length); "
                                          "None: epochs decide", "int", minimum=1, optional=True)
    batch_size: int = setting(3, "sequences per device per micro-batch", "int", minimum=1)
    global_batch: int = setting(ORIGINAL_GLOBAL_BATCH, "sequences per optimizer step over all devices: the "
                                    "accumulation is computed from the devices present (the original: 3 per device "
                                    "x 8 TPU v3 cores, 24); "
                                    "0: grad_accum decides", "int", minimum=0, smoke=0,
                                by_profile="by profile (full 24; smoke 0), and 0 when grad_accum is set")
    grad_accum: int = setting(1, "micro-batches per optimizer step when global_batch is 0 (setting it turns "
                                 "global_batch off)", "int", minimum=1,
                              by_profile="1 (global_batch decides the accumulation)")
    optimizer: str = setting("adamw", "adamw | adafactor (transformers' Adafactor with a fixed lr, as optax's "
                                      "adafactor defaults in the original)", "choice", choices=OPTIMIZERS,
                             by_profile="by recipe (card and replica 'adamw', repo 'adafactor')")
    learning_rate: float = setting(8e-5, "peak learning rate", "float", minimum=0.0, smoke=2e-3,
                                   by_profile="by recipe and profile (full: card and replica 8e-05, repo 2e-05; "
                                              "smoke 0.002, smoke replica 0.003)")
    warmup_steps: int = setting(800, "linear warm-up steps, then linear decay to 0", "int", minimum=0, smoke=20,
                                by_profile="by recipe and profile (full: card and replica 800, repo 5000; "
                                           "smoke 20)")
    weight_decay: float = setting(0.1, "weight decay (not on biases and LayerNorm weights)", "float", minimum=0.0,
                                  by_profile="by recipe (card and replica 0.1, repo 0.0)")
    adam_beta1: float = setting(0.9, "AdamW beta1", "float", minimum=0.0, maximum=1.0)
    adam_beta2: float = setting(0.98, "AdamW beta2", "float", minimum=0.0, maximum=1.0)
    adam_epsilon: float = setting(1e-8, "AdamW epsilon", "float", minimum=0.0)
    max_grad_norm: float = setting(1.0, "gradient clipping norm; 0 turns clipping off", "float", minimum=0.0,
                                   by_profile="by recipe (card and replica 1.0, repo 0.0)")
    precision: str = setting("bf16", "bf16 | fp16 | fp32: mixed precision on CUDA; a CPU always trains in fp32",
                             "choice", choices=PRECISIONS)
    seed: int = setting(0, "seed for the model init, the validation split and the data order", "int", minimum=0)
    # --- memory
    lora: bool = setting(False, "train LoRA adapters (peft) instead of all weights", "bool")
    lora_r: int = setting(16, "LoRA rank", "int", minimum=1)
    lora_alpha: int = setting(32, "LoRA alpha (the scale is alpha / r)", "int", minimum=1)
    lora_dropout: float = setting(0.05, "LoRA dropout", "float", minimum=0.0, maximum=1.0)
    gradient_checkpointing: bool = setting(False, "recompute activations in the backward pass (saves memory)",
                                           "bool")
    optim_8bit: bool = setting(False, "8-bit AdamW states (bitsandbytes, CUDA only)", "bool")
    auto_memory: bool = setting(True, "when the plan does not fit, switch to the first memory-saving option that "
                                      "does (False: refuse with advice)", "bool")
    gpu_memory_gb: float | None = setting(None, "plan for this much device memory (e.g. 16 for a Colab T4); "
                                                "None: measure this machine", "float", minimum=0.1, optional=True)
    # --- speed (the fast path: benchmarks/README.md)
    attention: str = setting("auto", "auto | eager | sdpa | flex: auto is sdpa on CUDA, eager on CPU", "choice",
                             choices=ATTENTIONS)
    compile: bool = setting(False, "torch.compile each transformer block (modeling.compile_blocks)", "bool")
    # --- checkpoints, resume and logs
    output_dir: str | None = setting(None, "run folder; None: runs/02_finetune", "str", optional=True)
    save_steps: int = setting(0, "also checkpoint every N steps (0: at each epoch end only)", "int", minimum=0)
    save_total_limit: int = setting(2, "checkpoints kept (the oldest are deleted)", "int", minimum=1)
    resume: str = setting("auto", "auto (resume when a matching checkpoint exists) | true (must resume) | "
                                  "false (start fresh, deleting old checkpoints)", "choice", choices=RESUME)
    stop_after: int | None = setting(None, "checkpoint and stop after this step, keeping the schedule (to train "
                                           "in sessions); None: train to the end", "int", minimum=1, optional=True)
    eval_every: int = setting(0, "also validate every N steps (0: at each epoch end only)", "int", minimum=0)
    log_every: int = setting(10, "average the training loss over N steps per log entry", "int", minimum=1, smoke=5)
    report_to: str = setting("none", "none | wandb | tensorboard", "choice", choices=REPORTERS)

    @classmethod
    def below_profile(cls, values: dict) -> dict:
        """The recipe over the field defaults (the profile's values then stand over the recipe's)."""
        return dict(RECIPES[_recipe(values)])

    @classmethod
    def layered_defaults(cls, profile: Profile, values: dict) -> dict:
        """The recipe's values for the embedded default (smoke); an explicit grad_accum turns the global batch
        off."""
        layered = dict(SMOKE_RECIPES.get(_recipe(values), {})) if profile.name == "smoke" else {}
        if values.get("grad_accum") is not None:
            if values.get("global_batch") is not None and coerce_int("global_batch", values["global_batch"]) != 0:
                raise ValueError("set grad_accum or global_batch, not both: global_batch computes the accumulation "
                                 "from the devices present (global_batch=0 lets grad_accum decide)")
            layered["global_batch"] = 0
        return layered

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir).expanduser() if self.output_dir else paths.RUNS_DIR / NOTEBOOK

    @property
    def model_dir(self) -> Path:
        return self.run_dir / "model"


def _recipe(values: dict) -> str:
    return coerce_choice("recipe", "card" if values.get("recipe") is None else values["recipe"], RECIPE_NAMES)


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
        eager_attention=resolve_attention(settings) == "eager", optimizer=settings.optimizer,
    )
    if verbose:
        print(plan.summary())
    chosen = plan.check()
    effective = replace(settings, lora=chosen.lora, optim_8bit=chosen.optim_8bit,
                        gradient_checkpointing=chosen.gradient_checkpointing)
    return effective, plan


# --- model and optimizer -----------------------------------------------------------------------


def build_model(settings: TrainSettings, *, checkpoint: Path | None = None, verbose: bool = True):
    """(model, tokenizer) ready to train: seeded init, attention path, gradient checkpointing, LoRA."""
    set_seed(settings.seed)  # before the model is built: the tiny init and the LoRA init depend on it
    tokenizer = None
    if checkpoint is not None:  # the tokenizer the run started with (the tiny one is trained on the fly)
        from transformers import AutoTokenizer

        tokenizer = modeling._finish_tokenizer(AutoTokenizer.from_pretrained(checkpoint), settings.block_size)
    if settings.model == TINY:
        model, tokenizer = modeling.tiny_model(settings.seed, tokenizer=tokenizer)
    else:
        half_base = settings.lora and _cuda() and settings.precision in ("bf16", "fp16")
        dtype = settings.precision if half_base else "fp32"  # full fine-tunes keep fp32 master weights
        model, loaded_tokenizer = modeling.load_model(settings.model, device="cpu", dtype=dtype, seed=settings.seed)
        tokenizer = tokenizer or loaded_tokenizer
    positions = model.config.max_position_embeddings
    if settings.block_size > positions:
        raise ValueError(f"block_size={settings.block_size} exceeds the model's {positions} positions")
    backend = resolve_attention(settings, verbose=verbose)
    if backend != "eager":
        modeling.use_fast_attention(model, backend)  # through the module: tests replace it
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
    """What `run` hands back: the settings it ran with (memory options applied), the curves and metrics, how
    far it got, and the trained model with its tokenizer, data and memory plan."""

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


def run(settings: TrainSettings, *, model=None, tokenizer=None, data: PreparedData | None = None,
        memory_plan=None, on_step=None) -> RunResult:
    """Fine-tune per `settings` (resuming when a matching checkpoint exists); save model, metrics, history.

    model/tokenizer/data/memory_plan: parts already prepared by the notebook with this module's
    functions (built here otherwise). on_step(state) is called with the LoopState after every optimizer step.
    """
    accelerator = _accelerator(settings)
    main = accelerator.is_main_process
    if memory_plan is None:
        settings, memory_plan = plan_memory(settings, verbose=main)
    checkpoint = checkpoints.find_checkpoint(settings, verbose=main and model is None)  # the notebook said it already
    checkpoints.clear_checkpoints(settings, accelerator, keep=checkpoint)
    if model is None or tokenizer is None:
        model, tokenizer = build_model(settings, checkpoint=checkpoint, verbose=main)
    if data is None:
        data = prepare_data(settings, tokenizer, verbose=main)
    loop = start_loop(settings, accelerator, model, tokenizer, data, checkpoint)
    if loop.state.step == 0:
        loop.validate()  # the untrained model: where the validation curve starts
    loop.model.train()
    bar = tqdm(total=loop.schedule.total_steps, initial=loop.state.step, desc="fine-tune", unit="step",
               mininterval=5.0, disable=not accelerator.is_local_main_process)
    while not loop.done:
        entry = loop.record(loop.train_step())
        if entry is not None:
            bar.set_postfix(loss=f"{entry['loss']:.3f}", lr=f"{entry['lr']:.2e}",
                            tok_s=f"{entry['tokens_per_s']:,.0f}", refresh=False)
        bar.update(1)
        if loop.validation_due():
            loop.validate()
        stop = loop.stop_due()
        if loop.checkpoint_due():
            checkpoints.save_checkpoint(accelerator, settings, tokenizer, loop.saved_state(),
                                        trained_problems_record(settings, data))
        if on_step is not None:
            on_step(loop.state)
        if stop:
            break
    bar.close()
    return finish(loop, tokenizer, memory_plan)


def start_loop(settings: TrainSettings, accelerator, model, tokenizer, data: PreparedData,
               checkpoint: Path | None) -> Loop:
    """The schedule, optimizer and lr schedule on the devices, and the state resumed from `checkpoint`."""
    from transformers import get_linear_schedule_with_warmup

    main = accelerator.is_main_process
    sizes = batch_plan_for(settings, accelerator.num_processes)
    schedule = Schedule.of(settings, len(data.train), accelerator.num_processes, sizes.accumulation)
    if main:
        print(schedule.summary(settings))
    model.to(accelerator.device)
    optimizer = make_optimizer(model, settings)
    # The scheduler is stepped here once per optimizer step, not prepared: accelerate would step it
    # once per process, and the schedule must not depend on the number of GPUs.
    scheduler = get_linear_schedule_with_warmup(optimizer, settings.warmup_steps, schedule.total_steps)
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.register_for_checkpointing(scheduler)
    state = LoopState()
    if checkpoint is not None:
        state = LoopState.from_saved(checkpoints.load_checkpoint(accelerator, checkpoint))
        if main:
            print(f"resume: from {checkpoint} at step {state.step} of {schedule.total_steps}")
    if settings.compile:
        compile_blocks(accelerator.unwrap_model(model))
    if settings.report_to != "none":
        accelerator.init_trackers("appsneo-" + NOTEBOOK, config=asdict(settings))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return Loop(settings, accelerator, model, optimizer, scheduler, data, pad_id, schedule, state)


def finish(loop: Loop, tokenizer, memory_plan) -> RunResult:
    """Write history, metrics and settings; save the model when the schedule is complete."""
    settings, accelerator, state, schedule = loop.settings, loop.accelerator, loop.state, loop.schedule
    metrics = run_metrics(loop, memory_plan)
    final_model = accelerator.unwrap_model(loop.model)
    if settings.compile:
        compile_blocks(final_model, enable=False)  # hand back a plain model (generation, saving)
    if accelerator.is_main_process:
        run_dir = settings.run_dir
        paths.write_json(run_dir / "history.json", state.history)
        paths.write_json(run_dir / "metrics.json", metrics)
        paths.write_json(run_dir / "settings.json", asdict(settings))
        if loop.done:
            _save_final_model(final_model, tokenizer, settings, loop.data)
            print(f"saved the model and tokenizer to {settings.model_dir}")
        else:
            print(f"stopped at step {state.step} of {schedule.total_steps}; run again to resume from "
                  f"{checkpoints.folder_of(settings)}")
    accelerator.wait_for_everyone()
    if settings.report_to != "none":
        accelerator.end_training()
    return RunResult(settings, state.history, metrics, loop.done, state.step, schedule.total_steps, final_model,
                     tokenizer, loop.data, memory_plan)


def run_metrics(loop: Loop, memory_plan) -> dict:
    """metrics.json: the last validation loss, how far the run got, its speed, data and set-up."""
    settings, state, schedule, data = loop.settings, loop.state, loop.schedule, loop.data
    last_val = state.history["val"][-1] if state.history["val"] else None
    return {
        "val_loss": last_val and last_val["loss"], "perplexity": last_val and last_val["perplexity"],
        "step": state.step, "total_steps": schedule.total_steps, "completed": loop.done,
        "epochs": state.step / schedule.steps_per_epoch, "train_tokens": state.train_tokens,
        "train_seconds": state.train_seconds, "tokens_per_s": state.train_tokens / max(state.train_seconds, 1e-9),
        "train_sequences": len(data.train), "val_examples": len(loop.val_examples),
        "train_problems": len(data.train_problems), "val_problems": len(data.val_problems),
        "all_data": settings.all_data, "contaminated_test_problems": data.test_problems_trained,
        "memory_option": memory_plan.chosen.option if memory_plan is not None else None,
        "device": str(loop.accelerator.device), "num_processes": schedule.processes, "recipe": settings.recipe,
        "split_rule": settings.split_rule, "grad_accum": schedule.accumulation, "global_batch": schedule.per_step,
        "precision": resolve_precision(settings).replace("no", "fp32"),
        "model_dir": str(settings.model_dir) if loop.done else None,
    }


# --- what the model saw -----------------------------------------------------------------------


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


def _save_final_model(model, tokenizer, settings, data) -> None:
    if settings.lora:  # a plain model that load_model(folder) reads; the adapters are merged in
        model = model.merge_and_unload()
    model.config.use_cache = True
    folder = settings.model_dir
    shutil.rmtree(folder, ignore_errors=True)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a one-shard "Writing model shards" bar says nothing
    try:
        modeling.save_model(model, tokenizer, folder, provenance={
            "base_model": settings.model, "trained_problems": "trained_problems.json",
            "how": f"fine-tuned by {NOTEBOOK} (recipe {settings.recipe}, split rule {settings.split_rule})"})
    finally:
        hf_logging.enable_progress_bar()
    paths.write_json(folder / "trained_problems.json", trained_problems_record(settings, data))
    paths.write_json(folder / "training_settings.json", asdict(settings))


# --- launch command --------------------------------------------------------------------------


def launch_command(settings: TrainSettings, num_processes: int = 8) -> str:
    """The `accelerate launch` line that runs these settings on several GPUs (same code path as run)."""
    defaults = TrainSettings.defaults_for(Profile(settings.profile, "as run"), {"recipe": settings.recipe})
    args = [f"--profile {settings.profile}"]
    for f in fields(TrainSettings):
        value = getattr(settings, f.name)
        if f.name != "profile" and value != defaults[f.name]:
            args.append(f"--{f.name} {shlex.quote(str(value).lower() if isinstance(value, bool) else str(value))}")
    return (f"accelerate launch --multi_gpu --num_processes {num_processes} -m appsneo_utils.finetune "
            + " ".join(args))
