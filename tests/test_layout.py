"""The package's shape: layers import downwards only, no package cycle, small modules, tools kept out of serving."""

from __future__ import annotations

import ast
from pathlib import Path

import server

SERVER = Path(server.__file__).resolve().parent
# Lowest first; a module may import from its own layer and the layers before it (server/__init__.py).
LAYERS = [{"core"}, {"ingest"}, {"history"}, {"live"}, {"analytics"}, {"api"}, {"app", "runtime"}, {"tools"},
          {"cli", "__main__"}]
MAX_LINES = 400


def rank(package: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if package in layer)


def package_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "server" and len(parts) > 1 else None


def imports() -> list[tuple[Path, int, str, str]]:
    """(file, line, importing package, imported module) for every ``server`` import, lazy ones included."""
    found = []
    for path in sorted(SERVER.rglob("*.py")):
        rel = path.relative_to(SERVER.parent).with_suffix("")
        own = package_of(".".join(rel.parts))
        if own is None or own == "__init__":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.startswith("server"):
                names = [f"server.{a.name}" for a in node.names] if node.module == "server" else [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names if a.name.startswith("server")]
            elif isinstance(node, ast.ImportFrom) and node.level:
                raise AssertionError(f"{path}:{node.lineno}: relative import; write `from server.… import …`")
            else:
                continue
            found += [(path, node.lineno, own, name) for name in names if package_of(name) not in (None, own)]
    return found


def test_every_package_is_in_a_layer() -> None:
    """Each subpackage and top-level module of server/ has its place in the layer order."""
    packages = {p.stem if p.is_file() else p.name for p in SERVER.iterdir()
                if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").is_file()}
    assert packages == set().union(*LAYERS)


def test_no_package_imports_a_layer_above_it() -> None:
    """core < ingest < history < live < analytics < api < app < tools < cli: imports only go down."""
    upward = [f"{path.relative_to(SERVER.parent)}:{line} ({own}) imports {name}"
              for path, line, own, name in imports() if rank(package_of(name) or "") > rank(own)]
    assert not upward, "\n".join(upward)


def test_no_import_cycle_between_packages() -> None:
    """The graph of package imports has no cycle (same-layer packages included)."""
    graph: dict[str, set[str]] = {}
    for _, _, own, name in imports():
        graph.setdefault(own, set()).add(package_of(name) or "")
    visiting: list[str] = []

    def visit(node: str, done: set[str]) -> None:
        assert node not in visiting, f"import cycle: {' -> '.join([*visiting[visiting.index(node):], node])}"
        if node in done:
            return
        visiting.append(node)
        for nxt in graph.get(node, ()):
            visit(nxt, done)
        visiting.pop()
        done.add(node)

    done: set[str] = set()
    for node in graph:
        visit(node, done)


def test_tools_are_imported_by_the_command_line_only() -> None:
    """The running server never loads bench, seed or simulate code: only cli imports server.tools."""
    users = {own for _, _, own, name in imports() if package_of(name) == "tools"}
    assert users <= {"cli"}, users


def test_no_module_is_over_400_lines() -> None:
    """A module past 400 lines is two nouns."""
    long = {str(p.relative_to(SERVER.parent)): n for p in SERVER.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, long


def test_every_package_says_what_it_holds_and_may_import() -> None:
    """Each package's __init__ docstring names its contents and what it may import."""
    for init in SERVER.glob("*/__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert "May import" in doc, f"{init.relative_to(SERVER.parent)} does not say what it may import"
