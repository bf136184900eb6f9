"""Shared fixtures: repository paths, the real shared data (skipped when absent), offline hub."""

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
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


def run_notebook(name, cwd, out, *params):
    """papermill on notebooks/<name> with the smoke profile, one intra-op thread; the executed notebook."""
    # One intra-op thread: the tiny model's matrices are small, and on a shared 2-core machine two
    # threads per process thrash (measured: 05 took 31 s with one thread, 102 s with two, under load).
    done = run_papermill(name, out, "-p", "profile", "smoke", *params, "--no-progress-bar", cwd=cwd,
                         env={"OMP_NUM_THREADS": "1"}, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return nbformat.read(out, as_version=4)


def outputs_text(nb) -> str:
    parts = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            parts.append(output.get("text", ""))
            data = output.get("data", {})
            parts.append(data.get("text/markdown", "") + data.get("text/plain", ""))
    return "\n".join(parts)


def fake_finetune_output(runs):
    """An 02_finetune output as 04 finds it by profile: a (random) tiny model with a training record that says it
    trained on the first 2 mini test problems of each difficulty, and started from the tiny model."""
    from appsneo_utils.data import load_apps
    from appsneo_utils.modeling import save_model, tiny_model

    folder = runs / "02_finetune" / "model"
    save_model(*tiny_model(seed=1), folder)
    test = load_apps("mini", split="test", verbose=False)
    seen = [["test", int(p)] for p in test.groupby("difficulty").head(2)["problem_id"]]
    (folder / "trained_problems.json").write_text(json.dumps({"train": seen, "validation": []}))
    (folder / "training_settings.json").write_text(json.dumps({"model": "tiny", "all_data": True}))
    return len(seen)
