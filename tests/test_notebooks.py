"""Notebooks: committed clean, parameters papermill can read, and notebook 01 runs offline."""

import json

import nbformat
import pytest
from papermill.translators import PythonTranslator

from conftest import ROOT, run_papermill

NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_there_are_notebooks():
    assert [p.stem[:2] for p in NOTEBOOKS][:1] == ["01"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs(path):
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [] and cell.get("execution_count") is None, path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_anatomy_and_parameters(path):
    nb = nbformat.read(path, as_version=4)
    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith(f"# {path.stem[:2]} · ")
    assert "papermill" in first.source, "the title cell says how to rerun the notebook"
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"
    assigned = [line.split("=")[0].strip() for line in tagged[0].source.splitlines() if "=" in line]
    parsed = [p.name for p in PythonTranslator.inspect(tagged[0])]
    assert parsed == assigned, "papermill must parse every parameter (no '=' in comments)"
    assert {"profile", "seed"} <= set(parsed)
    colab = nb.cells[1].source
    assert '"google.colab" in sys.modules' in colab and "%pip install" in colab
    assert any(c.source.startswith("## Outputs") for c in nb.cells if c.cell_type == "markdown")


@pytest.mark.parametrize("cwd", ["root", "notebooks"])
def test_notebook_01_runs_offline(cwd, tmp_path, isolated_outputs):
    runs, figures = isolated_outputs
    out = tmp_path / "out.ipynb"
    # From notebooks/, the parameters arrive as papermill's strings ("all" is a word, not 0).
    words = ["-p", "limit", "all", "-p", "block_size", "512"] if cwd == "notebooks" else []
    done = run_papermill("01_explore.ipynb", out, "-p", "profile", "smoke", *words, "--no-progress-bar",
                         cwd=ROOT if cwd == "root" else ROOT / "notebooks")
    assert done.returncode == 0, done.stderr[-3000:]
    names = sorted(p.name for p in (figures / "01_explore").glob("*.png"))
    assert names == ["call_types.png", "difficulties.png", "questions_tests_solutions.png", "token_lengths.png"]
    summary = json.loads((runs / "01_explore" / "summary.json").read_text())
    assert summary["problems"] >= 30 and summary["training_examples"] >= summary["problems"]
    assert summary["block_size"] == (512 if cwd == "notebooks" else 1024)
    text = out.read_text()
    assert "profile: smoke" in text and "loaded" in text


@pytest.mark.parametrize("name", ["01_explore", "02_finetune", "03_sample", "04_evaluate", "05_probes"])
def test_no_cell_after_the_parameters_rebinds_one(name):
    """`from_notebook(globals())` reads the parameters by name: a later cell that assigns or imports one (say
    `model = load(...)` or `from appsneo_utils import data`) would break a rerun of the setup cell."""
    import ast

    from appsneo_utils import cells

    nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    names = set(cells.settings_class(name).parameter_names())
    code = [c for c in nb.cells if c.cell_type == "code"]
    after = code[code.index(cells.cells_of(nb)["parameters"]) + 1:]
    bound = set()
    for cell in after:
        tree = ast.parse("\n".join(line for line in cell.source.splitlines() if not line.lstrip().startswith("%")))
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                bound.add(node.id)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                bound.update((a.asname or a.name).split(".")[0] for a in node.names)
    assert not bound & names, f"{name} rebinds the parameters {sorted(bound & names)} after the parameters cell"
