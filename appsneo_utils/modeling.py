"""Models and tokenizers: the real GPT-Neo checkpoints, and a tiny offline GPT-Neo.

The tiny model has GPT-Neo's architecture (alternating global and local attention layers) at a
toy size, with a byte-level BPE tokenizer trained on the fly on the embedded mini set, so every
notebook runs offline on a CPU in minutes.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from . import paths
from .compat import check_gpt_neo_internals, check_transformers
from .params import hub_reachable
from .plotting import shown_path
from .prompts import training_examples

check_transformers()  # the attention subclass below relies on transformers 5's GPT-Neo internals

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
    from .data import load_apps  # pandas: a second of import that only the tiny tokenizer needs

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


def load_model(name_or_path: str = TINY, *, device=None, dtype=None, seed: int = 0, attention: str = "auto"):
    """(model, tokenizer) for "tiny", a local checkpoint folder, or a hub name.

    Hub names are read from the local cache first; offline, a missing model fails at once with
    what to do. Repositories that hold only Flax weights get a message: transformers 5 cannot read them.
    `attention`: "auto" (SDPA on CUDA, eager elsewhere), "eager", "sdpa" or "flex" (use_fast_attention).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if attention == "auto":
        attention = attention_backend_for(device)
    if attention not in ATTENTION_BACKENDS:  # before a load that may take minutes
        raise ValueError(f"attention must be 'auto' or one of {ATTENTION_BACKENDS}, got {attention!r}")
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
    if attention != "eager":
        use_fast_attention(model, attention)
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
        raise OSError(flax_conversion_advice(name))


def flax_conversion_advice(name: str) -> str:
    """How to turn a Flax-only checkpoint into a folder load_model reads, with its provenance record
    (a one-liner for a separate environment: the kit's transformers 5 cannot read Flax weights)."""
    out = CONVERTED_FOLDER
    return (
        f"{name} holds only Flax weights (flax_model.msgpack), which transformers 5 cannot read. "
        f"Convert them once in a separate environment: pip install 'transformers<5' flax torch; "
        f"python -c \"import json, datetime; from transformers import GPTNeoForCausalLM as M, AutoTokenizer as T; "
        f"n = '{name}'; M.from_pretrained(n, from_flax=True).save_pretrained('{out}'); "
        f"T.from_pretrained(n).save_pretrained('{out}'); "
        f"json.dump(dict(model=n, how='converted from Flax weights', kit_version='{kit_version()}', "
        f"date=datetime.date.today().isoformat()), open('{out}/{PROVENANCE_FILE}', 'w'))\" "
        f"and pass load_model('{out}'). The {PROVENANCE_FILE} it writes is how the kit knows what the folder "
        f"holds (and so what it trained on)."
    )


def save_model(model, tokenizer, folder, *, provenance: dict | None = None) -> Path:
    """Save model and tokenizer together, so `load_model(folder)` gets both back, with a provenance record.

    provenance: what the weights are, merged into the record (`write_provenance`): `model` when they are an
    unchanged copy of a named checkpoint, `trained_problems` when a training record lies beside them. Without
    either, contamination checks call the folder "unknown": a saved model is never assumed clean.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    base = getattr(model.config, "_name_or_path", "") or None
    write_provenance(folder, **{"how": "saved by appsneo_utils.modeling.save_model", "base_model": base,
                                **(provenance or {})})
    return folder


# --- which model is meant, and what a saved folder holds ------------------------------------------

PROVENANCE_FILE = "appsneo_provenance.json"  # next to the weights: what they are (see write_provenance)
FINETUNE_OUTPUT = ("02_finetune", "model")  # under paths.RUNS_DIR: where 02_finetune saves its model
CONVERTED_FOLDER = "gpt-neo-apps-pt"  # the folder the Flax-conversion advice writes (see _refuse_flax_only)


def write_provenance(folder, *, how: str, model: str | None = None, base_model: str | None = None,
                     trained_problems: str | None = None, **extra) -> Path:
    """appsneo_provenance.json: `model` (the named checkpoint these weights are an unchanged copy of),
    `base_model` (what training started from), `trained_problems` (a training record, relative to the
    folder), `how`, the kit version and the date. This is how a local folder is recognised later."""
    record = {"model": model, "base_model": base_model, "trained_problems": trained_problems, "how": how,
              "kit_version": kit_version(), "date": datetime.date.today().isoformat(), **extra}
    return paths.write_json(Path(folder) / PROVENANCE_FILE, record)


def kit_version() -> str:
    try:
        return metadata.version("appsneo")
    except metadata.PackageNotFoundError:  # a checkout used without installing it
        return "unknown"


def read_provenance(folder) -> dict | None:
    """The folder's provenance record, or None when it has none."""
    path = Path(folder) / PROVENANCE_FILE
    return json.loads(path.read_text()) if path.is_file() else None


