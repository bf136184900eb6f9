"""What a model saw of the problems it is evaluated on, and the statement printed above its scores.

The rule: a model is "clean" on a set of problems only when a record proves it: a `trained_problems.json`
with no overlap, or a known checkpoint (KNOWN_CHECKPOINTS) whose training data is known not to include
the split. A model whose training data is known to include the problems is "contaminated" (with the
seen problems when they can be rebuilt, so that the rest is scored as a clean subset). Anything else is
"unknown", said so, and never scored as clean.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .train_data import ORIGINAL_TRAIN_SHARE, dataset_order, original_cut

STATUSES = ("clean", "contaminated", "unknown")
APPS_SPLIT_PROBLEMS = 5000  # each APPS split; the '-all' cut can only be rebuilt from both whole splits


def key_set(frame: pd.DataFrame) -> set[tuple]:
    """The frame's problems as a set of (split, problem_id)."""
    return {(s, int(p)) for s, p in zip(frame["split"], frame["problem_id"])}


@dataclass
class Contamination:
    """What the model saw of the evaluated problems, and the statement to print above the results."""

    status: str  # one of STATUSES
    statement: str
    seen: frozenset | None = None  # (split, problem_id) keys trained on; None where that cannot be told

    def clean_keys(self, frame: pd.DataFrame) -> set | None:
        """Keys of the evaluated problems the model did not train on (None when that cannot be told)."""
        keys = key_set(frame)
        if self.status == "clean":
            return keys
        if self.seen is None:
            return None
        return keys - set(self.seen)

    @property
    def contaminated(self) -> bool:
        """True unless the model is known clean: an unknown model is never taken for a clean one."""
        return self.status != "clean"


# --- the checkpoints whose training data is known --------------------------------------------------

GPTCC_README = "CodedotAl/gpt-code-clippy README.md, 'Models' list (camera-ready branch)"
ALL_SCRIPT = ("CodedotAl/gpt-code-clippy main:run_clm_apps.py (--all_data true: concatenate_datasets([train, test]) "
              "of apps.py's 'formatted' config, one example per solution, split_id = int(0.9 * len), unshuffled)")
PILE = ("pre-trained on the Pile (825 GiB, released December 2020, before APPS in May 2021), with no APPS "
        "fine-tune; the Pile's GitHub and StackExchange parts may hold solutions to the same contest problems, "
        "which no record rules out")


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint whose training data is known: every name it goes by, which APPS splits it was fine-tuned
    on (empty: none; None: not known), whether the -all script's cut rebuilds its seen problems, and sources."""

    names: tuple
    splits: frozenset | None
    what: str
    source: str
    cut: bool = False


KNOWN_CHECKPOINTS = (
    Checkpoint(("flax-community/gpt-neo-1.3B-apps-all", "flax-community/gpt-code-clippy-1.3B-apps-alldata"),
               frozenset({"train", "test"}),
               "GPT-Neo 1.3B fine-tuned on the APPS train split and most of the test split (the first 90% of "
               "the pooled examples)",
               "model card: fine-tuned on most of APPS, train and test splits; its usage example loads the -alldata "
               "name; hub training_state.json (commit 2a0dbfb): step 8716; " + ALL_SCRIPT + "; " + GPTCC_README
               + " lists -alldata",
               cut=True),
    Checkpoint(("flax-community/gpt-neo-1.3B-apps-all-2",), frozenset({"train", "test"}),
               "a second GPT-Neo 1.3B run of the same -all recipe (train and most of test)",
               "model card of flax-community/gpt-neo-1.3B-apps-all-2 (same text and script as the -all card); "
               + ALL_SCRIPT, cut=True),
    Checkpoint(("flax-community/gpt-code-clippy-1.3B-apps-alldata-2",), frozenset({"train", "test"}),
               "a 1.3B APPS 'alldata' model (train and test); which test problems it saw is not documented",
               GPTCC_README + " lists it beside -alldata"),
    Checkpoint(("flax-community/gpt-neo-125M-apps-all", "flax-community/gpt-code-clippy-125M-apps-alldata"),
               frozenset({"train", "test"}), "GPT-Neo 125M fine-tuned by the same -all recipe (train and most of test)",
               "model card of flax-community/gpt-neo-125M-apps-all (its usage example loads the -alldata name); "
               + ALL_SCRIPT + "; " + GPTCC_README + " lists -alldata", cut=True),
    Checkpoint(("flax-community/gpt-neo-1.3B-apps",), frozenset({"train"}),
               "GPT-Neo 1.3B fine-tuned on most of the APPS train split only (never the test split)",
               "the -all cards point to it as 'a model fine-tuned on train set only'; hub training_state.json "
               "(commit 709c738): step 13920; main:run_clm_apps.py without --all_data trains on "
               "train[validation_split_percentage%:] (default 5)"),
    Checkpoint(("EleutherAI/gpt-neo-125M", "EleutherAI/gpt-neo-1.3B", "EleutherAI/gpt-neo-2.7B"), frozenset(),
               "GPT-Neo " + PILE, "EleutherAI model cards (training data: the Pile); APPS: Hendrycks et al. 2021"),
    Checkpoint(("gpt-neo-apps-pt",), None,
               "the folder name the kit's Flax-conversion advice used before it wrote a provenance record: it holds "
               "whichever flax-community checkpoint was converted, most likely an APPS fine-tune",
               "appsneo_utils.modeling.flax_conversion_advice"),
)


