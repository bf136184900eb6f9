"""Command-line fine-tuning: the same `training.run` as notebooks/02_finetune.ipynb, on any number of GPUs.

    accelerate launch --multi_gpu --num_processes 8 -m appsneo_utils.finetune --all_data true
    python -m appsneo_utils.finetune --profile smoke --max_steps 20      # one process, e.g. a CPU
    python -m appsneo_utils.finetune --profile smoke --recipe replica    # the '-all' replica, embedded default

Every flag is a TrainSettings field (same names and help as the notebook parameters); a flag left
out takes the profile's default. Values are coerced like papermill's (`--all_data true`).
"""

from __future__ import annotations

import argparse
from dataclasses import fields

from . import training


def parser() -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(
        prog="python -m appsneo_utils.finetune",
        description="Fine-tune GPT-Neo on APPS (notebook 02's engine). Unset flags take the profile's default.",
    )
    cli.add_argument("--profile", default="auto", help="auto | full | smoke (auto: full on a GPU with the hub)")
    cli.add_argument("--figures", default="true",
                     help="save the loss, lr and tokens/s figures under figures/02_finetune")
    for f in fields(training.TrainSettings):
        if f.name == "profile":
            continue
        default = training.PROFILE_DEFAULTS["full"].get(f.name, f.default)
        cli.add_argument(f"--{f.name}", default=None, metavar=f.metadata["kind"].upper(),
                         help=f"{f.metadata['help']} (full default: {default})")
    return cli


def main(argv=None) -> training.RunResult:
    from .params import coerce_bool, resolve_profile

    args = vars(parser().parse_args(argv))
    figures = coerce_bool("figures", args.pop("figures"))
    profile = resolve_profile(args.pop("profile"))
    settings = training.make_settings(profile, **{k: v for k, v in args.items() if v is not None})  # unset: default
    result = training.run(settings)
    if figures and result.history["train"]:
        from accelerate import PartialState

        if PartialState().is_main_process:
            from .plotting import save_fig

            for name, fig in training.plot_history(result.history, result.settings).items():
                save_fig(fig, training.NOTEBOOK, name)
    return result


if __name__ == "__main__":
    main()
