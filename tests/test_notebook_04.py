"""Notebook 04 runs offline on the embedded default with papermill and writes its figures and tables."""

import json

from conftest import ROOT, fake_finetune_output, outputs_text, run_notebook


def test_notebook_04_evaluates_offline_from_notebooks_dir(tmp_path, isolated_outputs):
    runs, figures = isolated_outputs
    seen = fake_finetune_output(runs)
    # papermill's strings: "all" in words, "true" as a bool (the mini test split has 4 problems per difficulty)
    nb = run_notebook("04_evaluate.ipynb", ROOT / "notebooks", tmp_path / "04.ipynb", "-p", "limit", "all",
                      "-p", "humaneval", "true")
    names = sorted(p.name for p in (figures / "04_evaluate").glob("*.png"))
    assert names == ["contamination_gap.png", "humaneval.png", "metrics.png", "published.png", "verdicts.png"]
    summary = json.loads((runs / "04_evaluate" / "summary.json").read_text())
    apps = summary["apps"]
    assert apps["samples"] == apps["judged"] == 12 * 5  # 4 problems per difficulty of the mini test split, n=5
    metrics = {(r["difficulty"], r["metric"]) for r in apps["table"]}
    assert {("all", "pass@1"), ("all", "pass@5"), ("competition", "strict_accuracy")} <= metrics
    assert summary["humaneval"]["judged"] == 3 * 5
    assert [r["introductory"] for r in summary["published"]] == [3.90, 4.14, 9.65]
    text = outputs_text(nb)
    assert "CONTAMINATED: the training record of runs/02_finetune/model" in text and "profile: smoke" in text
    # the contamination statement comes before the results table
    assert text.index("CONTAMINATED") < text.index("test_case_average")
    gap = json.loads((runs / "04_evaluate" / "contamination_gap.json").read_text())
    assert gap["seen"]["problems"] == seen and gap["unseen"]["problems"] == 12 - seen
    for part in ("seen", "unseen"):
        assert 0 <= gap[part]["low"] <= gap[part]["pass@1"] <= gap[part]["high"] <= 1
    assert gap["model"] == "runs/02_finetune/model" and str(tmp_path) not in json.dumps(gap)
    assert f"Seen: the {seen} problems" in text
    # APPS results with the APPS harness's rules, the strict judge's table beside them
    assert apps["judge"] == "apps" and set(apps["other_judges"]) == {"strict"} and gap["judge"] == "apps"
    assert "Headline judge: **apps**" in text and "the strict judge disagrees on" in text
