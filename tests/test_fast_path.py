"""The GPU fast path, checked on CPU against transformers' eager GPT-Neo: fast attention
(modeling.use_fast_attention) and the static-cache sampler (fast_sampling.generate)."""

import copy
import pickle

import pytest
import torch
from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

from appsneo_utils import fast_sampling, modeling
from appsneo_utils.modeling import attention_backend_for, fast_attention_backend, use_fast_attention

PROMPTS = [
    "def add(a, b):\n    return a + b\n" * 3,  # the longest: past both windows (32 and 4)
    "print('hello world')",
    "\nQUESTION:\nGiven n numbers, print their sum.\n" * 2,
    "x",
]
TOL = 1e-5
CUDA = torch.cuda.is_available()


@pytest.fixture(scope="module")
def tokenizer():
    tokenizer = modeling.train_tiny_tokenizer()
    tokenizer.padding_side = "left"
    return tokenizer


@pytest.fixture(scope="module")
def models(tokenizer):
    """The tiny model (window 32) and a variant whose window (4) is far shorter than the prompts."""
    return {
        "window32": modeling.tiny_model(0, tokenizer=tokenizer)[0],
        "window4": modeling.tiny_model(1, tokenizer=tokenizer, window_size=4)[0],
    }


@pytest.fixture(scope="module")
def batch(tokenizer):
    encoded = tokenizer(PROMPTS, return_tensors="pt", padding=True)
    assert encoded["input_ids"].shape[1] > 32 and not encoded["attention_mask"].all()  # padding and windows bite
    return encoded["input_ids"], encoded["attention_mask"]


def fast_copy(model, backend="sdpa"):
    return use_fast_attention(copy.deepcopy(model), backend)


def sample(model, ids, mask, eos=None, **kwargs):
    kwargs.setdefault("max_new_tokens", 20)
    kwargs.setdefault("pad_token_id", 0 if eos is None else eos)
    return fast_sampling.generate(model, ids, mask, eos_token_id=eos, **kwargs)


# ---------------------------------------------------------------------------------------------- attention


def test_backend_for_device():
    assert attention_backend_for("cpu") == "eager"
    assert attention_backend_for(torch.device("cuda")) == "sdpa"
    assert attention_backend_for("cuda:1") == "sdpa"


def test_use_fast_attention_refuses_bad_input(models):
    with pytest.raises(ValueError, match="backend must be one of"):
        use_fast_attention(copy.deepcopy(models["window4"]), "flash")
    with pytest.raises(ValueError, match="no GPT-Neo attention"):
        use_fast_attention(torch.nn.Linear(2, 2))


def test_load_model_picks_attention_by_device():
    assert fast_attention_backend(modeling.load_model("tiny", device="cpu")[0]) == "eager"  # auto on a CPU
    assert fast_attention_backend(modeling.load_model("tiny", device="cpu", attention="sdpa")[0]) == "sdpa"
    with pytest.raises(ValueError, match="attention must be"):
        modeling.load_model("tiny", device="cpu", attention="fast")


@pytest.mark.parametrize("backend", ["sdpa", "flex"])
@pytest.mark.parametrize("name", ["window32", "window4"])
def test_logits_match_eager(models, batch, name, backend):
    model = models[name]
    fast = fast_copy(model, backend)
    assert fast_attention_backend(fast) == backend and fast_attention_backend(model) == "eager"
    ids, mask = batch
    with torch.no_grad():
        padded = (model(input_ids=ids, attention_mask=mask).logits, fast(input_ids=ids, attention_mask=mask).logits)
        alone = (model(input_ids=ids[:1]).logits, fast(input_ids=ids[:1]).logits)  # no padding: is_causal/flex
    real = mask.bool()  # padding queries are never read by a real token; only eager gives them numbers
    assert (padded[0] - padded[1])[real].abs().max() < TOL
    assert (alone[0] - alone[1]).abs().max() < TOL
    assert alone[0].abs().max() > 1e-3  # the comparison is not between zeros


