"""Evaluation: samples -> executor -> metrics against hand-computed numbers, resumption, HumanEval."""

import json
import math

import pandas as pd
import pytest

from appsneo_utils import evaluation as ev
from appsneo_utils import evaluation_figures as figures
from appsneo_utils import humaneval, records, scoring
from appsneo_utils.data import load_apps
from appsneo_utils.modeling import APPS_MODEL, save_model, tiny_model

HARDCODE_FIRST = """\
import sys
data = sys.stdin.read()
print({out!r} if data == {inp!r} else "no")
"""


@pytest.fixture(scope="module")
def mini_test():
    return load_apps("mini", split="test", verbose=False)


@pytest.fixture(scope="module")
def tiny():
    from appsneo_utils.modeling import load_model

    return load_model("tiny", device="cpu")


def write_samples(folder, frame, codes: dict) -> None:
    """Samples as `generate` writes them, with chosen programs instead of a model's."""
    rows = []
    for row in frame.to_dict("records"):
        for sid, code in enumerate(codes[int(row["problem_id"])]):
            rows.append({"split": row["split"], "problem_id": int(row["problem_id"]), "sample_id": sid, "chunk": 0,
                         "difficulty": row["difficulty"], "text": code, "code": code, "n_new_tokens": 1,
                         "stopped_by": "eos", "stop_string": None, "prompt_truncated": False})
    records.append_jsonl(folder / "samples.rank0.jsonl", rows)


def test_pass_at_k_table_reproduces_a_hand_computed_case(tmp_path, mini_test):
    # problems 0 (introductory, stdin, 6 tests), 2 (introductory, call, 6 tests), 4 (interview, stdin, 5 tests)
    frame = mini_test[mini_test.problem_id.isin([0, 2, 4])].reset_index(drop=True)
    p0, p2, p4 = (frame[frame.problem_id == i].iloc[0] for i in (0, 2, 4))
    t0 = p0["tests"]
    first_only = HARDCODE_FIRST.format(inp=t0["inputs"][0], out=t0["outputs"][0])
    codes = {
        0: [p0.solutions_list[0], p0.solutions_list[1], first_only, "print(", "print(-12345)"],  # c=2
        2: [p2.solutions_list[i % 2] for i in range(5)],  # c=5
        4: ["def (:"] * 5,  # c=0, compile errors
    }
    settings = ev.EvalSettings(model="tiny", n_samples=5, ks=(1, 2, 5), n_boot=200, timeout=4.0)
    ev.prepare_folder(tmp_path, settings, frame)
    write_samples(tmp_path, frame, codes)
    result = ev.finish(frame, settings, tmp_path, progress=False)

    table = result.table.set_index(["difficulty", "metric"])["value"]
    n = 5
    pass1 = [2 / n, 1.0, 0.0]
    pass2 = [1 - math.comb(3, 2) / math.comb(5, 2), 1.0, 0.0]  # 1 - C(n-c, k) / C(n, k)
    pass5 = [1.0, 1.0, 0.0]
    tca = [(2 + 1 / len(t0["inputs"])) / n, 1.0, 0.0]  # the hard-coded program passes 1 test of problem 0
    assert table["all", "pass@1"] == pytest.approx(sum(pass1) / 3)
    assert table["all", "pass@2"] == pytest.approx(sum(pass2) / 3)
    assert table["all", "pass@5"] == pytest.approx(sum(pass5) / 3)
    assert table["all", "strict_accuracy"] == pytest.approx(sum(pass1) / 3)
    assert table["all", "test_case_average"] == pytest.approx(sum(tca) / 3)
    assert table["introductory", "pass@1"] == pytest.approx((pass1[0] + pass1[1]) / 2)
    assert table["introductory", "pass@2"] == pytest.approx((0.7 + 1.0) / 2)
    assert table["interview", "pass@5"] == 0.0
    # the verdicts behind it: problem 4 only compile errors, problem 0's "print(" too
    res = result.results.set_index(["problem_id", "sample_id"])
    assert set(res.loc[4, "verdicts"].map(tuple).map(set).map(frozenset)) == {frozenset({"compile_error"})}
    assert res.loc[(0, 3), "verdicts"][0] == "compile_error" and res.loc[(0, 4), "verdicts"][0] == "wrong_answer"
    assert json.loads((tmp_path / "summary.json").read_text())["judged"] == 15


