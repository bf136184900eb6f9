"""One setup call per notebook: seeds, plot style, environment report."""

from __future__ import annotations

import os
import platform
import random
import sys
from importlib import metadata

REPORTED = ("torch", "transformers", "datasets", "accelerate", "tokenizers", "papermill", "ipywidgets")


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    try:
        import numpy as np

        np.random.seed(seed)
    except ImportError:
        pass
    try:
        import torch

        torch.manual_seed(seed)
    except ImportError:
        pass


def environment_report() -> dict:
    """Versions and hardware, as a dict (printed by `setup`)."""
    report = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in REPORTED:
        try:
            report[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            report[name] = "not installed"
    try:
        import torch

        report["device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu ({os.cpu_count()} cores)"
    except ImportError:
        report["device"] = "unknown (no torch)"
    report["colab"] = "google.colab" in sys.modules
    return report


def setup(seed: int = 0, *, quiet: bool = False) -> dict:
    """Seed everything, set the plot style, print and return the environment report."""
    set_seed(seed)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        from .plotting import set_style

        set_style()
    except ImportError:
        pass
    report = environment_report()
    if not quiet:
        print("environment: " + ", ".join(f"{k} {v}" for k, v in report.items()))
    return report
