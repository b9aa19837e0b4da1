"""The modules of optics/ and pipeline/ import each other without a cycle.

The graph is built from the source (AST), so an import inside a function counts as much as one
at the top: a function-level import hides a cycle from Python's import machinery, not from the
design. ``from pkg import name`` is an edge to ``pkg.name`` when that is a module, else to
``pkg``. A package's ``__init__`` is a module like any other; importing ``a.b.c`` is not
counted as importing ``a`` and ``a.b`` (their ``__init__`` files hold no imports that
matter here, and counting them would make every lazy re-export in an ``__init__`` a cycle).
"""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("optics", "pipeline")


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, pathlib.Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(name: str, path: pathlib.Path, known: set[str]) -> set[str]:
    """The first-party modules ``name`` imports anywhere in its source (functions included)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = _resolve(name, path.name == "__init__.py", node)
            targets = [f"{module}.{a.name}" if f"{module}.{a.name}" in known else module for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # `import a.b.c` of a name inside a module
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports_of(name, path, set(mods)) for name, path in mods.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None (iterative depth-first search, three colours)."""
    colour = dict.fromkeys(graph, 0)  # 0 new, 1 on the current path, 2 done
    for start in sorted(graph):
        if colour[start]:
            continue
        path, stack = [start], [iter(sorted(graph[start]))]
        colour[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                colour[path.pop()] = 2
                stack.pop()
            elif colour[nxt] == 1:
                return path[path.index(nxt) :] + [nxt]
            elif colour[nxt] == 0:
                colour[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph[nxt])))
    return None


def _top_level_names(tree: ast.Module) -> set[str] | None:
    """Names a module defines at its top level (None: it has a module ``__getattr__``, anything goes)."""
    names: set[str] = set()
    nodes = list(tree.body)
    while nodes:
        node = nodes.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if node.name == "__getattr__":
                return None
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
        elif isinstance(node, (ast.If, ast.Try, ast.With)):
            nodes.extend(ast.iter_child_nodes(node))
        elif isinstance(node, ast.ExceptHandler):
            nodes.extend(node.body)
    return names


def test_every_first_party_from_import_names_something_that_exists():
    """``from a.b import c``: c is a module of a.b or defined at a.b's top level. A function-level
    import is only run when called, so a wrong name there passes every import and most tests."""
    mods = modules()
    defined = {name: _top_level_names(ast.parse(path.read_text())) for name, path in mods.items()}
    bad = []
    for name, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom):
                continue
            module = _resolve(name, path.name == "__init__.py", node)
            if module not in mods or defined[module] is None:
                continue
            bad += [
                f"{name}: from {module} import {a.name}"
                for a in node.names
                if a.name != "*" and f"{module}.{a.name}" not in mods and a.name not in defined[module]
            ]
    assert not bad, "imports of names that do not exist:\n" + "\n".join(bad)


def test_the_graph_sees_function_level_imports():
    graph = import_graph()
    assert "pipeline.run.driver" in graph["pipeline"]  # pipeline/__init__.py imports it inside train()
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)
