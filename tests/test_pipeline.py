"""The main job: notebooks in order, stop at the first failure with the failing cell's error."""

import nbformat
import pytest

from appsneo_utils import pipeline


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


def test_whole_pipeline_on_the_embedded_default(tmp_path, isolated_outputs):
    """`make pipeline`'s job, into temporary folders: every notebook runs and draws its figures."""
    runs, figures = isolated_outputs
    executed = pipeline.run_pipeline("smoke", out_dir=tmp_path / "executed")
    assert [p.name for p in executed] == [p.name for p in pipeline.notebooks()]
    for notebook in executed:
        assert list((figures / notebook.stem).glob("*.png")), f"{notebook.stem} drew no figure"
