"""Fast batched sampling from GPT-Neo: a static KV cache and one decode step replayed as a CUDA graph.

`generate` returns the tokens `model.generate` returns for left-padded prompts (greedy: the same
tokens; sampling: the same distribution, and with the same seed on CPU the same draws), but runs
its own GPT-Neo forward over the model's modules: transformers' compiled CUDA-graph path fails
for GPT-Neo, and its eager loop spends ~35 ms a step on 1.3B where reading the weights takes ~1 ms.

    # 16 samples * 256 new tokens: one prefill, then 255 replays of a captured decode step
    tokens = generate(model, ids, mask, max_new_tokens=256, top_p=0.95, eos_token_id=eos, pad_token_id=eos)
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

from .compat import check_attention_modules, check_transformers

check_transformers()  # _Net below walks transformers 5's GPT-Neo modules

CHECK_EVERY_CUDA = 8  # steps between "all rows finished?" checks on CUDA (each one waits for the GPU)


@torch.no_grad()
def generate(
    model,
    input_ids: torch.LongTensor,
    attention_mask: torch.Tensor | None = None,
    *,
    max_new_tokens: int,
    do_sample: bool = True,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int = 0,
    eos_token_id: int | list[int] | None,
    pad_token_id: int | None,
    generator: torch.Generator | None = None,
    stop_token_sequences=None,
    cuda_graph: bool | None = None,
) -> torch.LongTensor:
    """(batch, prompt_len + generated) tokens, prompts LEFT-padded as for `model.generate`.

    Sampling applies temperature, then top-k (0: off), then top-p (1.0: off), as transformers does.
    A row finishes at an EOS token or when its generated tokens end with one of
    `stop_token_sequences` (lists of ids; the stop tokens are kept) and is padded with
    `pad_token_id` from then on; generation stops when every row has finished. `cuda_graph`
    (default: on CUDA) replays the decode step as a CUDA graph.
    """
    net = _Net(model)
    device = net.device
    ids, mask = _check_prompts(input_ids, attention_mask, device)
    max_new_tokens = int(max_new_tokens)
    if max_new_tokens <= 0:
        return input_ids.clone()
    if ids.shape[1] + max_new_tokens > net.max_positions:
        raise ValueError(
            f"prompt ({ids.shape[1]} tokens with padding) + max_new_tokens ({max_new_tokens}) exceeds the "
            f"model's {net.max_positions} positions: shorten the prompts or generate fewer tokens"
        )
    eos = [] if eos_token_id is None else [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id)
    if pad_token_id is None:
        if not eos:
            raise ValueError("pad_token_id is None and there is no eos_token_id to pad with")
        pad_token_id = eos[0]
    choose = _Chooser(do_sample, temperature, top_k, top_p)
    stops = [list(map(int, s)) for s in (stop_token_sequences or []) if len(s)]
    use_graph = device.type == "cuda" if cuda_graph is None else bool(cuda_graph)
    if use_graph and device.type != "cuda":
        raise ValueError(f"cuda_graph=True needs the model on CUDA, it is on {device}")

    was_training = model.training
    model.eval()  # sampling never uses dropout
    try:
        decoder = _Decoder(net, ids, mask, max_new_tokens, choose, eos, int(pad_token_id), stops)
        rng = _Noise(decoder.noise, generator) if do_sample else None
        if rng:
            rng.draw()
        decoder.prefill()
        step = decoder.step
        if use_graph and max_new_tokens > 1 and bool(decoder.unfinished.any()):
            step = decoder.capture()
        check_every = CHECK_EVERY_CUDA if device.type == "cuda" else 1
        for done in range(max_new_tokens - 1):
            if done % check_every == 0 and not bool(decoder.unfinished.any()):
                break
            if rng:
                rng.draw()
            step()
        tokens = decoder.result()
    finally:
        model.train(was_training)
    return tokens.to(input_ids.device)


def choose_next(logits: torch.Tensor, noise: torch.Tensor | None, *, do_sample=True, temperature=1.0, top_k=0,
                top_p=1.0) -> torch.LongTensor:
    """The next token of each row from float32 (batch, vocab) logits, as `generate` picks it.

    `noise`: Exponential(1) draws of the logits' shape; argmax(probs / noise) is exactly what
    `torch.multinomial(probs, 1)` computes from the same draws.
    """
    return _Chooser(do_sample, temperature, top_k, top_p)(logits, noise)


class _Chooser:
    """Greedy or sampled choice with transformers' warpers: temperature, then top-k, then top-p."""

    def __init__(self, do_sample, temperature, top_k, top_p):
        self.do_sample = bool(do_sample)
        self.temperature, self.top_k, self.top_p = float(temperature), int(top_k or 0), float(top_p)
        if self.do_sample and self.temperature <= 0:
            raise ValueError(f"temperature must be > 0 when sampling, got {temperature} (use do_sample=False)")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 turns it off), got {top_k}")
        if not 0.0 <= self.top_p <= 1.0:
            raise ValueError(f"top_p must be in [0, 1] (1 turns it off), got {top_p}")

    def __call__(self, logits, noise):
        if not self.do_sample:
            return logits.argmax(dim=-1)
        scores = logits
        if self.temperature != 1.0:
            scores = scores / self.temperature
        if self.top_k:
            k = min(self.top_k, scores.shape[-1])
            kth = torch.topk(scores, k).values[..., -1:]
            scores = scores.masked_fill(scores < kth, -float("inf"))
        if self.top_p < 1.0:
            ordered, order = torch.sort(scores, descending=False)
            drop = ordered.softmax(dim=-1).cumsum(dim=-1) <= (1 - self.top_p)
            drop[..., -1:] = False  # always keep the most likely token
            scores = scores.masked_fill(drop.scatter(1, order, drop), -float("inf"))
        probs = scores.softmax(dim=-1)
        return (probs / noise).argmax(dim=-1)


