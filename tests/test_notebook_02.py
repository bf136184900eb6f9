"""Notebook 02 on the embedded default, exactly as users run it: `papermill ... -p all_data true`."""

import json

import nbformat

from appsneo_utils.modeling import load_model
from conftest import run_papermill


def papermill(out, *params, timeout=600):
    """Run the notebook from notebooks/ with papermill's CLI; no GPU, no hub."""
    return run_papermill("02_finetune.ipynb", out, *params, env={"HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""},
                         timeout=timeout)


def outputs(path) -> str:
    nb = nbformat.read(path, as_version=4)
    return "\n".join(o.get("text", "") + o.get("evalue", "") for c in nb.cells if c.cell_type == "code"
                     for o in c.get("outputs", []))


def test_all_data_true_trains_and_states_the_contamination(tmp_path, isolated_outputs):
    runs, figures = isolated_outputs
    out = tmp_path / "out.ipynb"
    proc = papermill(out, "-p", "all_data", "true")
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = outputs(out)
    assert "profile: smoke" in text and "all_data = True" in text
    assert "recipe card" in text and "global batch: 3 per device x 1 processes x 1 accumulation = 3" in text
    assert "APPS-test scores are CONTAMINATED" in text
    run = runs / "02_finetune"
    metrics = json.loads((run / "metrics.json").read_text())
    history = json.loads((run / "history.json").read_text())
    assert metrics["completed"] and metrics["all_data"] and metrics["contaminated_test_problems"] > 0
    assert metrics["val_loss"] < history["val"][0]["loss"] - 1.0, "the tiny model learns something"
    record = json.loads((run / "model" / "trained_problems.json").read_text())
    assert {s for s, _ in record["train"]} == {"train", "test"}
    assert sorted(p.name for p in (figures / "02_finetune").glob("*.png")) == [
        "learning_rate.png", "loss.png", "tokens_per_s.png"]
    model, tokenizer = load_model(str(run / "model"), device="cpu")  # what 03_sample does
    assert model.config.model_type == "gpt_neo" and tokenizer.eos_token == "<|endoftext|>"


def test_all_data_false_is_false(tmp_path, isolated_outputs):
    runs, _ = isolated_outputs
    out = tmp_path / "out.ipynb"
    proc = papermill(out, "-p", "all_data", "false", "-p", "max_steps", "3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = outputs(out)
    assert "all_data = False" in text and "not contaminated" in text and "CONTAMINATED" not in text
    record = json.loads((runs / "02_finetune" / "model" / "trained_problems.json").read_text())
    assert record["all_data"] is False and {s for s, _ in record["train"]} == {"train"}


def test_replica_recipe_trains_on_the_original_cut(tmp_path, isolated_outputs):
    """The pipeline's `-all` replica in one parameter (epochs cut short here: the recipe's 60 take minutes)."""
    runs, figures = isolated_outputs
    out = tmp_path / "out.ipynb"
    proc = papermill(out, "-p", "recipe", "replica", "-p", "epochs", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = outputs(out)
    assert "recipe replica" in text and "all_data = True, split_rule = original" in text
    assert "the first int(0.9 x 72) = 64 trained" in text and "lr 0.003" in text
    assert "test problems not seen: 4 [8, 9, 10, 11]" in text
    record = json.loads((runs / "02_finetune" / "model" / "trained_problems.json").read_text())
    assert record["split_rule"] == "original" and record["cut"] == 64
    assert sorted(p for s, p in record["train"] if s == "test") == list(range(8))
    assert len(list((figures / "02_finetune").glob("*.png"))) == 3


def test_all_data_maybe_stops_at_the_setup_cell(tmp_path, isolated_outputs):
    out = tmp_path / "out.ipynb"
    proc = papermill(out, "-p", "all_data", "maybe")
    assert proc.returncode != 0
    assert "all_data must be true or false" in proc.stderr and "'maybe'" in proc.stderr
    nb = nbformat.read(out, as_version=4)
    failed = [c for c in nb.cells if c.cell_type == "code" and any(o.output_type == "error" for o in c.outputs)]
    assert len(failed) == 1 and "TrainSettings.from_notebook(globals())" in failed[0].source, "the setup cell stops the run"
    later = nb.cells[nb.cells.index(failed[0]) + 1:]
    assert all(not c.get("outputs") for c in later if c.cell_type == "code"), "nothing runs after it"
    assert not (isolated_outputs[0] / "02_finetune").exists()


def test_pipeline_runs_notebook_02():
    from appsneo_utils import pipeline

    assert "02_finetune.ipynb" in [p.name for p in pipeline.notebooks()]
