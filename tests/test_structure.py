"""The project's layering, read from the import statements (function-level imports included):
entry points import modules/, data/, ops/ and never each other; ops/ never imports gin; no cycles."""
import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ENTRY_POINTS = ("train_rqvae", "train_decoder", "evaluate")
PACKAGES = ("data", "modules", "ops")


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    files = [REPO / f"{name}.py" for name in ENTRY_POINTS]
    files += [p for package in PACKAGES for p in (REPO / package).rglob("*.py")]
    return {module_name(p): p for p in files}


def imports(path: Path, known: set[str]) -> set[str]:
    """Every module `path` imports, at any depth of its code; project modules resolved to the file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:  # `from modules import x` may name a submodule
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in known else node.module)
    return found


def test_entry_points_import_no_other_entry_point():
    modules = project_modules()
    for name in ENTRY_POINTS:
        assert not imports(modules[name], set(modules)) & set(ENTRY_POINTS), name


def test_ops_never_imports_gin():
    modules = project_modules()
    for name, path in modules.items():
        if name.startswith("ops"):
            assert not {m for m in imports(path, set(modules)) if m.split(".")[0] == "gin"}, name


def test_no_import_cycles():
    modules = project_modules()
    graph = {name: sorted(imports(path, set(modules)) & set(modules)) for name, path in modules.items()}
    state: dict[str, str] = {}  # "open" while on the DFS stack, "done" after

    def visit(name: str, stack: list[str]) -> None:
        state[name] = "open"
        for dep in graph[name]:
            assert state.get(dep) != "open", " -> ".join(stack[stack.index(dep):] + [name, dep])
            if dep not in state:
                visit(dep, stack + [name])
        state[name] = "done"

    for name in graph:
        if name not in state:
            visit(name, [])
    assert len(graph) > 30