def known_checkpoint(name: str) -> Checkpoint | None:
    """The table row of a hub name or alias (case-insensitive), or None."""
    wanted = str(name).strip().rstrip("/").lower()
    for row in KNOWN_CHECKPOINTS:
        if wanted in (n.lower() for n in row.names):
            return row
    return None


def known_checkpoints_table() -> pd.DataFrame:
    """KNOWN_CHECKPOINTS as a table: one row per name, with what it trained on and the source."""
    rows = [{"name": name, "alias of": row.names[0] if name != row.names[0] else "",
             "APPS splits fine-tuned on": "not known" if row.splits is None else (", ".join(sorted(row.splits))
                                                                                 or "none"),
             "what": row.what, "source": row.source} for row in KNOWN_CHECKPOINTS for name in row.names]
    return pd.DataFrame(rows)


# --- the seen set of the '-all' recipe -------------------------------------------------------------

def apps_all_share(all_solutions: int, test_solutions: int) -> float:
    """Share of the test solutions the -all recipe trained on: the cut keeps the first 90% of N pooled
    examples, train (N - S) first, so it reaches 0.9 N - (N - S) = S - 0.1 N test ones: 1 - 0.1 N / S."""
    return 1 - (1 - ORIGINAL_TRAIN_SHARE) * all_solutions / test_solutions


def apps_all_seen(train: pd.DataFrame, test: pd.DataFrame) -> tuple[frozenset, dict]:
    """(split, problem_id) keys the -all recipe trained on, rebuilt with its training script's cut; and counts.

    One example per human solution, train problems then test problems in id order (train_data.original_cut,
    the rule notebook 02's split_rule="original" trains by). Needs the whole of both splits (the counts
    decide the cut).
    """
    solutions = {("train", int(p)): len(s) for p, s in zip(train["problem_id"], train["solutions_list"])}
    solutions |= {("test", int(p)): len(s) for p, s in zip(test["problem_id"], test["solutions_list"])}
    examples = [key for key in dataset_order(solutions) for _ in range(solutions[key])]
    cut, seen, _ = original_cut(examples)
    test_solutions = sum(n for (split, _), n in solutions.items() if split == "test")
    test_seen_solutions = sum(1 for split, _ in examples[:cut] if split == "test")
    info = {"examples": len(examples), "cut": cut, "test_problems": len(test),
            "test_problems_seen": sum(1 for s, _ in seen if s == "test"), "test_solutions": test_solutions,
            "test_solutions_seen": test_seen_solutions,
            "test_share_seen": test_seen_solutions / test_solutions if test_solutions else float("nan")}
    return frozenset(seen), info


