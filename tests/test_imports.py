"""clexp's import structure, read from the source (imports inside functions too; `if TYPE_CHECKING:`
blocks left out, they never run): no import cycle between modules, no arrow that runs back between
two rooms (the packages under clexp/), no private name taken from another module, and only the
entry points at the top of the package."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "clexp"
ENTRY_POINTS = {"__init__", "__main__", "train", "reproduce"}


def _modules() -> dict[str, Path]:
    out = {}
    for p in ROOT.rglob("*.py"):
        parts = p.relative_to(ROOT.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return out


MODULES = _modules()


def _resolve(name: str) -> str:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def _runtime_nodes(tree: ast.AST):
    """Every node but those under `if TYPE_CHECKING:`."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


def _imports(module: str, path: Path):
    """(imported module, name taken from it or None) for every clexp import of `module`."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in _runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from ((_resolve(a.name), None) for a in node.names if a.name.split(".")[0] == "clexp")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            if base.split(".")[0] != "clexp":
                continue
            for a in node.names:
                full = f"{base}.{a.name}"
                yield (full, None) if full in MODULES else (_resolve(base), a.name)


GRAPH = {m: {t for t, _ in _imports(m, p)} - {m} for m, p in MODULES.items()}


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and (ROOT / parts[1]).is_dir()) else "."


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan's algorithm, iterative)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter[0]
        counter[0] += 1
        stack.append(start)
        on.add(start)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
    return out


def test_the_checker_sees_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_between_modules():
    assert _cycles(GRAPH) == []


def test_no_arrow_runs_back_between_rooms():
    rooms: dict[str, set[str]] = {}
    for m, targets in GRAPH.items():
        for t in targets:
            if _room(m) != _room(t) and "." not in (_room(m), _room(t)):
                rooms.setdefault(_room(m), set()).add(_room(t))
    assert _cycles(rooms) == [], rooms


def test_no_private_name_is_taken_from_another_module():
    taken = [(m, t, name) for m, p in MODULES.items() for t, name in _imports(m, p)
             if name and name.startswith("_") and not name.startswith("__") and t != m]
    assert taken == []


TOP = sorted(m for m in MODULES if m.count(".") == 1 and not (ROOT / m.split(".")[1]).is_dir())


@pytest.mark.parametrize("module", TOP)
def test_only_entry_points_at_the_top(module):
    assert module.split(".")[1] in ENTRY_POINTS, f"{module}: belongs in one of the rooms under clexp/"
