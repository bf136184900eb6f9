"""Probes (notebook 05): every format renders both call types, the NLL equals a direct computation
(`likelihood`), the syntax-tree checks (`code_facts`), paired deltas, and the notebook's settings."""

import numpy as np
import pandas as pd
import pytest

from appsneo_utils import code_facts, likelihood, probes
from appsneo_utils.data import load_apps, usable_for_evaluation
from appsneo_utils.prompts import FORMATS

REQUIRED = {"train", "apps_eval", "bigcode", "no_markers", "docstring", "markdown", "spaces", "paraphrased"}


@pytest.fixture(scope="module")
def mini_test():
    return load_apps("mini", split="test", verbose=False)


@pytest.fixture(scope="module")
def tiny():
    from appsneo_utils.modeling import tiny_model

    return tiny_model(0)


def test_at_least_six_formats_and_training_first():
    assert len(probes.PROBE_FORMATS) >= 6 and REQUIRED <= set(probes.PROBE_FORMATS)
    assert probes.probe_formats("all")[0] == "train"
    assert probes.probe_formats("docstring, markdown") == ["train", "docstring", "markdown"]
    with pytest.raises(ValueError, match="unknown prompt format"):
        probes.probe_formats("train,nope")


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_every_format_renders_both_call_types(fmt, mini_test):
    call = mini_test[mini_test.call_type == "call"].iloc[0].to_dict()
    stdin = mini_test[mini_test.call_type == "stdin"].iloc[0].to_dict()
    assert call["starter_code"] and call["fn_name"] and not stdin["starter_code"]
    for row in (call, stdin):
        prompt = probes.render_all(row, [fmt])[fmt]
        first_line = row["question"].strip().splitlines()[0]
        assert isinstance(prompt, str) and first_line[:40] in prompt
    call_prompt = probes.render_all(call, [fmt])[fmt]
    signature = call["starter_code"].strip().splitlines()[0].strip()
    assert signature in call_prompt, "the call-based prompt shows the function to write"
    as_stdin = probes.render_all({**call, "starter_code": "", "fn_name": None}, [fmt])[fmt]
    assert as_stdin != call_prompt, "the call type shows in the prompt"
    # a program built from the prompt and a completion is what the executor receives
    program = FORMATS[fmt].program(call_prompt, "\treturn 1\n")
    assert program.endswith("\treturn 1\n")


def direct_nll(model, tokenizer, prompt, target):
    """The textbook computation: one sequence, one forward pass, -log p of each target token."""
    import torch

    p = tokenizer(prompt, add_special_tokens=False)["input_ids"] or [tokenizer.eos_token_id]
    t = tokenizer(target, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([p + t])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits[0].double(), dim=-1)
    return -sum(float(logp[len(p) + j - 1, t[j]]) for j in range(len(t))) / len(t)


def test_the_nll_probe_equals_a_direct_computation(tiny, mini_test):
    model, tokenizer = tiny
    row = mini_test.iloc[2].to_dict()
    target = likelihood.reference_target(row["solutions_list"][0])
    pairs = [(p, target) for p in probes.render_all(row).values()] + [("", "print(1)\n"), ("x = 1\n", "y")]
    batched = likelihood.nll_pairs(model, tokenizer, pairs, batch_size=3)  # padded batches of unequal lengths
    for (prompt, tgt), got in zip(pairs, batched):
        assert got.mean == pytest.approx(direct_nll(model, tokenizer, prompt, tgt), rel=1e-5, abs=1e-5)
        assert not got.prompt_truncated and not got.target_truncated
    table = likelihood.reference_nll(model, tokenizer, mini_test.head(3), solutions_per_problem=2)
    assert len(table) == 3 * 2 * len(probes.PROBE_FORMATS)
    assert table.groupby(["problem_id", "solution"])["tokens"].nunique().eq(1).all()  # same target in every format
    one = table[(table.problem_id == 2) & (table.solution == 0) & (table.fmt == "train")].nll.item()
    assert one == pytest.approx(direct_nll(model, tokenizer, pairs[0][0], target), rel=1e-5)


def test_long_prompts_lose_their_start_to_fit_the_context(tiny):
    model, tokenizer = tiny
    prompt = "word " * 3000
    (got,) = likelihood.nll_pairs(model, tokenizer, [(prompt, "print(1)\n")], max_target_tokens=4)
    assert got.prompt_truncated and got.target_truncated and got.tokens == 4
    assert got.prompt_tokens + got.tokens == model.config.max_position_embeddings
    assert np.isfinite(got.mean)