@dataclass(frozen=True)
class ModelChoice:
    """The model meant by a parameter: `name` is what load_model takes; `why` says how it was chosen."""

    name: str
    kind: str  # "tiny" | "folder" | "hub"
    why: str

    @property
    def label(self) -> str:
        """The name to show in titles and tables: never an absolute path of this machine."""
        return model_label(self.name)

    def note(self) -> str:
        if self.kind == "tiny":
            return (f"model: the tiny GPT-Neo with random weights ({self.why}): it writes noise, so expect "
                    f"compile errors; run 02_finetune first for a model that has learned something")
        return f"model: {self.label} ({self.why})"


def finetune_output(folder=None) -> Path | None:
    """The 02_finetune output folder (default runs/02_finetune/model) when it holds a model, else None."""
    folder = Path(folder) if folder is not None else paths.RUNS_DIR.joinpath(*FINETUNE_OUTPUT)
    return folder if (folder / "config.json").is_file() else None


def resolve_model(model_name: str | None = "", *, full: bool = False, finetuned=None) -> ModelChoice:
    """The one place that decides which model is meant.

    "tiny": the tiny model, always (even when a 02_finetune output exists); a folder: that folder; another
    name: a hub model; "" or None: by profile (full: APPS_MODEL; smoke: the 02_finetune output when it
    exists, else tiny). `finetuned`: where to look for the 02_finetune output (default runs/02_finetune/model).
    """
    name = str(model_name or "").strip()
    if name == TINY:
        return ModelChoice(TINY, "tiny", "named")
    if name:
        folder = _local_folder(name)
        return ModelChoice(str(folder), "folder", "named") if folder else ModelChoice(name, "hub", "named")
    if full:
        return ModelChoice(APPS_MODEL, "hub", "by profile: full")
    output = finetune_output(finetuned)
    if output is not None:
        return ModelChoice(str(output), "folder", "by profile: the 02_finetune output")
    return ModelChoice(TINY, "tiny", "by profile: no 02_finetune output yet")


def _local_folder(name: str) -> Path | None:
    """`name` as an existing folder: as given (from the current directory), else from the repository root, so
    that "runs/02_finetune/model" means the same from notebooks/ as from the root."""
    for path in (Path(name).expanduser(), paths.ROOT / name):
        if path.is_dir():
            return path.resolve()
    return None


def model_label(name: str) -> str:
    """A folder as runs/... or as a path inside the repository, else its own name; hub names and "tiny" as
    they are. Figures and tables carry this, never an absolute path of the machine."""
    path = Path(str(name)).expanduser()
    return shown_path(path.resolve()) if path.is_absolute() else str(name)


# ----------------------------------------------------------------------------------------------
# Fast attention: GPT-Neo's attention through SDPA or FlexAttention, the same numbers as eager.
#
# GPT-Neo does NOT scale scores by 1/sqrt(head_dim) (its checkpoints were trained that way), so
# every kernel gets scale=1.0. A local layer sees its last `window_size` keys, itself included; a
# global layer all earlier keys. Both also honour the padding or packing mask transformers builds.
# Rows that see no key at all (a left-padding query) attend to themselves: their output is never
# read by a real token, and this keeps every kernel finite.

ATTENTION_BACKENDS = ("eager", "sdpa", "flex")
GPT_NEO_1P3B = dict(  # EleutherAI/gpt-neo-1.3B's shapes, for benchmarks with random weights
    vocab_size=50257,
    hidden_size=2048,
    num_layers=24,
    num_heads=16,
    attention_types=[[["global", "local"], 12]],
    window_size=256,
    max_position_embeddings=2048,
    intermediate_size=None,  # 4 * hidden_size
    embed_dropout=0.0,
    attention_dropout=0.0,
    resid_dropout=0.0,
)
_FAST_CLASS = None
_BLOCK_MASKS: dict = {}  # (length, window, device) -> BlockMask
_FLEX: dict = {}  # "cuda" -> the compiled flex_attention


def attention_backend_for(device) -> str:
    """The attention backend `use_fast_attention` should get on `device`: "sdpa" on CUDA, else "eager"."""
    import torch

    return "sdpa" if torch.device(device).type == "cuda" else "eager"


