"""The main job: run every notebook in order with papermill, on one profile.

    python -m appsneo_utils.pipeline --profile smoke      # what `make pipeline` runs

Executed copies go to runs/notebooks/; the run stops at the first failing notebook and shows the
failing cell's error.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .params import PROFILES, coerce_choice
from .paths import FIGURES_DIR, NOTEBOOKS_DIR, ROOT, runs_dir


def notebooks(only=None) -> list[Path]:
    """notebooks/NN_*.ipynb in order, optionally only those whose number or name is in `only`."""
    found = sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))
    if only:
        wanted = {str(w) for w in only}
        found = [p for p in found if p.stem[:2] in wanted or p.stem in wanted]
        if not found:
            raise ValueError(f"no notebook matches {sorted(wanted)}; have {[p.stem for p in notebooks()]}")
    return found


def run_pipeline(profile: str = "smoke", only=None, parameters: dict | None = None, out_dir=None) -> list[Path]:
    """Execute the notebooks in order; returns the executed copies. Raises at the first failure."""
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    profile = coerce_choice("profile", profile, PROFILES)
    out_dir = Path(out_dir) if out_dir else runs_dir("notebooks")
    out_dir.mkdir(parents=True, exist_ok=True)
    chosen = notebooks(only)
    executed = []
    for number, notebook in enumerate(chosen, 1):
        output = out_dir / notebook.name
        print(f"[{number}/{len(chosen)}] {notebook.stem} (profile {profile}) -> {output}", flush=True)
        start = time.time()
        try:
            pm.execute_notebook(
                str(notebook),
                str(output),
                parameters={"profile": profile, **(parameters or {})},
                cwd=str(NOTEBOOKS_DIR),
                progress_bar=True,
                kernel_name="python3",
            )
        except PapermillExecutionError as exc:
            raise RuntimeError(
                f"{notebook.name} failed in cell {exc.exec_count}: {exc.ename}: {exc.evalue}\n"
                f"The executed copy with the traceback is {output}"
            ) from None
        print(f"    done in {time.time() - start:.0f} s", flush=True)
        executed.append(output)
    figures = sorted(FIGURES_DIR.glob("*/*.png"))
    print(f"figures: {len(figures)} under {_shown(FIGURES_DIR)}/")
    for folder in sorted({p.parent for p in figures}):
        print(f"  {_shown(folder)}/: {', '.join(p.name for p in figures if p.parent == folder)}")
    return executed


def _shown(path: Path) -> Path:
    """`path` relative to the repository when inside it (APPSNEO_FIGURES may point elsewhere)."""
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="smoke", help="auto | full | smoke (default: smoke, the embedded default)")
    parser.add_argument("--only", nargs="*", help="notebook numbers or names to run, e.g. --only 01 02")
    args = parser.parse_args(argv)
    try:
        run_pipeline(args.profile, args.only)
    except (RuntimeError, ValueError) as exc:
        print(f"pipeline stopped: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
