"""The fast-path benchmark scripts keep running on a CPU (tiny model, a few steps), and the GPU
check script refuses a machine without CUDA with what to do."""

import importlib
import os
import subprocess
import sys

import pytest
import torch

from conftest import ROOT

BENCHMARKS = ROOT / "benchmarks"


@pytest.fixture
def load(monkeypatch):
    """Import a benchmark script as a module (they import each other by plain name)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return importlib.import_module


def readme_row(output):
    lines = output.splitlines()
    return lines[lines.index("benchmarks/README.md row:") + 1].strip("| ").split(" | ")


def test_train_throughput_runs_on_cpu(load, tmp_path, capsys):
    out = tmp_path / "train.json"
    rows = load("train_throughput").main(
        ["--device", "cpu", "--batch", "2", "--seq", "64", "--steps", "1", "--out", str(out)])
    assert set(rows) == {"stock", "fast"} and all(row["rate"] > 0 for row in rows.values())
    # Same weights and batch, fast attention in float32: the same first loss.
    assert rows["fast"]["first_loss"] == pytest.approx(rows["stock"]["first_loss"], rel=1e-5)
    printed = capsys.readouterr().out
    assert "ratio fast / stock" in printed
    cells = readme_row(printed)
    assert len(cells) == 9 and cells[2] == "tiny, 2 x 64, float32" and cells[5].endswith("x")
    assert '"results"' in out.read_text()


def test_sample_throughput_runs_on_cpu_and_agrees(load, tmp_path, capsys):
    rows = load("sample_throughput").main(
        ["--device", "cpu", "--batch", "2", "--prompt", "8", "--new", "8", "--repeats", "1", "--agreement", "8",
         "--out", str(tmp_path / "sample.json")])
    assert set(rows) == {"stock", "fast"} and all(row["rate"] > 0 for row in rows.values())
    printed = capsys.readouterr().out
    assert "greedy agreement over 8 tokens (float32 weights): 2/2 rows identical" in printed
    cells = readme_row(printed)
    assert len(cells) == 9 and cells[2] == "tiny, 2 x (8 + 8), float32" and cells[-1] == "2 / 2"


def gpu_check(*args, **env):
    return subprocess.run(["bash", str(BENCHMARKS / "gpu_check.sh"), *args], capture_output=True, text=True,
                          env={**os.environ, "PYTHON": sys.executable, **env}, timeout=300)


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU the script runs for minutes")
def test_gpu_check_refuses_a_machine_without_cuda_and_bad_steps(tmp_path):
    done = gpu_check(str(tmp_path / "out"))
    assert done.returncode == 2 and "torch sees no CUDA GPU" in done.stderr
    done = gpu_check(str(tmp_path / "out"), "tarin")
    assert done.returncode == 2 and "unknown step 'tarin'" in done.stderr
    assert gpu_check().returncode == 2


def test_gpu_check_runs_its_steps_and_collects_the_rows(tmp_path):
    """The script's own plumbing, on whatever device torch has (here: a CPU and the tiny model)."""
    out = tmp_path / "out"
    done = gpu_check(str(out), "train", "sample", GPU_CHECK_ON_CPU="1")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert {p.name for p in out.iterdir()} == {"train.log", "train.json", "sample.log", "sample.json"}
    rows = done.stdout.split("== rows for benchmarks/README.md")[1].strip().splitlines()
    assert len([r for r in rows if r.startswith("| ")]) == 2 and "== done: train sample" in done.stdout


def test_tokenise_throughput_gives_the_same_ids_on_every_path(tmp_path):
    """The tokenisation benchmark on a small synthetic set: before, first and second launch agree."""
    if not (ROOT.parent / "shared" / "data").is_dir():
        pytest.skip("the GPT-2 tokenizer lives in ../shared/data, beside the project")
    if subprocess.run(["git", "cat-file", "-e", "8b260ce3^{commit}"], cwd=ROOT, capture_output=True).returncode:
        pytest.skip("the 'before' path is read from commit 8b260ce3, which this clone lacks (shallow?)")
    done = subprocess.run([sys.executable, str(BENCHMARKS / "tokenise_throughput.py"), "--examples", "300",
                           "--problems", "20", "--cache-dir", str(tmp_path / "cache")],
                          cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "ids and labels identical across phases: True" in done.stdout
    assert "read from the cache" in done.stdout and "machine: " in done.stdout
