"""Plot style and the one `save_fig` helper every notebook uses."""

from __future__ import annotations

from pathlib import Path

from .paths import figures_dir


def set_style() -> None:
    """A readable seaborn style shared by all figures."""
    import seaborn as sns

    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind")


def save_fig(fig, notebook: str, name: str, *, dpi: int = 120) -> Path:
    """Save `fig` as figures/<notebook>/<name>.png and return the path."""
    path = figures_dir(notebook) / f"{name}.png"
    fig.tight_layout()
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    print(f"saved {path}")
    return path