class _Noise:
    """Fills the decoder's noise buffer with Exponential(1) draws from `generator` (or torch's default).

    A generator on another device than the model (a CPU one for a CUDA model) seeds a generator on
    the model's device once: drawing on the CPU and copying would wait for the GPU at every step.
    """

    def __init__(self, buffer, generator):
        where = None if generator is None else generator.device
        if where is not None and (where.type != buffer.device.type or where.index not in (None, buffer.device.index)):
            seed = int(torch.randint(2**62, (1,), generator=generator, device=where))
            generator = torch.Generator(device=buffer.device).manual_seed(seed)
        self.buffer, self.generator = buffer, generator

    def draw(self):
        self.buffer.exponential_(1, generator=self.generator)


class _Net:
    """A view of a GPT-Neo causal LM's modules (LoRA-wrapped layers work: they are called, not read)."""

    def __init__(self, model):
        core = model.get_base_model() if hasattr(model, "get_base_model") else model
        config = core.config
        if getattr(config, "model_type", None) != "gpt_neo":
            raise ValueError(f"fast_sampling needs a GPT-Neo causal LM, got {type(core).__name__}")
        body = core.transformer
        self.wte, self.wpe, self.ln_f = body.wte, body.wpe, body.ln_f
        self.lm_head = core.get_output_embeddings()
        self.blocks = list(body.h)
        check_attention_modules(self.blocks[0].attn.attention)
        self.local = [block.attn.attention_type == "local" for block in self.blocks]
        self.window = int(config.window_size)
        self.heads = int(config.num_heads)
        self.head_dim = int(config.hidden_size) // self.heads
        self.max_positions = int(config.max_position_embeddings)
        self.device = self.wte.weight.device
        self.dtype = self.wte.weight.dtype

    def split(self, x):  # (batch, T, hidden) -> (batch, heads, T, head_dim)
        return x.view(x.shape[0], x.shape[1], self.heads, self.head_dim).transpose(1, 2)

    def forward(self, cache, tokens, positions, slots, key_ok, decode: bool):
        """Float32 logits of each row's last token; stores the tokens' keys and values in `cache`.

        Prefill: `slots` = 0..prompt-1, attention over the fresh keys. Decode: one token at slot
        `slots` (a 1-element tensor, so a captured graph replays at any step), attention over the
        cache. Global layers cache every slot; local layers a ring of their last `window` slots.
        """
        x = self.wte(tokens) + self.wpe(positions)
        global_mask, local_mask = self._masks(cache, slots, key_ok, decode)
        for block, local, (k_cache, v_cache) in zip(self.blocks, self.local, cache):
            attention = block.attn.attention
            h = block.ln_1(x)
            key, value = self.split(attention.k_proj(h)), self.split(attention.v_proj(h))
            if local:
                ring = k_cache.shape[2]
                where, new = (slots, slice(None)) if decode else (slots[-ring:], slice(-ring, None))
                k_cache.index_copy_(2, where % ring, key[:, :, new])
                v_cache.index_copy_(2, where % ring, value[:, :, new])
            else:
                k_cache.index_copy_(2, slots, key)
                v_cache.index_copy_(2, slots, value)
            if decode:
                key, value = k_cache, v_cache
            out = F.scaled_dot_product_attention(
                self.split(attention.q_proj(h)), key, value,
                attn_mask=local_mask if local else global_mask, scale=1.0,  # GPT-Neo: no 1/sqrt(d)
            )
            out = out.transpose(1, 2).reshape(x.shape[0], x.shape[1], -1)
            x = attention.out_proj(out) + x
            x = x + block.mlp(block.ln_2(x))
        return self.lm_head(self.ln_f(x[:, -1])).float()

    def _masks(self, cache, slots, key_ok, decode):
        """Boolean (batch, 1, queries, keys) masks for global and local layers (True = attend)."""
        if not decode:  # queries = keys = the prompt's slots
            key_slots, query_slots = slots[None, :], slots[:, None]
            causal = key_slots <= query_slots
            itself = key_slots == query_slots  # a left-padding query sees no real key: let it see itself
            seen = key_ok[:, None, None, : slots.numel()]
            in_window = key_slots > query_slots - self.window
            return (causal & seen) | itself, (causal & in_window & seen) | itself
        length = key_ok.shape[1]
        global_mask = (torch.arange(length, device=slots.device) <= slots) & key_ok
        local_mask = None
        ring = next((k.shape[2] for k, local in zip((c[0] for c in cache), self.local) if local), None)
        if ring is not None:
            # Ring entry r holds the newest slot congruent to r (mod ring) that is not in the future.
            held = slots - (slots - torch.arange(ring, device=slots.device)) % ring
            local_mask = (held >= 0) & key_ok.index_select(1, held.clamp(min=0))
            local_mask = local_mask[:, None, None, :]
        return global_mask[:, None, None, :], local_mask