def test_a_ready_made_4d_additive_mask_is_honoured(models, batch):
    """transformers passes a caller's 4D mask through untouched; both paths must read it the same way."""
    ids, mask = batch
    length = ids.shape[1]
    allowed = torch.ones(length, length, dtype=torch.bool).tril()[None, None] & mask.bool()[:, None, None, :]
    additive = torch.zeros(allowed.shape).masked_fill(~allowed, torch.finfo(torch.float32).min)
    model = models["window4"]
    with torch.no_grad():
        expected = model(input_ids=ids, attention_mask=additive).logits
        got = fast_copy(model)(input_ids=ids, attention_mask=additive).logits
    assert (expected - got)[mask.bool()].abs().max() < TOL


def test_local_window_matters(models, batch, tokenizer):
    """The window-4 model's logits change when its window is widened: the local mask is exercised."""
    ids, mask = batch
    wide = modeling.tiny_model(1, tokenizer=tokenizer, window_size=1024)[0]
    wide.load_state_dict(models["window4"].state_dict())
    with torch.no_grad():
        narrow = fast_copy(models["window4"])(input_ids=ids[:1]).logits
        assert (narrow - fast_copy(wide)(input_ids=ids[:1]).logits).abs().max() > 1e-3


@pytest.mark.parametrize("name", ["window32", "window4"])
def test_transformers_generate_with_fast_attention_is_unchanged(models, batch, name):
    ids, mask = batch
    model = models[name]
    expected = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=24, do_sample=False)
    got = fast_copy(model).generate(input_ids=ids, attention_mask=mask, max_new_tokens=24, do_sample=False)
    assert torch.equal(expected, got)


def _loss_and_grads(model, **inputs):
    model.train()
    model.zero_grad()
    loss = model(**inputs).loss
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("backend", ["sdpa", "flex"])  # flex: SDPA on CPU when gradients are needed
def test_training_loss_and_gradients_match_eager(models, tokenizer, backend):
    model = models["window4"]
    tokenizer = copy.copy(tokenizer)
    tokenizer.padding_side = "right"  # as training collators pad
    encoded = tokenizer(PROMPTS, return_tensors="pt", padding=True)
    labels = encoded["input_ids"].masked_fill(encoded["attention_mask"] == 0, -100)
    # Packing: two documents in one row, told apart by restarting position ids (no attention mask;
    # transformers only looks for packing without a cache, hence use_cache=False, as training sets).
    packed = torch.cat([encoded["input_ids"][0], encoded["input_ids"][2]])[None]
    positions = torch.cat([torch.arange(encoded["input_ids"].shape[1])] * 2)[None]
    cases = [dict(encoded, labels=labels), dict(input_ids=packed, position_ids=positions, labels=packed),
             dict(input_ids=packed, labels=packed)]
    losses = []
    for inputs in cases:
        inputs["use_cache"] = False
        loss, grads = _loss_and_grads(copy.deepcopy(model), **inputs)
        fast_loss, fast_grads = _loss_and_grads(fast_copy(model, backend), **inputs)
        assert torch.allclose(loss, fast_loss, rtol=1e-6, atol=1e-6)
        losses.append(loss)
        assert grads.keys() == fast_grads.keys() and len(grads) == len(list(model.parameters()))
        for name, grad in grads.items():
            assert (grad - fast_grads[name]).abs().max() <= TOL * max(1.0, grad.abs().max()), name
    assert abs(losses[1] - losses[2]) > 1e-4  # the packed documents were kept apart


def test_output_attentions_falls_back_to_eager(models, batch):
    ids, mask = batch
    model, fast = models["window4"], fast_copy(models["window4"])
    with torch.no_grad():
        expected = model(input_ids=ids, attention_mask=mask, output_attentions=True)
        got = fast(input_ids=ids, attention_mask=mask, output_attentions=True)
    assert len(got.attentions) == 2 and got.attentions[1].shape == expected.attentions[1].shape
    real = mask.bool()
    assert (expected.logits - got.logits)[real].abs().max() < TOL


