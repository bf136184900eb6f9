"""The notebooks' generated cells: the Colab install cell and each notebook's parameters cell.

    python -m appsneo_utils.cells            # check: exit 1 and name every cell that differs
    python -m appsneo_utils.cells --write    # regenerate them in notebooks/

The parameters cell is written from the notebook's settings dataclass (names, defaults, help), so the two
cannot drift; tests/test_cells.py fails when a notebook's cell differs from what this module writes.
Publishing the kit under another address is a change of `INSTALL_SOURCE`, then `--write`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

import nbformat

from . import paths
from .params import parameters_cell

# Where Colab installs the kit from: the one place that names the kit's public address.
INSTALL_SOURCE = "git+https://github.com/appsneo/appsneo"
INSTALL_SPEC = f"appsneo[colab] @ {INSTALL_SOURCE}"

# Each notebook and the settings class that its parameters cell is made from.
SETTINGS = {
    "01_explore": "appsneo_utils.explore:ExploreSettings",
    "02_finetune": "appsneo_utils.training:TrainSettings",
    "03_sample": "appsneo_utils.sampling:SampleSettings",
    "04_evaluate": "appsneo_utils.evaluation:EvalSettings",
    "05_probes": "appsneo_utils.probes:ProbeSettings",
}
# Lines a notebook's install cell runs on Colab after the install.
COLAB_EXTRA = {
    "03_sample": ["from google.colab import output", "",
                  "output.enable_custom_widget_manager()  # Colab renders ipywidgets 8 through its custom manager"],
}


def settings_class(notebook: str):
    module, name = SETTINGS[notebook].split(":")
    return getattr(importlib.import_module(module), name)


def install_cell(notebook: str) -> str:
    lines = ["import sys", "", 'IS_COLAB = "google.colab" in sys.modules',
             "if IS_COLAB:  # the kit is installed already everywhere else (see README)",
             f'    %pip install -q "{INSTALL_SPEC}"']
    lines += [f"    {line}" if line else "" for line in COLAB_EXTRA.get(notebook, [])]
    return "\n".join(lines)


def generated(notebook: str) -> dict[str, str]:
    """{"install": source, "parameters": source} for `notebook`."""
    return {"install": install_cell(notebook), "parameters": parameters_cell(settings_class(notebook))}


def cells_of(nb) -> dict:
    """The install cell (the first code cell) and the cell tagged "parameters" of a notebook."""
    code = [c for c in nb.cells if c.cell_type == "code"]
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    if len(tagged) != 1:
        raise ValueError(f"expected exactly one cell tagged 'parameters', found {len(tagged)}")
    return {"install": code[0], "parameters": tagged[0]}


def check(folder: Path = paths.NOTEBOOKS_DIR, *, write: bool = False) -> list[str]:
    """The cells that differ from the generated ones ("01_explore: parameters"); rewrites them with `write`."""
    differ = []
    for notebook in SETTINGS:
        path = folder / f"{notebook}.ipynb"
        nb = nbformat.read(path, as_version=4)
        cells = cells_of(nb)
        for role, source in generated(notebook).items():
            if cells[role].source != source:
                differ.append(f"{notebook}: {role}")
                cells[role].source = source
        if write and any(d.startswith(f"{notebook}:") for d in differ):
            nbformat.write(nb, path)
    return differ


def main(argv=None) -> int:
    cli = argparse.ArgumentParser(prog="python -m appsneo_utils.cells", description=__doc__.split("\n")[0])
    cli.add_argument("--write", action="store_true", help="regenerate the cells that differ")
    cli.add_argument("--folder", type=Path, default=paths.NOTEBOOKS_DIR)
    args = cli.parse_args(argv)
    differ = check(args.folder, write=args.write)
    for item in differ:
        print(("rewrote " if args.write else "differs: ") + item)
    return 0 if args.write or not differ else 1


if __name__ == "__main__":
    sys.exit(main())
