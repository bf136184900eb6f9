"""Prompt formats: the exact training format of the original model, and named variants for probes.

The training format comes from the "formatted" config of the original `apps.py`:
    "\\nQUESTION:\\n" + question + "\\n" + starter_code + "\\n" + answer_type + "\\nANSWER:\\n"
with answer_type "\\nUse Call-Based format\\n" when starter code exists, else
"\\nUse Standard Input format\\n". Each human solution is its own example, re-indented by `reindent`,
the APPS rule that apps.py applied to every answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

CALL_BASED = "Use Call-Based format"
STANDARD_INPUT = "Use Standard Input format"
ANSWER_MARKER = "\nANSWER:\n"
# The original model never learned EOS, so generation also stops at these.
STOP_STRINGS = ("\nQUESTION", "\n---", "\nANSWER")


@dataclass(frozen=True)
class PromptFormat:
    """A way to show a problem to the model, and how to turn its completion into a program."""

    name: str
    description: str
    render: Callable[[str, str, str | None], str]  # (question, starter_code, fn_name) -> prompt
    stop: tuple[str, ...] = STOP_STRINGS
    completion_is_suffix: bool = False  # True: the program is prompt + completion

    def __call__(self, question: str, starter_code: str = "", fn_name: str | None = None) -> str:
        return self.render(question, starter_code or "", fn_name)

    def program(self, prompt: str, completion: str) -> str:
        """The code the executor receives for this completion."""
        code = cut_at_stop(completion, self.stop)
        return prompt + code if self.completion_is_suffix else code


def first_stop(text: str, stops=STOP_STRINGS) -> tuple[int, str | None]:
    """(index, stop string) of the earliest stop string in text, or (-1, None)."""
    best, which = -1, None
    for stop in stops:
        index = text.find(stop)
        if index != -1 and (best == -1 or index < best):
            best, which = index, stop
    return best, which


def cut_at_stop(text: str, stops=STOP_STRINGS) -> str:
    """`text` up to the first stop string (and without a trailing EOS-like tail)."""
    index, _ = first_stop(text, stops)
    return text if index == -1 else text[:index]


# --- the formats ------------------------------------------------------------------------------


def _train(question, starter, fn_name):
    answer_type = f"\n{CALL_BASED}\n" if starter else f"\n{STANDARD_INPUT}\n"
    return "\nQUESTION:\n" + question + "\n" + starter + "\n" + answer_type + ANSWER_MARKER


def _apps_eval(question, starter, fn_name):
    # APPS eval/generate_gpt_codes.py: starter code gets a newline in front, no blank lines,
    # and the call type comes from fn_name rather than from the starter code.
    text = "\nQUESTION:\n" + question
    if starter:
        text += "\n" + starter
    text += f"\n{CALL_BASED}" if fn_name else f"\n{STANDARD_INPUT}"
    return text + ANSWER_MARKER


def _no_markers(question, starter, fn_name):
    kind = CALL_BASED if (starter or fn_name) else STANDARD_INPUT
    return question + "\n" + (starter + "\n" if starter else "") + kind + "\n\n"


def _docstring(question, starter, fn_name):
    body = question.replace("\\", "\\\\").replace('"""', "'''")
    if starter:
        return '"""\n' + body + '\n"""\n' + starter
    return '"""\n' + body + '\nRead from standard input and print the answer.\n"""\n'


def _markdown(question, starter, fn_name):
    text = "## Problem\n\n" + question.strip() + "\n\n"
    if starter:
        text += "## Starter code\n\n```python\n" + starter.rstrip() + "\n```\n\n"
    kind = "call-based" if (starter or fn_name) else "standard input"
    return text + f"## Solution ({kind})\n\n```python\n"


def _spaces(question, starter, fn_name):
    return _train(question, starter.replace("\t", "    "), fn_name)


def _paraphrased(question, starter, fn_name):
    kind = "Write a function with the given signature." if starter else "Read the input from stdin and print to stdout."
    return "\nPROBLEM:\n" + question + "\n" + starter + "\n\n" + kind + "\n\nSOLUTION:\n"


