"""Contamination by what a model is: records, provenance, the known checkpoints, the -all cut, and the model meant."""

import json
import sys
import types

import pandas as pd
import pytest

from appsneo_utils import contamination as cont
from appsneo_utils import modeling
from appsneo_utils.data import load_apps

# Every name under which a checkpoint that trained on APPS test problems is published or used (issue 12).
ALL_NAMES = ("flax-community/gpt-neo-1.3B-apps-all", "flax-community/gpt-code-clippy-1.3B-apps-alldata",
             "flax-community/gpt-code-clippy-1.3B-apps-alldata-2", "flax-community/gpt-neo-1.3B-apps-all-2")


@pytest.fixture(scope="module")
def mini_test():
    return load_apps("mini", split="test", verbose=False)


@pytest.fixture(scope="module")
def mini_train():
    return load_apps("mini", split="train", verbose=False)


def model_folder(tmp_path, name="model", *, record=None, provenance=None, settings=None):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    for file, content in (("trained_problems.json", record), (modeling.PROVENANCE_FILE, provenance),
                          ("training_settings.json", settings)):
        if content is not None:
            (folder / file).write_text(json.dumps(content))
    return folder


def test_a_training_record_gives_the_seen_problems_and_the_clean_subset(tmp_path, mini_test):
    record = {"all_data": True, "train": [["test", 0], ["test", 1], ["train", 5]], "validation": [["test", 2]]}
    folder = model_folder(tmp_path, record=record, settings={"model": "tiny"})
    frame = mini_test.head(4)
    found = cont.detect_contamination(str(folder), frame)
    assert found.status == "contaminated" and "2 of the 4 problems" in found.statement
    assert found.clean_keys(frame) == {("test", 2), ("test", 3)}
    assert "started from tiny" in found.statement
    clean = cont.detect_contamination(str(folder), mini_test[mini_test.problem_id >= 2])
    assert clean.status == "clean" and not clean.contaminated
    assert cont.detect_contamination("x", frame, override=str(folder)).status == "contaminated"
    assert cont.detect_contamination("x", frame, override="none").status == "clean"
    with pytest.raises(FileNotFoundError, match="trained_problems.json"):
        cont.detect_contamination("x", frame, override=str(tmp_path / "nowhere.json"))


def test_a_record_on_top_of_an_all_model_is_not_clean(tmp_path, mini_test):
    # the fine-tune itself never saw the test split, but its base did: which problems cannot be told on mini
    folder = model_folder(tmp_path, record={"train": [["train", 0]], "validation": []},
                          provenance={"base_model": "flax-community/gpt-neo-1.3B-apps-all", "how": "fine-tuned"})
    found = cont.detect_contamination(str(folder), mini_test, source="mini")
    assert found.status == "contaminated" and found.clean_keys(mini_test) is None
    assert "gpt-neo-1.3B-apps-all" in found.statement


@pytest.mark.parametrize("name", ALL_NAMES + tuple(n.upper() for n in ALL_NAMES[:1]))
def test_every_name_of_the_all_models_is_contaminated_on_test(name, mini_test):
    found = cont.detect_contamination(name, mini_test, source="mini")
    assert found.status == "contaminated" and found.contaminated
    assert "CONTAMINATED" in found.statement and found.clean_keys(mini_test) is None  # mini cannot rebuild the cut


@pytest.mark.parametrize("name", ALL_NAMES)
def test_every_name_of_the_all_models_is_contaminated_on_train(name, mini_train):
    assert cont.detect_contamination(name, mini_train, source="mini").status == "contaminated"


def test_the_train_only_sibling_is_contaminated_on_train_and_clean_on_test(mini_train, mini_test):
    on_train = cont.detect_contamination("flax-community/gpt-neo-1.3B-apps", mini_train)
    assert on_train.status == "contaminated" and on_train.clean_keys(mini_train) is None
    on_test = cont.detect_contamination("flax-community/gpt-neo-1.3B-apps", mini_test)
    assert on_test.status == "clean" and "train only" in on_test.statement


def test_the_eleuther_bases_are_clean_of_apps_fine_tuning_and_say_what_is_known_of_the_pile(mini_test):
    found = cont.detect_contamination("EleutherAI/gpt-neo-1.3B", mini_test)
    assert found.status == "clean" and "Pile" in found.statement


def test_an_unknown_hub_model_is_unknown_never_clean(mini_test):
    found = cont.detect_contamination("someone/gpt-neo-1.3B-apps-finetuned", mini_test)
    assert found.status == "unknown" and found.contaminated and found.clean_keys(mini_test) is None
    assert "UNKNOWN" in found.statement


def test_a_folder_without_provenance_or_record_is_unknown(tmp_path, mini_test):
    plain = cont.detect_contamination(str(model_folder(tmp_path)), mini_test)
    assert plain.status == "unknown" and "appsneo_provenance.json" in plain.statement
    legacy = cont.detect_contamination(str(model_folder(tmp_path, modeling.CONVERTED_FOLDER)), mini_test)
    assert legacy.status == "unknown" and "CONTAMINATED" in legacy.statement


