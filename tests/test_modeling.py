"""The tiny offline GPT-Neo and model loading."""

import time

import pytest
import torch

from appsneo_utils import modeling
from appsneo_utils.modeling import load_model, save_model, tiny_model


@pytest.fixture(scope="module")
def tiny():
    return tiny_model(seed=0)


def test_tiny_model_is_gpt_neo_with_local_and_global_layers(tiny):
    model, tokenizer = tiny
    assert model.config.model_type == "gpt_neo"
    assert model.config.attention_layers == ["global", "local"]
    assert tokenizer.model_max_length == model.config.max_position_embeddings == 1024
    assert tokenizer.eos_token == "<|endoftext|>" and tokenizer.pad_token_id == tokenizer.eos_token_id
    text = "def f(x):\n\treturn x\n"
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text  # byte-level: lossless, tabs kept


def test_tiny_model_is_deterministic():
    a, _ = tiny_model(seed=3)
    b, _ = tiny_model(seed=3)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_save_reload_generate(tiny, tmp_path):
    model, tokenizer = tiny
    inputs = tokenizer("\nQUESTION:\nPrint 1.\n", return_tensors="pt")
    before = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    save_model(model, tokenizer, tmp_path / "m")
    again, tokenizer2 = load_model(str(tmp_path / "m"), device="cpu")
    after = again.generate(**inputs, max_new_tokens=12, do_sample=False)
    assert torch.equal(before, after) and before.shape[1] > inputs["input_ids"].shape[1]
    assert tokenizer2.model_max_length == 1024 and tokenizer2.pad_token_id == tokenizer2.eos_token_id


def test_a_saved_model_carries_its_provenance(tiny, tmp_path):
    model, tokenizer = tiny
    save_model(model, tokenizer, tmp_path / "copy", provenance={"model": "EleutherAI/gpt-neo-125M"})
    record = modeling.read_provenance(tmp_path / "copy")
    assert record["model"] == "EleutherAI/gpt-neo-125M" and record["how"].startswith("saved by")
    assert record["kit_version"] and record["date"]
    save_model(model, tokenizer, tmp_path / "plain")  # nothing said about what it is: no identity claimed
    assert modeling.read_provenance(tmp_path / "plain")["model"] is None
    assert modeling.read_provenance(tmp_path) is None


def test_folder_without_config(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_model(str(tmp_path))


def test_hub_name_offline_fails_fast(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    start = time.time()
    with pytest.raises(ConnectionError, match="load_model\\('tiny'\\)"):
        load_model("flax-community/gpt-neo-1.3B-apps-all")
    assert time.time() - start < 5


def test_flax_only_repository_gets_a_clear_message(monkeypatch):
    class FakeApi:
        def list_repo_files(self, name):
            return ["config.json", "flax_model.msgpack", "tokenizer.json"]

    monkeypatch.setattr("huggingface_hub.HfApi", FakeApi)
    with pytest.raises(OSError, match="only Flax weights.*transformers 5 cannot read"):
        modeling._refuse_flax_only("someone/flax-only")
    advice = modeling.flax_conversion_advice("someone/flax-only")
    assert "save_pretrained('gpt-neo-apps-pt')" in advice and modeling.PROVENANCE_FILE in advice
    assert "T.from_pretrained(n).save_pretrained" in advice  # the tokenizer too: load_model(folder) reads both
