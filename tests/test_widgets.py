"""The panel opens where the model has something to show: the first problem it trained on, or the one named."""

import pytest

from appsneo_utils import modeling
from appsneo_utils.data import load_apps
from appsneo_utils.widgets import SamplingPanel, first_seen


@pytest.fixture(scope="module")
def problems():
    return load_apps("mini", split="all", verbose=False)


def test_first_seen_is_the_first_trained_problem_with_tests(problems):
    rows = problems.reset_index(drop=True)
    third, fifth = rows.iloc[2], rows.iloc[4]
    seen = {(fifth["split"], int(fifth["problem_id"])), (third["split"], int(third["problem_id"]))}
    assert first_seen(rows, seen) == f"{third['split']}:{third['problem_id']}"
    assert first_seen(rows, None) is None and first_seen(rows, set()) is None
    assert first_seen(rows, {("test", 10_000)}) is None


def test_the_panel_opens_on_the_problem_it_is_given(problems):
    model, tokenizer = modeling.load_model("tiny")
    key = f"{problems.iloc[7]['split']}:{problems.iloc[7]['problem_id']}"
    panel = SamplingPanel(model, tokenizer, problems, problem=key)
    row = panel.problems.loc[panel.problem.value]
    assert f"{row['split']}:{row['problem_id']}" == key
    assert panel.current_problem()[1] == row["tests"]
    with pytest.raises(ValueError, match="no problem 'test:99999'"):
        panel.select("test:99999")


def test_the_panel_starts_from_notebook_03s_settings(problems):
    from appsneo_utils.sampling import SampleSettings

    settings = SampleSettings.from_params(profile="smoke", model="tiny", prompt_format="docstring", temperature="0.2",
                                          n_samples="3", max_new_tokens="64", top_k="5", backend="hf")
    model, tokenizer = modeling.load_model("tiny")
    panel = SamplingPanel.from_settings(model, tokenizer, problems, settings)
    assert (panel.fmt.value, panel.temperature.value, panel.n_samples.value, panel.max_new_tokens.value) == (
        "docstring", 0.2, 3, 64)
    assert panel.sampling == {"top_k": 5, "batch_size": 8, "backend": "hf"}