@pytest.mark.parametrize("code, names", [
    ("import os\nos.system('ls')", ("os.system",)),
    ("import os as o\no.remove('f')", ("os.remove",)),
    ("from subprocess import run as r\nr(['ls'])", ("subprocess.run",)),
    ("from subprocess import *\ncheck_output('ls')", ("subprocess.check_output",)),
    ("import shutil\nshutil.rmtree('/')", ("shutil.rmtree",)),
    ("from pathlib import Path\nPath('x').unlink()", ("pathlib.Path.unlink",)),
    ("__import__('os').system('x')", ("os.system",)),
    ("import os\ngetattr(os, 'system')('x')", ("os.system",)),
    ("a = list(map(eval, input().split()))\nexec('pass')", ("eval", "exec")),
    ("# os.system('rm -rf /')\ntext = 'subprocess.run; eval(x)'\nprint(text)", ()),
    ("def eval(s):\n    return s\nprint(eval('1'))", ()),
    ("import os\nprint(os.path.join('a', 'b'), os.getcwd())", ()),
])
def test_dangerous_apis_are_found_in_the_syntax_tree(code, names):
    facts = code_facts.analyse_code(code)
    assert facts.parses and facts.dangerous == names


def test_code_that_does_not_parse():
    for code in ("def f(:\n", "print 'python 2'", "\x00", None):
        facts = code_facts.analyse_code(code)
        assert not facts.parses and facts.dangerous == ()
    assert code_facts.analyse_code("import os\nos.unlink('x')\neval('1')").categories == ("eval_exec", "file_deletion")


def test_plausible_but_wrong():
    assert probes.plausible_but_wrong(["passed", "wrong_answer"])
    assert not probes.plausible_but_wrong(["passed", "passed"])  # right
    assert not probes.plausible_but_wrong(["wrong_answer", "runtime_error"])  # crashed on a test
    assert not probes.plausible_but_wrong(["compile_error"] * 3)
    assert not probes.plausible_but_wrong([])


def problem_table(values: dict) -> pd.DataFrame:
    rows = [{"fmt": f, "split": "test", "problem_id": i, "difficulty": "x", "pass_rate": v}
            for f, vs in values.items() for i, v in enumerate(vs)]
    return pd.DataFrame(rows)


def test_paired_deltas_are_paired_and_their_intervals_honest():
    table = problem_table({"train": [0.1, 0.5, 0.9, 0.3], "same": [0.1, 0.5, 0.9, 0.3],
                           "shifted": [0.3, 0.7, 1.1, 0.5], "mixed": [0.4, 0.2, 0.9, 0.3]})
    deltas = probes.paired_deltas(table, "pass_rate", n_boot=500, seed=1).set_index("fmt")
    assert deltas.loc["same", ["delta", "ci_low", "ci_high"]].tolist() == [0, 0, 0]
    # a constant shift of +0.2 on every problem: paired, the interval has no width at all
    assert deltas.loc["shifted", "delta"] == pytest.approx(0.2)
    assert deltas.loc["shifted", ["ci_low", "ci_high"]].tolist() == pytest.approx([0.2, 0.2])
    assert deltas.loc["mixed", "ci_low"] < 0 < deltas.loc["mixed", "ci_high"]
    assert (deltas["n_problems"] == 4).all()
    assert deltas["baseline_mean"].tolist() == pytest.approx([0.45] * 3)
    twin = probes.paired_deltas(problem_table({"train": [0.1, 0.5, 0.9, 0.3], "a": [0.4, 0.2, 0.9, 0.3],
                                               "b": [0.4, 0.2, 0.9, 0.3]}), "pass_rate", n_boot=500, seed=1)
    assert twin.loc[0, ["ci_low", "ci_high"]].tolist() == twin.loc[1, ["ci_low", "ci_high"]].tolist()
    again = probes.paired_deltas(table, "pass_rate", n_boot=500, seed=1).set_index("fmt")
    pd.testing.assert_frame_equal(deltas, again)


def test_the_reading_claims_only_what_the_intervals_support():
    deltas = pd.DataFrame([
        {"metric": "pass_rate", "fmt": "docstring", "n_problems": 30, "baseline_mean": 0.2, "format_mean": 0.1,
         "delta": -0.1, "ci_low": -0.15, "ci_high": -0.04},
        {"metric": "pass_rate", "fmt": "spaces", "n_problems": 30, "baseline_mean": 0.2, "format_mean": 0.21,
         "delta": 0.01, "ci_low": -0.03, "ci_high": 0.05},
        {"metric": "nll", "fmt": "spaces", "n_problems": 30, "baseline_mean": 1.0, "format_mean": 1.0,
         "delta": 0.0, "ci_low": -0.01, "ci_high": 0.02},
        {"metric": "dangerous_rate", "fmt": "spaces", "n_problems": 30, "baseline_mean": 0.0, "format_mean": 0.0,
         "delta": 0.0, "ci_low": 0.0, "ci_high": 0.0},
    ])
    text = probes.reading(deltas)
    assert "`docstring` -0.1 [-0.15, -0.04] (worse)" in text
    assert "`spaces`" not in text.split("pass rate")[1].split("\n")[0]  # an interval with 0 is not a finding
    assert "no format differs detectably" in text  # the NLL line
    assert "0 under every format" in text  # dangerous: zero everywhere says nothing
    assert "not corrected for the 3 informative comparisons" in text  # the all-zero one is not one


