"""Prompt formats: golden strings for the training and APPS formats, re-indentation, masking, EOS."""

import json

import pytest

from appsneo_utils.data import load_apps
from conftest import SHARED
from appsneo_utils.prompts import (
    FORMATS, Example, cut_at_stop, encode_example, format_prompt, get_format, reindent,
    training_examples,
)

QUESTION = "Given n, print n squared."
STARTER = "def square(n):\n\t"


def test_training_format_standard_input_golden():
    assert format_prompt(QUESTION) == (
        "\nQUESTION:\nGiven n, print n squared.\n\n\nUse Standard Input format\n\nANSWER:\n"
    )


def test_training_format_call_based_golden():
    assert format_prompt(QUESTION, STARTER, "square") == (
        "\nQUESTION:\nGiven n, print n squared.\ndef square(n):\n\t\n\nUse Call-Based format\n\nANSWER:\n"
    )


def test_training_format_call_type_follows_starter_code_not_fn_name():
    # apps.py decided by starter code; a call-based problem without starter code reads "Standard Input".
    assert "Use Standard Input format" in format_prompt(QUESTION, "", "square")


def test_apps_eval_format_golden():
    assert format_prompt(QUESTION, fmt="apps_eval") == (
        "\nQUESTION:\nGiven n, print n squared.\nUse Standard Input format\nANSWER:\n"
    )
    assert format_prompt(QUESTION, STARTER, "square", fmt="apps_eval") == (
        "\nQUESTION:\nGiven n, print n squared.\ndef square(n):\n\t\nUse Call-Based format\nANSWER:\n"
    )
    # the call type comes from fn_name here
    assert "Use Call-Based format" in format_prompt(QUESTION, "", "square", fmt="apps_eval")


@pytest.mark.parametrize("name", sorted(FORMATS))
@pytest.mark.parametrize("call_based", [False, True])
def test_every_format_renders_both_call_types(name, call_based):
    starter, fn_name = (STARTER, "square") if call_based else ("", None)
    prompt = format_prompt(QUESTION, starter, fn_name, fmt=name)
    assert QUESTION in prompt
    if call_based:
        assert "def square(n):" in prompt
    program = get_format(name).program(prompt, "print(4)\nQUESTION")
    assert "print(4)" in program


def test_formats_are_distinct_where_they_should_be():
    rendered = {name: format_prompt(QUESTION, STARTER, "square", fmt=name) for name in FORMATS}
    assert len(set(rendered.values())) >= 6
    assert rendered["bigcode"] == rendered["apps_eval"]
    assert rendered["spaces"] == rendered["train"].replace("\t", "    ")


def test_unknown_format():
    with pytest.raises(ValueError, match="choose from"):
        get_format("nope")


def test_cut_at_stop():
    assert cut_at_stop("x = 1\nprint(x)\nQUESTION:\nmore") == "x = 1\nprint(x)"
    assert cut_at_stop("a\n---\nb\nANSWER") == "a"
    assert cut_at_stop("no stop here") == "no stop here"


def test_docstring_format_program_is_prompt_plus_completion():
    fmt = get_format("docstring")
    prompt = fmt(QUESTION, STARTER, "square")
    assert fmt.program(prompt, "return n * n\n") == prompt + "return n * n\n"
    compile(fmt.program(prompt, "return n * n\n"), "<probe>", "exec")


def test_reindent_turns_units_of_the_first_indented_line_into_tabs():
    code = "def f(x):\n    if x:\n        return [1,\n                2]\n    # note\n      odd = 1\nprint(f(1))"
    assert reindent(code) == (
        "def f(x):\n\tif x:\n\t\treturn [1,\n\t\t\t\t2]\n\t# note\n\t  odd = 1\nprint(f(1))\n"
    )


def test_reindent_unit_is_whatever_the_first_indented_line_holds():
    # LeetCode-style 5 spaces: one unit is 5, so 9 spaces are a tab and 4 spaces (a TabError in Python 3)
    assert reindent("class S:\n     def f(self):\n         x = 1\n") == "class S:\n\tdef f(self):\n\t    x = 1\n"
    # a first indented line starting with a tab makes a unit of as many TABS as it has leading whitespace
    # characters: "\t  " is 3, so only three tabs count as a level and "\t  b" itself stays as it was
    assert reindent("if a:\n\t  b\n\t\t\tc\n\td\n") == "if a:\n\t  b\n\tc\n\td\n"


def test_reindent_line_ends_and_blank_lines():
    assert reindent("") == ""
    assert reindent("a\r\n  \nif b:\r\n  c\r\n\r\n    \n") == "a\n  \nif b:\n\tc\n\n\t\t\n"
    assert reindent("x = '\\r'\ry\n") == "x = '\\r'\ry\n"  # a lone "\r" is no line break


def test_reindent_reproduces_every_golden_pair():
    """../shared/data/reindent_golden: the text the original routine produced for 1,525 real solutions."""
    path = SHARED / "reindent_golden" / "pairs.jsonl"
    if not path.is_file():
        pytest.skip(f"reindent golden pairs not found at {path} (they live beside the project, not in it)")
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    wrong = [(r["problem_id"], r["solution_index"]) for r in rows if reindent(r["solution"]) != r["reindented"]]
    assert len(rows) == 1525 and not wrong


def test_training_examples_one_per_solution():
    frame = load_apps("mini", split="train", verbose=False)
    row = frame.iloc[0].to_dict()
    examples = training_examples(row)
    assert len(examples) == len(row["solutions_list"])
    assert all(e.prompt == format_prompt(row["question"], row["starter_code"], row["fn_name"]) for e in examples)
    assert [e.answer for e in examples] == [reindent(s) for s in row["solutions_list"]]
    lines = [line for e in examples for line in e.answer.splitlines()]
    assert any(line.startswith("\t") for line in lines)
    assert not any(line.startswith("    ") for line in lines)


class _Tok:
    """A character-level stand-in tokenizer: one id per character."""

    eos_token_id = 0

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [ord(c) for c in text]}


def test_encode_example_masks_prompt_and_appends_eos():
    example = Example("train", 1, "PROMPT", "ans")
    encoded = encode_example(_Tok(), example, block_size=64)
    assert encoded["input_ids"] == [ord(c) for c in "PROMPTans"] + [0]
    assert encoded["labels"] == [-100] * 6 + [ord(c) for c in "ans"] + [0]
    assert encoded["truncated"] is False


def test_encode_example_truncation_rule():
    long_answer = Example("train", 1, "P" * 10, "a" * 100)
    cut = encode_example(_Tok(), long_answer, block_size=40)
    assert len(cut["input_ids"]) == 40 and cut["truncated"] and cut["labels"][:10] == [-100] * 10
    long_prompt = Example("train", 1, "P" * 35, "a" * 100)
    assert encode_example(_Tok(), long_prompt, block_size=40) is None  # < block_size/4 of answer would fit
