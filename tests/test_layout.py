"""The package's layering: shared pieces know nothing of any agent, agents know no env suite's
internals, the search engine stays private, and agent modules stay small enough to read."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from frugal.agents import ALGORITHMS, agent_module
from frugal.config import apply, mutable_keys
from frugal.envs import describe

ROOT = Path(__file__).resolve().parents[1] / "frugal"
SHARED = ("envs", "replay", "nets", "search", "report", "viewer")
SUITES = ("frugal.envs.atari", "frugal.envs.minatar_suite", "frugal.envs.gym_suite")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def _modules(under: str) -> list[Path]:
    return sorted((ROOT / under).rglob("*.py"))


@pytest.mark.parametrize("package", SHARED)
def test_shared_packages_import_no_agent(package):
    for path in _modules(package):
        bad = sorted(n for n in _imports(path) if n.startswith("frugal.agents"))
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}: shared code must not know agents"


def test_agents_import_no_env_suite_internals():
    for path in _modules("agents"):
        bad = sorted(n for n in _imports(path) if n.startswith(SUITES))
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}; take it from the EnvSpec"


def test_the_search_engine_is_private_to_the_search_package():
    for path in ROOT.rglob("*.py"):
        if (ROOT / "search") in path.parents:
            continue
        bad = sorted(n for n in _imports(path) if n.startswith("frugal.search._engine"))
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}; use frugal.search's public API"


def test_agent_modules_stay_readable():
    for path in _modules("agents"):
        lines = len(path.read_text().splitlines())
        assert lines <= 400, f"{path.relative_to(ROOT)} has {lines} lines (at most 400)"


@pytest.mark.parametrize("algo", sorted(ALGORITHMS))
def test_every_agent_package_declares_its_contract(algo):
    package = agent_module(algo)
    fields = {f.name for f in dataclasses.fields(package.Config)}
    changeable = mutable_keys(package.Config)
    assert changeable and changeable <= fields
    assert package.default_preset(describe("gym/CartPole-v1")) in package.PRESETS
    for name, preset in package.PRESETS.items():
        assert preset.doc, f"{algo} preset {name} needs a description"
        apply(package.Config(), "agent", preset.agent)  # every key a preset sets exists