def test_switch_back_to_eager_and_pickle(models, batch):
    ids, _ = batch
    model = models["window4"]
    fast = pickle.loads(pickle.dumps(fast_copy(model)))  # the swapped class can be found again
    assert fast_attention_backend(fast) == "sdpa" and fast.config._attn_implementation == "sdpa"
    use_fast_attention(fast, "eager")
    assert fast_attention_backend(fast) == "eager" and fast.config._attn_implementation == "eager"
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, fast(input_ids=ids).logits)


# ---------------------------------------------------------------------------------------------- sampling


@pytest.mark.parametrize("new", [1, 2, 40])
@pytest.mark.parametrize("name", ["window32", "window4"])
def test_greedy_matches_generate(models, batch, tokenizer, name, new):
    ids, mask = batch
    model = models[name]
    expected = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new, do_sample=False)
    got = sample(model, ids, mask, tokenizer.eos_token_id, max_new_tokens=new, do_sample=False)
    assert got.dtype == torch.long and torch.equal(expected, got)


def test_short_run_inside_the_window_and_no_mask(models, tokenizer):
    """Prompt + new tokens shorter than the window (the ring is the whole run), no attention mask."""
    model = models["window32"]
    ids = tokenizer(["x = 1"], return_tensors="pt")["input_ids"]
    expected = model.generate(input_ids=ids, max_new_tokens=10, do_sample=False)
    assert torch.equal(expected, sample(model, ids, None, tokenizer.eos_token_id, max_new_tokens=10, do_sample=False))


@pytest.mark.parametrize("name", ["window32", "window4"])
def test_each_step_logits_match_the_full_forward(models, batch, name):
    """Prefill and every cached decode step give the logits of a full eager forward, within 1e-5."""
    ids, mask = batch
    model, new = models[name], 12
    net = fast_sampling._Net(model)
    decoder = fast_sampling._Decoder(net, ids, mask.bool(), new, fast_sampling._Chooser(False, 1, 0, 1), [], 0, [])
    seen = []
    choose = decoder.choose
    decoder.choose = lambda logits, noise: seen.append(logits.clone()) or choose(logits, noise)
    decoder.prefill()
    for _ in range(new - 1):
        decoder.step()
    tokens = decoder.result()
    full_mask = torch.cat([mask, torch.ones(mask.shape[0], new, dtype=mask.dtype)], dim=1)
    positions = (full_mask.cumsum(-1) - 1).masked_fill(full_mask == 0, 0)
    with torch.no_grad():
        logits = model(input_ids=tokens, attention_mask=full_mask, position_ids=positions).logits
    prompt = ids.shape[1]
    for step, got in enumerate(seen):
        assert (logits[:, prompt - 1 + step] - got).abs().max() < TOL, step


def test_lora_model_samples_and_attends_like_eager(models, batch, tokenizer):
    """A peft LoRA model (adapters not merged): the sampler calls the wrapped layers, so they count."""
    from peft import LoraConfig, get_peft_model

    ids, mask = batch
    config = LoraConfig(r=4, target_modules=["q_proj", "v_proj", "c_fc"], init_lora_weights=False)
    lora = get_peft_model(copy.deepcopy(models["window4"]), config).eval()
    expected = lora.generate(input_ids=ids, attention_mask=mask, max_new_tokens=20, do_sample=False)
    plain = sample(models["window4"], ids, mask, tokenizer.eos_token_id, do_sample=False)
    assert torch.equal(expected, sample(lora, ids, mask, tokenizer.eos_token_id, do_sample=False))
    assert not torch.equal(expected, plain)  # the adapters changed the output
    fast = use_fast_attention(copy.deepcopy(lora))
    with torch.no_grad():
        real = mask.bool()
        difference = lora(input_ids=ids, attention_mask=mask).logits - fast(input_ids=ids, attention_mask=mask).logits
    assert difference[real].abs().max() < TOL