def use_fast_attention(model, backend: str = "sdpa"):
    """Route every GPT-Neo attention layer of `model` through `backend`; returns `model` (changed in place).

    "sdpa": torch's scaled_dot_product_attention (flash kernels where no mask is needed); "flex":
    FlexAttention with a sliding-window block mask on local layers without padding, SDPA elsewhere;
    "eager": back to transformers' own code. Weights, state dict and saved checkpoints are unchanged.
    """
    from transformers.models.gpt_neo.modeling_gpt_neo import GPTNeoModel, GPTNeoSelfAttention

    if backend not in ATTENTION_BACKENDS:
        raise ValueError(f"backend must be one of {ATTENTION_BACKENDS}, got {backend!r}")
    if backend == "flex" and not _flex_available():
        raise ValueError("backend 'flex' needs torch>=2.5 (torch.nn.attention.flex_attention); use 'sdpa'")
    fast = _fast_attention_class()
    layers = [m for m in model.modules() if isinstance(m, GPTNeoSelfAttention)]
    if not layers:
        raise ValueError(f"use_fast_attention needs a GPT-Neo model; {type(model).__name__} has no GPT-Neo attention")
    for layer in layers:
        if type(layer) not in (GPTNeoSelfAttention, fast):
            raise ValueError(
                f"{type(layer).__name__} is not GPT-Neo's eager attention: load the model with "
                f"attn_implementation='eager' (load_model does) before use_fast_attention"
            )
        layer.__class__ = GPTNeoSelfAttention if backend == "eager" else fast
        layer.attention_backend = backend
    for module in model.modules():
        if isinstance(module, GPTNeoModel):
            # transformers then builds boolean masks (or none at all: is_causal) instead of additive ones.
            module.config._attn_implementation = "eager" if backend == "eager" else "sdpa"
    return model


def compile_blocks(model, enable: bool = True, **options) -> int:
    """torch.compile each GPT-Neo block of `model` in place (enable=False undoes it); returns how many.

    Compiling block by block, not the whole model, keeps transformers' mask building out of the
    graph: traced, it always builds a full (batch, 1, T, T) mask, which would turn the flash and
    FlexAttention paths (taken only when there is no mask) into masked SDPA. The global and local
    blocks compile once each and are reused by every layer; parameter names and saved checkpoints
    are unchanged (unlike torch.compile(model), which wraps the model).
    """
    from transformers.models.gpt_neo.modeling_gpt_neo import GPTNeoBlock

    blocks = [m for m in model.modules() if isinstance(m, GPTNeoBlock)]
    if not blocks:
        raise ValueError(f"compile_blocks needs a GPT-Neo model; {type(model).__name__} has no GPT-Neo blocks")
    for block in blocks:
        if enable:
            block.compile(**options)
        else:
            block._compiled_call_impl = None  # what nn.Module.compile() set; calls go to forward again
    return len(blocks)


def fast_attention_backend(model) -> str:
    """The backend `use_fast_attention` gave `model` ("eager" when it was never applied)."""
    fast = _FAST_CLASS
    for module in model.modules():
        if fast is not None and isinstance(module, fast):
            return module.attention_backend
    return "eager"


def neo_attention(query, key, value, mask=None, *, band, window=None, dropout_p: float = 0.0, backend="sdpa"):
    """GPT-Neo attention of (batch, heads, q, d) queries over (batch, heads, kv, d) keys, unscaled.

    `mask`: None, a boolean (batch, 1, q, kv) mask (True = attend) or an additive float one; `band`:
    the layer's (1, 1, max_pos, max_pos) boolean causal (and window) buffer, aligned bottom-right
    as in eager; `window`: the local window or None for a global layer.
    """
    import torch
    import torch.nn.functional as F

    q_len, kv_len = query.shape[-2], key.shape[-2]
    sdpa = F.scaled_dot_product_attention
    if mask is None and window is None and q_len in (1, kv_len):
        # A lone query is the newest token and sees every key; q == kv is plain causal (flash kernels).
        return sdpa(query, key, value, dropout_p=dropout_p, is_causal=q_len > 1, scale=1.0)
    if backend == "flex" and mask is None and q_len == kv_len and dropout_p == 0.0 and (
        query.device.type == "cuda" or not (torch.is_grad_enabled() and query.requires_grad)
    ):  # FlexAttention has no dropout, and no backward off CUDA
        return _flex_sliding(query, key, value, window)
    allowed = band[:, :, kv_len - q_len : kv_len, :kv_len]
    if mask is None:
        attn_mask = allowed
    elif mask.dtype == torch.bool:
        attn_mask = (allowed & mask) | _diagonal(q_len, kv_len, query.device)
    else:  # an additive mask a caller made: fill what the band forbids
        attn_mask = mask.to(query.dtype).masked_fill(~allowed, torch.finfo(query.dtype).min)
    return sdpa(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p, scale=1.0)


