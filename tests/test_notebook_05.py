"""Notebook 05 runs offline on the embedded default with papermill and writes its figures and tables."""

import json

from conftest import ROOT, outputs_text, run_notebook


def test_notebook_05_probes_offline_from_repo_root(tmp_path, isolated_outputs):
    runs, figures = isolated_outputs
    nb = run_notebook("05_probes.ipynb", ROOT, tmp_path / "05.ipynb")
    names = sorted(p.name for p in (figures / "05_probes").glob("*.png"))
    assert names == ["deltas.png", "nll_by_format.png", "recall.png", "sample_rates.png"]
    summary = json.loads((runs / "05_probes" / "summary.json").read_text())
    assert len(summary["settings"]["formats"]) >= 6 and summary["settings"]["formats"][0] == "train"
    metrics = {d["metric"] for d in summary["deltas"]}
    assert {"nll", "pass_rate", "parse_rate", "stop_rate", "dangerous_rate", "plausible_wrong_rate"} <= metrics
    assert "paired bootstrap" in summary["reading"]
    assert "paired bootstrap" in outputs_text(nb)
