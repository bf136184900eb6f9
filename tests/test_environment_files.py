"""pyproject.toml and environment.yml name the same dependencies; the README commands exist."""

import re
import tomllib

import yaml

from conftest import ROOT

CONDA_TO_PIP = {"pytorch": "torch"}
NOT_PACKAGES = {"python", "pip", "-e"}


def _name(spec: str) -> str:
    return re.split(r"[<>=!~ \[;]", spec.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_pyproject_and_environment_name_the_same_dependencies():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_name(d) for d in project["dependencies"]}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert env["channels"] == ["conda-forge"]
    names, pip_section = set(), []
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            pip_section = dep["pip"]
            names |= {_name(d) for d in pip_section}
        else:
            names.add(CONDA_TO_PIP.get(_name(dep), _name(dep)))
    assert "-e ." in pip_section, "environment.yml's pip section must install the kit"
    assert names - NOT_PACKAGES == wanted


def test_named_stack_is_present():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {_name(d) for d in project["dependencies"]}
    assert {"jupyterlab", "ipywidgets", "transformers", "datasets", "torch", "accelerate", "matplotlib",
            "seaborn", "papermill", "tqdm"} <= names


def test_readme_commands_and_ci_agree():
    readme = (ROOT / "README.md").read_text()
    assert "make pipeline" in readme and "make test" in readme
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci and "HF_HUB_OFFLINE=1" in ci
