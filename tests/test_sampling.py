"""Sampling: stop strings cut exactly, seeds repeat, greedy is greedy, the executor gets sample.code.

Also the widget panel driven from Python (the browser drives it in test_browser.py) and the
headless papermill run of notebooks/03_sample.ipynb on the embedded default.
"""

import json

import pytest
import torch

from appsneo_utils import execution, modeling, prompts, sampling
from appsneo_utils.records import write_jsonl
from appsneo_utils.data import load_apps
from appsneo_utils.sampling import Sample, finish_sample, generate_samples, run_sample_tests
from conftest import run_papermill

FAST = dict(max_new_tokens=32, progress=False)


@pytest.fixture(scope="module")
def tiny():
    return modeling.load_model("tiny")


@pytest.fixture(scope="module")
def problems():
    return load_apps("mini", split="test", verbose=False)


@pytest.fixture(scope="module")
def three_prompts(problems):
    # different lengths, so that a batch of them is left-padded
    return sampling.problem_prompts(problems.iloc[[0, 4, 9]])


# --- cutting a completion -------------------------------------------------------------------------


def _ids(tokenizer, text):
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def test_cut_exactly_at_the_first_stop_string(tiny):
    _, tok = tiny
    fmt = prompts.get_format("train")
    completion = "n = int(input())\nprint(n)\n\nQUESTION:\nanother problem\n---\n"
    sample = finish_sample(_ids(tok, completion), tok, "PROMPT", prompts.STOP_STRINGS, fmt, tok.eos_token_id)
    assert sample.text == "n = int(input())\nprint(n)\n"
    assert sample.code == sample.text == fmt.program("PROMPT", completion)
    assert (sample.stopped_by, sample.stop_string) == ("stop", "\nQUESTION")
    assert sample.raw_text == completion
    # n_new_tokens: the fewest tokens whose text holds the stop string
    ids = _ids(tok, completion)
    k = sample.n_new_tokens
    assert "\nQUESTION" in tok.decode(ids[:k]) and "\nQUESTION" not in tok.decode(ids[: k - 1])


def test_earliest_stop_wins_and_eos_ends_before_stops(tiny):
    _, tok = tiny
    eos = tok.eos_token_id
    sample = finish_sample(_ids(tok, "a = 1\n---\nb\nANSWER:"), tok, "", prompts.STOP_STRINGS, None, eos)
    assert (sample.text, sample.stop_string, sample.code) == ("a = 1", "\n---", None)
    body = _ids(tok, "print(2)")
    after_eos = _ids(tok, "\nQUESTION junk")
    sample = finish_sample(body + [eos] + after_eos, tok, "", prompts.STOP_STRINGS, None, eos)
    assert (sample.text, sample.stopped_by, sample.n_new_tokens) == ("print(2)", "eos", len(body) + 1)
    sample = finish_sample(body, tok, "", prompts.STOP_STRINGS, None, eos)
    assert (sample.text, sample.stopped_by, sample.n_new_tokens) == ("print(2)", "length", len(body))


def test_format_stop_strings_and_suffix_programs(tiny):
    _, tok = tiny
    docstring = prompts.get_format("docstring")
    prompt = docstring("Add two numbers.", "def add(a, b):\n", "add")
    stops = sampling._merge_stops(prompts.STOP_STRINGS, docstring)
    assert stops[:3] == prompts.STOP_STRINGS and '\n"""' in stops
    sample = finish_sample(_ids(tok, '\treturn a + b\n"""more'), tok, prompt, stops, docstring, tok.eos_token_id)
    assert sample.text == "\treturn a + b"
    assert sample.code == prompt + "\treturn a + b"  # the program is prompt + completion for this format


def test_stop_strings_end_generation_end_to_end(tiny, three_prompts):
    """A stop string the model really produces ends the sample there, cut exactly."""
    model, tok = tiny
    free = generate_samples(model, tok, three_prompts[:1], temperature=0, stop=(), fmt=None, **FAST)[0][0]
    raw = free.raw_text
    assert free.stopped_by == "length" and not any(s in raw for s in prompts.STOP_STRINGS)
    start = next(k for k in range(3, len(raw) - 2) if raw.find(raw[k:k + 2]) == k and raw[k:k + 2].strip())
    stop = raw[start:start + 2]
    cut = generate_samples(model, tok, three_prompts[:1], temperature=0, stop=(stop,), fmt=None, **FAST)[0][0]
    assert cut.text == raw[:start]
    assert (cut.stopped_by, cut.stop_string) == ("stop", stop)
    assert cut.n_new_tokens < free.n_new_tokens  # generation stopped early, not just trimmed afterwards


