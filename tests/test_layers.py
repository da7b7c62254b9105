"""The package's imports point one way: cli → driver → search_spaces → reports, artifacts →
train → selectors → spec, storage (DESIGN.md, "Modules"). Walked with ``ast``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import coretune

ROOT = Path(coretune.__file__).parent
#: a part may import only parts of a strictly lower rank (and itself)
RANK = {"spec": 0, "storage": 0, "selectors": 1, "train": 2, "artifacts": 3, "reports": 3,
        "search_spaces": 4, "driver": 5, "cli": 6}
LEAVES = ("spec", "storage")  # import nothing from coretune at all


def _part(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    return rel.parts[0]


def _imports(path: Path, source: str | None = None) -> set[str]:
    """Top-level coretune parts imported by ``path`` (absolute or relative imports)."""
    rel = path.relative_to(ROOT).with_suffix("")
    package = ["coretune", *rel.parts[:-1]]
    out = set()
    for node in ast.walk(ast.parse(path.read_text() if source is None else source)):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                names = [".".join([*base, node.module] if node.module else base)]
            else:
                names = [node.module or ""]
        for name in names:
            parts = name.split(".")
            if parts[0] == "coretune" and len(parts) > 1 and parts[1] != "__init__":
                out.add(parts[1])
            elif parts == ["coretune"]:
                out.add("__init__")
    return out


def edges() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in ROOT.rglob("*.py"):
        me = _part(path)
        graph.setdefault(me, set()).update(p for p in _imports(path) if p != me)
    return graph


def test_every_part_has_a_rank():
    assert set(edges()) - {"__init__"} <= set(RANK)


@pytest.mark.parametrize("part", sorted(RANK))
def test_imports_point_down(part):
    up = {p for p in edges().get(part, set()) - {"__init__"} if RANK[p] >= RANK[part]}
    assert not up, f"coretune.{part} imports {sorted(up)} (same or higher layer)"


@pytest.mark.parametrize("leaf", LEAVES)
def test_leaves_import_nothing_from_coretune(leaf):
    assert not edges().get(leaf), f"coretune.{leaf} imports {sorted(edges()[leaf])}"


def test_no_cycles():
    graph = edges()
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in graph.get(node, ()):
            if state.get(nxt) == 1:
                pytest.fail("import cycle: " + " -> ".join([*stack, node, nxt]))
            if nxt not in state:
                visit(nxt, [*stack, node])
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [])


def test_the_walker_sees_relative_and_absolute_imports():
    """Positive control: planted upward imports (absolute and relative) are found."""
    planted = "from coretune.driver import plan\nfrom ..train import loop\nimport coretune.cli\n"
    assert _imports(ROOT / "selectors" / "planted.py", planted) == {"driver", "train", "cli"}