def small_settings(**overrides):
    base = dict(model="tiny", n_samples=3, max_new_tokens=24, batch_size=6, chunk_problems=2, n_boot=200, ks="1,3",
                temperature=1.0)
    return ev.EvalSettings(**{**base, **overrides})


def cut_last_line(path, keep_fraction=0.5):
    """Simulate a kill mid-write: drop the last line and leave half of it behind."""
    data = path.read_bytes()
    lines = data.splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:-1]) + lines[-1][: int(len(lines[-1]) * keep_fraction)])


def test_resuming_an_interrupted_evaluation_gives_the_same_table(tmp_path, mini_test, tiny):
    model, tokenizer = tiny
    frame = mini_test.head(5)
    settings = small_settings()
    whole = ev.evaluate(model, tokenizer, settings, tmp_path / "whole", frame=frame, progress=False)

    folder = tmp_path / "interrupted"
    assert ev.generate(model, tokenizer, frame, settings, folder, progress=False, stop_after=1) == 6
    cut_last_line(folder / "samples.rank0.jsonl")  # killed while writing chunk 0's last sample
    with pytest.raises(RuntimeError, match="still missing"):
        ev.finish(frame, settings, folder, progress=False)
    ev.generate(model, tokenizer, frame, settings, folder, progress=False)
    ev.judge(frame, settings, folder, progress=False)  # the headline judge ("apps"); finish judges "strict" too
    verdicts = ev.verdicts_path(folder, "apps")
    lines = verdicts.read_bytes().splitlines(keepends=True)
    verdicts.write_bytes(b"".join(lines[:7]) + lines[7][:20])  # judging killed after 7 samples
    resumed = ev.finish(frame, settings, folder, progress=False)

    pd.testing.assert_frame_equal(resumed.table, whole.table)
    a = whole.results.drop(columns=["judged"]).reset_index(drop=True)
    b = resumed.results.drop(columns=["judged"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)  # the very same samples and verdicts
    assert len(records.read_jsonl(verdicts)) == 15 and len(ev.read_samples(folder)) == 15


def test_processes_split_the_chunks_and_match_one_process(tmp_path, mini_test, tiny):
    model, tokenizer = tiny
    frame = mini_test.head(5)
    settings = small_settings()
    one = tmp_path / "one"
    ev.generate(model, tokenizer, frame, settings, one, progress=False)
    two = tmp_path / "two"
    for rank in (0, 1):  # what two accelerate processes do, one after the other
        ev.generate(model, tokenizer, frame, settings, two, rank=rank, world=2, progress=False)
    chunks = {r["chunk"] for r in records.read_jsonl(two / "samples.rank1.jsonl")}
    assert chunks == {1}  # 3 chunks of 2, 2, 1 problems: rank 1 owns chunk 1
    first, second = ev.read_samples(one), ev.read_samples(two)
    assert first.keys() == second.keys()
    assert all(first[k]["text"] == second[k]["text"] for k in first)


def test_a_run_folder_refuses_other_settings(tmp_path, mini_test):
    frame = mini_test.head(3)
    ev.prepare_folder(tmp_path, small_settings(), frame)
    ev.prepare_folder(tmp_path, small_settings(ks=(1,), n_boot=500), frame)  # rescoring only: fine
    with pytest.raises(ValueError, match="temperature"):
        ev.prepare_folder(tmp_path, small_settings(temperature=0.2), frame)
    with pytest.raises(ValueError, match="problem list"):
        ev.prepare_folder(tmp_path, small_settings(), mini_test.head(4))
    assert ev.default_run_name(small_settings()) == ev.default_run_name(small_settings(n_boot=500, workers=2))
    assert ev.default_run_name(small_settings()) != ev.default_run_name(small_settings(seed=1))
    assert ev.run_folder(small_settings(run_name="mine"), tmp_path) == tmp_path / "mine"


def test_a_retrained_model_starts_a_new_run(tmp_path, monkeypatch):
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"weights 1")
    first = ev.model_fingerprint(str(model))
    (model / "model.safetensors").write_bytes(b"other weights")
    assert ev.model_fingerprint(str(model)) != first
    named = ev.default_run_name(small_settings(model=str(model)))
    (model / "model.safetensors").write_bytes(b"weights 3")
    assert ev.default_run_name(small_settings(model=str(model))) != named
    # a folder named from another working directory is the same model, and so the same run
    monkeypatch.chdir(tmp_path)
    assert small_settings(model="model").model == str(model.resolve())
    assert ev.model_fingerprint("tiny") == "tiny"