# --- seeds, greedy, batching --------------------------------------------------------------------


def test_seed_makes_runs_repeatable_and_leaves_global_rng_alone(tiny, three_prompts):
    model, tok = tiny
    state = torch.get_rng_state()
    first = generate_samples(model, tok, three_prompts, n=2, seed=7, batch_size=4, **FAST)
    assert torch.equal(state, torch.get_rng_state()), "the caller's torch RNG must be untouched"
    again = generate_samples(model, tok, three_prompts, n=2, seed=7, batch_size=4, **FAST)
    other = generate_samples(model, tok, three_prompts, n=2, seed=8, batch_size=4, **FAST)
    texts = lambda result: [s.text for s in result.flat()]  # noqa: E731
    assert texts(first) == texts(again)
    assert texts(first) != texts(other)
    assert len({s.text for s in first[1]}) == 2, "sampled copies of a prompt differ"


def test_greedy_n_gives_identical_samples_equal_to_unbatched(tiny, three_prompts):
    model, tok = tiny
    batched = generate_samples(model, tok, three_prompts, n=3, temperature=0, batch_size=8, **FAST)
    single = [generate_samples(model, tok, [p], temperature=0, batch_size=1, **FAST)[0][0] for p in three_prompts]
    for samples, alone in zip(batched, single):
        assert [s.sample_index for s in samples] == [0, 1, 2]
        assert {(s.text, s.n_new_tokens, s.stopped_by) for s in samples} == {(alone.text, alone.n_new_tokens,
                                                                              alone.stopped_by)}
    # greedy copies are generated once: the token count covers one sequence per prompt
    assert batched.n_tokens == sum(s[0].n_new_tokens for s in batched)


def test_tokens_per_second_and_summary(tiny, three_prompts):
    model, tok = tiny
    result = generate_samples(model, tok, three_prompts, n=2, **FAST)
    assert result.backend == "hf" and result.device == "cpu"  # auto means HF generate on a CPU
    assert result.n_tokens == sum(s.n_new_tokens for s in result.flat()) > 0
    assert result.seconds > 0 and result.tokens_per_second == pytest.approx(result.n_tokens / result.seconds)
    assert "tokens/s" in result.summary() and len(result) == 3 and all(len(s) == 2 for s in result)
    assert all(1 <= s.n_new_tokens <= 32 and s.stopped_by in sampling.STOPPED_BY for s in result.flat())


def test_progress_callback_reaches_the_total(tiny, three_prompts):
    model, tok = tiny
    seen = []
    generate_samples(model, tok, three_prompts, n=2, batch_size=4, max_new_tokens=8,
                     progress=lambda done, total: seen.append((done, total)))
    assert seen and seen[-1] == (6, 6) and all(0 <= d <= t for d, t in seen)


def test_long_prompts_keep_their_end(tiny):
    model, tok = tiny
    prompt = "word " * 3000 + "\nANSWER:\n"  # far beyond the tiny model's 1024 positions
    sample = generate_samples(model, tok, prompt, max_new_tokens=4, progress=False)[0][0]
    assert sample.prompt_truncated and sample.n_new_tokens <= 4


@pytest.mark.parametrize("bad, message", [
    (dict(temperature=-1), "temperature"), (dict(top_p=0), "top_p"), (dict(n=0), "n must"),
    (dict(backend="gpu"), "backend"), (dict(max_new_tokens=0), "max_new_tokens"), (dict(fmt="nope"), "format"),
])
def test_bad_settings_say_what_is_wrong(tiny, bad, message):
    model, tok = tiny
    with pytest.raises(ValueError, match=message):
        generate_samples(model, tok, "x", progress=False, **bad)


def test_fast_backend_matches_hf_greedy(tiny, three_prompts):
    pytest.importorskip("appsneo_utils.fast_sampling", reason="appsneo_utils.fast_sampling is not there yet")
    model, tok = tiny
    hf = generate_samples(model, tok, three_prompts, temperature=0, backend="hf", **FAST)
    try:
        fast = generate_samples(model, tok, three_prompts, temperature=0, backend="fast", **FAST)
    except (RuntimeError, NotImplementedError) as exc:  # a CUDA-only fast path
        pytest.skip(f"the fast backend does not run here: {exc}")
    assert [s.text for s in fast.flat()] == [s.text for s in hf.flat()]
    assert fast.backend == "fast"


