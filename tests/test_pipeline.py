"""The main job: notebooks in order, stop at the first failure with the failing cell's error; the summary
and the report at the end; on the embedded default, what issue 14 asks the demo to show."""

import json

import nbformat
import pytest

from appsneo_utils import pipeline, training


def _notebook(path, *sources):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell('profile = "auto"', metadata={"tags": ["parameters"]})]
    nb.cells += [nbformat.v4.new_code_cell(s) for s in sources]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


def test_discovers_notebooks_in_order():
    names = [p.name for p in pipeline.notebooks()]
    assert names == sorted(names) and names[0] == "01_explore.ipynb"
    assert [p.name for p in pipeline.notebooks(["01"])] == ["01_explore.ipynb"]
    with pytest.raises(ValueError, match="no notebook matches"):
        pipeline.notebooks(["99"])


def test_stops_at_first_failure_with_the_cells_error(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    _notebook(folder / "01_ok.ipynb", "print('profile is', profile)")
    _notebook(folder / "02_broken.ipynb", "x = 1", "raise ValueError('all_data must be true or false')")
    _notebook(folder / "03_never.ipynb", "open('ran-03', 'w').write('yes')")
    monkeypatch.setattr(pipeline, "NOTEBOOKS_DIR", folder)
    with pytest.raises(RuntimeError) as info:
        pipeline.run_pipeline("smoke", out_dir=tmp_path / "out")
    message = str(info.value)
    assert "02_broken.ipynb failed in cell" in message and "ValueError: all_data must be true or false" in message
    assert (tmp_path / "out" / "01_ok.ipynb").is_file() and not (tmp_path / "out" / "03_never.ipynb").exists()
    assert not (folder / "ran-03").exists()
    executed = nbformat.read(tmp_path / "out" / "01_ok.ipynb", as_version=4)
    assert "profile is smoke" in str(executed.cells)
    assert pipeline.main(["--only", "99"]) == 1 and "no notebook matches" in capsys.readouterr().err


def test_only_notebook_02_trains_the_replica_on_the_embedded_default():
    by_name = {p.stem[:2]: p for p in pipeline.notebooks()}
    assert pipeline.notebook_parameters(by_name["02"], "smoke") == {"profile": "smoke", **pipeline.REPLICA}
    settings = training.TrainSettings.from_params(profile="smoke", **pipeline.REPLICA)  # what notebook 02 makes of them
    assert settings.all_data is True and settings.split_rule == "original" and settings.epochs >= 30
    for number in ("01", "03", "04", "05"):
        assert pipeline.notebook_parameters(by_name[number], "smoke") == {"profile": "smoke"}
    assert pipeline.notebook_parameters(by_name["02"], "full") == {"profile": "full"}


def test_the_summary_collects_what_04_and_05_wrote(tmp_path):
    (tmp_path / "04_evaluate").mkdir()
    (tmp_path / "05_probes").mkdir()
    gap = {"seen": {"problems": 8, "pass@1": 0.9, "low": 0.8, "high": 1.0},
           "unseen": {"problems": 4, "pass@1": 0.0, "low": 0.0, "high": 0.0}, "model": "x"}
    (tmp_path / "04_evaluate" / "contamination_gap.json").write_text(json.dumps(gap))
    (tmp_path / "05_probes" / "deltas.csv").write_text(
        "metric,fmt,n_problems,baseline_mean,format_mean,delta,ci_low,ci_high\n"
        "nll,docstring,30,0.1,3.0,2.9,2.5,3.3\npass_rate,docstring,30,0.8,0.1,-0.7,-0.8,-0.6\n")
    recall = {"seen": {"samples": 10, "mean_similarity": 0.95, "near_verbatim": 0.8}}
    (tmp_path / "05_probes" / "recall.json").write_text(json.dumps(recall))
    path = pipeline.write_summary({"01_explore": {"seconds": 3.0, "parameters": {"profile": "smoke"}}}, tmp_path)
    summary = json.loads(path.read_text())
    assert summary["contamination"] == {k: gap[k] for k in ("seen", "unseen")}
    assert summary["probes"][1] == {"format": "docstring", "metric": "pass_rate", "delta": -0.7, "low": -0.8,
                                    "high": -0.6, "problems": 30}
    assert summary["recall"] == recall and summary["notebooks"] == {"01_explore": 3.0}
    empty = json.loads(pipeline.write_summary(runs=tmp_path / "nothing").read_text())
    assert empty["contamination"] is None and empty["probes"] == [] and empty["recall"] is None


def test_whole_pipeline_on_the_embedded_default(tmp_path, isolated_outputs, monkeypatch):
    """`make pipeline`'s job, into temporary folders: every notebook runs, draws its figures (PNG and SVG),
    and the summary shows the -all replica's story: recall of what it saw, in the format it saw it."""
    runs, figures = isolated_outputs
    monkeypatch.setattr(pipeline, "RUNS_DIR", runs)
    monkeypatch.setattr(pipeline, "FIGURES_DIR", figures)
    executed = pipeline.run_pipeline("smoke", out_dir=tmp_path / "executed")
    assert [p.name for p in executed] == [p.name for p in pipeline.notebooks()]
    for notebook in executed:
        pngs = list((figures / notebook.stem).glob("*.png"))
        assert pngs, f"{notebook.stem} drew no figure"
        assert all(p.with_suffix(".svg").is_file() for p in pngs), f"{notebook.stem}: a PNG without its SVG"
    summary = json.loads((runs / "pipeline_summary.json").read_text())
    gap = summary["contamination"]
    assert gap["seen"]["pass@1"] >= 0.5 and gap["unseen"]["pass@1"] <= 0.1, gap
    excluding = {m: [p["format"] for p in summary["probes"] if p["metric"] == m and (p["low"] > 0 or p["high"] < 0)]
                 for m in ("nll", "pass_rate")}
    assert excluding["nll"] and excluding["pass_rate"], summary["probes"]
    for group in ("seen", "unseen"):
        assert set(summary["recall"][group]) >= {"samples", "mean_similarity", "near_verbatim"}
    assert summary["recall"]["seen"]["mean_similarity"] > summary["recall"]["unseen"]["mean_similarity"]
    page = (runs / "report" / "index.html").read_text()
    summary_page = page.split('id="notebooks"')[0]
    assert summary_page.count("data:image/svg+xml;base64,") >= len(executed) and str(tmp_path) not in summary_page