def test_read_jsonl_drops_and_repairs_a_partial_last_line(tmp_path):
    path = tmp_path / "x.jsonl"
    records.append_jsonl(path, [{"a": 1}, {"a": 2}])
    path.write_bytes(path.read_bytes() + b'{"a": 3')
    assert records.read_jsonl(path) == [{"a": 1}, {"a": 2}]
    records.read_jsonl(path, repair=True)
    records.append_jsonl(path, [{"a": 4}])
    assert records.read_jsonl(path) == [{"a": 1}, {"a": 2}, {"a": 4}]


def test_humaneval_runs_in_our_sandbox():
    from appsneo_utils.execution import run_many

    frame = humaneval.problems()
    assert len(frame) == 164 and frame.problem_id.tolist() == list(range(164))
    rows = frame.to_dict("records")
    right = [(r["problem_id"], humaneval.program(r["question"] + r["solutions_list"][0], r), r["tests"])
             for r in rows]
    results = dict(run_many(right, workers=2, timeout=10))
    assert [k for k, v in results.items() if not v.passed] == []  # every canonical solution passes
    wrong = [(r["problem_id"], humaneval.program(r["question"] + "    return None\n", r), r["tests"])
             for r in rows[:5]]
    assert not any(v.passed for _, v in run_many(wrong, workers=2, timeout=10))
    assert humaneval.FORMAT.program("def f():\n", "    return 1\ndef g(): pass") == "def f():\n    return 1"


def test_humaneval_evaluation_end_to_end(tmp_path, tiny):
    model, tokenizer = tiny
    apps = small_settings(n_samples=2, max_new_tokens=16, humaneval_limit=2, run_name="mine")
    settings = ev.humaneval_settings(apps)
    alone = apps.changed(humaneval=False)
    assert ev.runs_of(apps) == [apps, settings] and ev.runs_of(alone) == [alone]
    assert (settings.data, settings.limit, settings.judges, settings.run_name) == ("humaneval", 2, ("strict",), None)
    assert "-humaneval-test-" in ev.default_run_name(settings)
    result = ev.evaluate(model, tokenizer, settings, tmp_path, progress=False)
    assert set(result.table.difficulty) == {"humaneval", "all"}
    assert result.results.judged.all() and len(result.results) == 4
    with pytest.raises(ValueError, match="HumanEval has a test split only"):
        settings.changed(split="train")


def test_both_judges_score_the_same_samples_and_their_disagreements_are_counted(tmp_path, mini_test):
    frame = mini_test[mini_test.problem_id == 0].reset_index(drop=True)
    solution = frame.solutions_list[0][0]  # reads n, prints h
    guarded = ("def main():\n" + "".join(f"    {line}\n" for line in solution.splitlines())
               + 'if __name__ == "__main__":\n    main()\n')
    codes = {0: [solution, guarded, solution + "print(h)\n"]}
    settings = ev.EvalSettings(model="tiny", n_samples=3, ks=(1,), n_boot=100)
    assert settings.judges == ("apps", "strict")  # APPS's rules make the headline: comparable with the literature
    ev.prepare_folder(tmp_path, settings, frame)
    write_samples(tmp_path, frame, codes)
    result = ev.finish(frame, settings, tmp_path, progress=False)
    # APPS wraps the program in a function (no __name__ == "__main__") and compares lines as sets (a line
    # printed twice passes); the strict judge runs the guard and wants the output exactly
    assert result.judge == "apps" and result.results.passed.tolist() == [True, False, True]
    strict = ev.load_results(tmp_path, frame, judge_name="strict")
    assert strict.passed.tolist() == [True, True, False]
    assert result.disagreements == {"strict": 2} and len(scoring.disagreeing(result.results, strict)) == 2
    assert result.other_judges["strict"].set_index(["difficulty", "metric"]).loc[("all", "pass@1"), "value"] == \
        pytest.approx(2 / 3)
    side = ev.judges_table(result)
    assert set(side.columns.get_level_values(0)) == {"apps", "strict"}
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["judge"] == "apps" and summary["other_judges"]["strict"]["disagreements"] == 2
    assert (tmp_path / "table.strict.csv").is_file()
    with pytest.raises(ValueError, match="judges must be one of"):
        ev.EvalSettings(judges=("apps", "lenient"))
    with pytest.raises(ValueError, match="judges must be distinct"):
        ev.EvalSettings(judges="apps,apps")