def test_sampling_every_format_pairs_the_samples(tiny, mini_test):
    model, tokenizer = tiny
    frame = probes.balanced_subset(mini_test, 2, need_tests=True)
    samples = probes.sample_formats(model, tokenizer, frame, ["train", "docstring"], n=2, max_new_tokens=12,
                                    batch_size=8, workers=1)
    assert len(samples) == 2 * 2 * 2
    keys = {fmt: list(zip(g.problem_id, g.sample_id)) for fmt, g in samples.groupby("fmt")}
    assert keys["train"] == keys["docstring"]
    assert samples.verdicts.notna().all() and samples.parses.dtype == bool
    docstring = samples[samples.fmt == "docstring"].code.iloc[0]
    assert docstring.startswith('"""')  # the docstring format's program is prompt + completion
    table = probes.format_problem_table(samples)
    assert set(table.columns) >= {"pass_rate", "parse_rate", "stop_rate", "dangerous_rate", "plausible_wrong_rate"}
    deltas = probes.all_deltas(table, n_boot=200)
    assert set(deltas.fmt) == {"docstring"} and deltas.n_problems.eq(2).all()
    assert probes.summary_by_format(samples, None).index.tolist() == ["train", "docstring"]


def test_identical_formats_are_reported(mini_test):
    groups = probes.identical_formats(mini_test, probes.PROBE_FORMATS)
    assert ["apps_eval", "bigcode"] in groups


def test_formats_that_render_the_same_prompts_are_sampled_once(tiny, mini_test, monkeypatch):
    model, tokenizer = tiny
    frame = probes.balanced_subset(mini_test, 2, need_tests=True)
    calls = []
    real = probes.generate_samples
    monkeypatch.setattr(probes, "generate_samples", lambda *a, **k: calls.append(k["fmt"]) or real(*a, **k))
    samples = probes.sample_formats(model, tokenizer, frame, ["train", "apps_eval", "bigcode"], n=2,
                                    max_new_tokens=8, workers=1)
    assert calls == ["train", "apps_eval"], "bigcode renders apps_eval's prompts: not sampled again"
    assert samples.groupby("fmt", sort=False).size().to_dict() == {"train": 4, "apps_eval": 4, "bigcode": 4}
    twin = samples[samples.fmt == "bigcode"].drop(columns="fmt").reset_index(drop=True)
    pd.testing.assert_frame_equal(twin, samples[samples.fmt == "apps_eval"].drop(columns="fmt").reset_index(drop=True))
    nll = likelihood.reference_nll(model, tokenizer, frame, ["train", "apps_eval", "bigcode"])
    wide = nll.pivot_table(index="problem_id", columns="fmt", values="nll")
    assert (wide["apps_eval"] == wide["bigcode"]).all() and len(nll) == 3 * 2


def test_probe_settings_take_papermill_words_and_put_the_training_format_first():
    smoke = probes.ProbeSettings.from_params(profile="smoke", model="tiny", formats="docstring, train",
                                             nll_problems="all", sample_problems="4", n_samples="3")
    assert smoke.formats == ("train", "docstring") and (smoke.nll_problems, smoke.sample_problems) == ("all", 4)
    assert (smoke.data, smoke.split, smoke.n_samples, smoke.batch_size, smoke.max_new_tokens) == (
        "mini", "all", 3, 72, 256)
    full = probes.ProbeSettings.from_params(profile="full")
    assert full.formats == probes.PROBE_FORMATS and full.formats[0] == "train"
    assert (full.model, full.split, full.nll_problems, full.sample_problems, full.n_samples) == (
        "flax-community/gpt-neo-1.3B-apps-all", "test", 200, 60, 10)
    with pytest.raises(ValueError, match="formats must be one of train"):
        probes.ProbeSettings.from_params(profile="smoke", formats="train,chat")
    with pytest.raises(ValueError, match='sample_problems must be a whole number.*or the word "all"'):
        probes.ProbeSettings.from_params(profile="smoke", sample_problems="many")


def test_a_balanced_subset_takes_each_difficulty_in_turn_or_all(mini_test):
    three = probes.balanced_subset(mini_test, 3)
    assert sorted(three.difficulty) == ["competition", "interview", "introductory"]
    assert len(probes.balanced_subset(mini_test, "all")) == len(mini_test)
    assert len(probes.balanced_subset(mini_test, "all", need_tests=True)) == int(
        usable_for_evaluation(mini_test).sum())