def _diagonal(q_len: int, kv_len: int, device):
    import torch

    rows = torch.arange(kv_len - q_len, kv_len, device=device)[:, None]
    return rows == torch.arange(kv_len, device=device)[None, :]


def _flex_available() -> bool:
    try:
        from torch.nn.attention.flex_attention import flex_attention  # noqa: F401
    except ImportError:
        return False
    return True


def _flex_sliding(query, key, value, window):
    """Causal (window=None) or sliding-window attention with FlexAttention; blocks outside are skipped."""
    import warnings

    import torch
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    q_len, device = query.shape[-2], query.device
    if window is None:
        def mask_mod(b, h, q, k):
            return q >= k
    else:
        def mask_mod(b, h, q, k):
            return (q >= k) & (q - k < window)
    if torch.compiler.is_compiling():  # inside the caller's torch.compile: built in the graph, fused
        block_mask = create_block_mask(mask_mod, None, None, q_len, q_len, device=device)
        return flex_attention(query, key, value, block_mask=block_mask, scale=1.0)
    cache_key = (q_len, window, str(device))
    if cache_key not in _BLOCK_MASKS:
        _BLOCK_MASKS[cache_key] = create_block_mask(mask_mod, None, None, q_len, q_len, device=device)
    block_mask = _BLOCK_MASKS[cache_key]
    if device.type == "cuda":  # only compiled FlexAttention is fused
        if "cuda" not in _FLEX:  # sequence lengths vary: after one recompile, one dynamic kernel serves all
            _FLEX["cuda"] = torch.compile(flex_attention)
        return _FLEX["cuda"](query, key, value, block_mask=block_mask, scale=1.0)
    with warnings.catch_warnings():  # off CUDA the unfused reference path is deliberate (tests, CPU)
        warnings.filterwarnings("ignore", message="flex_attention called without torch.compile")
        return flex_attention(query, key, value, block_mask=block_mask, scale=1.0)


def _additive(mask, dtype):
    """A boolean (True = attend) mask as eager GPT-Neo's additive one."""
    import torch

    if mask is None or mask.dtype != torch.bool:
        return mask
    return torch.zeros((), dtype=dtype, device=mask.device).masked_fill(~mask, torch.finfo(dtype).min)


def _fast_attention_class():
    """GPTNeoSelfAttention with its forward through `neo_attention` (made on first use: transformers loads lazily)."""
    global _FAST_CLASS
    if _FAST_CLASS is not None:
        return _FAST_CLASS
    from transformers.models.gpt_neo.modeling_gpt_neo import GPTNeoSelfAttention

    check_gpt_neo_internals(GPTNeoSelfAttention)

    class FastGPTNeoSelfAttention(GPTNeoSelfAttention):
        """GPT-Neo self-attention through SDPA or FlexAttention (see `use_fast_attention`)."""

        attention_backend = "sdpa"

        def forward(self, hidden_states, attention_mask=None, layer_past=None, use_cache=False,
                    output_attentions=False, **kwargs):
            if output_attentions:  # only eager materialises the attention weights
                mask = _additive(attention_mask, hidden_states.dtype)
                return super().forward(hidden_states, mask, layer_past, use_cache, output_attentions)
            query = self._split_heads(self.q_proj(hidden_states), self.num_heads, self.head_dim)
            key = self._split_heads(self.k_proj(hidden_states), self.num_heads, self.head_dim)
            value = self._split_heads(self.v_proj(hidden_states), self.num_heads, self.head_dim)
            if layer_past is not None:
                key, value = layer_past.update(key, value, self.layer_id)
            output = neo_attention(
                query, key, value, attention_mask,
                band=self.bias,
                window=self.config.window_size if self.attention_type == "local" else None,
                dropout_p=self.attn_dropout.p if self.training else 0.0,
                backend=self.attention_backend,
            )
            output = self.out_proj(self._merge_heads(output, self.num_heads, self.head_dim))
            return self.resid_dropout(output), None

    # pickle and deepcopy find the class as modeling.FastGPTNeoSelfAttention (module __getattr__ below)
    FastGPTNeoSelfAttention.__module__ = __name__
    FastGPTNeoSelfAttention.__qualname__ = "FastGPTNeoSelfAttention"
    _FAST_CLASS = FastGPTNeoSelfAttention
    return _FAST_CLASS


def __getattr__(name):
    if name == "FastGPTNeoSelfAttention":
        return _fast_attention_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
