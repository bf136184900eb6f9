"""Sample programs from a causal LM: n samples per prompt, batched, cut at EOS or a stop string.

The original model never learned EOS, so a completion ends at the first stop string
("\\nQUESTION", "\\n---", "\\nANSWER", plus the prompt format's own); the code a sample
carries is `prompt_format.program(prompt, completion)`, exactly what the executor receives.
Generated code never runs in this process: `run_sample_tests` hands it to the sandboxed executor.
Notebook 03's settings (`SampleSettings`) are here too: what it samples is what this module takes.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import pandas as pd
from tqdm.auto import tqdm

from . import execution, modeling
from .data import DIFFICULTIES
from .execution import VERDICTS
from .params import Profile, Settings, setting
from .prompts import FORMATS, STOP_STRINGS, PromptFormat, first_stop, get_format

BACKENDS = ("auto", "hf", "fast")
STOPPED_BY = ("eos", "stop", "length")
SPLITS = ("train", "test", "all")
# How notebooks 03 and 05 say where their model comes from when none is named (modeling.resolve_model decides).
MODEL_BY_PROFILE = (f"by profile (full {modeling.APPS_MODEL}; smoke runs/02_finetune/model if it exists, "
                    f"else the tiny model)")


def profile_model(profile: Profile) -> str:
    """The model a notebook samples when none is named: `modeling.resolve_model` on the profile."""
    return modeling.resolve_model(None, full=profile.full).name


@dataclass
class SampleSettings(Settings):
    """Notebook 03's settings: the model, the problems the panel lists, and how it samples and judges."""

    model: str = setting(modeling.APPS_MODEL, "a model folder, a hub name, or tiny", "str",
                         by_profile=MODEL_BY_PROFILE)
    data: str = setting("codeparrot/apps", "any load_apps source (mini, codeparrot/apps, a file)", "str",
                        smoke="mini")
    split: str = setting("test", "train | test | all", "choice", choices=SPLITS)
    difficulty: str = setting("all", "all | introductory | interview | competition", "choice",
                              choices=("all", *DIFFICULTIES))
    problem: str | None = setting(None, "the problem the panel opens on, split:id such as test:3; None: the first "
                                  "one the model trained on (else the first)", "str", optional=True)
    n_problems: int = setting(3, "problems sampled headless in section 4 (0 skips it)", "int", minimum=0)
    n_samples: int = setting(2, "samples per problem", "int", minimum=1)
    temperature: float = setting(0.8, "sampling temperature (0 means greedy)", "float", minimum=0.0)
    top_p: float = setting(0.95, "nucleus sampling mass (1.0 means off)", "float", minimum=0.01, maximum=1.0)
    top_k: int = setting(0, "keep the k likeliest tokens (0 means off)", "int", minimum=0)
    max_new_tokens: int = setting(256, "new tokens per sample at most (a cut program can loop until the timeout)",
                                  "int", minimum=1)
    prompt_format: str = setting("train", "a name in prompts.FORMATS", "choice", choices=tuple(FORMATS))
    batch_size: int = setting(8, "sequences generated together", "int", minimum=1)
    backend: str = setting("auto", "auto | hf | fast (auto: fast on CUDA, HF generate on CPU)", "choice",
                           choices=BACKENDS)
    timeout: float = setting(4.0, "seconds per test in the sandboxed executor", "float", minimum=0.1)
    seed: int = setting(0, "random seed (sampling and the problem choice)", "int")

    def __post_init__(self):
        super().__post_init__()
        self.model = modeling.resolve_model(self.model).name  # what load_model takes: a folder made absolute

    @classmethod
    def layered_defaults(cls, profile: Profile, values: dict) -> dict:
        return {"model": profile_model(profile)}

    def sampling(self) -> dict:
        """The keyword arguments of `generate_samples` (and `sample_problems`) these settings choose."""
        return dict(n=self.n_samples, temperature=self.temperature, top_p=self.top_p, top_k=self.top_k,
                    max_new_tokens=self.max_new_tokens, batch_size=self.batch_size, backend=self.backend,
                    seed=self.seed)


