"""Models and tokenizers: the real GPT-Neo checkpoints, and a tiny offline GPT-Neo.

The tiny model has GPT-Neo's architecture (alternating global and local attention layers) at a
toy size, with a byte-level BPE tokenizer trained on the fly on the embedded mini set, so every
notebook runs offline on a CPU in minutes.
"""

from __future__ import annotations

from pathlib import Path

from .params import hub_reachable

TINY = "tiny"
FINETUNED_MODEL = "EleutherAI/gpt-neo-1.3B"  # what 02_finetune starts from on the full profile
APPS_MODEL = "flax-community/gpt-neo-1.3B-apps-all"  # the published fine-tune
EOS = "<|endoftext|>"
TINY_CONFIG = dict(
    hidden_size=64,
    num_layers=2,
    num_heads=4,
    attention_types=[[["global", "local"], 1]],  # layer 0 global, layer 1 local, as in GPT-Neo
    window_size=32,  # small, so that local attention is active on short mini-set prompts
    max_position_embeddings=1024,
    intermediate_size=256,
)
TINY_VOCAB = 1024


def train_tiny_tokenizer(texts=None, vocab_size: int = TINY_VOCAB, max_length: int = 1024):
    """A byte-level BPE tokenizer (GPT-2 style) trained on `texts` (default: the mini set)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if texts is None:
        texts = list(_mini_texts())
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(texts, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, eos_token=EOS, bos_token=EOS, unk_token=EOS)
    return _finish_tokenizer(tokenizer, max_length)


def _mini_texts():
    from .data import load_apps
    from .prompts import training_examples

    frame = load_apps("mini", split="all", verbose=False)
    for row in frame.to_dict("records"):
        for example in training_examples(row):
            yield example.prompt + example.answer


def _finish_tokenizer(tokenizer, max_length: int):
    # transformers 5 leaves model_max_length at 1e30 when a checkpoint does not say it.
    if not tokenizer.model_max_length or tokenizer.model_max_length > max_length:
        tokenizer.model_max_length = max_length
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token  # GPT-Neo has no pad token; masks do the work
    return tokenizer


def tiny_model(seed: int = 0, tokenizer=None, **overrides):
    """(model, tokenizer): a randomly initialised toy GPT-Neo, built from a config."""
    import torch
    from transformers import GPTNeoConfig, GPTNeoForCausalLM

    tokenizer = tokenizer or train_tiny_tokenizer()
    settings = {**TINY_CONFIG, **overrides}
    config = GPTNeoConfig(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **settings,
    )
    config._attn_implementation = "eager"  # transformers 5 has no SDPA path for GPT-Neo
    torch.manual_seed(seed)
    model = GPTNeoForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.eos_token_id
    return model.eval(), tokenizer


def load_model(name_or_path: str = TINY, *, device=None, dtype=None, seed: int = 0):
    """(model, tokenizer) for "tiny", a local checkpoint folder, or a hub name.

    Hub names are read from the local cache first; offline, a missing model fails at once with
    what to do. Repositories that hold only Flax weights get a message: transformers 5 cannot read them.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if name_or_path == TINY:
        model, tokenizer = tiny_model(seed)
    else:
        local = Path(name_or_path).expanduser()
        kwargs = {"attn_implementation": "eager"}
        if dtype is not None:
            kwargs["dtype"] = _dtype(dtype)
        if local.is_dir():
            if not (local / "config.json").is_file():
                raise FileNotFoundError(f"{local} has no config.json: it is not a saved model folder")
            source, kwargs_extra = str(local), {}
        else:
            source, kwargs_extra = _hub_source(name_or_path)
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs_extra)
        model = AutoModelForCausalLM.from_pretrained(source, **kwargs, **kwargs_extra)
        tokenizer = _finish_tokenizer(tokenizer, model.config.max_position_embeddings)
        model.generation_config.pad_token_id = tokenizer.eos_token_id
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return model.to(device).eval(), tokenizer


def _dtype(dtype):
    import torch

    if isinstance(dtype, str):
        return {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16,
                "float16": torch.float16, "fp32": torch.float32, "float32": torch.float32}[dtype]
    return dtype


def _hub_source(name: str):
    """(name, kwargs) to load a hub model: from the cache, else from the hub if reachable."""
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(name, "config.json")
    if isinstance(cached, str):
        weights = [try_to_load_from_cache(name, f) for f in ("model.safetensors", "pytorch_model.bin")]
        if any(isinstance(w, str) for w in weights):
            return name, {"local_files_only": True}
    reachable, why = hub_reachable()
    if not reachable:
        raise ConnectionError(
            f"cannot load {name}: it is not in the local cache and the hub is out of reach ({why}). "
            f"Use load_model('tiny') or a local folder (a 02_finetune output) offline, or run this "
            f"on a machine with network once to fill the cache."
        )
    _refuse_flax_only(name)
    return name, {}


def _refuse_flax_only(name: str) -> None:
    from huggingface_hub import HfApi

    files = set(HfApi().list_repo_files(name))
    torch_weights = {f for f in files if f.endswith((".safetensors", ".bin"))}
    if "flax_model.msgpack" in files and not torch_weights:
        raise OSError(
            f"{name} holds only Flax weights (flax_model.msgpack), which transformers 5 cannot read. "
            f"Convert them once in a separate environment: pip install 'transformers<5' flax torch; "
            f"python -c \"from transformers import GPTNeoForCausalLM as M; "
            f"M.from_pretrained('{name}', from_flax=True).save_pretrained('gpt-neo-apps-pt')\" "
            f"and pass load_model('gpt-neo-apps-pt')."
        )


def save_model(model, tokenizer, folder) -> Path:
    """Save model and tokenizer together, so `load_model(folder)` gets both back."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


# ----------------------------------------------------------------------------------------------
# Fast attention (stub; full implementation in progress)


def attention_backend_for(device) -> str:
    """The attention backend to use on `device`: "sdpa" on CUDA, "eager" elsewhere."""
    import torch

    device = torch.device(device) if not isinstance(device, torch.device) else device
    return "sdpa" if device.type == "cuda" else "eager"


def use_fast_attention(model, backend: str = "sdpa"):
    """Route every GPT-Neo attention layer through `backend`; returns the model (stub: no-op)."""
    return model