# --- the executor receives sample.code ----------------------------------------------------------


@pytest.mark.parametrize("fmt", ["train", "docstring"])
def test_executor_receives_exactly_sample_code(tiny, problems, monkeypatch, fmt):
    model, tok = tiny
    row = problems.iloc[0]
    prompt = prompts.format_prompt(row["question"], row["starter_code"], row["fn_name"], fmt)
    sample = generate_samples(model, tok, prompt, fmt=fmt, **FAST)[0][0]
    assert sample.code == prompts.get_format(fmt).program(prompt, sample.raw_text)
    received = []
    real = execution.run_tests

    def spy(code, tests, **kwargs):
        received.append(code)
        return real(code, tests, **kwargs)

    monkeypatch.setattr(execution, "run_tests", spy)
    outcome = run_sample_tests(sample, row["tests"], timeout=2.0)
    assert received == [sample.code]
    assert len(outcome.verdicts) == len(row["tests"]["inputs"])
    assert set(outcome.verdicts) <= set(sampling.VERDICTS)


def test_a_correct_extracted_program_passes(tiny):
    _, tok = tiny
    fmt = prompts.get_format("train")
    completion = "n = int(input())\nprint(n * 2)\n\nQUESTION:\nnext"
    sample = finish_sample(_ids(tok, completion), tok, "", prompts.STOP_STRINGS, fmt, tok.eos_token_id)
    outcome = run_sample_tests(sample, {"inputs": ["2\n", "5\n"], "outputs": ["4\n", "10\n"]}, timeout=4.0)
    assert outcome.verdicts == ["passed", "passed"]


def test_run_sample_tests_refuses_missing_code_or_tests():
    with pytest.raises(ValueError, match="no program"):
        run_sample_tests(Sample(text="x", code=None, n_new_tokens=1, stopped_by="length"), {"inputs": ["1"]})
    with pytest.raises(ValueError, match="no tests"):
        run_sample_tests("print(1)", {})


def test_sample_problems_records_and_figure(tiny, problems, tmp_path):
    model, tok = tiny
    records, result = sampling.sample_problems(model, tok, problems.head(2), n=2, timeout=2.0, **FAST)
    assert len(records) == 4 and result.tokens_per_second > 0
    for record, sample in zip(records, result.flat()):
        assert record["code"] == sample.code and record["error"] is None
        assert record["verdicts"] and set(record["verdicts"]) <= set(sampling.VERDICTS)
    path = write_jsonl(records, tmp_path / "samples.jsonl")
    assert [json.loads(line)["problem_id"] for line in path.read_text().splitlines()] == [0, 0, 1, 1]
    table = sampling.verdict_counts(records)
    assert table.sum().sum() == sum(len(r["verdicts"]) for r in records)
    assert sampling.plot_verdicts(records).axes


def test_pick_model_prefers_the_finetuned_output_unless_tiny_is_named(tmp_path):
    model, tok, note = sampling.pick_model(finetuned=tmp_path / "missing")
    assert "tiny" in note and "noise" in note
    modeling.save_model(model, tok, tmp_path / "model")
    again, _, note = sampling.pick_model(finetuned=tmp_path / "model")
    assert "02_finetune" in note
    assert torch.equal(again.transformer.wte.weight, model.transformer.wte.weight)
    # "tiny" is the tiny model even with an 02 output there: a fresh one, seeded differently, not the saved one
    tiny, _, note = sampling.pick_model("tiny", finetuned=tmp_path / "model", seed=1)
    assert "random weights" in note and not torch.equal(tiny.transformer.wte.weight, model.transformer.wte.weight)
    # the folder the settings resolved by profile, named: the note still says why it was chosen
    _, _, note = sampling.pick_model(str(tmp_path / "model"), finetuned=tmp_path / "model")
    assert "by profile: the 02_finetune output" in note


