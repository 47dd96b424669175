"""Packaging as a new user meets it: every third-party module the tests import is declared in the
`test` extra (or the dependencies), and `isobox --version` reports the installed version."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from tests.conftest import REPO


def _declared() -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    specs = project["dependencies"] + project["optional-dependencies"]["test"]
    return {re.split(r"[<>=!~\[ ;]", spec, maxsplit=1)[0].lower().replace("_", "-")
            for spec in specs}


def _imported_top_modules(folder: Path) -> set[str]:
    names: set[str] = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
    return names


def test_every_test_dependency_is_declared() -> None:
    own = {"pytest_isobox", "tests", "benchmarks"}
    third_party = {name for name in _imported_top_modules(REPO / "tests")
                   if name not in sys.stdlib_module_names and name not in own}
    dists = metadata.packages_distributions()
    declared = _declared()
    missing = {}
    for module in sorted(third_party):
        names = {d.lower().replace("_", "-") for d in dists.get(module, [module])}
        if not names & declared:
            missing[module] = sorted(names)
    assert not missing, f"imported by tests but not in pyproject's test extra: {missing}"


def test_version_flag_matches_the_installed_metadata() -> None:
    proc = subprocess.run([sys.executable, "-m", "pytest_isobox.cli", "--version"],
                          capture_output=True, text=True, check=True)
    assert proc.stdout == f"isobox version {metadata.version('pytest-isobox')}\n"


def test_licence_file_and_pytest_classifier() -> None:
    assert (REPO / "LICENSE").read_text().lstrip().startswith("Apache License")
    assert "Framework :: Pytest" in metadata.metadata("pytest-isobox").get_all("Classifier")