def test_eos_finishes_rows_like_generate(models, batch, tokenizer):
    ids, mask = batch
    model = models["window4"]
    free = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=30, do_sample=False)
    prompt = ids.shape[1]
    ends = sorted({int(t) for t in free[:, prompt + 3]})  # every row meets one of these by step 3
    kwargs = dict(max_new_tokens=30, do_sample=False)
    expected = model.generate(input_ids=ids, attention_mask=mask, eos_token_id=ends, pad_token_id=0, **kwargs)
    got = fast_sampling.generate(model, ids, mask, eos_token_id=ends, pad_token_id=0, **kwargs)
    assert torch.equal(expected, got) and got.shape[1] <= prompt + 4  # stopped early, padded with 0


@pytest.mark.parametrize("settings", [dict(temperature=0.7, top_k=20, top_p=0.9), dict(top_p=0.5), dict(top_k=3)])
def test_sampling_with_a_seed_draws_what_generate_draws(models, batch, tokenizer, settings):
    """Same logits, same warpers, same Exponential draws as torch.multinomial: the same tokens."""
    ids, mask = batch
    model = models["window4"]
    torch.manual_seed(7)
    expected = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=25, do_sample=True,
                              **{"top_k": 0, **settings})
    torch.manual_seed(7)
    got = sample(model, ids, mask, tokenizer.eos_token_id, max_new_tokens=25, **settings)
    assert torch.equal(expected, got)


@pytest.mark.parametrize("settings", [dict(), dict(temperature=0.5), dict(top_k=5), dict(top_p=0.8),
                                      dict(temperature=1.3, top_k=40, top_p=0.95), dict(top_p=0.0)])
def test_choose_next_is_transformers_warpers_and_multinomial(settings):
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 300, generator=generator) * 3
    logits[0, :10] = logits[0].max() + 1  # ties at the top
    warpers = LogitsProcessorList()
    if settings.get("temperature", 1.0) != 1.0:
        warpers.append(TemperatureLogitsWarper(settings["temperature"]))
    if settings.get("top_k"):
        warpers.append(TopKLogitsWarper(settings["top_k"]))
    if settings.get("top_p", 1.0) < 1.0:
        warpers.append(TopPLogitsWarper(settings["top_p"]))
    probs = torch.softmax(warpers(None, logits.clone()), dim=-1)
    expected = torch.multinomial(probs, 1, generator=torch.Generator().manual_seed(3)).squeeze(1)
    noise = torch.empty_like(logits).exponential_(1, generator=torch.Generator().manual_seed(3))
    assert torch.equal(fast_sampling.choose_next(logits, noise, **settings), expected)
    assert torch.equal(fast_sampling.choose_next(logits, None, do_sample=False), logits.argmax(-1))


def test_sampled_token_frequencies_follow_the_model(models, tokenizer):
    """4,000 first tokens drawn with a generator: their frequencies are the warped softmax's."""
    model = models["window32"]
    ids = tokenizer(["def main():\n"], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, -1].float()
    probs = torch.softmax(TopKLogitsWarper(10)(None, logits[None] / 0.8), dim=-1)[0]
    draws = sample(model, ids.repeat(4000, 1), None, None, max_new_tokens=1, temperature=0.8, top_k=10,
                   generator=torch.Generator().manual_seed(1))[:, -1]
    freq = torch.bincount(draws, minlength=probs.numel()).float() / draws.numel()
    assert set(draws.tolist()) <= set(torch.nonzero(probs).flatten().tolist())
    assert 0.5 * (freq - probs).abs().sum() < 0.05  # total variation; ~0.02 expected from 4,000 draws


def test_generator_makes_runs_repeatable(models, batch, tokenizer):
    ids, mask = batch
    model, eos = models["window4"], tokenizer.eos_token_id
    runs = [sample(model, ids, mask, eos, generator=torch.Generator().manual_seed(s)) for s in (5, 5, 6)]
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])


