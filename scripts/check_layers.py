"""Check that crossenc's imports point one way: down the layer table, with no cycles.

``python scripts/check_layers.py`` prints every violation and exits 1 if there is one;
tests/test_layers.py runs the same check. Every import counts for the direction: module-level, inside
functions, under ``TYPE_CHECKING``, and names a registry resolves later (``"crossenc.x:load"``,
``importlib.import_module("crossenc.x")``), so a lazy import cannot hide an upward dependency. Cycles
count executed imports and names alike, but not type-only imports, nor a package's registry naming
its own modules (``crossenc.backends`` names each backend's loader; the loaders import the package).
"""

from __future__ import annotations

import ast
import fnmatch
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "crossenc"

# Lowest first. A module may import its own layer or any layer below it, never one above.
# "crossenc.x" covers the module or package x and everything under it; a trailing * is a name prefix.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    # no ML framework at import; the Predictor protocol, errors, artifacts' manifests, model files, data
    ("core", ("crossenc.errors", "crossenc.optional", "crossenc.paths", "crossenc.hardware", "crossenc.quality",
              "crossenc.predictor", "crossenc.manifest", "crossenc.model_source", "crossenc.checkpoint_writer",
              "crossenc.demo", "crossenc.workloads")),
    # pure ops: attention, packing, Triton kernels, the packed encoder
    ("kernels", ("crossenc.kernels",)),
    # pairs -> token ids -> batches -> the scoring pipeline -> scores (sentence-transformers' rules included)
    ("text", ("crossenc.fast_tokenization", "crossenc.pair_encoding", "crossenc.chat_template", "crossenc.inputs", "crossenc.st_compat",
              "crossenc.tokenization", "crossenc.batching", "crossenc.tokenize_ahead", "crossenc.tokenizer_processes",
              "crossenc.pipeline", "crossenc.scores")),
    # Predictor implementations and the declaration of each backend
    ("backends", ("crossenc.backends",)),
    # ONNX / OpenVINO artifacts, verified against the torch backend
    ("exporters", ("crossenc.exporters",)),
    # what the facade composes: backend + exporter on load, backend="auto" profiles
    ("loading", ("crossenc.loading", "crossenc.profiles")),
    ("facade", ("crossenc.cross_encoder",)),
    # entry points and services on top of the facade
    ("top", ("crossenc.__init__", "crossenc.cli", "crossenc.logs", "crossenc.score_cli", "crossenc.support", "crossenc.bench",
             "crossenc.serve", "crossenc.distributed*")),
)


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    line: int
    how: str  # "import" (executed), "type" (under TYPE_CHECKING), "string" (a name resolved later),
    # "registry" (a package __init__ naming one of its own modules)


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1] if len(parts) > 1 else parts  # the package root stays "crossenc.__init__"
        if parts == [PACKAGE]:
            return f"{PACKAGE}.__init__"
    return ".".join(parts)


def discover(root: Path = ROOT) -> dict[str, Path]:
    """Every module of the package: dotted name -> file."""
    return {module_name(path, root): path for path in sorted((root / PACKAGE).rglob("*.py"))}


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The package module ``name`` refers to (a package means its ``__init__``), or None if outside."""
    if name == PACKAGE:
        return f"{PACKAGE}.__init__"
    while name.startswith(PACKAGE + "."):
        if name in modules:
            return name
        name = name.rpartition(".")[0]  # "crossenc.x.attribute" -> "crossenc.x"
    return None


def _is_package(module: str, modules: dict[str, Path]) -> bool:
    return modules[module].name == "__init__.py"


def imports_of(module: str, modules: dict[str, Path]) -> list[Edge]:
    path = modules[module]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    base = PACKAGE if module == f"{PACKAGE}.__init__" else module
    package = base if _is_package(module, modules) else base.rpartition(".")[0]
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    type_only = {id(child) for node in ast.walk(tree) if isinstance(node, ast.If) and _is_type_checking(node.test)
                 for statement in node.body for child in ast.walk(statement)}
    edges: list[Edge] = []

    def add(name: str, line: int, how: str = "import") -> None:
        target = _resolve(name, modules)
        if target is not None and target != module:
            edges.append(Edge(module, target, line, how))

    for node in ast.walk(tree):
        how = "type" if id(node) in type_only else "import"
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno, how)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                origin = ".".join(anchor + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            for alias in node.names:  # ``from crossenc.x import submodule`` imports the submodule, not x's names
                submodule = f"{origin}.{alias.name}"
                add(submodule if submodule in modules else origin, node.lineno, how)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            text = node.value.split(":")[0] if node.value.count(":") == 1 else node.value
            if text.startswith(PACKAGE + ".") and text.replace(".", "").replace("_", "").isalnum() and text in modules:
                own = _is_package(module, modules) and text.startswith(base + ".")
                add(text, node.lineno, "registry" if own else "string")
    return edges


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def layer_of(module: str) -> int | None:
    for index, (_, patterns) in enumerate(LAYERS):
        for pattern in patterns:
            if pattern.endswith("*"):
                if fnmatch.fnmatch(module, pattern):
                    return index
            elif module == pattern or module.startswith(pattern + "."):
                return index
    return None


def unit_of(module: str) -> str:
    """The package a module belongs to for the package-cycle check: crossenc.<x> for x's modules."""
    parts = module.split(".")
    return ".".join(parts[:2]) if module != f"{PACKAGE}.__init__" else PACKAGE


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
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
    return found


def violations(root: Path = ROOT) -> list[str]:
    """Every upward import, module-level cycle, package-level cycle and module missing from LAYERS."""
    modules = discover(root)
    problems = [f"{module}: not in the layer table (scripts/check_layers.py LAYERS)"
                for module in modules if layer_of(module) is None]
    edges = [edge for module in modules for edge in imports_of(module, modules)]
    for edge in edges:
        source, target = layer_of(edge.source), layer_of(edge.target)
        if source is not None and target is not None and target > source:
            problems.append(
                f"{modules[edge.source].relative_to(root)}:{edge.line}: {edge.source} ({LAYERS[source][0]}) "
                f"imports {edge.target} ({LAYERS[target][0]}) upward" + {"string": " by name", "registry": " by name", "type": " for types"}.get(edge.how, "")
            )
    module_graph: dict[str, set[str]] = {}
    unit_graph: dict[str, set[str]] = {}
    for edge in (edge for edge in edges if edge.how in ("import", "string")):
        module_graph.setdefault(edge.source, set()).add(edge.target)
        if unit_of(edge.source) != unit_of(edge.target):
            unit_graph.setdefault(unit_of(edge.source), set()).add(unit_of(edge.target))
    problems += [f"import cycle between modules: {' <-> '.join(cycle)}" for cycle in _cycles(module_graph)]
    problems += [f"import cycle between packages: {' <-> '.join(cycle)}" for cycle in _cycles(unit_graph)]
    return problems


def main(argv: Iterable[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    root = Path(args[0]).resolve() if args else ROOT
    problems = violations(root)
    for problem in problems:
        print(problem)
    print(f"{len(problems)} layer violation(s) in {len(discover(root))} modules", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