@dataclass
class Sample:
    """One completion: its text (cut before the stop), the program it yields, and why it ended."""

    text: str  # the completion up to, not including, the first stop string or EOS
    code: str | None  # what the executor receives: fmt.program(prompt, text); None without a format
    n_new_tokens: int  # tokens generated, the EOS or the token that completed the stop string included
    stopped_by: str  # "eos" | "stop" | "length"
    stop_string: str | None = None  # which stop string ended it
    raw_text: str = ""  # the decoded completion before the cut (up to EOS)
    prompt_index: int = 0
    sample_index: int = 0
    prompt_truncated: bool = False  # the prompt lost its first tokens to fit the context

    def to_dict(self) -> dict:
        return asdict(self)


class Generations(list):
    """Per-prompt lists of `Sample`s, with the speed of the run.

    `result[i][j]` is sample j of prompt i; `result.tokens_per_second` counts the tokens each
    sample generated (padding and copies of greedy samples excluded) over generation wall time.
    """

    def __init__(self, samples, *, n_tokens: int, seconds: float, backend: str, device: str, settings: dict):
        super().__init__(samples)
        self.n_tokens = n_tokens
        self.seconds = seconds
        self.backend = backend
        self.device = device
        self.settings = settings

    @property
    def tokens_per_second(self) -> float:
        return self.n_tokens / self.seconds if self.seconds > 0 else float("nan")

    def flat(self) -> list[Sample]:
        return [sample for samples in self for sample in samples]

    def summary(self) -> str:
        count = sum(len(s) for s in self)
        return (
            f"{count} samples for {len(self)} prompts: {self.n_tokens} new tokens in {self.seconds:.2f} s "
            f"= {self.tokens_per_second:,.0f} tokens/s ({self.backend} backend on {self.device}, "
            f"batch {self.settings.get('batch_size')})"
        )


def generate_samples(
    model,
    tokenizer,
    prompts,
    *,
    n: int = 1,
    temperature: float = 0.8,
    top_p: float = 0.95,
    top_k: int = 0,
    max_new_tokens: int = 256,
    seed: int = 0,
    stop=STOP_STRINGS,
    fmt: str | PromptFormat | None = "train",
    batch_size: int = 8,
    backend: str = "auto",
    progress=True,
) -> Generations:
    """`n` samples for each prompt (a str or a list of str), batched with left padding.

    temperature 0 is greedy decoding: one sequence per prompt, repeated n times. Generation ends
    at EOS, at any string of `stop` or of the format's own stop strings, or after max_new_tokens.
    `progress`: True (tqdm), False, or a callable(done, total) in samples (done may be fractional).
    The same arguments and seed give the same samples on the same machine.
    """
    import torch

    if isinstance(prompts, str):
        prompts = [prompts]
    prompts = list(prompts)
    if not all(isinstance(p, str) for p in prompts):
        raise ValueError("prompts must be strings (format problems with prompts.format_prompt first)")
    _check_settings(n, temperature, top_p, top_k, max_new_tokens, batch_size, backend, seed)
    prompt_format = None if fmt is None else get_format(fmt)
    stops = _merge_stops(stop, prompt_format)
    device = _model_device(model)
    backend = _choose_backend(backend, device)
    greedy = temperature == 0
    copies = 1 if greedy else n
    eos_id = tokenizer.eos_token_id
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_id
    if pad_id is None:
        raise ValueError("the tokenizer has neither a pad nor an EOS token; set tokenizer.pad_token first")

    context = context_size(model, tokenizer)
    encoded = [encode_prompt(tokenizer, p, max_new_tokens, context) for p in prompts]
    # Longest prompts first: similar lengths share a batch (less padding), and memory trouble shows early.
    rows = sorted(((i, j) for i in range(len(prompts)) for j in range(copies)), key=lambda r: -len(encoded[r[0]][0]))
    batches = [rows[k : k + batch_size] for k in range(0, len(rows), batch_size)]
    report = _Progress(progress, total=len(rows))
    results: dict[tuple[int, int], Sample] = {}
    n_tokens, seconds = 0, 0.0
    try:
        for number, batch in enumerate(batches):
            ids, mask = _left_pad([encoded[i][0] for i, _ in batch], pad_id, device)
            started = time.perf_counter()
            new = _generate_batch(
                backend, model, tokenizer, ids, mask, stops, eos_id, pad_id,
                greedy=greedy, temperature=temperature, top_p=top_p, top_k=top_k,
                max_new_tokens=max_new_tokens, seed=seed + number, report=report, done_before=number * batch_size,
            )
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds += time.perf_counter() - started
            for (i, j), row in zip(batch, new.tolist()):
                sample = finish_sample(row, tokenizer, prompts[i], stops, prompt_format, eos_id)
                sample.prompt_index, sample.sample_index, sample.prompt_truncated = i, j, encoded[i][1]
                results[(i, j)] = sample
                n_tokens += sample.n_new_tokens
            report.update(len(batch), absolute=number * batch_size + len(batch))
    finally:
        report.close()
    samples = [
        [_copy_sample(results[(i, 0 if greedy else j)], j) for j in range(n)] for i in range(len(prompts))
    ]
    settings = dict(n=n, temperature=temperature, top_p=top_p, top_k=top_k, max_new_tokens=max_new_tokens,
                    seed=seed, stop=list(stops), fmt=prompt_format.name if prompt_format else None,
                    batch_size=batch_size)
    return Generations(samples, n_tokens=n_tokens, seconds=seconds, backend=backend, device=str(device),
                       settings=settings)