def test_published_figures_are_the_checked_ones():
    table = figures.published_table().set_index(["model", "metric"])
    assert table.loc[("GPT-Neo 2.7B (APPS paper)", "strict_accuracy"), ["introductory", "interview", "competition"]
                     ].tolist() == [3.90, 0.57, 0.00]
    assert table.loc[("Codex-12B raw (Codex paper)", "pass@1"), ["introductory", "interview", "competition"]
                     ].tolist() == [4.14, 0.14, 0.02]
    assert table.loc[("Codex-12B raw (Codex paper)", "pass@5"), ["introductory", "interview", "competition"]
                     ].tolist() == [9.65, 0.51, 0.09]
    assert table["source"].str.contains("arXiv:").all() and table["checked"].str.len().gt(10).all()


def test_settings_take_papermill_strings_and_profile_defaults(tmp_path, monkeypatch):
    from appsneo_utils import paths

    monkeypatch.setattr(paths, "RUNS_DIR", tmp_path)  # no 02_finetune output: smoke takes the tiny model
    s = ev.EvalSettings.from_params(profile="smoke", n_samples="3", limit="2", ks="1,2", temperature="0.5",
                                    difficulties="interview", humaneval="false", workers="2")
    assert (s.model, s.data, s.n_samples, s.limit, s.ks, s.temperature) == ("tiny", "mini", 3, 2, (1, 2), 0.5)
    assert (s.difficulties, s.humaneval, s.workers, s.run_name) == (("interview",), False, 2, None)
    assert s.usable_ks == (1, 2) and ev.EvalSettings.from_params(profile="smoke", limit="all").limit == "all"
    smoke = ev.EvalSettings.from_params(profile="smoke")
    assert (smoke.limit, smoke.n_samples, smoke.max_new_tokens, smoke.humaneval_limit) == (4, 5, 400, 3)
    assert smoke.difficulties == ("introductory", "interview", "competition")
    full = ev.EvalSettings.from_params(profile="full")
    assert (full.model, full.data, full.limit, full.n_samples) == (APPS_MODEL, "codeparrot/apps", "all", 10)
    model = tmp_path / "02_finetune" / "model"
    save_model(*tiny_model(seed=1), model)
    assert ev.EvalSettings.from_params(profile="smoke").model == str(model.resolve())
    assert ev.EvalSettings.from_params(profile="smoke", model="tiny").model == "tiny"
    with pytest.raises(ValueError, match="ks must be a whole number"):
        ev.EvalSettings.from_params(profile="smoke", ks="one")
    with pytest.raises(ValueError, match="prompt_format"):
        ev.EvalSettings.from_params(profile="smoke", prompt_format="nope")
    with pytest.raises(ValueError, match="limit must be"):
        ev.EvalSettings.from_params(profile="smoke", limit=0)


