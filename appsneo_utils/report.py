"""One self-contained HTML file that a run can be shared as: `make report` -> runs/report/index.html.

A summary page (the key tables of runs/pipeline_summary.json, every figure under figures/, the provenance
of the run: git commit, date, package versions, settings), then every executed notebook of
runs/notebooks/ rendered by nbconvert. Everything is inside the file: figures as data URIs, each
notebook in an iframe's `srcdoc`, no script fetched from a CDN. It opens from a mail attachment.

    python -m appsneo_utils.report          # what `make report` runs (and the end of `make pipeline`)
"""

from __future__ import annotations

import base64
import html
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import ClassVar

import pandas as pd

from .params import Settings, setting
from .paths import FIGURES_DIR, ROOT, RUNS_DIR
from .plotting import shown_path

PACKAGES = ("torch", "transformers", "tokenizers", "accelerate", "numpy", "pandas", "matplotlib", "seaborn",
            "rapidfuzz", "papermill", "nbconvert", "ipywidgets", "jupyterlab")
MIME = {".svg": "image/svg+xml", ".png": "image/png"}
STYLE = """
body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
figure{display:inline-block;margin:0 1em 1.5em 0;vertical-align:top;max-width:100%}
figure img{max-width:100%;border:1px solid #eee}figcaption{font-size:.85em;color:#555}
iframe{width:100%;border:1px solid #ccc;min-height:400px}.note{color:#666;font-size:.9em}
code{background:#f4f4f4;padding:0 3px}
"""


# --- pieces -------------------------------------------------------------------------------------


def data_uri(path: Path) -> str:
    """The file as a data: URI (SVG or PNG)."""
    mime = MIME.get(path.suffix.lower())
    if mime is None:
        raise ValueError(f"cannot embed {path.name}: only {', '.join(MIME)} figures go into the report")
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def figure_files(figures: Path = FIGURES_DIR) -> list[Path]:
    """One file per figure under figures/<notebook>/: the SVG where there is one, else the PNG."""
    chosen = {}
    for path in sorted(figures.glob("*/*")):
        if path.suffix.lower() in MIME:
            key = (path.parent.name, path.stem)
            if key not in chosen or path.suffix.lower() == ".svg":
                chosen[key] = path
    return [chosen[k] for k in sorted(chosen)]


def provenance(settings: dict | None = None) -> dict:
    """Git commit (and whether the tree had changes), date, Python and package versions, settings."""
    def git(*args):
        try:
            done = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=20)
            return done.stdout.strip() if done.returncode == 0 else None
        except (OSError, subprocess.TimeoutExpired):
            return None

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    changes = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "HEAD") or "unknown (not a git checkout)",
            "uncommitted_changes": bool(changes) if changes is not None else None,
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "python": sys.version.split()[0], "packages": versions, "settings": settings or {}}


def _table(frame: pd.DataFrame | None, empty: str) -> str:
    if frame is None or frame.empty:
        return f"<p class='note'>{html.escape(empty)}</p>"
    return frame.to_html(index=False, border=0, float_format=lambda v: f"{v:.3g}", na_rep="")


def key_tables(summary: dict | None) -> str:
    """The contamination gap, the probe deltas (NLL and pass rate) and the recall table as HTML."""
    if not summary:
        return "<p class='note'>No runs/pipeline_summary.json: run <code>make pipeline</code> first.</p>"
    gap = summary.get("contamination") or {}
    gap_rows = pd.DataFrame([{"part": k, **v} for k, v in gap.items() if isinstance(v, dict)])  # v has "problems"
    probes = pd.DataFrame(summary.get("probes") or [])
    if len(probes):
        probes = probes[probes["metric"].isin(["nll", "pass_rate"])]
        probes = probes.assign(excludes_0=(probes["low"] > 0) | (probes["high"] < 0))
    recall = summary.get("recall") or {}
    recall_rows = pd.DataFrame([{"problems": k, **v} for k, v in recall.items() if isinstance(v, dict)])
    return (
        "<h3>Contamination gap (notebook 04): pass@1 on problems the model trained on and on the others</h3>"
        + _table(gap_rows, "notebook 04 wrote no contamination_gap.json")
        + "<h3>Format bias (notebook 05): each format minus the training format, paired 95% intervals</h3>"
        + _table(probes, "notebook 05 wrote no deltas")
        + f"<h3>Recall (notebook 05): similarity of samples to the closest trained human solution "
          f"(near-verbatim: at least {recall.get('threshold', '?')})</h3>"
        + _table(recall_rows, "notebook 05 wrote no recall summary"))


