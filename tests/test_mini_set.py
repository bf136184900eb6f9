"""The embedded mini set: every human solution passes its own tests in the sandbox."""

from appsneo_utils.data import load_apps
from appsneo_utils.execution import run_many

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
