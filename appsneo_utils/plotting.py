"""Plot style, the one `save_fig` helper every notebook uses, and labels fit for a shared figure."""

from __future__ import annotations

import os
from pathlib import Path

from . import paths
from .paths import figures_dir

FORMATS = ("png", "svg")  # PNG for notebooks and slides, SVG for papers and the report


def set_style() -> None:
    """A readable seaborn style shared by all figures."""
    import seaborn as sns

    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind")


def shown_path(path) -> str:
    """A path as a reader of a shared figure should see it: relative to the repository or runs/, else its name.

    A figure that travels (a mail, a paper) must not carry the layout of the machine that drew it.
    """
    text = str(path)
    # read at call time: APPSNEO_RUNS / APPSNEO_FIGURES and tests may move these folders after import
    for base, label in ((paths.RUNS_DIR, "runs"), (paths.FIGURES_DIR, "figures"), (paths.ROOT, "")):
        base = str(base).rstrip("/")
        if text == base or text.startswith(base + "/"):
            rest = text[len(base):].lstrip("/")
            return "/".join(p for p in (label, rest) if p) or "."
    if os.path.isabs(text):  # elsewhere on this machine: the name says enough, the folders say too much
        return Path(text).name
    return text


def _texts(fig):
    """Every text artist of a figure: suptitle, titles, axis labels, tick labels, legends, annotations."""
    from matplotlib.text import Text

    return fig.findobj(Text)


def save_fig(fig, notebook: str, name: str, *, dpi: int = 120) -> Path:
    """Save `fig` as figures/<notebook>/<name>.png and .svg; return the PNG's path.

    Absolute paths of this machine in any text of the figure are shortened first (`shown_path`),
    so a shared figure never shows where it was drawn.
    """
    for text in _texts(fig):
        value = text.get_text()
        if value and ("/" in value):
            text.set_text(_shorten_paths(value))
    folder = figures_dir(notebook)
    fig.tight_layout()
    for fmt in FORMATS:
        # No creation date in the SVG: the same figure gives the same file, so reruns diff cleanly.
        metadata = {"Date": None} if fmt == "svg" else None
        fig.savefig(folder / f"{name}.{fmt}", dpi=dpi, bbox_inches="tight", metadata=metadata)
    path = folder / f"{name}.png"
    print(f"saved {shown_path(path)} (and .svg)")
    return path


def _shorten_paths(text: str) -> str:
    import re

    return re.sub(r"(?<![\w.])/(?:[\w.+-]+/)*[\w.+-]+", lambda m: shown_path(m.group(0)), text)


__all__ = ["set_style", "save_fig", "shown_path", "FORMATS"]