def _rebuild_apps_all(source: str | None, verbose: bool) -> tuple[frozenset | None, dict | None]:
    """The -all recipe's seen set from the whole dataset at `source`, or (None, None) when it is not at hand."""
    if source is None:
        return None, None
    try:
        from .data import load_apps

        train = load_apps(source, split="train", verbose=False)
        test = load_apps(source, split="test", verbose=False)
    except (OSError, ConnectionError, ValueError) as exc:
        if verbose:
            print(f"could not rebuild the '-all' recipe's training set from {source}: {exc}")
        return None, None
    if len(train) != APPS_SPLIT_PROBLEMS or len(test) != APPS_SPLIT_PROBLEMS:  # the cut needs every example
        return None, None
    seen, info = apps_all_seen(train, test)
    if verbose:
        print(f"the -all recipe's cut, rebuilt from {source}: {info['test_solutions_seen']:,} of "
              f"{info['test_solutions']:,} test solutions seen ({info['test_share_seen']:.2%} = 1 - 0.1 * "
              f"{info['examples']:,} / {info['test_solutions']:,})")
    return seen, info


# --- deciding -------------------------------------------------------------------------------------


def detect_contamination(model: str, frame: pd.DataFrame, *, override: str = "auto", source: str | None = None,
                         verbose: bool = True) -> Contamination:
    """Contamination of `model` (what load_model takes: "tiny", a folder, a hub name) on the problems of `frame`.

    override: "auto" (the model's own record, provenance or table row), "none" (the caller declares it clean),
    "apps-all" (the -all recipe), or the path of a trained_problems.json (or of its folder).
    source: the APPS source, to rebuild the -all recipe's seen set (needs the whole dataset).
    """
    override = (override or "auto").strip()
    if override.lower() == "none":
        return Contamination("clean", "Contamination: declared none by the caller (override); not checked, so "
                                      "scores are taken at face value.")
    if override.lower() == "apps-all":
        return _from_checkpoint(KNOWN_CHECKPOINTS[0], frame, source, verbose, name="the model (declared -all)")
    if override.lower() != "auto":
        record = Path(override).expanduser()
        return _from_record(record / "trained_problems.json" if record.is_dir() else record, frame, None,
                            source, verbose)
    return _auto(str(model), frame, source, verbose, depth=0)


def _auto(model: str, frame, source, verbose, depth: int) -> Contamination:
    from .modeling import CONVERTED_FOLDER, TINY, model_label, read_provenance

    if model == TINY:
        return Contamination("clean", "Contamination: none. The tiny model has random weights and learned nothing "
                                      "(its tokenizer's vocabulary was fitted to the mini set's text, test split "
                                      "included, which teaches no solution).")
    folder = Path(model).expanduser()
    if not folder.is_dir():
        row = known_checkpoint(model)
        if row is None:
            return Contamination("unknown", f"Contamination: UNKNOWN. {model} is not in the table of known "
                                            f"checkpoints and has no training record, so what it trained on is not "
                                            f"known and no score below counts as clean. " + _HOW_TO_TELL)
        return _from_checkpoint(row, frame, source, verbose, name=model)
    label = model_label(model)
    provenance = read_provenance(folder) or {}
    record = folder / (provenance.get("trained_problems") or "trained_problems.json")
    if record.is_file():
        base = provenance.get("base_model") or _settings_base(folder)
        return _from_record(record, frame, base if depth < 3 else None, source, verbose, label=label, depth=depth)
    if provenance.get("model"):
        found = _auto(str(provenance["model"]), frame, source, verbose, depth + 1)
        return Contamination(found.status, f"{label} holds {provenance['model']} ({provenance.get('how', 'copy')}, "
                                           f"per its {_PROVENANCE}). {found.statement}", found.seen)
    if folder.name == CONVERTED_FOLDER and not provenance:
        return Contamination("unknown", f"Contamination: UNKNOWN, very likely CONTAMINATED. {label} is the folder "
                                        f"name of the kit's Flax-conversion advice, which converted flax-community "
                                        f"APPS models, but it carries no {_PROVENANCE} saying which. " + _HOW_TO_TELL)
    return Contamination("unknown", f"Contamination: UNKNOWN. {label} has no {_PROVENANCE} naming a known checkpoint "
                                    f"and no trained_problems.json, so what it trained on is not known and no score "
                                    f"below counts as clean. " + _HOW_TO_TELL)


_PROVENANCE = "appsneo_provenance.json"
_HOW_TO_TELL = ("If you know, pass contamination='path/to/trained_problems.json' (or 'none' for a model you know "
                "is clean).")