def test_stop_token_sequences_end_rows(models, batch, tokenizer):
    ids, mask = batch
    model, eos, new = models["window32"], tokenizer.eos_token_id, 30
    free = sample(model, ids, mask, None, max_new_tokens=new, do_sample=False)
    prompt = ids.shape[1]
    stop = free[0, prompt + 3 : prompt + 5].tolist()  # row 0 generates it at steps 3-4
    got = sample(model, ids, mask, None, max_new_tokens=new, do_sample=False, stop_token_sequences=[stop, []],
                 pad_token_id=eos)
    expected, ends = free.clone(), []
    for row in range(ids.shape[0]):
        generated = free[row, prompt:].tolist()
        end = next((i for i in range(1, new) if generated[i - 1 : i + 1] == stop), None)
        ends.append(end)
        if end is not None:
            expected[row, prompt + end + 1 :] = eos
    length = prompt + max(ends) + 1 if None not in ends else free.shape[1]
    assert ends[0] is not None and ends[0] <= 4
    assert torch.equal(got, expected[:, :length])


class _FakeCuda:
    """Stand-ins for torch.cuda streams and graphs, so capture()'s bookkeeping runs on a CPU."""

    def __init__(self, monkeypatch, fail=False):
        import contextlib

        self.replays, self.fail = 0, fail
        fake = self

        class Stream:
            def wait_stream(self, other):
                pass

        class Graph:
            def replay(self):
                fake.replays += 1
                fake.step()

        @contextlib.contextmanager
        def graph(g):
            if fake.fail:
                raise RuntimeError("operation not permitted when stream is capturing")
            yield  # a real capture records without running; the step runs here, restore() undoes it

        monkeypatch.setattr(torch.cuda, "Stream", Stream)
        monkeypatch.setattr(torch.cuda, "current_stream", Stream)
        monkeypatch.setattr(torch.cuda, "stream", lambda s: contextlib.nullcontext())
        monkeypatch.setattr(torch.cuda, "CUDAGraph", Graph)
        monkeypatch.setattr(torch.cuda, "graph", graph)
        monkeypatch.setattr(torch.cuda, "synchronize", lambda *a: None)


@pytest.mark.parametrize("fail", [False, True])
def test_graph_capture_bookkeeping(models, batch, tokenizer, monkeypatch, fail):
    """Warm-up and capture leave the state as they found it; a failed capture falls back to plain steps."""
    ids, mask = batch
    model, new, eos = models["window4"], 15, tokenizer.eos_token_id
    fake = _FakeCuda(monkeypatch, fail)
    net = fast_sampling._Net(model)
    chooser = fast_sampling._Chooser(True, 0.8, 0, 0.9)
    decoder = fast_sampling._Decoder(net, ids, mask.bool(), new, chooser, [eos], eos, [])
    fake.step = decoder.step
    noise = fast_sampling._Noise(decoder.noise, torch.Generator().manual_seed(4))
    noise.draw()
    decoder.prefill()
    before = [t.clone() for t in (decoder.tok, decoder.pos, decoder.slot, decoder.out, decoder.unfinished)]
    if fail:
        with pytest.warns(UserWarning, match="CUDA graph capture failed"):
            step = decoder.capture()
    else:
        step = decoder.capture()
    after = (decoder.tok, decoder.pos, decoder.slot, decoder.out, decoder.unfinished)
    assert all(torch.equal(a, b) for a, b in zip(before, after))
    for _ in range(new - 1):
        noise.draw()
        step()
    assert fake.replays == (0 if fail else new - 1)
    expected = sample(model, ids, mask, eos, max_new_tokens=new, temperature=0.8, top_p=0.9,
                      generator=torch.Generator().manual_seed(4))
    assert torch.equal(decoder.result(), expected)


def test_bad_requests_are_refused(models, batch, tokenizer):
    ids, mask = batch
    model, eos = models["window4"], tokenizer.eos_token_id
    with pytest.raises(ValueError, match="LEFT-padded"):
        sample(model, ids, mask.flip(1))
    with pytest.raises(ValueError, match="at least one real token"):
        sample(model, ids, torch.zeros_like(mask))
    with pytest.raises(ValueError, match="exceeds the model's 1024 positions"):
        sample(model, ids, mask, eos, max_new_tokens=1024)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        sample(model, ids, mask, eos, temperature=0.0)
    with pytest.raises(ValueError, match="cuda_graph=True needs the model on CUDA"):
        sample(model, ids, mask, eos, cuda_graph=True)
    with pytest.raises(ValueError, match="pad_token_id is None"):
        fast_sampling.generate(model, ids, mask, max_new_tokens=2, eos_token_id=None, pad_token_id=None)
    assert torch.equal(sample(model, ids, mask, eos, max_new_tokens=0), ids)