# --- pieces of generate_samples ------------------------------------------------------------------


def _check_settings(n, temperature, top_p, top_k, max_new_tokens, batch_size, backend, seed):
    checks = [
        (isinstance(seed, int) and not isinstance(seed, bool), f"seed must be a whole number, got {seed!r}"),
        (isinstance(n, int) and n >= 1, f"n must be a whole number >= 1, got {n!r}"),
        (isinstance(temperature, (int, float)) and temperature >= 0,
         f"temperature must be >= 0 (0 = greedy), got {temperature!r}"),
        (isinstance(top_p, (int, float)) and 0 < top_p <= 1, f"top_p must be in (0, 1], got {top_p!r}"),
        (isinstance(top_k, int) and top_k >= 0, f"top_k must be a whole number >= 0 (0 = off), got {top_k!r}"),
        (isinstance(max_new_tokens, int) and max_new_tokens >= 1,
         f"max_new_tokens must be a whole number >= 1, got {max_new_tokens!r}"),
        (isinstance(batch_size, int) and batch_size >= 1, f"batch_size must be a whole number >= 1, got {batch_size!r}"),
        (backend in BACKENDS, f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}"),
    ]
    for ok, message in checks:
        if not ok:
            raise ValueError(message)


def _merge_stops(stop, prompt_format) -> tuple[str, ...]:
    """`stop` plus the format's own stop strings, without duplicates or empty strings."""
    stop = (stop,) if isinstance(stop, str) else tuple(stop or ())
    extra = prompt_format.stop if prompt_format is not None else ()
    return tuple(dict.fromkeys(s for s in stop + tuple(extra) if s))


def _model_device(model):
    import torch

    try:
        return next(model.parameters()).device
    except (StopIteration, AttributeError):
        return torch.device("cpu")


def _choose_backend(backend: str, device) -> str:
    """"auto" is the fast sampler (static KV cache, CUDA graphs) on CUDA, HF generate elsewhere."""
    if backend == "auto":
        return "fast" if device.type == "cuda" else "hf"
    return backend


def context_size(model, tokenizer) -> int:
    """Tokens the model can attend to: the smaller of its positions and the tokenizer's limit."""
    size = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    limit = getattr(tokenizer, "model_max_length", None)
    candidates = [v for v in (size, limit) if isinstance(v, int) and 0 < v < 1_000_000]
    return min(candidates) if candidates else 2048


