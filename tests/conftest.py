"""Shared fixtures: repository paths, the real shared data (skipped when absent), offline hub."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

# Tests never reach the hub: a hub source must fail fast and say how to work offline.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
APPS_SAMPLE = SHARED / "apps_sample"
NOTEBOOKS = ROOT / "notebooks"


def running_as(uids) -> list[str]:
    """Pids of the live processes owned by any of `uids` (what a sandbox left running)."""
    found = []
    for pid in os.listdir("/proc") if os.path.isdir("/proc") else []:
        try:
            if pid.isdigit() and os.stat(f"/proc/{pid}").st_uid in uids:
                found.append(pid)
        except OSError:
            pass
    return found


def run_papermill(name: str, out, *params, cwd=NOTEBOOKS, env: dict | None = None, timeout: float = 600):
    """papermill's CLI on notebooks/<name>, run from `cwd` (notebooks/ or the repository root) as users do."""
    notebook = name if Path(cwd) == NOTEBOOKS else f"notebooks/{name}"
    return subprocess.run([sys.executable, "-m", "papermill", notebook, str(out), *params], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})


@pytest.fixture
def shared_sample() -> Path:
    """../shared/data/apps_sample, or a clean skip on a clone without it."""
    if not (APPS_SAMPLE / "apps_train_sample.jsonl").is_file():
        pytest.skip(f"real APPS sample not found at {APPS_SAMPLE} (it lives beside the project, not in it)")
    return APPS_SAMPLE


@pytest.fixture
def isolated_outputs(tmp_path, monkeypatch):
    """Point runs/ and figures/ at a temporary folder (kernels started later inherit it)."""
    runs, figures = tmp_path / "runs", tmp_path / "figures"
    monkeypatch.setenv("APPSNEO_RUNS", str(runs))
    monkeypatch.setenv("APPSNEO_FIGURES", str(figures))
    return runs, figures