def test_compile_blocks_keeps_masks_out_of_the_graph(models, batch, monkeypatch):
    """Compiled block by block, the layers still get no mask (flash and flex stay usable) and the same loss."""
    ids = batch[0][:1]  # the longest prompt: no padding, so transformers needs no mask
    eager = models["window4"]
    model = fast_copy(eager)
    seen = []
    attend = modeling.neo_attention
    monkeypatch.setattr(modeling, "neo_attention", lambda q, k, v, mask=None, **kw: seen.append(mask) or attend(
        q, k, v, mask, **kw))
    assert modeling.compile_blocks(model, backend="aot_eager") == 2
    with torch.no_grad():
        loss, expected = (m(input_ids=ids, labels=ids).loss for m in (model, eager))
    assert len(seen) == 2 and all(mask is None for mask in seen)
    assert torch.allclose(loss, expected, atol=TOL)
    assert model.state_dict().keys() == eager.state_dict().keys()
    modeling.compile_blocks(model, enable=False)
    assert not any(getattr(block, "_compiled_call_impl", None) for block in model.transformer.h)
    with pytest.raises(ValueError, match="no GPT-Neo blocks"):
        modeling.compile_blocks(torch.nn.Linear(2, 2))


# ---------------------------------------------------------------------------------------------- GPU only


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
@pytest.mark.parametrize("name", ["window32", "window4"])
def test_cuda_graph_sampler_matches_eager_steps_and_generate(models, batch, tokenizer, name):
    ids, mask = (t.cuda() for t in batch)
    model = copy.deepcopy(models[name]).cuda()
    eos = tokenizer.eos_token_id
    expected = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=40, do_sample=False)
    graphed = sample(model, ids, mask, eos, max_new_tokens=40, do_sample=False, cuda_graph=True)
    plain = sample(model, ids, mask, eos, max_new_tokens=40, do_sample=False, cuda_graph=False)
    assert torch.equal(graphed, plain) and torch.equal(expected, graphed)
    runs = [sample(model, ids, mask, eos, top_p=0.9, cuda_graph=graph,
                   generator=torch.Generator("cuda").manual_seed(0)) for graph in (True, False)]
    assert torch.equal(*runs)
    # A CPU generator seeds one on the GPU: repeatable, and no longer the CUDA generator's draws.
    cpu_seeded = [sample(model, ids, mask, eos, top_p=0.9, generator=torch.Generator().manual_seed(0))
                  for _ in range(2)]
    assert torch.equal(*cpu_seeded)


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
@pytest.mark.parametrize("backend", ["sdpa", "flex"])
def test_bf16_loss_on_gpu_within_1e_2(models, batch, backend):
    ids = batch[0][:1].cuda()
    model = copy.deepcopy(models["window4"]).cuda().to(torch.bfloat16)
    with torch.no_grad():
        eager = model(input_ids=ids, labels=ids).loss.float()
        fast = use_fast_attention(model, backend)(input_ids=ids, labels=ids).loss.float()
    assert abs(fast - eager) / eager < 1e-2


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
@pytest.mark.parametrize("backend", ["sdpa", "flex"])
def test_gpu_float32_gradients_match_eager(models, batch, backend):
    ids = batch[0][:1].cuda()
    model = copy.deepcopy(models["window4"]).cuda()
    loss, grads = _loss_and_grads(copy.deepcopy(model), input_ids=ids, labels=ids)
    fast_loss, fast_grads = _loss_and_grads(use_fast_attention(model, backend), input_ids=ids, labels=ids)
    assert torch.allclose(loss, fast_loss, rtol=1e-4)
    for name, grad in grads.items():
        assert (grad - fast_grads[name]).abs().max() <= 1e-3 * max(1.0, grad.abs().max()), name
