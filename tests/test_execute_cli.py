"""The batch command: per-line input errors, a progress bar in tests/s, and resumability."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from appsneo_utils.data import load_apps

ROOT = Path(__file__).resolve().parents[1]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}


def _cli(tmp_path: Path, samples: Path, out: Path, *extra: str, **kwargs):
    cmd = [sys.executable, "-m", "appsneo_utils.execute", "--problems", "mini", "--split", "test",
           "--samples", str(samples), "--out", str(out), "--workers", "2", *extra]
    return subprocess.Popen(cmd, cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **kwargs)


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in out.read_text().splitlines()]


@pytest.fixture(scope="module")
def mini():
    return load_apps("mini", split="test", verbose=False)


def test_bad_lines_are_reported_and_the_rest_runs(tmp_path, mini):
    first = mini.iloc[0]
    good = json.dumps({"problem_id": int(first.problem_id), "code": first.solutions_list[0]})
    lines = [
        good,                                                            # 1: judged, sample 0
        "{not json",                                                     # 2
        json.dumps({"code": "print(1)"}),                                # 3: no problem_id
        json.dumps({"problem_id": 987654, "code": "print(1)"}),          # 4: unknown problem
        json.dumps({"problem_id": int(first.problem_id)}),               # 5: no code
        json.dumps([1, 2]),                                              # 6: not an object
        json.dumps({"problem_id": int(first.problem_id), "code": "print(", "sample_id": "x"}),  # 7
        json.dumps({"problem_id": int(first.problem_id), "code": "print(2)", "sample_id": "x"}),  # 8: duplicate
        "",
        json.dumps({"problem_id": str(first.problem_id), "code": "print(3)"}),  # 10: id as a string
    ]
    samples, out = tmp_path / "s.jsonl", tmp_path / "r.jsonl"
    samples.write_text("\n".join(lines) + "\n")
    proc = _cli(tmp_path, samples, out)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 1, stderr  # bad input: the rest ran, the status says so
    rows = _rows(out)
    # sample_id defaults to the row's rank among its problem's rows (line 10 is the 5th such row)
    assert len(rows) == 3 and {(r["problem_id"], r["sample_id"]) for r in rows} == {
        (int(first.problem_id), 0), (int(first.problem_id), "x"), (int(first.problem_id), 4)}
    by_sid = {r["sample_id"]: r for r in rows}
    assert by_sid[0]["passed"] and by_sid[0]["verdicts"] == ["passed"] * by_sid[0]["n_tests"]
    assert set(by_sid["x"]["verdicts"]) == {"compile_error"} and set(by_sid["x"]["apps_codes"]) == {-2}
    for field in ("problem_id", "sample_id", "verdicts", "apps_codes", "errors", "seconds", "test_seconds",
                  "n_tests", "passed", "difficulty"):
        assert field in by_sid[0]
    errors = [json.loads(line) for line in (tmp_path / "r.jsonl.errors.jsonl").read_text().splitlines()]
    assert [e["line"] for e in errors] == [2, 3, 4, 5, 6, 8]
    messages = " | ".join(e["error"] for e in errors)
    for needle in ("invalid JSON", "missing field 'problem_id'", "unknown problem_id 987654",
                   "missing field 'code'", "expected a JSON object", "duplicate sample"):
        assert needle in messages
    assert "s.jsonl:4: unknown problem_id 987654" in stderr
    assert "test/s" in stderr  # the progress bar counts tests per second


def test_killed_at_any_moment_then_resumed_judges_each_sample_once(tmp_path, mini):
    samples, out = tmp_path / "s.jsonl", tmp_path / "r.jsonl"
    expected = Counter()
    with open(samples, "w") as f:
        for row in mini.itertuples():
            for code in row.solutions_list[:2] + ["import time\ntime.sleep(0.05)\nprint(0)\n"]:
                f.write(json.dumps({"problem_id": int(row.problem_id), "code": code}) + "\n")
            expected[int(row.problem_id)] += 3
    n_samples = sum(expected.values())
    # kill at a few moments (also before anything is written), then leave a half-written line
    def lines() -> int:
        return len(out.read_text().splitlines()) if out.exists() else 0

    progress = []
    for wait_for in (None, 1, 8):  # kill before any result, right after the first, then later on
        proc = _cli(tmp_path, samples, out, "--no-progress")
        if wait_for is None:
            time.sleep(0.2)
        else:
            target, deadline = lines() + wait_for, time.monotonic() + 60
            while lines() < target and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        progress.append(lines())
    assert any(0 < n < n_samples for n in progress), f"no kill landed mid-run: {progress}"
    with open(out, "a") as f:
        f.write('{"problem_id": 0, "sample_id": 0, "verd')  # a kill in the middle of a write
    proc = _cli(tmp_path, samples, out, "--no-progress")
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    rows = _rows(out)
    keys = Counter((r["problem_id"], r["sample_id"]) for r in rows)
    assert len(keys) == n_samples and set(keys.values()) == {1}, "a sample judged twice or never"
    assert Counter(pid for pid, _ in keys) == expected
    # a further run finds nothing to do
    proc = _cli(tmp_path, samples, out, "--no-progress")
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0 and len(_rows(out)) == n_samples
    assert f"{n_samples} were already there" in stderr


def test_bad_arguments_say_what_to_do(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "appsneo_utils.execute", "--problems", "mini",
                           "--samples", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "r.jsonl")],
                          cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "does not exist" in proc.stderr
    (tmp_path / "s.jsonl").write_text("")
    proc = subprocess.run([sys.executable, "-m", "appsneo_utils.execute", "--problems", str(tmp_path / "nope"),
                           "--samples", str(tmp_path / "s.jsonl"), "--out", str(tmp_path / "r.jsonl")],
                          cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "cannot load problems" in proc.stderr
    for flag, value, said in (("--timeout", "-1", "timeout must be at least 0.01"),
                              ("--memory-mb", "lots", "memory_mb must be a whole number, got 'lots'"),
                              ("--judge", "lenient", "judge must be one of strict, apps; got 'lenient'")):
        proc = subprocess.run([sys.executable, "-m", "appsneo_utils.execute", "--problems", "mini", "--samples",
                               str(tmp_path / "s.jsonl"), "--out", str(tmp_path / "r.jsonl"), flag, value],
                              cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2 and said in proc.stderr, proc.stderr


def test_judge_option_is_recorded_and_one_results_file_holds_one_judge(tmp_path, mini):
    first = mini.iloc[0]
    samples, out = tmp_path / "s.jsonl", tmp_path / "r.jsonl"
    samples.write_text(json.dumps({"problem_id": int(first.problem_id), "code": first.solutions_list[0]}) + "\n")
    proc = _cli(tmp_path, samples, out, "--no-progress")
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert [r["judge"] for r in _rows(out)] == ["apps"]  # the default: comparable with published numbers
    proc = _cli(tmp_path, samples, out, "--no-progress", "--judge", "strict")
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 2 and "holds results of the 'apps' judge" in stderr


def test_judge_files_never_follow_a_planted_symlink(tmp_path, mini):
    """A symlink where the side file or the results file will be (planted by a program in a shared
    /tmp, say) must not make a root caller truncate or append to its target."""
    from appsneo_utils.execute import judge_file

    first = mini.iloc[0]
    samples = tmp_path / "s.jsonl"
    samples.write_text(json.dumps({"problem_id": int(first.problem_id), "code": "print(1)"}) + "\n")
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    out = tmp_path / "r.jsonl"
    (tmp_path / "r.jsonl.errors.jsonl").symlink_to(victim)
    summary = judge_file("mini", samples, out, progress=False, workers=1)
    assert summary.judged == 1 and victim.read_text() == "precious\n"
    assert not (tmp_path / "r.jsonl.errors.jsonl").is_symlink()  # replaced, not followed
    linked = tmp_path / "linked.jsonl"
    linked.symlink_to(victim)
    with pytest.raises(OSError):
        judge_file("mini", samples, linked, progress=False, workers=1)
    assert victim.read_text() == "precious\n"


HOSTILE = [  # one of each attack class that changes the judge's life: a resumed run must still end
    "def f(x):\n\treturn 10 ** 5000\nprint(10 ** 5000 + 1)\n",
    "print('7' * 300000 + 'x')\n",
    "import sys\nsys.stdout.write('\\x00\\x1c' * (2 << 20))\n",
    "import os\nfor _ in range(1500):\n\tos.mkdir('d')\n\tos.chdir('d')\nprint(1)\n",
    "import os, time\ntry:\n\tos.symlink('/etc/hostname', '/tmp/r.jsonl.errors.jsonl')\nexcept OSError:\n\tpass\n"
    "time.sleep(30)\n",
    "import os\nfds = [os.memfd_create('m') for _ in range(8)]\nfor fd in fds:\n\tos.write(fd, b'x' * (30 << 20))\n",
]


def test_a_resumed_run_after_hostile_programs_gives_every_sample_one_row(tmp_path, mini):
    samples, out = tmp_path / "s.jsonl", tmp_path / "r.jsonl"
    rows = mini.head(3)
    expected = 0
    with open(samples, "w") as f:
        for row in rows.itertuples():
            for code in HOSTILE + row.solutions_list[:1]:
                f.write(json.dumps({"problem_id": int(row.problem_id), "code": code}) + "\n")
                expected += 1
    proc = _cli(tmp_path, samples, out, "--no-progress", "--timeout", "1")
    deadline = time.monotonic() + 60
    while (not out.exists() or len(out.read_text().splitlines()) < 4) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    proc = _cli(tmp_path, samples, out, "--no-progress", "--timeout", "1")
    _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr
    keys = Counter((r["problem_id"], r["sample_id"]) for r in _rows(out))
    assert len(keys) == expected and set(keys.values()) == {1}, "a sample judged twice or never"