def encode_prompt(tokenizer, prompt: str, max_new_tokens: int, context: int) -> tuple[list[int], bool]:
    """(token ids, cut?) of the prompt, its start cut off if prompt + max_new_tokens exceeds the context.

    `max_new_tokens` is the room kept after the prompt: new tokens, or a target to score (probes)."""
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    room = context - max_new_tokens
    if room < 1:
        raise ValueError(f"max_new_tokens={max_new_tokens} leaves no room for the prompt in a {context}-token context")
    if not ids:
        ids = [tokenizer.eos_token_id]  # an empty prompt starts from EOS, as GPT-2 style models expect
    if len(ids) > room:
        return ids[-room:], True
    return ids, False


def _left_pad(rows, pad_id, device):
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for k, row in enumerate(rows):
        ids[k, width - len(row):] = torch.tensor(row, dtype=torch.long)
        mask[k, width - len(row):] = 1
    return ids.to(device), mask.to(device)


def _generate_batch(backend, model, tokenizer, ids, mask, stops, eos_id, pad_id, *, greedy, temperature, top_p,
                    top_k, max_new_tokens, seed, report, done_before):
    """The new tokens (batch, <= max_new_tokens) of one left-padded batch."""
    import torch

    if backend == "fast":
        from .fast_sampling import generate as fast_generate

        generator = torch.Generator(device=ids.device).manual_seed(seed)
        out = fast_generate(
            model, ids, mask, max_new_tokens=max_new_tokens, do_sample=not greedy,
            temperature=1.0 if greedy else float(temperature), top_p=float(top_p), top_k=int(top_k),
            eos_token_id=eos_id, pad_token_id=pad_id, generator=generator,
            stop_token_sequences=stop_token_sequences(tokenizer, stops) or None,
        )
        return out[:, ids.shape[1]:]

    from transformers import GenerationConfig, StoppingCriteriaList

    config = GenerationConfig(
        max_new_tokens=max_new_tokens, do_sample=not greedy, eos_token_id=eos_id, pad_token_id=pad_id,
        # top_k=0 and top_p=1.0 switch those filters off (the model's defaults would keep top_k=50).
        **({} if greedy else dict(temperature=float(temperature), top_p=float(top_p), top_k=int(top_k))),
    )
    criteria = _StopStrings(tokenizer, ids.shape[1], stops, report, done_before, max_new_tokens)
    devices = [ids.device] if ids.device.type == "cuda" else []
    # A private RNG stream: the caller's global torch seed state is left as it was.
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=mask, generation_config=config,
                                 stopping_criteria=StoppingCriteriaList([criteria]))
    return out[:, ids.shape[1]:]


STOP_CONTEXTS = ("", "\n", " ", "\t", ":", ")")  # characters a stop string often follows


def stop_token_sequences(tokenizer, stops) -> list[list[int]]:
    """Token-id sequences that end a row for the fast sampler.

    BPE merges a stop string with what precedes it ("\n\nQUESTION" is not "\n" + "\nQUESTION"),
    so each stop is tokenized after a few usual characters too. Every sequence's text holds the
    stop string, so none stops a row early; a missed one only costs tokens (the cut is exact anyway).
    """
    sequences = []
    for stop in stops:
        for context in STOP_CONTEXTS:
            ids = tokenizer(context + stop, add_special_tokens=False)["input_ids"]
            if ids and ids not in sequences:
                sequences.append(ids)
    # a sequence that ends with a shorter one adds nothing
    return [s for s in sequences if not any(len(o) < len(s) and s[-len(o):] == o for o in sequences)]


class _StopStrings:
    """HF stopping criterion: a row is done once its completion holds a stop string.

    Only the last few tokens are decoded each step (a stop string of b bytes spans at most b
    byte-level tokens); the exact cut is made afterwards on the whole completion.
    """

    def __init__(self, tokenizer, prompt_width, stops, report, done_before, max_new_tokens):
        self.tokenizer, self.prompt_width, self.stops = tokenizer, prompt_width, stops
        self.window = max((len(s.encode("utf-8")) for s in stops), default=0) + 2
        self.report, self.done_before, self.max_new_tokens = report, done_before, max_new_tokens

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        new = input_ids[:, self.prompt_width:]
        self.report.step(self.done_before, new.shape[1] / self.max_new_tokens * input_ids.shape[0])
        if not self.stops or new.shape[1] == 0:
            return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        tails = self.tokenizer.batch_decode(new[:, -self.window:].tolist(), **_DECODE)
        done = [any(s in text for s in self.stops) for text in tails]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


