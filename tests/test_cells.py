"""Every notebook's install and parameters cells are the generated ones (`python -m appsneo_utils.cells`),
and its setup cell turns the parameters into settings through the one mechanism."""

import dataclasses

import nbformat
import pytest

from appsneo_utils import cells, paths
from appsneo_utils.params import Settings


@pytest.mark.parametrize("notebook", list(cells.SETTINGS))
def test_parameters_cell_is_the_settings_dataclass(notebook):
    nb = nbformat.read(paths.NOTEBOOKS_DIR / f"{notebook}.ipynb", as_version=4)
    source = cells.cells_of(nb)["parameters"].source
    cls = cells.settings_class(notebook)
    assert issubclass(cls, Settings) and dataclasses.is_dataclass(cls)
    assert source == cells.generated(notebook)["parameters"], (
        f"{notebook}'s parameters cell differs from {cls.__name__}: run `python -m appsneo_utils.cells --write`")
    namespace = {}
    exec(source, namespace)
    assert [name for name in namespace if not name.startswith("__")] == cls.parameter_names()
    for f in dataclasses.fields(cls):
        assert f.metadata["help"] in source.splitlines()[cls.parameter_names().index(f.name)]


@pytest.mark.parametrize("notebook", list(cells.SETTINGS))
def test_install_cell_reads_the_one_install_source(notebook):
    nb = nbformat.read(paths.NOTEBOOKS_DIR / f"{notebook}.ipynb", as_version=4)
    source = cells.cells_of(nb)["install"].source
    assert source == cells.install_cell(notebook) and cells.INSTALL_SOURCE in source


@pytest.mark.parametrize("notebook", list(cells.SETTINGS))
def test_setup_cell_configures_through_from_notebook(notebook):
    nb = nbformat.read(paths.NOTEBOOKS_DIR / f"{notebook}.ipynb", as_version=4)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    setup = code[code.index(cells.cells_of(nb)["parameters"].source) + 1]
    assert f"{cells.settings_class(notebook).__name__}.from_notebook(globals())" in setup


def test_check_names_a_stale_cell_and_write_fixes_it(tmp_path):
    for notebook in cells.SETTINGS:
        (tmp_path / f"{notebook}.ipynb").write_bytes((paths.NOTEBOOKS_DIR / f"{notebook}.ipynb").read_bytes())
    path = tmp_path / "04_evaluate.ipynb"
    nb = nbformat.read(path, as_version=4)
    cells.cells_of(nb)["parameters"].source += "\nstale = 1  # int: a setting that no longer exists"
    nbformat.write(nb, path)
    assert "04_evaluate: parameters" in cells.check(tmp_path)
    cells.check(tmp_path, write=True)
    assert "04_evaluate: parameters" not in cells.check(tmp_path)