class _Decoder:
    """The whole sampling state in fixed-size tensors, so one decode step can be captured and replayed."""

    def __init__(self, net, ids, mask, max_new_tokens, choose, eos, pad, stops):
        batch, prompt = ids.shape
        length = prompt + max_new_tokens
        device = ids.device
        self.net, self.choose, self.prompt, self.length = net, choose, prompt, length
        ring = min(net.window, length)  # a local layer never looks further back than its window
        self.cache = []
        for local in net.local:
            shape = (batch, net.heads, ring if local else length, net.head_dim)
            self.cache.append((torch.zeros(shape, dtype=net.dtype, device=device),
                               torch.zeros(shape, dtype=net.dtype, device=device)))
        self.key_ok = torch.ones(batch, length, dtype=torch.bool, device=device)
        self.key_ok[:, :prompt] = mask
        # As transformers' generate: a token's position counts the real tokens before it.
        self.positions = (mask.long().cumsum(-1) - 1).masked_fill(~mask, 0)
        self.ids = ids
        self.out = torch.full((batch, length), pad, dtype=torch.long, device=device)
        self.out[:, :prompt] = ids
        self.tok = ids[:, -1].clone()  # the newest token, its position and its cache slot
        self.pos = self.positions[:, -1].clone()
        self.slot = torch.full((1,), prompt - 1, dtype=torch.long, device=device)
        self.unfinished = torch.ones(batch, dtype=torch.bool, device=device)
        self.done_at = torch.full((batch,), length, dtype=torch.long, device=device)
        self.noise = torch.ones(batch, net.wte.num_embeddings, dtype=torch.float32, device=device)
        self.pad = torch.tensor(pad, dtype=torch.long, device=device)
        self.eos = torch.tensor(eos, dtype=torch.long, device=device) if eos else None
        self.stops = [torch.tensor(s, dtype=torch.long, device=device) for s in stops]
        self.stop_offsets = [torch.arange(len(s), device=device) - (len(s) - 1) for s in stops]

    def prefill(self):
        slots = torch.arange(self.prompt, device=self.ids.device)
        logits = self.net.forward(self.cache, self.ids, self.positions, slots, self.key_ok, decode=False)
        self._advance(logits)

    def step(self):
        logits = self.net.forward(self.cache, self.tok[:, None], self.pos[:, None], self.slot, self.key_ok,
                                  decode=True)
        self._advance(logits)

    def _advance(self, logits):
        """Choose, pad finished rows, record, and mark rows that end here; no host syncs (graph-safe)."""
        nxt = torch.where(self.unfinished, self.choose(logits, self.noise), self.pad)
        slot = self.slot + 1
        self.out.index_copy_(1, slot, nxt[:, None])
        ends = torch.zeros_like(self.unfinished)
        if self.eos is not None:
            ends |= (nxt[:, None] == self.eos[None, :]).any(dim=-1)
        for stop, offsets in zip(self.stops, self.stop_offsets):
            span = slot + offsets  # the last len(stop) slots, all of them generated ones
            tail = self.out.index_select(1, span.clamp(min=0))
            ends |= (tail == stop[None, :]).all(dim=-1) & (span[0] >= self.prompt)
        self.done_at.copy_(torch.where(self.unfinished & ends, slot, self.done_at))
        self.unfinished &= ~ends
        self.tok.copy_(nxt)
        self.pos += 1
        self.slot += 1

    def capture(self):
        """`step` captured as a CUDA graph; returns its replay (or `step` itself if capture fails)."""
        state = [self.tok, self.pos, self.slot, self.unfinished, self.done_at, self.out]
        saved = [t.clone() for t in state]

        def restore():
            for t, s in zip(state, saved):
                t.copy_(s)

        try:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):  # warm-up: lazy inits and kernel choices happen outside capture
                for _ in range(2):
                    self.step()
                    restore()
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                self.step()
        except Exception as error:  # a kernel that cannot be captured must not cost the samples
            warnings.warn(f"CUDA graph capture failed, decoding without graphs: {error!r}", stacklevel=3)
            torch.cuda.synchronize()
            restore()
            return self.step
        restore()  # capture records without running; the warm-up writes are undone
        return graph.replay

    def result(self):
        """The tokens up to the step where the last row finished, as `generate` returns them."""
        length = self.length
        if not bool(self.unfinished.any()):
            length = int(self.done_at.max()) + 1
        return self.out[:, :length].clone()


def _check_prompts(input_ids, attention_mask, device):
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must be (batch, length), got shape {tuple(input_ids.shape)}")
    ids = input_ids.to(device=device, dtype=torch.long)
    if attention_mask is None:
        return ids, torch.ones_like(ids, dtype=torch.bool)
    if attention_mask.shape != input_ids.shape:
        raise ValueError(f"attention_mask {tuple(attention_mask.shape)} must match input_ids {tuple(input_ids.shape)}")
    mask = attention_mask.to(device=device).bool()
    if bool((mask[:, 1:] < mask[:, :-1]).any()):
        raise ValueError("prompts must be LEFT-padded (tokenizer.padding_side = 'left'), as for model.generate")
    if not bool(mask[:, -1].all()):
        raise ValueError("every prompt needs at least one real token (a row of attention_mask is all zeros)")
    return ids, mask
