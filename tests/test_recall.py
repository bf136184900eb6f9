"""Recall probe: the similarity measure on hand-made pairs, the closest solution, seen/unseen summaries."""

import pandas as pd
import pytest

from appsneo_utils import recall

PROGRAM = "x = int(input())\nprint(x * 2)\n"
# x = int ( input ( ) ) NEWLINE print ( x * 2 ): 15 tokens (the final NEWLINE is layout)
TOKENS = ["x", "=", "int", "(", "input", "(", ")", ")", "NEWLINE", "print", "(", "x", "*", "2", ")"]


def test_tokens_drop_layout_and_comments_and_keep_structure():
    assert recall.code_tokens(PROGRAM) == TOKENS
    noisy = "# double it\nx = int( input() )   # read\n\n\nprint(x*2)"
    assert recall.code_tokens(noisy) == TOKENS
    tabs = "for i in range(3):\n\tif i:\n\t\tprint(i)\n"
    spaces = "for i in range(3):\n    if i:\n        print(i)\n"
    assert recall.code_tokens(tabs) == recall.code_tokens(spaces)
    assert recall.code_tokens(tabs).count("INDENT") == 2
    outside = "for i in range(3):\n    if i:\n        pass\n    print(i)\n"  # print moved out of the if
    inside = "for i in range(3):\n    if i:\n        pass\n        print(i)\n"
    assert recall.code_tokens(outside) != recall.code_tokens(inside)
    assert recall.code_tokens(None) == [] and recall.code_tokens("  \n") == []


def test_code_python_cannot_tokenize_still_gets_tokens():
    garbled = 'print("unclosed\n  x = ((('
    assert recall.code_tokens(garbled) == ["print", "(", '"', "unclosed", "x", "=", "(", "(", "("]


@pytest.mark.parametrize("a, b, expected", [
    (PROGRAM, PROGRAM, 1.0),
    (PROGRAM, "x = int(input())  # n\n\nprint( x*2 )", 1.0),  # layout and comments do not count
    (PROGRAM, PROGRAM.replace("x", "n"), 1 - 2 / 15),  # one name, used twice: 2 substitutions of 15
    (PROGRAM, PROGRAM.replace("x * 2", "x * 2 + 1"), 1 - 2 / 17),  # two insertions, longer side 17
    (PROGRAM, "print(sum(map(int, input().split())))", None),  # another program: far below the threshold
    (PROGRAM, "", 0.0),
    ("", None, 1.0),
])
def test_similarity_on_hand_made_pairs(a, b, expected):
    got = recall.similarity(a, b)
    if expected is None:
        assert got < 0.5
    else:
        assert got == pytest.approx(expected)
    assert got == pytest.approx(recall.similarity(b, a))  # symmetric


def test_near_verbatim_threshold_separates_a_renamed_copy_from_a_rewrite():
    solution = ("n = int(input())\ntotal = 0\nfor i in range(n):\n    a, b = map(int, input().split())\n"
                "    total += a * b\nprint(total)\n")
    renamed = solution.replace("total", "s")  # the same program with one variable renamed (3 places)
    rewrite = "n = int(input())\nprint(sum(eval(input().replace(' ', '*')) for _ in range(n)))\n"
    assert recall.similarity(renamed, solution) >= recall.NEAR_VERBATIM
    assert recall.similarity(rewrite, solution) < recall.NEAR_VERBATIM


def test_closest_picks_the_nearest_solution():
    solutions = ["print(sum(map(int, input().split())))\n", PROGRAM.replace("x", "n"), PROGRAM]
    assert recall.closest(PROGRAM, solutions) == (1.0, 2)
    score, index = recall.closest(PROGRAM.replace("x", "k"), solutions[:2])
    assert index == 1 and score == pytest.approx(1 - 2 / 15)
    assert recall.closest(PROGRAM, []) == (0.0, -1)


def _problems():
    return pd.DataFrame([
        {"split": "test", "problem_id": 1, "solutions_list": [PROGRAM, "print(2 * int(input()))\n"]},
        {"split": "test", "problem_id": 2, "solutions_list": ["print(input()[::-1])\n"]},
        {"split": "train", "problem_id": 1, "solutions_list": []},
    ])


def _samples():
    return pd.DataFrame([
        {"split": "test", "problem_id": 1, "code": PROGRAM, "passed": True},  # verbatim copy
        {"split": "test", "problem_id": 1, "code": "print(int(input()) * 2)\n", "passed": True},
        {"split": "test", "problem_id": 2, "code": "s = input()\nprint(''.join(reversed(s)))\n", "passed": True},
        {"split": "test", "problem_id": 2, "code": "print(input())\n", "passed": False},
        {"split": "train", "problem_id": 1, "code": "print(1)\n", "passed": False},  # no solution to compare
    ])


def test_recall_table_and_its_summaries():
    table = recall.recall_table(_samples(), _problems(), seen={("test", 1)})
    assert table["seen"].tolist() == [True, True, False, False, False]
    assert table["similarity"].iloc[0] == 1.0 and table["closest_solution"].iloc[0] == 0
    assert table["near_verbatim"].tolist() == [True, False, False, False, False]
    assert table["similarity"].iloc[3] == pytest.approx(1 - 6 / 12)  # 6 insertions ([ : : - 1 ]), longer side 12
    assert pd.isna(table["similarity"].iloc[4]) and table["closest_solution"].iloc[4] == -1
    rows = recall.summary(table).set_index(["group", "outcome"])
    assert rows.loc[("seen", "all"), "samples"] == 2 and rows.loc[("seen", "all"), "near_verbatim"] == 0.5
    assert rows.loc[("unseen", "all"), "samples"] == 2  # the sample without a reference is left out
    assert rows.loc[("unseen", "failing"), "samples"] == 1 and rows.loc[("unseen", "passing"), "problems"] == 1
    summary = recall.summary_json(table)
    assert summary["seen"]["samples"] == 2 and summary["seen"]["near_verbatim"] == 0.5
    assert summary["unseen"]["near_verbatim"] == 0.0 and summary["threshold"] == recall.NEAR_VERBATIM
    assert summary["seen"]["mean_similarity"] == pytest.approx(table["similarity"].iloc[:2].mean(), abs=1e-4)


def test_unknown_exposure_is_not_called_unseen():
    table = recall.recall_table(_samples(), _problems(), seen=None)
    assert table["seen"].isna().all()
    assert recall.summary_json(table)["unseen"]["samples"] == 0
    assert set(recall.summary(table)["group"]) == {"unknown"}


def test_the_figure_says_what_it_shows():
    import matplotlib

    matplotlib.use("Agg")
    fig = recall.fig_recall(recall.recall_table(_samples(), _problems(), seen={("test", 1)}),
                            title="recall of tiny model on mini test")
    assert "recall of tiny model on mini test" in fig._suptitle.get_text()
    assert all("0 to 1" in ax.get_xlabel() for ax in fig.axes)


def test_near_verbatim_share_per_format():
    samples = _samples().assign(fmt=["train", "docstring", "train", "docstring", "train"])
    wide = recall.by_format(recall.recall_table(samples, _problems(), seen={("test", 1)}))
    assert list(wide.columns) == ["seen", "unseen"] and list(wide.index) == ["train", "docstring"]
    assert wide.loc["train", "seen"] == 1.0 and wide.loc["docstring", "seen"] == 0.0
    assert wide.loc["train", "unseen"] == 0.0
