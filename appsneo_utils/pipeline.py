"""The main job: run every notebook in order with papermill, on one profile, then summarise and report.

    python -m appsneo_utils.pipeline --profile smoke      # what `make pipeline` runs

On the embedded default (smoke), notebook 02 trains the "-all" replica (`REPLICA`): the tiny GPT-Neo
trained the way the published -all model was, on train and test pooled with the original script's
unshuffled 90% cut, long enough to memorise; notebooks 03-05 then use that model. Executed copies go
to runs/notebooks/; the run stops at the first failing notebook and shows the failing cell's error.
At the end it writes runs/pipeline_summary.json (contamination gap, format-bias deltas, recall) and
the one-file report runs/report/index.html.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .params import PROFILES, Settings, coerce_choice, resolve_profile, setting
from .paths import FIGURES_DIR, NOTEBOOKS_DIR, RUNS_DIR, runs_dir, write_json
from .plotting import shown_path

# The -all replica on the embedded default, for notebook 02 only (the other notebooks keep the profile's
# settings): recipes.py's "replica" is train+test pooled with the original run_clm_apps.py's unshuffled
# 90% cut, and on the embedded default long enough to memorise (60 epochs at lr 3e-3).
REPLICA = {"recipe": "replica"}
SUMMARY = "pipeline_summary.json"


def notebooks(only=None) -> list[Path]:
    """notebooks/NN_*.ipynb in order, optionally only those whose number or name is in `only`."""
    found = sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))
    if only:
        wanted = {str(w) for w in only}
        found = [p for p in found if p.stem[:2] in wanted or p.stem in wanted]
        if not found:
            raise ValueError(f"no notebook matches {sorted(wanted)}; have {[p.stem for p in notebooks()]}")
    return found


def notebook_parameters(notebook: Path, profile: str, parameters: dict | None = None) -> dict:
    """Papermill parameters of one notebook: the profile, the -all replica for 02 on the embedded default, extras."""
    chosen = {"profile": profile}
    if notebook.stem.startswith("02_") and not resolve_profile(profile, verbose=False).full:
        chosen.update(REPLICA)
    return {**chosen, **(parameters or {})}


def run_pipeline(profile: str = "smoke", only=None, parameters: dict | None = None, out_dir=None, *,
                 report: bool = True) -> list[Path]:
    """Execute the notebooks in order, then write the summary and the report; returns the executed copies.

    Raises at the first failing notebook.
    """
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    profile = coerce_choice("profile", profile, PROFILES)
    out_dir = Path(out_dir) if out_dir else runs_dir("notebooks")
    out_dir.mkdir(parents=True, exist_ok=True)
    chosen = notebooks(only)
    executed, timings = [], {}
    for number, notebook in enumerate(chosen, 1):
        output = out_dir / notebook.name
        values = notebook_parameters(notebook, profile, parameters)
        print(f"[{number}/{len(chosen)}] {notebook.stem} ({_describe(values)}) -> {shown_path(output)}", flush=True)
        start = time.time()
        try:
            pm.execute_notebook(str(notebook), str(output), parameters=values, cwd=str(NOTEBOOKS_DIR),
                                progress_bar=True, kernel_name="python3")
        except PapermillExecutionError as exc:
            raise RuntimeError(
                f"{notebook.name} failed in cell {exc.exec_count}: {exc.ename}: {exc.evalue}\n"
                f"The executed copy with the traceback is {shown_path(output)}"
            ) from None
        timings[notebook.stem] = {"seconds": round(time.time() - start, 1), "parameters": values}
        print(f"    done in {timings[notebook.stem]['seconds']:.0f} s", flush=True)
        executed.append(output)
    _list_figures()
    summary = write_summary(timings)
    print(f"summary: {shown_path(summary)}")
    if report:
        from . import report as report_module

        page = report_module.build(runs=RUNS_DIR, figures=FIGURES_DIR, notebooks=out_dir)
        print(f"report: {shown_path(page)} (one self-contained file)")
    return executed


def _describe(values: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in values.items())


def _list_figures() -> None:
    figures = sorted(FIGURES_DIR.glob("*/*.png"))
    print(f"figures: {len(figures)} under {shown_path(FIGURES_DIR)}/ (each also as .svg)")
    for folder in sorted({p.parent for p in figures}):
        print(f"  {shown_path(folder)}/: {', '.join(p.name for p in figures if p.parent == folder)}")


# --- the machine-readable summary ---------------------------------------------------------------


def _read_json(path: Path):
    return json.loads(path.read_text()) if path.is_file() else None


def probe_rows(deltas_csv: Path) -> list[dict]:
    """notebook 05's paired deltas as [{"format", "metric", "delta", "low", "high", "problems"}]."""
    if not deltas_csv.is_file():
        return []
    import pandas as pd

    frame = pd.read_csv(deltas_csv)
    return [{"format": r.fmt, "metric": r.metric, "delta": float(r.delta), "low": float(r.ci_low),
             "high": float(r.ci_high), "problems": int(r.n_problems)} for r in frame.itertuples()]


def collect_summary(runs: Path = RUNS_DIR, timings: dict | None = None) -> dict:
    """What the run showed: 04's contamination gap, 05's format deltas and recall, and how it was run."""
    gap = _read_json(runs / "04_evaluate" / "contamination_gap.json")
    recall = _read_json(runs / "05_probes" / "recall.json")
    return {
        "contamination": ({k: gap[k] for k in ("seen", "unseen") if k in gap} if gap else None),
        "probes": probe_rows(runs / "05_probes" / "deltas.csv"),
        "recall": recall,
        "notebooks": {name: t["seconds"] for name, t in (timings or {}).items()},
        "settings": {name: t["parameters"] for name, t in (timings or {}).items()},
    }


def write_summary(timings: dict | None = None, runs: Path | None = None) -> Path:
    """Write runs/pipeline_summary.json (see `collect_summary`)."""
    runs = Path(runs) if runs else RUNS_DIR
    return write_json(runs / SUMMARY, collect_summary(runs, timings))


@dataclass
class PipelineSettings(Settings):
    """The main job's knobs: which profile every notebook runs on, and whether to write the report."""

    profile: str = setting("smoke", "auto | full | smoke (smoke: the embedded default, tiny model and mini set; "
                           "full: the real model and APPS, on a GPU with the hub)", "choice", choices=PROFILES)
    report: bool = setting(True, "write runs/report/index.html at the end", "bool")


def _only(parser) -> None:
    parser.add_argument("--only", nargs="*", help="notebook numbers or names to run, e.g. --only 01 02")


def main(argv=None) -> int:
    settings, extra = PipelineSettings.parse_args(argv, prog="python -m appsneo_utils.pipeline",
                                                  description=__doc__.split("\n")[0], extra=_only)
    try:
        run_pipeline(settings.profile, extra["only"], report=settings.report)
    except (RuntimeError, ValueError) as exc:
        print(f"pipeline stopped: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
