"""Version guards: a transformers outside the supported range fails at import with what to do."""

import re
import tomllib

import pytest

from appsneo_utils import compat
from conftest import ROOT


@pytest.mark.parametrize("version", ["4.46.3", "6.0.0", "6.1.0.dev0", "garbage"])
def test_unsupported_versions_name_the_range_and_the_fix(version):
    with pytest.raises(ImportError, match=rf"supports transformers >=5,<6 .*found {re.escape(version)}\. Fix: pip"):
        compat.check_transformers(version)


def test_installed_version_is_supported_and_matches_pyproject():
    assert compat.check_transformers().split(".")[0] == "5"
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert f"transformers{compat.supported_range()}" in [d.replace(" ", "") for d in deps]


def test_installed_gpt_neo_internals_have_the_shape_the_kit_uses():
    compat.check_gpt_neo_internals()


def test_changed_internals_are_named():
    class Attention:  # a future GPTNeoSelfAttention without _split_heads and with a new forward
        def _merge_heads(self, tensor, num_heads, head_dim): ...

        def forward(self, hidden_states, attention_mask=None, past_key_values=None): ...

    class Cache:
        def update(self, key_states, value_states, cache_kwargs=None): ...

    with pytest.raises(RuntimeError, match=r"_split_heads, Cache.update\(key_states, value_states, layer_idx\)\. "
                                           r"Use attention='eager'"):
        compat.check_gpt_neo_internals(Attention, Cache)
    with pytest.raises(RuntimeError, match=r"no q_proj, out_proj .*backend='hf'"):
        compat.check_attention_modules(type("Attention", (), {"k_proj": 1, "v_proj": 1})())
