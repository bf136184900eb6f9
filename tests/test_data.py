"""The APPS loader: every source, identical records across sources, malformed rows reported."""

import json
import time

import pytest

from appsneo_utils.data import COLUMNS, DIFFICULTIES, PARSED, load_apps


def test_mini_set_schema_and_splits():
    train = load_apps("mini", split="train", verbose=False)
    test = load_apps("mini", split="test", verbose=False)
    both = load_apps("mini", split="all", verbose=False)
    assert list(train.columns) == COLUMNS + PARSED
    assert len(train) >= 20 and len(test) >= 10 and len(both) == len(train) + len(test)
    assert set(both["difficulty"]) == set(DIFFICULTIES)
    assert set(both["call_type"]) == {"call", "stdin"}
    assert not both["issues"].map(len).any(), "the embedded set must be clean"
    assert both["solutions_list"].map(len).min() >= 1
    assert both["tests"].map(lambda t: len(t["inputs"])).min() >= 3
    methods = both[both["starter_code"].str.contains("class Solution")]
    functions = both[(both["call_type"] == "call") & ~both["starter_code"].str.contains("class Solution")]
    assert len(methods) >= 2 and len(functions) >= 2


def test_filters():
    frame = load_apps("mini", split="all", difficulties=["competition"], limit=3, verbose=False)
    assert len(frame) == 3 and set(frame["difficulty"]) == {"competition"}
    with pytest.raises(ValueError, match="difficulties"):
        load_apps("mini", difficulties=["easy"], verbose=False)
    with pytest.raises(ValueError, match="split"):
        load_apps("mini", split="validation", verbose=False)


def test_real_jsonl(shared_sample):
    frame = load_apps(shared_sample / "apps_train_sample.jsonl", verbose=False)
    assert len(frame) == 101
    assert (frame["call_type"] == "call").sum() == 8
    assert frame["difficulty"].value_counts().to_dict() == {"introductory": 35, "interview": 34, "competition": 32}
    row = frame[frame["problem_id"] == 2404].iloc[0]
    assert row["fn_name"] == "findKthPositive" and row["starter_code"].startswith("class Solution:")


def test_original_layout_matches_jsonl(shared_sample):
    layout = load_apps(shared_sample / "original_layout", verbose=False)
    assert sorted(layout["problem_id"]) == [1, 111, 2287, 2404, 4184]
    jsonl = load_apps(shared_sample / "apps_train_sample.jsonl", verbose=False)
    shared_ids = sorted(set(layout["problem_id"]) & set(jsonl["problem_id"]))
    assert shared_ids == [1, 2404]
    for pid in shared_ids:
        a = layout[layout["problem_id"] == pid].iloc[0].to_dict()
        b = jsonl[jsonl["problem_id"] == pid].iloc[0].to_dict()
        assert a == b, pid
    # pointing at the split folder itself works too
    direct = load_apps(shared_sample / "original_layout" / "train", verbose=False)
    assert direct.drop(columns=["issues"]).equals(layout.drop(columns=["issues"]))


def test_parquet_and_split_folder(tmp_path):
    mini = load_apps("mini", split="test", verbose=False)
    mini[COLUMNS].to_parquet(tmp_path / "test.parquet")
    from_parquet = load_apps(tmp_path / "test.parquet", split="test", verbose=False)
    assert from_parquet.to_dict("records") == mini.to_dict("records")
    folder = tmp_path / "mirror"
    folder.mkdir()
    mini[COLUMNS].to_json(folder / "test.jsonl", orient="records", lines=True)
    from_folder = load_apps(folder, split="test", verbose=False)
    assert from_folder.to_dict("records") == mini.to_dict("records")


def _row(pid, **changes):
    row = {"problem_id": pid, "question": "Add two numbers.", "solutions": json.dumps(["print(sum(map(int, input().split())))"]),
           "input_output": json.dumps({"inputs": ["1 2\n"], "outputs": ["3\n"]}), "difficulty": "introductory",
           "url": "", "starter_code": ""}
    row.update(changes)
    return json.dumps(row)


def test_malformed_rows_are_reported_not_dropped_silently(tmp_path, capsys):
    lines = [
        _row(0),
        _row(1, input_output=""),
        _row(2, input_output="{not json"),
        _row(3, solutions="[]"),
        _row(4, solutions=7),
        _row(5, difficulty="easy"),
        _row(6, input_output=json.dumps({"inputs": ["1\n"], "outputs": []})),
        _row(7, question=None),
        _row("seven"),
        "this line is not JSON",
        _row(10, starter_code=None),
    ]
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    frame = load_apps(path)
    printed = capsys.readouterr().out
    report = frame.attrs["report"]
    assert report["rows_read"] == 11
    assert sorted(frame["problem_id"]) == [0, 1, 2, 3, 4, 5, 6, 10]  # 3 unusable rows dropped, all reported
    assert report["dropped"]["no question text"] == ["train:7"]
    assert report["dropped"]["no valid problem_id"] == ["train:'seven'"]
    assert report["dropped"]["a line that is not JSON"] == ["train:line 10: Expecting value"]
    assert report["flagged"]["no tests"] == ["train:1"]
    assert report["flagged"]["invalid input_output JSON"] == ["train:2"]
    assert report["flagged"]["no solutions"] == ["train:3"]
    assert report["flagged"]["invalid solutions (not a list)"] == ["train:4"]
    assert report["flagged"]["unknown difficulty"] == ["train:5"]
    assert "inputs and outputs differ" in " ".join(frame.loc[frame.problem_id == 6, "issues"].iloc[0])
    assert frame.loc[frame.problem_id == 0, "issues"].iloc[0] == []
    assert frame.loc[frame.problem_id == 10, "starter_code"].iloc[0] == ""
    assert "dropped: 1 with no question text: train:7" in printed
    assert "kept but flagged: 1 with no tests: train:1" in printed


def test_missing_sources_say_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="not 'mini'"):
        load_apps("no/such/thing", verbose=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="original APPS layout"):
        load_apps(tmp_path / "empty", verbose=False)


@pytest.mark.parametrize("source", ["codeparrot/apps", "hf://datasets/codeparrot/apps"])
def test_hub_source_offline_fails_fast(source, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", "/nonexistent-appsneo-cache")
    start = time.time()
    with pytest.raises(ConnectionError, match="source='mini'"):
        load_apps(source, split="test", verbose=False)
    assert time.time() - start < 5
