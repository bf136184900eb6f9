"""Version guards for the transformers internals the kit relies on.

Two places reach inside transformers' GPT-Neo rather than calling its public API:
- `modeling.FastGPTNeoSelfAttention` subclasses `GPTNeoSelfAttention` and calls its `_split_heads`,
  `_merge_heads`, projections and `layer_past.update(key, value, layer_id)` (the cache classes' API);
- `fast_sampling` walks `model.transformer.h[i].attn.attention` and its projections.
Both were written against transformers 5 (`SUPPORTED`, the same range as pyproject.toml). The version is
checked when those modules are imported (from package metadata: no transformers import), and the internals'
shape when they are first used, so that a new transformers fails with what to do, not a deep AttributeError.
"""

from __future__ import annotations

import inspect
import re
from importlib import metadata

SUPPORTED = (5, 6)  # transformers >=5,<6: keep in step with pyproject.toml
FIX = "pip install 'transformers>=5,<6' (or `make install` in a fresh .venv)"
SELF_ATTENTION_METHODS = ("_split_heads", "_merge_heads", "forward")
FORWARD_ARGS = ("hidden_states", "attention_mask", "layer_past", "use_cache", "output_attentions")
ATTENTION_MODULES = ("q_proj", "k_proj", "v_proj", "out_proj")


def supported_range() -> str:
    return f">={SUPPORTED[0]},<{SUPPORTED[1]}"


def check_transformers(version: str | None = None) -> str:
    """The installed transformers version; ImportError naming the supported range when it is outside it."""
    if version is None:
        try:
            version = metadata.version("transformers")
        except metadata.PackageNotFoundError:
            raise ImportError(f"appsneo needs transformers {supported_range()}, which is not installed: {FIX}") from None
    match = re.match(r"(\d+)", version)
    major = int(match.group(1)) if match else -1
    if not SUPPORTED[0] <= major < SUPPORTED[1]:
        raise ImportError(
            f"appsneo supports transformers {supported_range()} (it subclasses GPT-Neo's attention and uses the "
            f"cache classes' update API, which change between major versions); found {version}. Fix: {FIX}")
    return version


def check_gpt_neo_internals(attention_cls=None, cache_cls=None) -> None:
    """RuntimeError naming what is missing when GPT-Neo's self-attention or the cache API changed shape."""
    if attention_cls is None:
        from transformers.models.gpt_neo.modeling_gpt_neo import GPTNeoSelfAttention as attention_cls
    if cache_cls is None:
        from transformers.cache_utils import DynamicCache as cache_cls
    missing = [name for name in SELF_ATTENTION_METHODS if not callable(getattr(attention_cls, name, None))]
    if not missing:
        params = list(inspect.signature(attention_cls.forward).parameters)[1:]
        missing += [f"forward({arg}=...)" for arg in FORWARD_ARGS if arg not in params]
    update = getattr(cache_cls, "update", None)
    if not callable(update) or list(inspect.signature(update).parameters)[1:4] != ["key_states", "value_states",
                                                                                    "layer_idx"]:
        missing.append(f"{cache_cls.__name__}.update(key_states, value_states, layer_idx)")
    if missing:
        raise RuntimeError(
            f"this transformers ({check_transformers()}) changed GPT-Neo internals the kit uses: "
            f"{', '.join(missing)}. Use attention='eager' to avoid the kit's attention, or {FIX}")


def check_attention_modules(attention) -> None:
    """RuntimeError when a GPT-Neo block's `attn.attention` lacks the projections fast_sampling calls."""
    missing = [name for name in ATTENTION_MODULES if not hasattr(attention, name)]
    if missing:
        raise RuntimeError(f"GPT-Neo's attention module has no {', '.join(missing)} in this transformers "
                           f"({check_transformers()}): use backend='hf', or {FIX}")
