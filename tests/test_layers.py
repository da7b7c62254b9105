"""The package's imports point one way: cli → driver → search_spaces → reports, artifacts →
train → selectors → registry, storage, plugins → errors, spec (docs/design.md, "Layers"),
and no two modules import each other, even through deferred imports inside functions.
Walked with ``ast``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import coretune

ROOT = Path(coretune.__file__).parent
#: a part may import only parts of a strictly lower rank (and itself)
RANK = {"errors": 0, "spec": 0, "registry": 1, "storage": 1, "plugins": 1, "selectors": 2,
        "train": 3, "artifacts": 4, "reports": 4, "search_spaces": 5, "driver": 6, "cli": 7}
LEAVES = ("errors", "spec")  # import nothing from coretune at all


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


def _module(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    return ".".join(rel.parts).removesuffix(".__init__")


def module_edges(sources: dict[str, tuple[Path, str]] | None = None) -> dict[str, set[str]]:
    """Module → coretune modules it imports anywhere in its body (deferred imports inside
    functions included), resolved to modules that exist; a module's own packages
    (``coretune.train`` for ``coretune.train.data``) are not edges."""
    if sources is None:
        sources = {_module(p): (p, p.read_text()) for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, (path, text) in sources.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = ".".join(package[:len(package) - node.level + 1]) if node.level else ""
                mod = ".".join(p for p in (base, node.module or "") if p)
                targets |= {mod} | {f"{mod}.{a.name}" for a in node.names}
        graph[name] = {t for t in targets if t in sources and t != name
                       and not name.startswith(t + ".")}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt] if nxt in stack else [*stack, nxt]
            if nxt not in state and (found := visit(nxt, [*stack, nxt])):
                return found
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node, [node])):
            return found
    return None


def test_no_module_imports_back_into_its_importer():
    """No cycle between modules, package-internal ones included (e.g. a registry module
    that imports its plugins at the bottom while they import it)."""
    cycle = find_cycle(module_edges())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_module_walker_sees_deferred_cycles():
    """Positive control: a cycle through an import inside a function is found."""
    fake = {"coretune.x.a": (ROOT / "x" / "a.py", "from coretune.x.b import f\n"),
            "coretune.x.b": (ROOT / "x" / "b.py",
                             "def f():\n    from coretune.x import a\n    return a\n")}
    assert find_cycle(module_edges(fake)) == ["coretune.x.a", "coretune.x.b", "coretune.x.a"]


def test_no_module_is_over_400_lines():
    long = {str(p.relative_to(ROOT)): n for p in ROOT.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 400}
    assert not long, f"split these modules: {long}"