def test_the_launcher_runs_one_process(tmp_path, capsys):
    status = ev.main(["--profile", "smoke", "--model", "tiny", "--limit", "1", "--n_samples", "2",
                      "--max_new_tokens", "12", "--ks", "1,2", "--n_boot", "100", "--out", str(tmp_path),
                      "--workers", "1", "--humaneval_limit", "1"])
    assert status == 0
    apps, he = sorted(tmp_path.iterdir(), key=lambda p: "humaneval" in p.name)
    table = pd.read_csv(apps / "table.csv")
    assert set(table.metric) >= {"pass@1", "pass@2", "strict_accuracy", "test_case_average"}
    assert set(table.difficulty) == {"introductory", "interview", "competition", "all"}  # 1 problem of each
    assert set(pd.read_csv(he / "table.csv").difficulty) == {"humaneval", "all"}  # HumanEval too, as in 04
    assert "Contamination: none" in capsys.readouterr().out


def test_launch_command_carries_every_setting():
    import shlex

    settings = ev.EvalSettings(model="tiny", difficulties=("interview",), limit=4, n_samples=3, temperature=0.5,
                               top_k=7, chunk_problems=2, timeout=2.5, ks=(1, 3), n_boot=500, judges=("strict", "apps"),
                               contamination="none", run_name="my run", humaneval=False, profile="smoke")
    words = shlex.split(ev.launch_command(settings).replace("\\\n", " "))  # as a shell joins it
    back, extra = ev.EvalSettings.parse_args(words[words.index("appsneo_utils.evaluation") + 1:], prog="x",
                                             description="x")
    assert back == settings and extra == {}


def test_the_contamination_gap_splits_pass_at_k_into_seen_and_unseen(tmp_path, monkeypatch):
    from appsneo_utils import paths
    from appsneo_utils.contamination import Contamination

    # problems 0 and 1 were trained on and always pass; 2 and 3 were not and pass 1 sample of 2 and none
    passes = {0: [True, True], 1: [True, True], 2: [True, False], 3: [False, False]}
    results = pd.DataFrame([{"split": "test", "problem_id": p, "sample_id": s, "difficulty": "interview",
                             "judged": True, "verdicts": ["passed" if ok else "wrong_answer"], "n_tests": 1,
                             "passed": ok} for p, oks in passes.items() for s, ok in enumerate(oks)])
    problems = pd.DataFrame({"split": "test", "problem_id": list(passes)})
    seen = Contamination("contaminated", "record", frozenset({("test", 0), ("test", 1), ("train", 9)}))
    settings = ev.EvalSettings(model="tiny", n_samples=2, ks=(1, 2), n_boot=200)
    gap = scoring.contamination_gap(results, problems, seen, settings)
    record = scoring.gap_record(gap)
    assert record["seen"] == {"problems": 2, "pass@1": 1.0, "low": 1.0, "high": 1.0}
    assert record["unseen"]["problems"] == 2 and record["unseen"]["pass@1"] == pytest.approx(0.25)  # (1/2 + 0) / 2
    assert 0.0 <= record["unseen"]["low"] <= 0.25 <= record["unseen"]["high"] <= 0.5
    assert set(gap.metric) == {"pass@1", "pass@2"}
    statement = scoring.gap_statement(gap, seen)
    assert "Seen: the 2 problems" in statement and "unseen: the 2" in statement
    # a model whose seen problems cannot be told has no gap, and says why
    unknown = Contamination("unknown", "?")
    assert scoring.contamination_gap(results, problems, unknown, settings) is None
    assert scoring.gap_record(None) == {"seen": None, "unseen": None}
    fig = figures.fig_contamination_gap(gap, title="Contamination gap: pass@k of tiny on mini test, n=2, T=0.8")
    heights = sorted(round(b.get_height(), 6) for b in fig.axes[0].patches)
    assert heights == [25.0, 50.0, 100.0, 100.0]  # percent on a "%" axis: unseen pass@1, pass@2; seen both
    assert "%" in fig.axes[0].get_ylabel()
    evaluation = ev.Evaluation(settings, tmp_path, problems, results, pd.DataFrame(), seen, gap=gap, judge="apps")
    monkeypatch.setattr(paths, "RUNS_DIR", tmp_path / "runs")
    written = json.loads(ev.write_gap(evaluation, label="tiny").read_text())
    assert written["seen"] == record["seen"] and written["judge"] == "apps" and written["model"] == "tiny"
    assert (tmp_path / "runs" / "04_evaluate" / "contamination_gap.json").is_file()