_DECODE = dict(skip_special_tokens=True, clean_up_tokenization_spaces=False)


def _decode(tokenizer, ids) -> str:
    return tokenizer.decode(ids, **_DECODE)


def finish_sample(new_ids, tokenizer, prompt: str, stops, prompt_format, eos_id) -> Sample:
    """A `Sample` from the generated token ids of one row (padding after EOS/stop ignored)."""
    new_ids = list(new_ids)
    end = new_ids.index(eos_id) if eos_id is not None and eos_id in new_ids else None
    body = new_ids if end is None else new_ids[:end]
    raw = _decode(tokenizer, body)
    index, which = first_stop(raw, stops)
    if which is not None:
        text, stopped_by = raw[:index], "stop"
        # The fewest tokens whose text already holds the stop string (decoded prefixes only grow).
        low, high = 1, len(body)
        while low < high:
            middle = (low + high) // 2
            if first_stop(_decode(tokenizer, body[:middle]), stops)[1] is not None:
                high = middle
            else:
                low = middle + 1
        n_new = low
    elif end is not None:
        text, stopped_by, n_new = raw, "eos", end + 1
    else:
        text, stopped_by, n_new = raw, "length", len(new_ids)
    code = prompt_format.program(prompt, text) if prompt_format is not None else None
    return Sample(text=text, code=code, n_new_tokens=n_new, stopped_by=stopped_by, stop_string=which, raw_text=raw)


def _copy_sample(sample: Sample, index: int) -> Sample:
    if sample.sample_index == index:
        return sample
    copy = Sample(**sample.to_dict())
    copy.sample_index = index
    return copy


class _Progress:
    """tqdm, a callable(done, total), or nothing."""

    def __init__(self, progress, total: int):
        self.total, self.callback, self.bar = total, None, None
        if callable(progress):
            self.callback = progress
        elif progress:
            self.bar = tqdm(total=total, unit="sample", desc="sampling")

    def step(self, done_before: int, within: float) -> None:
        if self.callback is not None:
            self.callback(min(self.total, done_before + within), self.total)

    def update(self, count: int, *, absolute: int) -> None:
        if self.bar is not None:
            self.bar.update(count)
        if self.callback is not None:
            self.callback(min(self.total, absolute), self.total)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# --- running the tests of samples -------------------------------------------------------------


def run_sample_tests(sample, tests: dict, *, timeout: float = 4.0):
    """Run a sample's program (or a code string) on `tests` in the sandboxed executor.

    Returns `execution.run_tests`'s ExecResult (.verdicts, .passed, .errors). The program is
    `sample.code`, byte for byte; it never runs in this process.
    """
    code = sample.code if isinstance(sample, Sample) else sample
    if not isinstance(code, str):
        raise ValueError("this sample has no program: generate it with a prompt format (fmt) to get .code")
    if not tests or not tests.get("inputs"):
        raise ValueError("no tests to run: pass a dict with 'inputs' and 'outputs' (and 'fn_name' for call-based)")
    return execution.run_tests(code, tests, timeout=timeout)


def problem_prompts(frame, fmt: str | PromptFormat = "train") -> list[str]:
    """The prompt of each problem (row) of an APPS DataFrame in the named (or given) format."""
    prompt_format = get_format(fmt)
    return [prompt_format(r["question"], r["starter_code"], r["fn_name"]) for r in frame.to_dict("records")]