def figures_html(figures: Path = FIGURES_DIR) -> str:
    parts, folder = [], None
    for path in figure_files(figures):
        if path.parent.name != folder:
            folder = path.parent.name
            parts.append(f"<h3>{html.escape(folder)}</h3>")
        caption = html.escape(f"{folder}/{path.stem} (figures/{folder}/{path.stem}.png and .svg)")
        parts.append(f"<figure><img alt='{html.escape(path.stem)}' src='{data_uri(path)}'>"
                     f"<figcaption>{caption}</figcaption></figure>")
    return "".join(parts) or "<p class='note'>No figures under figures/: run the notebooks first.</p>"


EXTERNAL_SCRIPT = re.compile(r"<script[^>]*\bsrc=[\"'][^\"']*[\"'][^>]*>\s*</script>", re.I)


def notebook_html(path: Path) -> str:
    """An executed notebook as a standalone HTML document (nbconvert's lab template, images embedded).

    Scripts it would fetch from a CDN (require.js, MathJax) are dropped: the report needs no network.
    """
    import nbformat
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="lab", embed_images=True)
    body, _ = exporter.from_notebook_node(nbformat.read(path, as_version=4))
    return EXTERNAL_SCRIPT.sub("", body)


def scrub_paths(text: str, anchors: dict) -> str:
    """`text` with this machine's folders (runs/, figures/, the checkout) written as the kit names them."""
    for folder, name in sorted(anchors.items(), key=lambda item: -len(str(item[0]))):  # longest first
        text = text.replace(str(folder).rstrip("/") + "/", f"{name}/" if name else "").replace(str(folder), name or ".")
    return text


def notebooks_html(folder: Path, anchors: dict) -> str:
    """Each executed notebook in an iframe; the folders of this machine in its outputs shortened (`scrub_paths`)."""
    parts = []
    for path in sorted(folder.glob("[0-9][0-9]_*.ipynb")):
        doc = html.escape(scrub_paths(notebook_html(path), anchors), quote=True)
        parts.append(f"<h3 id='nb-{path.stem}'>{html.escape(path.stem)}</h3>"
                     f"<iframe title='{path.stem}' srcdoc=\"{doc}\" loading='lazy' "
                     "onload=\"this.style.height=(this.contentDocument.body.scrollHeight+40)+'px'\"></iframe>")
    return "".join(parts) or "<p class='note'>No executed notebooks under runs/notebooks/.</p>"


# --- the file -----------------------------------------------------------------------------------


def build(out: Path | None = None, *, runs: Path = RUNS_DIR, figures: Path = FIGURES_DIR,
          notebooks: Path | None = None) -> Path:
    """Write the report (default runs/report/index.html) and return its path.

    notebooks: the folder of executed notebooks (default runs/notebooks).
    """
    out = Path(out) if out else runs / "report" / "index.html"
    summary_path = runs / "pipeline_summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else None
    prov = provenance((summary or {}).get("settings"))
    dirty = " (with uncommitted changes)" if prov["uncommitted_changes"] else ""
    versions = pd.DataFrame([{"package": k, "version": v} for k, v in {"python": prov["python"],
                                                                       **prov["packages"]}.items()])
    settings = json.dumps(prov["settings"], indent=1, default=str)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>appsneo report {prov['date']}</title>
<style>{STYLE}</style></head><body>
<h1>appsneo: report of a pipeline run</h1>
<p>{prov['date']} · commit <code>{html.escape(prov['commit'][:12])}</code>{dirty} ·
<a href="#summary">summary</a> · <a href="#figures">figures</a> · <a href="#provenance">provenance</a> ·
<a href="#notebooks">notebooks</a></p>
<h2 id="summary">Summary</h2>{key_tables(summary)}
<h2 id="figures">Figures</h2>{figures_html(figures)}
<h2 id="provenance">Provenance</h2>
<p>commit <code>{html.escape(prov['commit'])}</code>{dirty}; written {prov['date']}.</p>
{_table(versions, '')}<h3>Settings</h3><pre>{html.escape(settings)}</pre>
<h2 id="notebooks">The executed notebooks</h2>{notebooks_html(Path(notebooks) if notebooks else runs / 'notebooks', {runs: 'runs', figures: 'figures', ROOT: ''})}
</body></html>
"""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out)
    return out


@dataclass
class ReportSettings(Settings):
    """Where the one-file report goes."""

    PROFILED: ClassVar[bool] = False
    out: str | None = setting(None, "the HTML file to write; None: runs/report/index.html", "str", optional=True)


def main(argv=None) -> int:
    settings, _ = ReportSettings.parse_args(argv, prog="python -m appsneo_utils.report",
                                            description=__doc__.split("\n")[0])
    path = build(settings.out)
    print(f"report: {shown_path(path)} ({path.stat().st_size / 1e6:.1f} MB, one self-contained file)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