FORMATS: dict[str, PromptFormat] = {
    f.name: f
    for f in (
        PromptFormat("train", "exact training format of the original model (apps.py 'formatted')", _train),
        PromptFormat("apps_eval", "original APPS evaluation prompt: no blank lines, call type from fn_name", _apps_eval),
        # bigcode-evaluation-harness tasks/apps.py appends the dataset's starter_code as is; the HF
        # copy starts LeetCode stubs with the newline that the loader strips and apps_eval puts back,
        # so on normalised data it renders the same text as apps_eval.
        PromptFormat("bigcode", "bigcode-evaluation-harness APPS task prompt (same text as apps_eval)", _apps_eval),
        PromptFormat("no_markers", "no QUESTION/ANSWER markers", _no_markers, stop=("\n\n\n",) + STOP_STRINGS),
        PromptFormat(
            "docstring", "the problem as a docstring above the starter code or an empty module", _docstring,
            stop=('\n"""',) + STOP_STRINGS, completion_is_suffix=True,
        ),
        PromptFormat("markdown", "markdown headings and a fenced code block", _markdown, stop=("```",) + STOP_STRINGS),
        PromptFormat("spaces", "training format with starter-code tabs replaced by 4 spaces", _spaces),
        PromptFormat(
            "paraphrased", "PROBLEM/SOLUTION markers and reworded instruction lines", _paraphrased,
            stop=("\nPROBLEM", "\nSOLUTION") + STOP_STRINGS,
        ),
    )
}


def get_format(name: str | PromptFormat) -> PromptFormat:
    """The registered format of that name (a PromptFormat is returned as it is)."""
    if isinstance(name, PromptFormat):
        return name
    try:
        return FORMATS[name]
    except KeyError:
        raise ValueError(f"unknown prompt format {name!r}; choose from {', '.join(FORMATS)}") from None


def format_prompt(question: str, starter_code: str = "", fn_name: str | None = None, fmt: str = "train") -> str:
    """The prompt for one problem in the named format (default: the training format)."""
    return get_format(fmt)(question, starter_code, fn_name)


# --- training examples ------------------------------------------------------------------------


def reindent(code: str) -> str:
    """The answer text the original model trained on: APPS's `reindent` rule as gpt-code-clippy's apps.py ran it.

    apps.py (`reindent_code`, from hendrycks/apps train/dataset_lm/reindent.py) runs it with tabs on and
    the unit auto-detected: the leading whitespace of the FIRST indented, non-blank line is one unit
    (made of tabs when that line starts with a tab, else of spaces, whatever it really holds); every
    whole unit at the start of a later line becomes a tab and any remainder stays. Lines break at
    "\\n" only, lose trailing "\\r"/"\\n", and are written back each with one "\\n".
    """
    lines = code.split("\n")
    if lines[-1] == "":  # text ending in "\n" (or empty) has no line after its last break
        lines.pop()
    unit, out = None, []
    for line in (raw.rstrip("\r\n") for raw in lines):
        if unit is None:
            if line[:1] not in (" ", "\t") or line.isspace():
                out.append(line)  # before the first indented line, lines pass through untouched
                continue
            width = len(line) - len(line.lstrip(" \t"))
            unit = line[0] * width  # tabs or spaces after the first character, as the original counts
        level = 0
        while line.startswith(unit * (level + 1)):
            level += 1
        out.append("\t" * level + line[len(unit) * level:])
    return "".join(line + "\n" for line in out)


@dataclass(frozen=True)
class Example:
    """One training example: a problem's prompt and one of its human solutions."""

    split: str
    problem_id: int
    prompt: str
    answer: str  # the solution as `reindent` writes it; EOS is appended at tokenisation


def training_examples(row) -> list[Example]:
    """One example per human solution of an APPS row (a dict or DataFrame row)."""
    prompt = format_prompt(row["question"], row["starter_code"], row.get("fn_name"), "train")
    return [
        Example(row.get("split", "train"), int(row["problem_id"]), prompt, reindent(solution))
        for solution in row["solutions_list"]
    ]


def encode_example(tokenizer, example: Example, block_size: int) -> dict | None:
    """input_ids and labels for one example: prompt tokens masked (-100), EOS appended.

    Examples longer than block_size are truncated from the end of the answer when the prompt
    and at least a quarter of block_size of answer fit; otherwise None (the caller counts drops).
    """
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no EOS token; set tokenizer.eos_token first")
    prompt_ids = tokenizer(example.prompt, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(example.answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    if len(prompt_ids) + min(len(answer_ids), block_size // 4) > block_size:
        return None
    ids = (prompt_ids + answer_ids)[:block_size]
    labels = ([-100] * len(prompt_ids) + answer_ids)[:block_size]
    return {"input_ids": ids, "labels": labels, "truncated": len(prompt_ids) + len(answer_ids) > block_size}
