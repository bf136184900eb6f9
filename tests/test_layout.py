"""The package's layout rules (issue 13): modules a newcomer can read, one place for each piece of logic.

- no module over 600 lines, apart from the sandbox worker;
- no function over 100 lines unless a comment in it says why (`# long because ...`);
- no run of six or more identical lines (ignoring indentation and blank lines) in two places.
"""

import ast
import re
from collections import defaultdict

from conftest import ROOT

PACKAGE = ROOT / "appsneo_utils"
MAX_MODULE, MAX_FUNCTION, RUN = 600, 100, 6
EXEMPT_MODULES = {"_sandbox_worker.py"}  # the worker loop and its isolation steps, read top to bottom
# Lines too thin to make two places "the same code" (closing brackets, else:, a bare return, docstring quotes).
THIN = re.compile(r"^([)\]}]+[,:]?|else:|try:|finally:|return|pass|\"\"\"|continue|break)$")


def modules():
    return sorted(PACKAGE.glob("*.py"))


def test_no_module_over_600_lines():
    long = {p.name: n for p in modules() if (n := len(p.read_text().splitlines())) > MAX_MODULE
            and p.name not in EXEMPT_MODULES}
    assert not long, f"split these modules by job: {long}"


def test_no_function_over_100_lines_without_saying_why():
    long = []
    for path in modules():
        source = path.read_text()
        lines = source.splitlines()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                body = lines[node.lineno - 1: node.end_lineno]
                if len(body) > MAX_FUNCTION and not any("# long because" in line.lower() for line in body):
                    long.append(f"{path.name}:{node.lineno} {node.name} ({len(body)} lines)")
    assert not long, f"shorten these, or say why in a '# long because ...' comment: {long}"


def test_no_run_of_six_identical_lines_in_two_places():
    seen = defaultdict(list)
    for path in modules():
        code = [(number, line.strip()) for number, line in enumerate(path.read_text().splitlines(), 1)]
        code = [(number, text) for number, text in code if text and not text.startswith("#")]
        for i in range(len(code) - RUN + 1):
            window = tuple(text for _, text in code[i: i + RUN])
            if sum(not THIN.match(text) for text in window) >= RUN - 1:
                seen[window].append((path.name, code[i][0]))
    repeated = []
    for window, places in seen.items():
        distinct = [places[0]]
        for place in places[1:]:  # overlapping windows of one repeated block count once
            if place[0] != distinct[-1][0] or place[1] - distinct[-1][1] >= RUN:
                distinct.append(place)
        if len(distinct) > 1:
            repeated.append(f"{distinct[0][0]}:{distinct[0][1]} ~ {distinct[1][0]}:{distinct[1][1]}")
    assert not repeated, f"the same six lines stand in two places; make them one function: {sorted(repeated)[:10]}"


def test_readme_package_map_names_every_module_and_nothing_else():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## The package: `appsneo_utils`", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[1] for line in section.splitlines() if line.startswith("| `")]
    named = set(re.findall(r"`([a-z_]+)`", " ".join(rows)))
    present = {p.stem for p in modules() if p.stem != "__init__"}
    assert named == present, (f"README's package map lacks {sorted(present - named)} "
                              f"and names missing modules {sorted(named - present)}")
