"""The package's layers, read from its source (every import, lazy ones inside functions included):
core < tools < sim < nodes / web / cli. Nothing imports upwards, nothing outside cli/ imports cli/, and the modules
import no cycle of each other."""
import ast
from pathlib import Path

import visloc_ros

PKG = Path(visloc_ros.__file__).parent
LAYER = {"core": 0, "tools": 1, "sim": 2, "nodes": 3, "web": 3, "cli": 3}


def module_name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every visloc_ros module ``path`` imports (``from .x import y`` resolved; a submodule named by ``y`` counted)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("visloc_ros")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("visloc_ros"):
                found.add(target)
                found |= {f"{target}.{a.name}" for a in node.names}
    return found & MODULES


MODULES = {module_name(p) for p in PKG.rglob("*.py")}
GRAPH = {module_name(p): imports_of(p) for p in PKG.rglob("*.py")}


def layer(mod: str) -> int | None:
    parts = mod.split(".")
    return LAYER.get(parts[1]) if len(parts) > 2 else None


def test_the_graph_is_read():
    assert "visloc_ros.core.localizer" in GRAPH["visloc_ros.core.temporal"]
    assert "visloc_ros.tools.plots" in GRAPH["visloc_ros.cli.evaluate"]  # a lazy import inside a function


def test_no_module_imports_a_higher_layer():
    upward = [(m, t) for m, ts in GRAPH.items() for t in ts
              if layer(m) is not None and layer(t) is not None and layer(t) > layer(m)]
    assert upward == []


def test_nothing_outside_cli_imports_cli():
    assert [(m, t) for m, ts in GRAPH.items() for t in ts
            if ".cli." in t + "." and not m.startswith("visloc_ros.cli")] == []


def test_no_import_cycle():
    done, cycles = set(), []

    def visit(m, stack):
        if m in stack:
            cycles.append(stack[stack.index(m):] + [m])
            return
        if m in done:
            return
        for t in sorted(GRAPH.get(m, ())):
            if t != m and not m.startswith(t + "."):  # a package's own __init__ is not a cycle
                visit(t, stack + [m])
        done.add(m)

    for m in sorted(GRAPH):
        visit(m, [])
    assert cycles == []
