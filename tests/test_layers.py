"""Layers point one way: every import in ``rlscale/`` obeys ARCHITECTURE.md's layer table.

Plain, relative, in-function and ``importlib`` imports all count (a dotted ``rlscale.…``
string in a module that uses importlib is an import), so no cycle can hide inside a function.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARCHITECTURE = ROOT / "ARCHITECTURE.md"
_DOTTED = re.compile(r"^rlscale(\.[A-Za-z_]\w*)+$")


def layer_table(text: str) -> dict[str, tuple[set[str], set[str]]]:
    """``{package: (rlscale packages it may import, third-party modules it must not)}`` from
    the markdown table whose header is ``| package | may import | must not import |``."""
    rows: dict[str, tuple[set[str], set[str]]] = {}
    in_table = False
    for line in text.splitlines():
        cells = [c.strip().replace("\\_", "_") for c in line.strip().strip("|").split("|")]
        if cells[:3] == ["package", "may import", "must not import"]:
            in_table = True
            continue
        if in_table and not line.startswith("|"):
            break
        if in_table and not set(cells[0]) <= {"-"}:
            split = [{n.strip() for n in c.split(",") if n.strip()} for c in cells[1:3]]
            rows[cells[0]] = (split[0], split[1])
    return rows


def _unit(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "rlscale" and len(parts) > 1 else None


def imports_of(path: Path, package_root: Path) -> set[str]:
    """Every module ``path`` imports, absolute (relative imports resolved; importlib strings)."""
    module = ".".join(path.relative_to(package_root.parent).with_suffix("").parts)
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    uses_importlib = False
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
            uses_importlib |= any(a.name == "importlib" for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = module.split(".")  # (``pkg.__init__`` anchors at ``pkg``, as it should)
                base = parts[:len(parts) - node.level]
                stem = ".".join(base + ([node.module] if node.module else []))
                found.update([stem] if node.module else (f"{stem}.{a.name}" for a in node.names))
            elif node.module:
                found.add(node.module)
                uses_importlib |= node.module == "importlib"
    if uses_importlib:
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                    and _DOTTED.match(node.value):
                found.add(node.value)
    return found


def violations(package_root: Path, table: dict[str, tuple[set[str], set[str]]]) -> list[str]:
    """Every import across the table, as ``file imports module (why)``."""
    bad: list[str] = []
    for path in sorted(package_root.rglob("*.py")):
        rel = path.relative_to(package_root)
        unit = rel.parts[0].removesuffix(".py")
        if unit not in table:
            bad.append(f"{rel}: package {unit!r} is not in the layer table")
            continue
        allowed, forbidden = table[unit]
        for name in sorted(imports_of(path, package_root)):
            target = _unit(name)
            if target is not None and target != unit and target not in allowed:
                bad.append(f"{rel} imports {name} ({unit} may import only "
                           f"{', '.join(sorted(allowed)) or 'nothing'})")
            top = name.split(".")[0]
            if top in forbidden:
                bad.append(f"{rel} imports {name} (forbidden in {unit})")
    return bad


def test_every_import_obeys_the_layer_table() -> None:
    table = layer_table(ARCHITECTURE.read_text())
    assert {"sim", "metrics", "agents", "envs", "evaluate", "training", "controller",
            "twin"} <= set(table), "ARCHITECTURE.md's layer table lost a package"
    bad = violations(ROOT / "rlscale", table)
    assert not bad, "layering violated (fix the import, or argue for a change of " \
                    "ARCHITECTURE.md's table):\n" + "\n".join(bad)


def test_the_layer_table_has_no_cycle() -> None:
    table = layer_table(ARCHITECTURE.read_text())
    state: dict[str, int] = {}

    def visit(unit: str, trail: list[str]) -> None:
        if state.get(unit) == 1:
            pytest.fail("cycle in the layer table: " + " -> ".join([*trail, unit]))
        if state.get(unit) == 2:
            return
        state[unit] = 1
        for dep in table.get(unit, (set(), set()))[0]:
            visit(dep, [*trail, unit])
        state[unit] = 2

    for unit in table:
        visit(unit, [])


@pytest.mark.parametrize(("source", "expected"), [
    ("from rlscale.envs import cluster_env\n", "rlscale.envs"),
    ("def f():\n    from rlscale.envs.cluster_env import LLMClusterEnv\n", "rlscale.envs"),
    ("from ..envs import cluster_env\n", "rlscale.envs"),
    ("import importlib\nM = {'x': 'rlscale.envs.cluster_env'}\n", "rlscale.envs"),
    ("import torch\n", "torch"),
])
def test_a_planted_back_import_is_caught(tmp_path: Path, source: str, expected: str) -> None:
    package = tmp_path / "rlscale"
    for sub in ("agents", "envs"):
        (package / sub).mkdir(parents=True)
        (package / sub / "__init__.py").write_text("")
    (package / "agents" / "planted.py").write_text(source)
    table = {"agents": (set(), {"torch"}), "envs": ({"agents"}, set())}
    bad = violations(package, table)
    assert len(bad) == 1, bad
    assert "planted.py" in bad[0], bad
    assert expected in bad[0], bad
