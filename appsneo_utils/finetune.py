"""Command-line fine-tuning: the same `training.run` as notebooks/02_finetune.ipynb, on any number of GPUs.

    accelerate launch --multi_gpu --num_processes 8 -m appsneo_utils.finetune --all_data true
    python -m appsneo_utils.finetune --profile smoke --max_steps 20      # one process, e.g. a CPU
    python -m appsneo_utils.finetune --profile smoke --recipe replica    # the '-all' replica, embedded default

Every flag is a TrainSettings field (same names and help as the notebook parameters); a flag left
out takes the profile's default. Values are coerced like papermill's (`--all_data true`).
"""

from __future__ import annotations

from . import training
from .params import coerce_bool
from .plotting import save_fig
from .training import TrainSettings

PROG = "python -m appsneo_utils.finetune"
DESCRIPTION = "Fine-tune GPT-Neo on APPS (notebook 02's engine). Unset flags take the profile's default."


def _figures_flag(parser) -> None:
    parser.add_argument("--figures", default="true",
                        help="save the loss, lr and tokens/s figures under figures/02_finetune (default true)")


def main(argv=None) -> training.RunResult:
    settings, extra = TrainSettings.parse_args(argv, prog=PROG, description=DESCRIPTION, extra=_figures_flag)
    figures = coerce_bool("figures", extra["figures"])
    result = training.run(settings)
    if figures and result.history["train"]:
        from accelerate import PartialState

        if PartialState().is_main_process:
            from .training_figures import plot_history  # matplotlib: only when figures are drawn

            for name, fig in plot_history(result.history, result.settings).items():
                save_fig(fig, training.NOTEBOOK, name)
    return result


if __name__ == "__main__":
    main()