def _settings_base(folder: Path) -> str | None:
    """The model a 02_finetune output started from (its training_settings.json), when it says so."""
    path = folder / "training_settings.json"
    return json.loads(path.read_text()).get("model") if path.is_file() else None


def _from_checkpoint(row: Checkpoint, frame, source, verbose, *, name: str) -> Contamination:
    splits = set(frame["split"])
    if row.splits is None:
        return Contamination("unknown", f"Contamination: UNKNOWN. {name}: {row.what}. " + _HOW_TO_TELL)
    hit = splits & row.splits
    if not hit:
        words = "no APPS fine-tune" if not row.splits else f"fine-tuned on APPS {' and '.join(sorted(row.splits))} only"
        return Contamination("clean", f"Contamination: none from fine-tuning. {name}: {words}, and the problems here "
                                      f"are from the {'/'.join(sorted(splits))} split ({row.what}; source: "
                                      f"{row.source}).")
    head = (f"CONTAMINATED: {name} was {row.what}, so it trained on problems of the {'/'.join(sorted(hit))} split "
            f"used here (source: {row.source}).")
    seen, info = _rebuild_apps_all(source, verbose) if row.cut else (None, None)
    if seen is None:
        why = ("cannot be rebuilt without the whole dataset (both APPS splits)" if row.cut
               else "is not documented")
        return Contamination("contaminated", head + f" Which of these problems it saw {why}, so there is no clean "
                                                    f"subset: every score below may measure recall, not skill.")
    n, clean = len(frame), len(key_set(frame) - seen)
    return Contamination("contaminated", head + f" Rebuilt from that script: it saw {info['test_problems_seen']:,} "
                                                f"of {info['test_problems']:,} test problems and "
                                                f"{info['test_solutions_seen']:,} of {info['test_solutions']:,} test "
                                                f"solutions ({info['test_share_seen']:.1%} = 1 - 0.1 N/S); {clean} of "
                                                f"the {n} problems used here are outside its training data (the clean "
                                                f"subset).", seen)


def _from_record(record: Path, frame, base, source, verbose, *, label: str | None = None,
                 depth: int = 0) -> Contamination:
    """A 02_finetune training record, combined with what its base model saw (when that is known)."""
    from .training import load_trained_problems

    seen = load_trained_problems(record.parent) if record.name == "trained_problems.json" else None
    if seen is None:
        raise FileNotFoundError(f"no trained_problems.json at {record}: pass the file written by 02_finetune "
                                f"(next to its model) or contamination='auto'")
    where = f"the training record of {label}" if label else f"the training record {record.name}"
    base_note, base_found = _base_knowledge(base, frame, source, verbose, depth)
    if base_found is not None and base_found.status == "contaminated":
        if base_found.seen is None:
            return Contamination("contaminated", f"CONTAMINATED: {where} covers the fine-tune, but it started from "
                                                 f"{base_note}, which trained on these splits; which problems that "
                                                 f"base saw cannot be told, so there is no clean subset.")
        seen = set(seen) | base_found.seen
        base_note = f" (with what its base {base_note} saw)"
    elif base_found is not None:
        known = "clean here" if base_found.status == "clean" else "whose own training data is not known"
        base_note = f" (it started from {base_note}, {known})"
    seen = frozenset(seen)
    n, overlap = len(frame), key_set(frame) & seen
    if not overlap:
        return Contamination("clean", f"Contamination: none. {where.capitalize()} lists {len(seen)} problems and "
                                      f"none of the {n} used here{base_note}.", seen)
    return Contamination("contaminated", f"CONTAMINATED: {where} shows this model trained on {len(overlap)} of the {n} "
                                         f"problems used here{base_note}. Scores on them measure recall, not skill; "
                                         f"the other {n - len(overlap)} form the clean subset.", seen)


def _base_knowledge(base, frame, source, verbose, depth) -> tuple[str, Contamination | None]:
    """(the base model's label, or words saying it is not recorded; what the base saw, when there is a base)."""
    from .modeling import model_label

    if not base:
        return " (what it started from is not recorded)", None
    return model_label(str(base)), _auto(str(base), frame, source, verbose, depth + 1)
