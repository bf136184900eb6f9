"""The memory plan: parameter counts, the estimate's parts, the choice of a saving option, refusals."""

import pytest
import torch

from appsneo_utils import memory, training
from appsneo_utils.modeling import tiny_model

NEO = "EleutherAI/gpt-neo-1.3B"


def plan(gb, **kw):
    args = dict(batch_size=3, block_size=1024, cuda=True, have_8bit=True)
    return memory.plan(memory.model_shape(NEO), gb, **{**args, **kw})


def test_parameter_count_is_exact():
    assert memory.model_shape(NEO).n_params == 1_315_575_808  # EleutherAI/gpt-neo-1.3B as published
    model, _ = tiny_model(0)
    assert memory.model_shape("tiny").n_params == memory.model_shape(model).n_params == sum(
        p.numel() for p in model.parameters())


def test_full_1p3b_arithmetic():
    full = memory.estimate(memory.model_shape(NEO), batch_size=3, block_size=1024)
    # 1.3B params: 4 B fp32 weights + 4 B grads + 8 B AdamW = 16 B/param = 19.6 GiB before activations
    assert (full.weights_gb, full.gradients_gb, full.optimizer_gb) == pytest.approx((4.9, 4.9, 9.8), abs=0.01)
    assert 30 < full.total_gb < 40
    ckpt = memory.estimate(memory.model_shape(NEO), batch_size=3, block_size=1024, gradient_checkpointing=True)
    lora = memory.estimate(memory.model_shape(NEO), batch_size=3, block_size=1024, lora=True)
    eight = memory.estimate(memory.model_shape(NEO), batch_size=3, block_size=1024, optim_8bit=True)
    assert ckpt.activations_gb < full.activations_gb / 3
    assert lora.trainable < 0.01 * full.trainable and lora.optimizer_gb < 0.1 and lora.weights_gb < 2.6
    assert eight.optimizer_gb == pytest.approx(full.optimizer_gb / 4)
    sdpa = memory.estimate(memory.model_shape(NEO), batch_size=3, block_size=1024, eager_attention=False)
    assert sdpa.activations_gb < full.activations_gb


def test_16gb_gpu_chooses_a_saving_option():
    p = plan(16)
    assert not p.fits(p.requested) and p.requested.option == "full fine-tune"
    assert p.chosen is not None and p.switched and p.chosen.lora and p.chosen.gradient_checkpointing
    assert p.fits(p.chosen) and "switching to LoRA + gradient checkpointing" in p.summary()
    assert p.check() is p.chosen


def test_big_gpu_keeps_the_full_fine_tune():
    p = plan(80)
    assert p.chosen == p.requested and not p.switched and p.chosen.option == "full fine-tune"


def test_without_bitsandbytes_8bit_is_never_chosen():
    p = plan(24, have_8bit=False)
    assert not p.chosen.optim_8bit and "pip install bitsandbytes" in p.advice
    assert plan(24, have_8bit=True).chosen.optim_8bit


def test_refuses_with_advice():
    with pytest.raises(memory.PlanDoesNotFit, match=r"(?s)refusing.*lora=True.*auto_memory=True"):
        plan(16, auto=False).check()
    with pytest.raises(memory.PlanDoesNotFit, match=r"(?s)No memory-saving option fits.*batch_size=1"):
        plan(4).check()


def test_training_plan_memory_switches_or_refuses():
    settings = training.TrainSettings.from_params(profile="full", gpu_memory_gb=16)
    effective, p = training.plan_memory(settings, verbose=False)
    assert effective.lora and effective.gradient_checkpointing and not settings.lora
    with pytest.raises(memory.PlanDoesNotFit):
        refuse = training.TrainSettings.from_params(profile="full", gpu_memory_gb=16, auto_memory=False)
        training.plan_memory(refuse, verbose=False)
    tiny, _ = training.plan_memory(training.TrainSettings.from_params(profile="smoke"), verbose=False)
    assert not tiny.lora and not tiny.gradient_checkpointing


def test_unknown_model_needs_a_config():
    with pytest.raises(ValueError, match="cannot size"):
        memory.model_shape("someone/unknown-model")
    if not torch.cuda.is_available():
        gb, what, cuda = memory.device_memory_gb()
        assert gb > 0 and "RAM" in what and not cuda


def _state_bytes(optimizer) -> int:
    """Bytes of the optimizer's per-parameter tensors, its scalars (step, RMS) aside."""
    return sum(t.numel() * t.element_size() for state in optimizer.state.values() for t in state.values()
               if torch.is_tensor(t) and t.dim() > 0)


@pytest.mark.parametrize("name", ["adamw", "adafactor"])
def test_optimizer_states_are_what_the_optimizer_keeps(name, tmp_path):
    """The estimate's optimizer bytes equal the states of one real step on the tiny model (AdamW or the
    factored Adafactor that training.make_optimizer builds)."""
    settings = training.TrainSettings.from_params(profile="smoke", optimizer=name, output_dir=str(tmp_path))
    model, _ = tiny_model(0)
    optimizer = training.make_optimizer(model, settings)
    model(input_ids=torch.tensor([[1, 2, 3, 4]]), labels=torch.tensor([[1, 2, 3, 4]])).loss.backward()
    optimizer.step()
    est = memory.estimate(memory.model_shape("tiny"), batch_size=1, block_size=8, cuda=False, optimizer=name)
    assert est.optimizer_gb * memory.GB == _state_bytes(optimizer)


def test_adafactor_plans_with_its_small_states():
    adamw, adafactor = plan(32), plan(32, optimizer="adafactor")
    assert adafactor.requested.optimizer_gb < 0.01 < 9 < adamw.requested.optimizer_gb  # 1.3B: 0.005 against 9.8 GiB
    assert adafactor.chosen == adafactor.requested and adafactor.chosen.option == "full fine-tune"
    assert adamw.switched, "AdamW's states do not fit beside the full fine-tune on 32 GB; Adafactor's do"
    assert not any(e.optim_8bit for e in adafactor.table) and "Adafactor" in adafactor.summary()
    settings = training.TrainSettings.from_params(profile="full", recipe="repo", gpu_memory_gb=32)
    effective, p = training.plan_memory(settings, verbose=False)
    assert p.optimizer == "adafactor" and not effective.lora
