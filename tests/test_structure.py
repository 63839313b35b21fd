"""The project's layering, read from the import statements (function-level imports included).

    entry points (train_rqvae, train_decoder, evaluate, recommend)   import any package, never each other
    serving/      a trained model answering requests, its folder     imports evaluation/, data/, modules/, runtime/;
                                                                     nothing of the product imports it
    evaluation/   ranking users, metrics, floors, learning health   imports data/, modules/, runtime/
    data/         raw files -> features, sequences, batches          imports runtime/; nothing of the model
    modules/      the model and its search                           imports ops/, runtime/; no gin, no data/
    runtime/      run machinery (config, checkpoints, DDP, ...)      imports no other package of the project
    ops/          kernels                                            imports nothing of the project; no gin

A package imports only the packages below it: no arrow runs back up, and no cycles anywhere."""
import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ENTRY_POINTS = ("train_rqvae", "train_decoder", "train_sasrec", "evaluate", "recommend")
PACKAGES = ("ops", "runtime", "modules", "data", "evaluation", "serving")
# What each package may import of the project (itself always).
ALLOWED = {
    "ops": set(),
    "runtime": set(),
    "modules": {"ops", "runtime"},
    "data": {"runtime"},
    "evaluation": {"data", "modules", "runtime", "ops"},
    "serving": {"evaluation", "data", "modules", "runtime", "ops"},
}


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


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: imports(path, set(modules)) for name, path in modules.items()}


def transitive(graph: dict[str, set[str]], name: str) -> set[str]:
    """Everything `name` imports, directly or through other project modules."""
    seen, todo = set(), [name]
    while todo:
        for dep in graph.get(todo.pop(), ()):
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


def test_entry_points_import_no_other_entry_point():
    graph = import_graph()
    for name in ENTRY_POINTS:
        assert not graph[name] & set(ENTRY_POINTS), name


def test_packages_import_only_the_packages_below_them():
    graph = import_graph()
    for name, deps in graph.items():
        package = name.split(".")[0]
        if package not in ALLOWED:
            continue
        project = {d.split(".")[0] for d in deps} & (set(PACKAGES) | set(ENTRY_POINTS))
        assert project <= ALLOWED[package] | {package}, f"{name} imports {sorted(project - ALLOWED[package] - {package})}"


def test_only_entry_points_import_serving():
    """serving/ sits on top of the product: training and evaluation never depend on how a model is served."""
    for name, deps in import_graph().items():
        if name.split(".")[0] not in ("serving", *ENTRY_POINTS):
            assert not {d for d in deps if d.split(".")[0] == "serving"}, name


def test_neither_ops_nor_modules_import_gin_even_indirectly():
    graph = import_graph()
    for name in graph:
        if name.split(".")[0] in ("ops", "modules"):
            gin_users = {d for d in transitive(graph, name) if d.split(".")[0] == "gin"}
            assert not gin_users, name


def test_data_imports_nothing_of_the_model_even_indirectly():
    graph = import_graph()
    for name in graph:
        if name.startswith("data"):
            assert not {d for d in transitive(graph, name) if d.split(".")[0] in ("modules", "evaluation", "ops")}, name


def test_no_import_cycles():
    graph = {name: sorted(deps & set(project_modules())) for name, deps in import_graph().items()}
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


def test_the_product_never_imports_the_lab():
    """bench/ (benchmarks), studies/ (write-ups and their tools) and gpu/ (the lent machine's scripts) may
    import the product; nothing of the product imports them."""
    for name, deps in import_graph().items():
        assert not {d.split(".")[0] for d in deps} & {"bench", "studies", "gpu"}, name
