"""`datasets` where it serves users: the tokenised training set built with Dataset.map and cached on disk
(same ids as prompts.encode_example, read back on a second launch, rebuilt when what changes the ids
changes), and load_apps's table to and from a datasets.Dataset."""

import json
import os
import subprocess
import sys

import pytest

from appsneo_utils import train_data, training
from appsneo_utils.data import from_dataset, load_apps, to_dataset
from appsneo_utils.modeling import train_tiny_tokenizer
from appsneo_utils.prompts import encode_example, training_examples
from conftest import ROOT, SHARED


@pytest.fixture(scope="module")
def tokenizer():
    return train_tiny_tokenizer()


@pytest.fixture(scope="module")
def mini_all():
    return load_apps("mini", split="all", verbose=False)


@pytest.fixture(scope="module")
def examples(mini_all):
    return [e for row in mini_all.to_dict("records") for e in training_examples(row)]


def gpt2_tokenizer():
    """GPT-Neo's tokenizer family (GPT-2 byte-level BPE) from ../shared/data, or a clean skip."""
    folder = SHARED / "gpt2_tokenizer"
    if not (folder / "vocab.json").is_file():
        pytest.skip(f"GPT-2 tokenizer files not found at {folder} (they live beside the project, not in it)")
    from transformers import GPT2TokenizerFast

    lines = (folder / "merges.txt").read_text(encoding="utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines if line.strip() and not line.startswith("#version")]
    # not vocab_file=/merges_file=: transformers 5 builds an empty tokenizer from those (shared/data README)
    return GPT2TokenizerFast(vocab=json.loads((folder / "vocab.json").read_text(encoding="utf-8")), merges=merges)


def reference(examples, tokenizer, block_size):
    """Today's path: prompts.encode_example, one example at a time (None where dropped)."""
    out = []
    for e in examples:
        encoded = encode_example(tokenizer, e, block_size)
        out.append(None if encoded is None else {k: encoded[k] for k in ("input_ids", "labels", "truncated")})
    return out


@pytest.mark.parametrize("block_size", [320, 512, 1024])
def test_the_batched_and_the_cached_encodings_give_encode_example_s_ids(tmp_path, tokenizer, examples, block_size):
    expected = reference(examples, tokenizer, block_size)
    # the tiny tokenizer's 1,024 tokens make long sequences: 320 and 512 drop and cut some, 1024 keeps all whole
    assert any(r is None for r in expected) == any(bool(r and r["truncated"]) for r in expected) == (
        block_size < 1024)
    in_memory = train_data.tokenise(examples, tokenizer, block_size, cache=False)
    cached = train_data.tokenise(examples, tokenizer, block_size, cache=True, cache_dir=tmp_path)
    assert in_memory.cache_path is None and cached.cache_path.parent == tmp_path
    assert in_memory.rows == expected
    assert cached.rows == expected


def test_the_gpt2_tokenizer_gives_the_same_ids_on_real_apps_problems(tmp_path, shared_sample):
    tokenizer = gpt2_tokenizer()
    frame = load_apps(shared_sample / "apps_train_sample.jsonl", verbose=False)
    examples = [e for row in frame.to_dict("records") for e in training_examples(row)]
    expected = reference(examples, tokenizer, 1024)
    assert sum(r is None for r in expected) > 0 and sum(bool(r and r["truncated"]) for r in expected) > 0
    got = train_data.tokenise(examples, tokenizer, 1024, cache=True, cache_dir=tmp_path, num_proc=2)
    assert got.rows == expected


def test_prepare_data_through_the_cache_equals_prepare_data_in_memory(tmp_path, tokenizer, mini_all):
    for overrides in (dict(recipe="card"), dict(recipe="replica"), dict(recipe="card", packing=True)):
        settings = training.TrainSettings.from_params(profile="smoke", block_size=512, **overrides)
        memory = train_data.prepare_data(settings, tokenizer, frame=mini_all, verbose=False)
        disk = train_data.prepare_data(settings, tokenizer, frame=mini_all, verbose=False, cache=True,
                                       cache_dir=tmp_path)
        assert (disk.train, disk.val, disk.sample) == (memory.train, memory.val, memory.sample)
        # read from the cache, the rows are views on int32 arrays that behave as the lists do
        assert isinstance(disk.val, train_data.TokenRows) and isinstance(memory.val, list)
        assert disk.train + disk.val == memory.train + memory.val and disk.val[1:3] == memory.val[1:3]
        assert disk.train[-1] == memory.train[-1] and len(disk.train[:2]) == 2
        batch, expected = train_data.collate(disk.train[:3], 0), train_data.collate(memory.train[:3], 0)
        assert all(batch[k].equal(expected[k]) for k in expected)
        assert {k: v for k, v in disk.counts.items() if k != "tokenised"} == {
            k: v for k, v in memory.counts.items() if k != "tokenised"}
        assert "in memory" in memory.summary() and "the cache" in disk.summary()
        assert memory.counts["val"]["truncated"] + memory.counts["train"]["truncated"] > 0


def test_a_second_call_reads_the_cache_without_tokenising(tmp_path, tokenizer, examples, monkeypatch):
    first = train_data.tokenise(examples, tokenizer, 512, cache=True, cache_dir=tmp_path, num_proc=2)
    assert not first.reused
    files = sorted(first.cache_path.glob("*.arrow"))
    assert len(files) == 2, "one Arrow file per worker process"
    stamps = [f.stat().st_mtime_ns for f in files]

    def refuse(*args, **kwargs):
        raise AssertionError("the second call must not tokenise")

    monkeypatch.setattr(train_data, "encode_batch", refuse)
    second = train_data.tokenise(examples, tokenizer, 512, cache=True, cache_dir=tmp_path, num_proc=2)
    assert second.reused and second.cache_path == first.cache_path
    assert second.rows == first.rows
    assert [f.stat().st_mtime_ns for f in sorted(first.cache_path.glob("*.arrow"))] == stamps
    assert "read from the cache" in second.describe()


def test_the_cache_location_is_appsneo_cache_else_runs_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("APPSNEO_CACHE", str(tmp_path / "elsewhere"))
    assert train_data.default_cache_dir() == tmp_path / "elsewhere"
    monkeypatch.delenv("APPSNEO_CACHE")
    assert train_data.default_cache_dir() == train_data.paths.RUNS_DIR / "cache"


def test_what_changes_the_ids_changes_the_key_and_a_saved_copy_of_the_tokenizer_does_not(
        tmp_path, tokenizer, examples):
    key = train_data.cache_key(examples, tokenizer, 512)
    assert train_data.cache_key(examples, tokenizer, 512) == key
    assert train_data.cache_key(examples, tokenizer, 1024) != key
    assert train_data.cache_key(examples[:-1], tokenizer, 512) != key
    edited = examples[:-1] + [type(examples[-1])(examples[-1].split, examples[-1].problem_id,
                                                 examples[-1].prompt, examples[-1].answer + " ")]
    assert train_data.cache_key(edited, tokenizer, 512) != key
    assert train_data.cache_key(examples, train_tiny_tokenizer(vocab_size=900), 512) != key
    # a resumed run loads the tokenizer from its checkpoint folder: same content, same key
    from transformers import AutoTokenizer

    tokenizer.save_pretrained(tmp_path / "checkpoint")
    reloaded = AutoTokenizer.from_pretrained(tmp_path / "checkpoint")
    reloaded("padded", padding="max_length", max_length=8, truncation=True)  # per-call state is not content
    assert train_data.cache_key(examples, reloaded, 512) == key


def test_a_new_tokenizer_or_block_size_tokenises_again(tmp_path, tokenizer, examples):
    base = train_data.tokenise(examples, tokenizer, 512, cache=True, cache_dir=tmp_path)
    other_block = train_data.tokenise(examples, tokenizer, 256, cache=True, cache_dir=tmp_path)
    other_tokenizer = train_data.tokenise(examples, train_tiny_tokenizer(vocab_size=900), 512, cache=True,
                                          cache_dir=tmp_path)
    assert not other_block.reused and not other_tokenizer.reused
    assert len({base.cache_path, other_block.cache_path, other_tokenizer.cache_path}) == 3
    assert other_block.rows == reference(examples, tokenizer, 256)
    assert other_tokenizer.rows != base.rows


def test_a_stale_or_half_written_cache_folder_is_rebuilt(tmp_path, tokenizer, examples):
    first = train_data.tokenise(examples, tokenizer, 512, cache=True, cache_dir=tmp_path)
    manifest = first.cache_path / "manifest.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "key": "something else"}))
    again = train_data.tokenise(examples, tokenizer, 512, cache=True, cache_dir=tmp_path)
    assert not again.reused and again.rows == first.rows
    manifest.unlink()  # what a kill between the map and the manifest would leave (the rename makes it rare)
    assert not train_data.tokenise(examples, tokenizer, 512, cache=True, cache_dir=tmp_path).reused


def test_the_mini_set_stays_in_memory_and_never_imports_datasets():
    code = ("import sys; from appsneo_utils import train_data, training; from appsneo_utils.modeling import "
            "train_tiny_tokenizer; d = train_data.prepare_data(training.TrainSettings.from_params(profile='smoke', recipe='replica'), "
            "train_tiny_tokenizer(), verbose=False); print(d.counts['tokenised']); print('datasets' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("tokenised 72 examples in memory in ") and lines[1] == "False"


# --- load_apps's table to and from a datasets.Dataset -------------------------------------------------------


def test_the_mini_set_round_trips_through_a_dataset(mini_all):
    dataset = to_dataset(mini_all)
    assert dataset.num_rows == len(mini_all) and dataset.column_names[:7] == list(mini_all.columns[:7])
    back = from_dataset(dataset, verbose=False)
    assert back.to_dict("records") == mini_all.to_dict("records")
    assert dict(back.dtypes) == dict(mini_all.dtypes)
    calls = back[back["call_type"] == "call"]
    assert len(calls) >= 2 and calls["fn_name"].notna().all() and calls["starter_code"].str.len().min() > 0
    assert set(back["difficulty"]) == {"introductory", "interview", "competition"}
    assert set(back["split"]) == {"train", "test"}
    assert (back["tests"] == mini_all["tests"]).all()


def test_real_problems_round_trip_and_the_hub_schema_reads_as_load_apps_does(shared_sample):
    from datasets import DatasetDict, load_dataset

    path = shared_sample / "apps_train_sample.jsonl"
    frame = load_apps(path, verbose=False)
    assert from_dataset(to_dataset(frame), verbose=False).to_dict("records") == frame.to_dict("records")
    # what someone who lives in `datasets` has: codeparrot/apps's columns, no split column
    raw = load_dataset("json", data_files=str(path), split="train")
    assert from_dataset(raw, verbose=False).to_dict("records") == frame.to_dict("records")
    as_test = from_dataset(raw, split="test", verbose=False)
    assert set(as_test["split"]) == {"test"}
    pooled = from_dataset(DatasetDict(test=raw.select(range(3)), train=raw), verbose=False)
    assert list(pooled["split"]) == ["train"] * 101 + ["test"] * 3, "train then test, as load_apps(split='all')"


def test_malformed_rows_in_a_dataset_are_reported_as_load_apps_reports_them(tmp_path, capsys):
    from datasets import Dataset

    good_io = json.dumps({"inputs": ["1 2\n"], "outputs": ["3\n"]})
    rows = [dict(problem_id=pid, question="Add two numbers.", solutions=json.dumps(["print(1)"]),
                 input_output=good_io, difficulty="introductory", url="", starter_code="") for pid in
            ("0", "1", "2", "3", "4", "5", "6", "7", "seven", "10")]
    rows[1]["input_output"] = ""
    rows[2]["input_output"] = "{not json"
    rows[3]["solutions"] = "[]"
    rows[4]["solutions"] = "7"
    rows[5]["difficulty"] = "easy"
    rows[6]["input_output"] = json.dumps({"inputs": ["1\n"], "outputs": []})
    rows[7]["question"] = None
    rows[9]["starter_code"] = None
    path = tmp_path / "bad.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    from_file = load_apps(path, verbose=False)
    frame = from_dataset(Dataset.from_list(rows))
    printed = capsys.readouterr().out
    assert frame.to_dict("records") == from_file.to_dict("records")
    report, expected = frame.attrs["report"], from_file.attrs["report"]
    assert {k: v for k, v in report.items() if k != "source"} == {k: v for k, v in expected.items() if k != "source"}
    assert report["dropped"] == {"no question text": ["train:7"], "no valid problem_id": ["train:'seven'"]}
    assert report["flagged"]["invalid solutions (not a list)"] == ["train:4"]
    assert "loaded 8 problems from a datasets.Dataset (10 rows read)" in printed
    assert "dropped: 1 with no question text: train:7" in printed


def test_to_dataset_says_what_it_needs():
    import pandas as pd

    with pytest.raises(ValueError, match="missing columns: .*solutions_list"):
        to_dataset(pd.DataFrame({"problem_id": [1], "question": ["q"]}))
    with pytest.raises(ValueError, match="split must be 'train', 'test' or 'all'"):
        from_dataset({"validation": to_dataset(load_apps("mini", split="test", verbose=False))})