def sample_problems(model, tokenizer, frame, *, fmt: str = "train", timeout: float = 4.0, run_tests: bool = True,
                    **sampling) -> tuple[list[dict], Generations]:
    """Sample each problem of `frame`, run each sample's tests, and return (records, generations).

    One record per sample: the problem's key, the settings, the text and code, and the verdicts.
    """
    result = generate_samples(model, tokenizer, problem_prompts(frame, fmt), fmt=fmt, **sampling)
    records = []
    for row, samples in zip(frame.to_dict("records"), result):
        for sample in samples:
            record = {
                "split": row["split"], "problem_id": int(row["problem_id"]), "difficulty": row["difficulty"],
                "call_type": row["call_type"], "fmt": fmt, **{k: v for k, v in result.settings.items() if k != "fmt"},
                "sample_index": sample.sample_index, "n_new_tokens": sample.n_new_tokens,
                "stopped_by": sample.stopped_by, "text": sample.text, "code": sample.code,
                "verdicts": None, "passed": None, "error": None,
            }
            if run_tests and row["tests"]:
                try:
                    outcome = run_sample_tests(sample, row["tests"], timeout=timeout)
                    record["verdicts"] = list(outcome.verdicts)
                    record["passed"] = all(v == "passed" for v in outcome.verdicts)
                except Exception as exc:  # an executor failure is recorded, not fatal for the batch
                    record["error"] = f"{type(exc).__name__}: {exc}"
            records.append(record)
    return records, result


VERDICT_COLORS = {
    "passed": "#2ca02c", "wrong_answer": "#ff7f0e", "runtime_error": "#d62728", "timeout": "#9467bd",
    "compile_error": "#7f7f7f", "not run": "#cccccc",
}


def verdict_counts(records) -> pd.DataFrame:
    """Test verdicts counted per problem (rows "split:id") and verdict (columns)."""
    rows = []
    for record in records:
        key = f"{record['split']}:{record['problem_id']}"
        for verdict in record.get("verdicts") or ["not run"]:
            rows.append((key, verdict))
    frame = pd.DataFrame(rows, columns=["problem", "verdict"])
    if not len(frame):
        return pd.DataFrame()
    table = pd.crosstab(frame["problem"], frame["verdict"])
    problems = list(dict.fromkeys(frame["problem"]))  # in the records' order, not alphabetical
    return table.loc[problems, [v for v in VERDICT_COLORS if v in table.columns]]


def plot_verdicts(records, *, title: str = "test verdicts of the sampled programs"):
    """A horizontal stacked bar per problem: how many test runs ended with each verdict."""
    import matplotlib.pyplot as plt

    table = verdict_counts(records)
    fig, ax = plt.subplots(figsize=(7, 0.5 * max(len(table), 2) + 1.2))
    if len(table):
        table.plot.barh(stacked=True, ax=ax, color=[VERDICT_COLORS[c] for c in table.columns], width=0.7)
        ax.invert_yaxis()
        ax.legend(title="verdict", bbox_to_anchor=(1.01, 1), loc="upper left")
    ax.set_xlabel("test runs (samples x tests)")
    ax.set_ylabel("problem")
    ax.set_title(title)
    return fig


def pick_model(name: str | None = None, *, full: bool = False, finetuned=None, device=None, seed: int = 0):
    """(model, tokenizer, note): the model `name` means (modeling.resolve_model: "tiny" is always the tiny
    model; None is by profile: the 02_finetune output if it exists, else tiny), loaded. The note says why
    the model was chosen; a name that is the profile's own choice (as settings resolve it) says so."""
    chosen = modeling.resolve_model(name, full=full, finetuned=finetuned)
    by_profile = modeling.resolve_model(None, full=full, finetuned=finetuned)
    if chosen.name == by_profile.name:
        chosen = by_profile
    model, tokenizer = modeling.load_model(chosen.name, device=device, seed=seed)
    return model, tokenizer, chosen.note()


__all__ = [
    "SampleSettings", "Sample", "Generations", "generate_samples", "finish_sample", "run_sample_tests", "problem_prompts",
    "sample_problems", "verdict_counts", "plot_verdicts", "pick_model", "VERDICTS", "BACKENDS",
]
