"""The embedded mini set: every human solution passes its own tests in the sandbox, and the '-all' replica's
cut leaves test problems of every difficulty unseen."""

from appsneo_utils.data import load_apps
from appsneo_utils.execution import run_many
from appsneo_utils.train_data import dataset_order, original_cut

MINI = load_apps("mini", split="all", verbose=False)
JOBS = [
    (f"{row.split}:{row.problem_id}:{k}", solution, row.tests)
    for row in MINI.itertuples()
    for k, solution in enumerate(row.solutions_list)
]


def test_mini_set_is_big_and_varied_enough():
    assert len(MINI) >= 30
    assert MINI.groupby("split")["difficulty"].nunique().min() == 3


def test_every_solution_passes_its_tests():
    results = dict(run_many(JOBS, timeout=10))
    failures = {name: result.verdicts for name, result in results.items() if not result.passed}
    assert not failures
    assert len(results) == len(JOBS) >= 2 * len(MINI)


def test_the_original_cut_leaves_test_problems_of_every_difficulty_unseen():
    """split_rule="original" on the pooled mini set (what the pipeline's replica trains on)."""
    rows = {(r.split, r.problem_id): r for r in MINI.itertuples()}
    examples = [key for key in dataset_order(rows) for _ in rows[key].solutions_list]
    cut, seen, _ = original_cut(examples)
    unseen = [key for key in dataset_order(rows) if key[0] == "test" and key not in seen]
    assert len(unseen) >= 4
    assert {rows[key].difficulty for key in unseen} == {"introductory", "interview", "competition"}
    assert {rows[key].call_type for key in unseen} == {"stdin", "call"}
    assert sum(1 for split, _ in seen if split == "test") >= 8, "most test problems are seen, as in the original"
