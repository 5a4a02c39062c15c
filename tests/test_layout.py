"""The library's shape: dependency rules and module sizes (what a newcomer relies on)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def imported_packages(path: Path) -> set[str]:
    """Top-level names of every package ``path`` imports."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize(
    "package, forbidden",
    [("metarl", {"envs", "agents", "scripts", "gym"}), ("agents", {"envs", "scripts", "gym"})],
)
def test_dependency_rules(package, forbidden):
    # metarl is the library (no concrete env or learner), agents name no concrete env, and the one
    # module allowed to load legacy gym (for cherry) does it through importlib
    for path in (ROOT / package).rglob("*.py"):
        assert not imported_packages(path) & forbidden, f"{path.relative_to(ROOT)} imports them"


def test_modules_and_scripts_stay_small():
    for package in ("metarl", "envs", "agents"):
        for path in (ROOT / package).rglob("*.py"):
            lines = len(path.read_text().splitlines())
            assert lines <= 400, f"{path.relative_to(ROOT)} has {lines} lines: split it"
    for name in ("train", "evaluate", "fewshot"):
        lines = len((ROOT / "scripts" / f"{name}.py").read_text().splitlines())
        assert lines <= 150, f"scripts/{name}.py has {lines} lines: move the work into metarl"
