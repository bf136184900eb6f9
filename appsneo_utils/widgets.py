"""An ipywidgets panel to sample programs and run their tests: the notebook as a small app.

Pick a problem (difficulty, id or text search) or type a free prompt, choose a prompt format,
move the sliders, press Generate, read the highlighted code, press Run tests. Errors show
inside the panel; the panel itself never dies. Generated code runs only in the sandboxed
executor (`sampling.run_sample_tests`), never in the kernel.
"""

from __future__ import annotations

import html
import json
import time
import traceback

import ipywidgets as W
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer

from .prompts import FORMATS, get_format
from .sampling import VERDICT_COLORS, generate_samples, run_sample_tests

ALL = "all"
MAX_OPTIONS = 500  # the problem dropdown lists at most this many matches
LABELS = {"description_width": "90px"}  # room for "Temperature" and "Problem (36)"


def highlight_code(code: str) -> str:
    """Python code as self-contained HTML (inline styles: no stylesheet needed in Lab or Colab)."""
    if not code.strip():
        return "<pre style='color:#888;margin:0'>(empty program)</pre>"
    return highlight(code, PythonLexer(), HtmlFormatter(noclasses=True, style="default"))


def _labelled(cls, description: str, **kwargs):
    return cls(description=description, style=LABELS, **kwargs)


def first_seen(problems, seen) -> str | None:
    """ "split:id" of the first problem (with tests) that the model trained on, or None (no record, none seen).

    The -all replica recalls what it saw: opening the panel there shows readable code and passing tests.
    """
    if problems is None or not seen:
        return None
    keys = {(s, int(p)) for s, p in seen}
    for row in problems.to_dict("records"):
        if (row["split"], int(row["problem_id"])) in keys and row["tests"]:
            return f"{row['split']}:{row['problem_id']}"
    return None


def _box(content: str, *, color: str = "#444", background: str = "#fafafa") -> str:
    return (f"<div style='border-left:4px solid {color};background:{background};padding:4px 8px;"
            f"margin:2px 0;white-space:normal'>{content}</div>")


