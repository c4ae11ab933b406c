"""The package's import graph: no circles, and every arrow runs down the floors of the house.

Reads the imports of every module under kerazoo/ (module level and inside functions alike) with `ast`, so a
lazy import counts as much as a top-level one. `python tests/test_import_graph.py` prints the figures (modules,
floors, arrows, upward arrows, circles).
"""

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "kerazoo"

# The floors, bottom first: a module may import its own floor or any floor below it. The first matching
# prefix names a module's floor; the root package (the lazy public API) shares the top floor with the
# command line and the demo, which use it.
FLOORS = (
    ("kerazoo.utils",),
    ("kerazoo.layers", "kerazoo.losses", "kerazoo.metrics", "kerazoo.optimizers"),
    ("kerazoo.encoders",),
    ("kerazoo.tasks",),
    ("kerazoo.inference",),
    ("kerazoo.models",),
    ("kerazoo.data",),
    ("kerazoo.training", "kerazoo.zoo", "kerazoo.export"),
    ("kerazoo.bench",),
    ("kerazoo.cli", "kerazoo.demo", "kerazoo"),
)


def module_name(path):
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules():
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _resolve(name, known):
    """The longest known module that `name` (a dotted import target) starts with."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def import_graph():
    """{module: set of kerazoo modules it imports} over every import statement in the package."""
    known = modules()
    graph = {}
    for name, path in known.items():
        targets = set()
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                candidates = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    base = f"{anchor}.{base}" if base else anchor
                # `from a import b`: the module a.b when there is one, else a itself.
                candidates = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                              for alias in node.names]
            else:
                continue
            for candidate in candidates:
                if candidate == "kerazoo" or candidate.startswith("kerazoo."):
                    target = _resolve(candidate, known)
                    if target and target != name:
                        targets.add(target)
        graph[name] = targets
    return graph


def floor(name):
    for level, prefixes in enumerate(FLOORS):
        if any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes):
            return level
    raise AssertionError(f"{name} is on no floor: add its package to FLOORS in {__file__}")


def circles(graph):
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for node in graph:
        if node not in index:
            visit(node)
    return found


def upward_arrows(graph):
    return sorted((source, target) for source, targets in graph.items() for target in targets
                  if floor(target) > floor(source))


def depth(graph):
    """Floors of the graph as it is: the longest chain of arrows (circles collapsed would be needed; none here)."""
    memo = {}

    def longest(node, seen=()):
        if node in memo:
            return memo[node]
        if node in seen:
            return 0
        best = 1 + max((longest(t, seen + (node,)) for t in graph[node] if t != node), default=0)
        memo[node] = best
        return best

    return max(longest(node) for node in graph)


def test_no_import_circle():
    assert circles(import_graph()) == []


def test_every_arrow_runs_down_the_floors():
    assert upward_arrows(import_graph()) == []


def test_every_module_has_a_floor():
    for name in modules():
        floor(name)


if __name__ == "__main__":
    graph = import_graph()
    found = circles(graph)
    print(f"modules {len(graph)}, arrows {sum(map(len, graph.values()))}, longest chain {depth(graph)} modules, "
          f"circles {len(found)}")
    for component in found:
        print("  circle:", " ".join(component))
    try:
        upward = upward_arrows(graph)
        print(f"upward arrows {len(upward)}")
        for source, target in upward:
            print(f"  {source} -> {target}")
    except AssertionError as error:
        print(error)