def test_sample_settings_coerce_papermill_strings_and_take_the_model_by_profile(tmp_path, monkeypatch):
    from appsneo_utils import paths
    from appsneo_utils.sampling import SampleSettings

    monkeypatch.setattr(paths, "RUNS_DIR", tmp_path)  # where resolve_model looks for the 02_finetune output
    smoke = SampleSettings.from_params(profile="smoke", temperature="0", n_samples="3", top_k="5", backend="HF")
    assert (smoke.model, smoke.data, smoke.split, smoke.problem) == ("tiny", "mini", "test", None)
    assert smoke.sampling() == dict(n=3, temperature=0.0, top_p=0.95, top_k=5, max_new_tokens=256, batch_size=8,
                                    backend="hf", seed=0)
    folder = tmp_path / "02_finetune" / "model"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    assert SampleSettings.from_params(profile="smoke").model == str(folder.resolve())
    assert SampleSettings.from_params(profile="full").model == modeling.APPS_MODEL
    assert SampleSettings.from_params(profile="full", model="tiny").model == "tiny"
    with pytest.raises(ValueError, match="prompt_format must be one of train"):
        SampleSettings.from_params(profile="smoke", prompt_format="chat")
    with pytest.raises(ValueError, match="n_samples must be at least 1"):
        SampleSettings.from_params(profile="smoke", n_samples="0")


# --- the panel, driven from Python ----------------------------------------------------------------


def test_panel_picks_generates_and_judges(tiny, monkeypatch):
    from appsneo_utils import widgets
    from appsneo_utils.widgets import SamplingPanel

    model, tok = tiny
    panel = SamplingPanel(model, tok, load_apps("mini", split="all", verbose=False), max_new_tokens=16, n_samples=2)
    assert len(panel.problem.options) == 36
    panel.search.value = "test:3"
    assert [label.split(" ")[0] for label, _ in panel.problem.options] == ["test:3"]
    panel.search.value = "stair"  # words of a question
    assert panel.problem.options and all("stair" in panel.problems.loc[i, "question"].lower()
                                         for _, i in panel.problem.options)
    panel.temperature.value = 0.5
    seen = []

    def watching(*args, **kwargs):  # the button is off while the sampler runs, and progress moves
        seen.append(panel.generate_button.disabled)
        kwargs["progress"](0.5, 1)
        seen.append(panel.progress.value)
        return sampling.generate_samples(*args, **kwargs)

    monkeypatch.setattr(widgets, "generate_samples", watching)
    panel.generate_button.click()
    assert seen == [True, 0.5]
    assert panel.error.value == "" and len(panel.samples) == 2 and "temperature 0.5" in panel.status.value
    assert len(panel.samples_box.children) == 2 and not panel.run_button.disabled
    panel.run_button.click()
    assert panel.error.value == "" and panel.verdicts.value.count("class='verdict'") == 2 * len(panel.tests["inputs"])
    assert "samples pass all" in panel.summary.value


def test_panel_shows_errors_instead_of_raising(tiny):
    from appsneo_utils.widgets import SamplingPanel

    model, tok = tiny
    panel = SamplingPanel(model, tok, None, max_new_tokens=8)
    panel.generate_button.click()  # no question typed
    assert "type a question" in panel.error.value and not panel.generate_button.disabled
    panel.free_question.value = "Print the sum of two numbers."
    panel.free_tests.value = '{"inputs": ["1 2\\n"]'  # broken JSON
    panel.generate_button.click()
    assert "not valid JSON" in panel.error.value
    panel.free_tests.value = '{"inputs": ["1 2\\n"], "outputs": ["3\\n"]}'
    panel.generate_button.click()
    assert panel.error.value == "" and len(panel.samples) == 2
    panel.model = None  # a broken model: the panel reports it and stays usable
    panel.generate_button.click()
    assert "Generate failed" in panel.error.value and panel.generate_button.description == "Generate"


# --- the notebook, headless ----------------------------------------------------------------------


def test_notebook_03_runs_headless(tmp_path, isolated_outputs):
    runs, figures = isolated_outputs
    out = tmp_path / "out.ipynb"
    done = run_papermill("03_sample.ipynb", out, "-p", "profile", "smoke", "-p", "max_new_tokens", "48",
                         "--no-progress-bar")
    assert done.returncode == 0, done.stderr[-3000:]
    lines = (runs / "03_sample" / "samples.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == 3 * 2 and all(r["verdicts"] for r in records)
    summary = json.loads((runs / "03_sample" / "summary.json").read_text())
    assert summary["tokens_per_second"] > 0 and summary["backend"] == "hf"
    assert (figures / "03_sample" / "verdicts.png").stat().st_size > 1000
    text = out.read_text()
    assert "tokens/s" in text and "application/vnd.jupyter.widget-view+json" in text  # the panel rendered
