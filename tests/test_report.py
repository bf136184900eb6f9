"""The report is ONE file: figures and notebook images embedded, nothing pointing at a local file."""

import html
import json
import re

import matplotlib
import nbformat
import pytest

from appsneo_utils import paths, plotting, report

matplotlib.use("Agg")

LINK = re.compile(r"""\b(src|href)\s*=\s*(["'])(.*?)\2""", re.I | re.S)
SRCDOC = re.compile(r'srcdoc="([^"]*)"', re.S)


def _links(page: str) -> list[tuple[str, str]]:
    """Every src/href of the page and of the documents inside its iframes."""
    found = [(m.group(1).lower(), m.group(3)) for m in LINK.finditer(SRCDOC.sub("", page))]
    for doc in SRCDOC.findall(page):
        found += _links(html.unescape(doc))
    return found


def _executed_notebook(path, png: bytes, runs):
    import base64

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# 05 · Probe\n\nA notebook with a figure."),
                nbformat.v4.new_code_cell("plot()", execution_count=1, outputs=[nbformat.v4.new_output(
                    "display_data", data={"image/png": base64.b64encode(png).decode(), "text/plain": "<Figure>"}),
                    nbformat.v4.new_output("stream", name="stdout", text=f"wrote {runs}/05_probes/deltas.csv\n")])]
    nbformat.write(nb, path)


@pytest.fixture
def run_folders(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    runs, figures = tmp_path / "runs", tmp_path / "figures"
    monkeypatch.setattr(plotting, "figures_dir", lambda nb: (figures / nb).mkdir(parents=True, exist_ok=True)
                        or figures / nb)
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    ax.set_title(f"loss of {tmp_path}/runs/02_finetune/model")  # an absolute path: must not reach the file
    png = plotting.save_fig(fig, "02_finetune", "loss")
    (runs / "notebooks").mkdir(parents=True)
    _executed_notebook(runs / "notebooks" / "05_probes.ipynb", png.read_bytes(), runs)
    summary = {"contamination": {"seen": {"problems": 8, "pass@1": 0.9, "low": 0.8, "high": 1.0},
                                 "unseen": {"problems": 4, "pass@1": 0.0, "low": 0.0, "high": 0.0}},
               "probes": [{"format": "docstring", "metric": "nll", "delta": 3.1, "low": 2.5, "high": 3.6}],
               "recall": {"seen": {"samples": 40, "mean_similarity": 0.97, "near_verbatim": 0.9},
                          "unseen": {"samples": 20, "mean_similarity": 0.4, "near_verbatim": 0.0}, "threshold": 0.9},
               "settings": {"02_finetune": {"epochs": 60}}}
    (runs / "pipeline_summary.json").write_text(json.dumps(summary))
    return runs, figures


def test_save_fig_writes_png_and_svg_without_the_machines_paths(run_folders):
    runs, figures = run_folders
    assert sorted(p.name for p in (figures / "02_finetune").iterdir()) == ["loss.png", "loss.svg"]
    svg = (figures / "02_finetune" / "loss.svg").read_text()
    assert str(runs.parent) not in svg


def test_the_report_is_one_file_with_everything_embedded(run_folders, tmp_path):
    runs, figures = run_folders
    out = report.build(runs=runs, figures=figures)
    assert out == runs / "report" / "index.html"
    assert [p.name for p in out.parent.iterdir()] == ["index.html"], "one file, nothing beside it"
    page = out.read_text()
    links = _links(page)
    images = [v for k, v in links if k == "src"]
    assert any(v.startswith("data:image/svg+xml;base64,") for v in images), "the figure, inline"
    assert any(v.startswith("data:image/png;base64,") for v in images), "the notebook's output image, inline"
    not_embedded = [v for k, v in links if not v.startswith(("data:", "#"))]
    assert not not_embedded, f"links out of the file: {not_embedded[:5]}"
    assert str(tmp_path) not in page, "no absolute path of this machine"
    for text in ("Contamination gap", "docstring", "near-verbatim", "commit", "rapidfuzz", '"epochs": 60',
                 "05_probes", "wrote runs/05_probes/deltas.csv"):
        assert text in html.unescape(page), text


def test_the_report_says_what_is_missing(tmp_path):
    out = report.build(tmp_path / "r.html", runs=tmp_path / "runs", figures=tmp_path / "figures")
    page = out.read_text()
    assert "make pipeline" in page and "No figures" in page and "No executed notebooks" in page


def test_shown_path_keeps_the_machine_out():
    assert plotting.shown_path(paths.RUNS_DIR / "02_finetune" / "model") == "runs/02_finetune/model"
    assert plotting.shown_path(paths.ROOT / "data" / "mini") == "data/mini"
    assert plotting.shown_path("flax-community/gpt-neo-1.3B-apps-all") == "flax-community/gpt-neo-1.3B-apps-all"
    assert plotting.shown_path("/somewhere/else/model") == "model"
