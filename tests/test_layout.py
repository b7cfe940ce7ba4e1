"""The shape of the package: imports flow one way, modules stay short, the command line is a leaf."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "tinybin"
MAX_LINES = 300


def module_name(path):
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def imports(name):
    """The tinybin modules that module `name` imports (at any depth of its code, lazily or not)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for t in targets:
            while t and t not in MODULES:           # `from pkg import name` names a module or an attribute
                t = t.rpartition(".")[0]
            if t and t != name and t.startswith("tinybin"):
                found.add(t)
    return found


GRAPH = {name: imports(name) for name in MODULES}


def test_the_import_graph_is_walked():
    assert {"tinybin.ops.arith", "tinybin.tensor"} <= GRAPH["tinybin"]
    assert "tinybin.train.loop" in GRAPH["tinybin.train.engine"]
    assert "tinybin.train.engine" in GRAPH["tinybin.train.run"]
    assert "tinybin.tensor" in GRAPH["tinybin.ops.arith"]


def test_no_import_cycle():
    """Package __init__ files only re-export: an edge into a package means its __init__ runs
    first, so a module importing its own package's __init__ is left out (Python loads the
    package before the module either way)."""
    def edges(name):
        return {t for t in GRAPH[name] if not name.startswith(t + ".")}

    state = {}

    def visit(name, path):
        state[name] = "open"
        for t in sorted(edges(name)):
            if state.get(t) == "open":
                pytest.fail("import cycle: " + " -> ".join(path[path.index(t):] + [t]))
            if t not in state:
                visit(t, path + [t])
        state[name] = "done"

    for name in MODULES:
        if name not in state:
            visit(name, [name])


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_is_short(name):
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{MODULES[name].relative_to(ROOT.parent)} has {lines} lines (> {MAX_LINES})"


def test_cli_is_a_leaf():
    """Only the two command-line entry points import cli/: `python -m tinybin` and the PyTorch
    trainer, `python -m tinybin.torch.train`, which shares `train`'s flags and checks."""
    users = sorted(n for n, deps in GRAPH.items() if not n.startswith("tinybin.cli")
                   and any(d == "tinybin.cli" or d.startswith("tinybin.cli.") for d in deps))
    assert users == ["tinybin.__main__", "tinybin.torch.train"]


def test_the_engine_never_imports_the_layer_above():
    engine = ("tinybin.tensor", "tinybin.ops", "tinybin.kernels", "tinybin.nn", "tinybin.functional",
              "tinybin.geometry", "tinybin.gradcheck")
    above = ("tinybin.train", "tinybin.probes", "tinybin.bench", "tinybin.zoo", "tinybin.export",
             "tinybin.loader", "tinybin.embedded", "tinybin.models")
    for name, deps in GRAPH.items():
        if name.startswith(engine):
            bad = [d for d in deps if d.startswith(above)]
            assert not bad, f"{name} imports {bad}"