class SamplingPanel:
    """The widget panel; display it as a cell's last expression or with `display(panel.widget)`.

    problems: an APPS DataFrame from `data.load_apps` (or None: free prompts only).
    problem: the problem the panel opens on, "split:id" (e.g. "test:3"; see `first_seen`), else the first one.
    Settings without a slider (top_k, backend, batch_size) are keyword arguments for `generate_samples`.
    """

    def __init__(self, model, tokenizer, problems=None, *, problem: str | None = None, fmt: str = "train",
                 temperature: float = 0.8, top_p: float = 0.95, max_new_tokens: int = 128, n_samples: int = 2,
                 seed: int = 0, timeout: float = 4.0, **sampling):
        self.model, self.tokenizer, self.timeout, self.sampling = model, tokenizer, timeout, sampling
        self.problems = problems.reset_index(drop=True) if problems is not None else None
        self.samples, self.prompt, self.tests, self.results = [], None, None, []

        # source: a problem of the set, or a free prompt
        has_problems = self.problems is not None and len(self.problems) > 0
        self.source = _labelled(W.ToggleButtons, "Source",
                                options=["Problem", "Free prompt"] if has_problems else ["Free prompt"])
        difficulties = sorted(set(self.problems["difficulty"])) if has_problems else []
        self.difficulty = _labelled(W.Dropdown, "Difficulty", options=[ALL] + difficulties, value=ALL)
        self.search = _labelled(W.Text, "Search", placeholder="problem id (12, test:12) or words in the question",
                                continuous_update=False)
        self.problem = _labelled(W.Dropdown, "Problem", options=[], layout=W.Layout(width="98%"))
        self.question_view = W.HTML()
        self.free_question = _labelled(W.Textarea, "Question", placeholder="Describe the problem",
                                       layout=W.Layout(width="98%", height="110px"))
        self.free_starter = _labelled(W.Textarea, "Starter", placeholder="optional starter code, e.g. def add(a, b):",
                                      layout=W.Layout(width="98%", height="50px"))
        self.free_tests = _labelled(
            W.Textarea, "Tests", layout=W.Layout(width="98%", height="50px"),
            placeholder='optional tests: {"inputs": ["1 2\\n"], "outputs": ["3\\n"]} (add "fn_name" for call-based)')
        self.fmt = _labelled(W.Dropdown, "Format", options=list(FORMATS), value=fmt)
        self.fmt_help = W.HTML()

        # settings
        self.temperature = _labelled(W.FloatSlider, "Temperature", value=temperature, min=0.0, max=2.0, step=0.05,
                                     readout_format=".2f", continuous_update=False)
        self.top_p = _labelled(W.FloatSlider, "Top-p", value=top_p, min=0.05, max=1.0, step=0.05,
                               readout_format=".2f", continuous_update=False)
        self.max_new_tokens = _labelled(W.IntSlider, "Max tokens", value=max_new_tokens, min=8, max=1024, step=8,
                                        continuous_update=False)
        self.n_samples = _labelled(W.IntSlider, "Samples", value=n_samples, min=1, max=16, continuous_update=False)
        self.seed = _labelled(W.IntText, "Seed", value=seed, layout=W.Layout(width="200px"))

        # actions and results
        self.generate_button = W.Button(description="Generate", button_style="primary", icon="play")
        self.run_button = W.Button(description="Run tests", icon="check", disabled=True)
        self.progress = W.FloatProgress(value=0.0, min=0.0, max=1.0, layout=W.Layout(width="240px"))
        self.status = W.HTML()
        self.error = W.HTML()
        self.prompt_view = W.HTML()
        self.prompt_box = W.Accordion(children=[self.prompt_view], titles=("Prompt sent to the model",),
                                      selected_index=None)
        self.samples_box = W.VBox()
        self.verdicts = W.HTML()
        self.summary = W.HTML()

        for widget, name in [
            (self.source, "source"), (self.difficulty, "difficulty"), (self.search, "search"),
            (self.problem, "problem"), (self.question_view, "question"), (self.free_question, "free-question"),
            (self.free_starter, "free-starter"), (self.free_tests, "free-tests"), (self.fmt, "format"),
            (self.temperature, "temperature"), (self.top_p, "top-p"), (self.max_new_tokens, "max-new-tokens"),
            (self.n_samples, "n-samples"), (self.seed, "seed"), (self.generate_button, "generate"),
            (self.run_button, "run-tests"), (self.progress, "progress"), (self.status, "status"),
            (self.error, "error"), (self.samples_box, "samples"), (self.verdicts, "verdicts"),
            (self.summary, "summary"),
        ]:
            widget.add_class(f"appsneo-{name}")  # stable hooks for the browser test and for CSS

        self.problem_box = W.VBox([W.HBox([self.difficulty, self.search]), self.problem, self.question_view])
        self.free_box = W.VBox([self.free_question, self.free_starter, self.free_tests])
        self.widget = W.VBox([
            W.HTML("<b>Sample programs and run their tests</b>"),
            self.source, self.problem_box, self.free_box,
            W.HBox([self.fmt, self.fmt_help]),
            W.HBox([self.temperature, self.top_p]),
            W.HBox([self.max_new_tokens, self.n_samples, self.seed]),
            W.HBox([self.generate_button, self.run_button, self.progress]),
            self.status, self.error, self.prompt_box, self.samples_box, self.verdicts, self.summary,
        ])
        self.widget.add_class("appsneo-panel")

        self.source.observe(self._safe(self._on_source), names="value")
        self.difficulty.observe(self._safe(self._refilter), names="value")
        self.search.observe(self._safe(self._refilter), names="value")
        self.problem.observe(self._safe(self._show_problem), names="value")
        self.fmt.observe(self._safe(self._show_fmt), names="value")
        self.generate_button.on_click(self._safe(lambda _: self.generate()))
        self.run_button.on_click(self._safe(lambda _: self.run_tests()))
        self._on_source()
        self._refilter()
        self._show_fmt()
        if problem:
            self.select(problem)

    @classmethod
    def from_settings(cls, model, tokenizer, problems, settings, *, problem: str | None = None):
        """The panel on notebook 03's `sampling.SampleSettings`: its format, sliders' start values and sampler."""
        return cls(model, tokenizer, problems, problem=problem, fmt=settings.prompt_format,
                   temperature=settings.temperature, top_p=settings.top_p, max_new_tokens=settings.max_new_tokens,
                   n_samples=settings.n_samples, seed=settings.seed, timeout=settings.timeout, top_k=settings.top_k,
                   batch_size=settings.batch_size, backend=settings.backend)

    # --- display ---------------------------------------------------------------------------------

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    def _safe(self, handler):
        """Wrap a callback: any exception is shown in the panel instead of escaping."""

        def wrapped(*args):
            try:
                handler(*args)
            except Exception as exc:  # noqa: BLE001 - the panel must survive anything
                self.show_error("Something went wrong", exc)
        return wrapped

    def show_error(self, title: str, exc: BaseException) -> None:
        trace = html.escape("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
        message = html.escape(f"{type(exc).__name__}: {exc}")
        self.error.value = _box(
            f"<b>{html.escape(title)}</b>: {message}<details><summary>details</summary>"
            f"<pre style='font-size:11px'>{trace}</pre></details>", color="#d62728", background="#fdecea")

    def _on_source(self, *_):
        free = self.source.value == "Free prompt"
        self.problem_box.layout.display = "none" if free else None
        self.free_box.layout.display = None if free else "none"

    def _show_fmt(self, *_):
        self.fmt_help.value = f"<i style='color:#666'>{html.escape(get_format(self.fmt.value).description)}</i>"

    # --- the problem picker -------------------------------------------------------------------

    def matching_problems(self):
        """Indices of the problems that match the difficulty and the search text."""
        if self.problems is None:
            return []
        frame = self.problems
        mask = frame["difficulty"] == self.difficulty.value if self.difficulty.value != ALL else None
        query = self.search.value.strip()
        if query:
            split, _, number = query.rpartition(":")
            if number.isdigit() and split in ("", "train", "test"):
                hit = frame["problem_id"] == int(number)
                if split:
                    hit &= frame["split"] == split
            else:
                hit = frame["question"].str.contains(query, case=False, regex=False)
            mask = hit if mask is None else mask & hit
        return list(frame.index if mask is None else frame.index[mask])

    def select(self, key: str) -> None:
        """Open the panel on problem "split:id" (or "id"); a key that matches nothing raises and says so."""
        self.difficulty.value, self.search.value = ALL, ""
        split, _, number = str(key).rpartition(":")
        frame = self.problems if self.problems is not None else None
        hit = [] if frame is None or not number.isdigit() else list(frame.index[
            (frame["problem_id"] == int(number)) & ((frame["split"] == split) if split else True)])
        if not hit:
            raise ValueError(f"no problem {key!r} in the panel's problems: use split:id, e.g. test:3")
        self.problem.value = hit[0]

    def _refilter(self, *_):
        indices = self.matching_problems()
        options = [(self._label(i), i) for i in indices[:MAX_OPTIONS]]
        previous = self.problem.value
        self.problem.options = options
        if options:
            self.problem.value = previous if previous in indices[:MAX_OPTIONS] else options[0][1]
        shown = f" (first {MAX_OPTIONS} shown)" if len(indices) > MAX_OPTIONS else ""
        self.problem.description = f"Problem ({len(indices)}){shown}" if self.problems is not None else "Problem"
        self._show_problem()

    def _label(self, index: int) -> str:
        row = self.problems.loc[index]
        first = " ".join(row["question"].split())[:70]
        return f"{row['split']}:{row['problem_id']} · {row['difficulty']} · {row['call_type']} · {first}"

    def _show_problem(self, *_):
        if self.problems is None or self.problem.value is None:
            self.question_view.value = "<i>no problem matches</i>" if self.problems is not None else ""
            return
        row = self.problems.loc[self.problem.value]
        tests = row["tests"]
        n_tests = len(tests["inputs"]) if tests else 0
        starter = (f"<div><b>Starter code</b></div>{highlight_code(row['starter_code'])}"
                   if row["starter_code"] else "")
        self.question_view.value = (
            f"<div style='max-height:180px;overflow:auto;border:1px solid #ddd;padding:4px'>"
            f"<pre style='white-space:pre-wrap;margin:0'>{html.escape(row['question'])}</pre></div>"
            f"{starter}<div style='color:#666'>{n_tests} tests · {row['call_type']}"
            f"{' · fn_name ' + html.escape(row['fn_name']) if row['fn_name'] else ''}</div>")

    # --- actions ---------------------------------------------------------------------------------

    def current_problem(self) -> tuple[str, dict | None]:
        """(prompt, tests or None) for the current choice, in the chosen format."""
        fmt = get_format(self.fmt.value)
        if self.source.value == "Free prompt":
            question = self.free_question.value
            if not question.strip():
                raise ValueError("type a question first (or switch Source to Problem)")
            tests = None
            if self.free_tests.value.strip():
                try:
                    tests = json.loads(self.free_tests.value)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"the tests are not valid JSON ({exc.msg} at character {exc.pos})") from None
                if not isinstance(tests, dict) or not isinstance(tests.get("inputs"), list) \
                        or not isinstance(tests.get("outputs"), list) or len(tests["inputs"]) != len(tests["outputs"]):
                    raise ValueError('tests must look like {"inputs": [...], "outputs": [...]} with equal lengths')
            fn_name = tests.get("fn_name") if tests else None
            return fmt(question, self.free_starter.value, fn_name), tests
        if self.problem.value is None:
            raise ValueError("no problem is selected: clear the search or pick another difficulty")
        row = self.problems.loc[self.problem.value]
        return fmt(row["question"], row["starter_code"], row["fn_name"]), row["tests"]

    def generate(self) -> None:
        """Sample with the panel's settings and show the programs (errors go to the panel)."""
        self.generate_button.disabled = self.run_button.disabled = True
        self.generate_button.description = "Generating..."
        self.error.value = self.verdicts.value = self.summary.value = ""
        self.progress.value = 0.0
        try:
            prompt, tests = self.current_problem()
            self.prompt_view.value = f"<pre style='white-space:pre-wrap'>{html.escape(prompt)}</pre>"
            settings = dict(n=self.n_samples.value, temperature=round(self.temperature.value, 4),
                            top_p=round(self.top_p.value, 4), max_new_tokens=self.max_new_tokens.value,
                            seed=self.seed.value)
            self.status.value = _box("generating ...", color="#1f77b4")
            result = generate_samples(self.model, self.tokenizer, [prompt], fmt=self.fmt.value,
                                      progress=self._progress(), **settings, **self.sampling)
            self.samples, self.prompt, self.tests, self.results = result[0], prompt, tests, []
            self.progress.value = 1.0
            self._show_samples()
            self.status.value = _box(
                f"{len(self.samples)} samples · temperature {settings['temperature']:g} · top-p "
                f"{settings['top_p']:g} · max {settings['max_new_tokens']} new tokens · seed {settings['seed']} · "
                f"{result.n_tokens} tokens in {result.seconds:.2f} s = {result.tokens_per_second:,.0f} tokens/s "
                f"({result.backend}, {result.device})"
                + ("" if tests else " · <i>no tests for this prompt: Run tests stays off</i>"), color="#2ca02c")
            self.run_button.disabled = not tests
        except Exception as exc:  # noqa: BLE001
            self.status.value = ""
            self.show_error("Generate failed", exc)
        finally:
            self.generate_button.disabled = False
            self.generate_button.description = "Generate"

    def _progress(self):
        last = [0.0]

        def update(done, total):
            now = time.monotonic()
            if now - last[0] > 0.1 or done >= total:  # at most ~10 comm messages a second
                last[0] = now
                self.progress.value = done / total if total else 1.0
        return update

    def _show_samples(self) -> None:
        cards = []
        for sample in self.samples:
            why = {"stop": f"stop string {sample.stop_string!r}", "eos": "EOS", "length": "the token limit"}
            header = (f"<b>Sample {sample.sample_index + 1}</b> · {sample.n_new_tokens} new tokens · "
                      f"ended by {html.escape(why[sample.stopped_by])}"
                      + (" · <i>prompt truncated to fit the context</i>" if sample.prompt_truncated else ""))
            code = W.HTML(f"<div style='max-height:320px;overflow:auto;border:1px solid #ddd'>"
                          f"{highlight_code(sample.code or '')}</div>")
            code.add_class("appsneo-code")
            card = W.VBox([W.HTML(header), code])
            card.add_class("appsneo-sample")
            cards.append(card)
        self.samples_box.children = cards

    def run_tests(self) -> None:
        """Run each sample's program on the problem's tests and show a verdict table."""
        self.run_button.disabled = self.generate_button.disabled = True
        self.run_button.description = "Running..."
        self.error.value = ""
        try:
            if not self.samples:
                raise ValueError("generate samples first")
            if not self.tests:
                raise ValueError("this prompt has no tests (add some in the Tests box of a free prompt)")
            self.results = []
            for number, sample in enumerate(self.samples):
                self.progress.value = number / len(self.samples)
                try:
                    self.results.append(run_sample_tests(sample, self.tests, timeout=self.timeout))
                except Exception as exc:  # noqa: BLE001 - one sample's trouble does not stop the others
                    self.results.append(exc)
            self.progress.value = 1.0
            self.verdicts.value, self.summary.value = self._verdict_table()
        except Exception as exc:  # noqa: BLE001
            self.show_error("Run tests failed", exc)
        finally:
            self.run_button.disabled = not (self.samples and self.tests)
            self.generate_button.disabled = False
            self.run_button.description = "Run tests"

    def _verdict_table(self) -> tuple[str, str]:
        n_tests = len(self.tests["inputs"])
        head = "".join(f"<th style='padding:2px 6px'>test {k + 1}</th>" for k in range(n_tests))
        rows, all_passed = [], 0
        for sample, result in zip(self.samples, self.results):
            if isinstance(result, Exception):
                cells = (f"<td colspan='{n_tests + 1}' class='executor-error' style='color:#d62728'>"
                         f"executor failed: {html.escape(f'{type(result).__name__}: {result}')}</td>")
            else:
                verdicts = list(result.verdicts)
                errors = result.errors  # one per verdict
                passed = sum(v == "passed" for v in verdicts)
                all_passed += bool(verdicts) and passed == len(verdicts)
                cells = "".join(
                    f"<td class='verdict' title='{html.escape(str(e or ''), quote=True)}' style='padding:2px 6px;"
                    f"background:{VERDICT_COLORS.get(v, '#eee')};color:white;text-align:center'>{html.escape(v)}</td>"
                    for v, e in zip(verdicts, errors))
                cells += f"<td class='passed' style='padding:2px 6px'><b>{passed}/{len(verdicts)}</b></td>"
            rows.append(f"<tr><th style='padding:2px 6px'>sample {sample.sample_index + 1}</th>{cells}</tr>")
        table = (f"<div style='overflow-x:auto'><table class='verdict-table' style='border-collapse:collapse'>"
                 f"<tr><th></th>{head}<th>passed</th></tr>{''.join(rows)}</table></div>")
        share = all_passed / len(self.samples) if self.samples else 0.0
        summary = _box(f"<b>{all_passed} of {len(self.samples)} samples pass all {n_tests} tests</b> "
                       f"({share:.0%}, an estimate of pass@1 at these settings)",
                       color="#2ca02c" if all_passed else "#ff7f0e")
        return table, summary
