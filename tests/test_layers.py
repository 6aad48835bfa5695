"""The import graph: worlds < caring < analysis < the CLI, and no import circle. Imports inside
functions count. The CLI is `analysis.cli` (the only module that may import `caring.commands`, the
training layer's commands); nothing imports the CLI."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {"worlds": 0, "caring": 1, "analysis": 2}
CLI, COMMANDS = "analysis.cli", "caring.commands"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """module -> the project modules it imports: the deepest module each import names, and for `from
    pkg import x` the package pkg too (importing x runs pkg's __init__ first)."""
    files = {module_name(f): f for top in LAYERS for f in (ROOT / top).rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in files}
    for module, path in files.items():
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                assert node.level == 0, f"{module}: relative import"
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            for name in names:
                while name and name not in files:
                    name = name.rpartition(".")[0]
                if name and name != module:
                    graph[module].add(name)
    return graph


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle, or None (depth-first search; a package and its submodules count too)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for d in sorted(graph[m]):
            if d.startswith(m + ".") and m in graph.get(d, ()):
                continue  # a package whose __init__ imports its own submodule: not a circle of design
            if state.get(d) == 1:
                return [*path[path.index(d) :], d]
            if d not in state and (found := visit(d)):
                return found
        path.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def layering_violations(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for module, deps in graph.items():
        for dep in deps:
            if LAYERS[dep.split(".")[0]] > LAYERS[module.split(".")[0]]:
                bad.append(f"{module} -> {dep} (imports upward)")
            if dep == CLI:
                bad.append(f"{module} -> {dep} (nothing imports the CLI)")
            if dep == COMMANDS and module != CLI:
                bad.append(f"{module} -> {dep} (only the CLI builds on the commands)")
    return sorted(bad)


def test_the_project_has_no_import_circle_and_no_upward_import():
    graph = import_graph()
    assert len(graph) > 40 and CLI in graph and COMMANDS in graph[CLI]
    assert cycle(graph) is None
    assert layering_violations(graph) == []


def test_the_check_finds_a_circle_and_an_upward_import():
    """The checks themselves can fail: a made-up graph with both faults is caught."""
    graph = {
        "worlds.a": {"caring.b"},  # upward
        "caring.b": {"caring.c"},
        "caring.c": {"caring.b", "analysis.cli"},  # a circle, and the CLI imported
        "analysis.cli": set(),
        "analysis.d": {"caring.commands"},
        "caring.commands": set(),
    }
    assert cycle(graph) == ["caring.b", "caring.c", "caring.b"]
    assert layering_violations(graph) == [
        "analysis.d -> caring.commands (only the CLI builds on the commands)",
        "caring.c -> analysis.cli (imports upward)",
        "caring.c -> analysis.cli (nothing imports the CLI)",
        "worlds.a -> caring.b (imports upward)",
    ]