def test_a_folder_converted_by_the_kits_advice_is_recognised(tmp_path, monkeypatch, mini_test):
    """Run the advice's own one-liner (with a stand-in transformers) and check what the folder is taken for."""
    advice = modeling.flax_conversion_advice("flax-community/gpt-code-clippy-1.3B-apps-alldata")
    code = advice.split('python -c "')[1].split('" and pass')[0]

    class Stub:
        @classmethod
        def from_pretrained(cls, name, **kwargs):
            return cls()

        def save_pretrained(self, folder):
            (tmp_path / folder).mkdir(exist_ok=True)
            (tmp_path / folder / "config.json").write_text("{}")

    monkeypatch.setitem(sys.modules, "transformers", types.SimpleNamespace(GPTNeoForCausalLM=Stub,
                                                                           AutoTokenizer=Stub))
    monkeypatch.chdir(tmp_path)
    exec(code, {})
    folder = tmp_path / modeling.CONVERTED_FOLDER
    record = modeling.read_provenance(folder)
    assert record["model"] == "flax-community/gpt-code-clippy-1.3B-apps-alldata" and record["date"]
    assert record["kit_version"]
    found = cont.detect_contamination(str(folder), mini_test, source="mini")
    assert found.status == "contaminated" and "gpt-code-clippy-1.3B-apps-alldata" in found.statement
    assert str(tmp_path) not in found.statement  # the statement names the folder, not this machine's path


def test_the_tiny_model_is_meant_by_tiny_even_when_a_finetune_output_exists(tmp_path, monkeypatch, mini_test):
    from appsneo_utils import paths

    monkeypatch.setattr(paths, "RUNS_DIR", tmp_path / "runs")
    output = tmp_path / "runs" / "02_finetune" / "model"
    output.mkdir(parents=True)
    (output / "config.json").write_text("{}")  # an 02_finetune output is there
    chosen = modeling.resolve_model("tiny")
    assert (chosen.name, chosen.kind) == ("tiny", "tiny") and "random weights" in chosen.note()
    assert "random weights" in cont.detect_contamination(chosen.name, mini_test).statement
    by_profile = modeling.resolve_model("")
    assert by_profile.name == str(output) and "02_finetune" in by_profile.note()
    assert by_profile.label == "runs/02_finetune/model"  # never the machine's absolute path
    assert modeling.resolve_model("", full=True).name == modeling.APPS_MODEL


def test_the_all_cut_is_rebuilt_from_the_training_script():
    def frame(split, sizes):
        return pd.DataFrame({"split": split, "problem_id": range(len(sizes)),
                             "solutions_list": [["s"] * k for k in sizes]})

    # 10 train examples + test problems with 3, 0, 4, 3 solutions: 20 examples, the first 18 trained on
    seen, info = cont.apps_all_seen(frame("train", [5, 5]), frame("test", [3, 0, 4, 3]))
    assert info["cut"] == 18 and info["examples"] == 20
    assert seen == {("train", 0), ("train", 1), ("test", 0), ("test", 2), ("test", 3)}  # test 3 starts at 17 < 18
    assert info["test_solutions_seen"] == 8  # 3 + 4 + 1
    # 1 - 0.1 * N / S = 1 - 0.1 * 20 / 10 = 0.8: the same share, from the formula
    assert info["test_share_seen"] == pytest.approx(0.8) == cont.apps_all_share(20, 10)


def test_the_known_checkpoint_table_names_every_alias_with_a_source():
    table = cont.known_checkpoints_table()
    for name in ALL_NAMES + ("flax-community/gpt-neo-1.3B-apps", "EleutherAI/gpt-neo-1.3B", "gpt-neo-apps-pt"):
        assert name in set(table["name"])
    assert table["source"].str.len().min() > 20


def test_a_folder_name_means_the_same_from_notebooks_as_from_the_root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # neither the root nor notebooks/: the repository root still resolves it
    chosen = modeling.resolve_model("data/mini")
    assert chosen.kind == "folder" and chosen.label == "data/mini"
    assert modeling.resolve_model("someone/some-model").kind == "hub"


def test_the_rebuilt_cut_on_the_mini_set_is_the_replicas(mini_train, mini_test):
    """Hand-computed: 24 + 12 problems with 2 solutions each pool to 72 examples; int(0.9 * 72) = 64 keep all 48
    train ones and the first 16 test ones, so test problems 0-7 are seen (the 02 replica trains on the same cut)."""
    seen, info = cont.apps_all_seen(mini_train, mini_test)
    assert (info["examples"], info["cut"], info["test_solutions"], info["test_solutions_seen"]) == (72, 64, 24, 16)
    assert {p for s, p in seen if s == "test"} == set(range(8)) and len(seen) == 24 + 8
    assert info["test_share_seen"] == pytest.approx(2 / 3)  # 1 - 0.1 N / S = 0.7 up to int()'s rounding:
    assert abs(cont.apps_all_share(72, 24) - info["test_share_seen"]) < 1 / 24  # under one solution
