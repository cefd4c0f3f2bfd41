"""The package's layout, checked on the source: layers, import circles, private names.

Every ``snowg/**/*.py`` file is parsed with :mod:`ast` (nothing is imported),
and every ``import`` in it (at module level or inside a function) is resolved
to the snowg modules it names. Three rules, each test listing every breach as
``file:line: what``:

* **layers**: a package imports only the packages below it (:data:`LAYERS`);
* **no circles**: no two modules import each other, directly or through
  others (imports under ``if TYPE_CHECKING:`` never run and do not count);
* **private names stay home**: outside a package nobody imports its private
  modules (``snowg.cluster._tls``) or private names (``from snowg.ws import
  _frames``), nor reaches them as attributes (``snowg.cluster.rpc._pending``).
  ``snowg._core`` and ``snowg._errors`` are private to snowg as a whole: every
  layer may use them, but not their own private parts.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, Iterator, List, NamedTuple, Optional, Set, Tuple

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "snowg"

# The layers of docs/architecture.md ("Layers"): what each part of snowg may
# import besides itself. Keep the two in step. None: a tool on top, which may
# import anything.
LAYERS: Dict[str, Optional[Set[str]]] = {
    "_errors": set(),
    "_core": {"_errors"},
    "cluster": {"_core", "_errors"},
    "gen_server": {"_core", "_errors"},
    "supervisor": {"_core", "_errors", "gen_server", "cluster"},
    "pg": {"_core", "_errors", "gen_server", "cluster"},
    "pubsub": {"_core", "_errors", "cluster", "pg"},
    "ws": {"_core", "_errors", "gen_server", "supervisor", "cluster", "pg"},
    "erlang": {"_core", "_errors", "cluster", "gen_server", "supervisor"},
    "rpc": {"cluster"},  # snowg.rpc: the public name of snowg.cluster.rpc
    "sys": {"_errors", "gen_server"},  # snowg.sys: OTP's sys, system requests to GenServers
    # snowg.observe: a node's snapshot, every node answers (and the tools built on it)
    "observe": {"_core", "_errors", "cluster", "rpc", "gen_server", "supervisor", "pg", "sys", "telemetry", "ws"},
    "telemetry": {"_core"},  # snowg.telemetry: the public name of snowg._core.telemetry
    "__init__": None,
    "__main__": None,
    "_node_main": None,
    "_peer": None,
    "cli": None,
    "demo": None,
    "example": None,
    "gunicorn": {"cluster", "ws"},  # snowg.gunicorn, a tool on top: the worker uses these two only
    "testing": None,
}
# Parts that may use only the names a package's __init__ exports, not its other modules.
INTERFACE_ONLY = {("supervisor", "cluster")}


class Import(NamedTuple):
    """One import statement, resolved."""

    where: str  # 'snowg/x/y.py:12'
    module: str  # the module it is in
    target: str  # the module it names ('snowg.cluster' for 'from snowg.cluster import rpc')
    names: Tuple[str, ...]  # the names of a 'from' import
    runs: bool  # False under 'if TYPE_CHECKING:'


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def part_of(module: str) -> str:
    """The layer-table entry of a module: ``'cluster'`` for ``snowg.cluster._tls``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


SOURCES: Dict[str, Path] = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
TREES: Dict[str, ast.Module] = {m: ast.parse(p.read_text(encoding="utf-8"), str(p)) for m, p in SOURCES.items()}


def _where(module: str, node: ast.AST) -> str:
    return f"{SOURCES[module].relative_to(ROOT)}:{getattr(node, 'lineno', 0)}"


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(node: ast.AST, runs: bool = True) -> Iterator[Tuple[ast.AST, bool]]:
    """Every node below ``node``, with False for those under ``if TYPE_CHECKING:``."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            yield child, runs
            for sub in child.body:
                yield sub, False
                yield from _walk(sub, False)
            for sub in child.orelse:
                yield sub, runs
                yield from _walk(sub, runs)
            continue
        yield child, runs
        yield from _walk(child, runs)


def _absolute(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = module if SOURCES[module].name == "__init__.py" else module.rpartition(".")[0]
    base = package.split(".")[: len(package.split(".")) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(module: str) -> Iterator[Import]:
    """The imports of snowg modules in ``module``."""
    for node, runs in _walk(TREES[module]):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "snowg":
                    yield Import(_where(module, node), module, alias.name, (), runs)
        elif isinstance(node, ast.ImportFrom):
            target = _absolute(module, node)
            if target.split(".")[0] == "snowg":
                yield Import(_where(module, node), module, target, tuple(a.name for a in node.names), runs)


def modules_named(imp: Import) -> List[str]:
    """The snowg modules an import loads: the target, or the submodules a 'from' import names."""
    subs = [f"{imp.target}.{n}" for n in imp.names if f"{imp.target}.{n}" in SOURCES]
    if imp.names and len(subs) == len(imp.names):
        return subs
    return [imp.target] + subs


def _private_part(dotted: str, owner: str) -> Optional[str]:
    """The first private segment of ``dotted`` below its part of snowg, if ``owner`` is not that part."""
    parts = dotted.split(".")
    if len(parts) < 2 or part_of(dotted) == owner:
        return None
    for segment in parts[2:]:
        if segment.startswith("_") and not (segment.startswith("__") and segment.endswith("__")):
            return segment
    return None


ALL_IMPORTS: List[Import] = [imp for m in SOURCES for imp in imports_of(m)]


def _report(title: str, found: List[str]) -> str:
    return f"{len(found)} {title}:\n" + "\n".join(sorted(found))


# ------------------------------------------------------------------ layers


def test_every_part_of_the_package_has_a_layer() -> None:
    missing = sorted({part_of(m) for m in SOURCES} - set(LAYERS))
    assert not missing, f"parts of snowg not in LAYERS of tests/test_layout.py (add them): {missing}"


def test_imports_point_down_the_layers() -> None:
    found = []
    for imp in ALL_IMPORTS:
        mine = part_of(imp.module)
        allowed = LAYERS.get(mine)
        if allowed is None:
            continue
        for target in modules_named(imp):
            theirs = part_of(target)
            if theirs == mine:
                continue
            if theirs not in allowed:
                found.append(
                    f"{imp.where}: {mine} imports {target} "
                    f"({mine} may import only {', '.join(sorted(allowed)) or 'nothing of snowg'})"
                )
            elif (mine, theirs) in INTERFACE_ONLY and imp.target != f"snowg.{theirs}":
                found.append(
                    f"{imp.where}: {mine} imports {imp.target} ({mine} may use only the names snowg.{theirs} exports)"
                )
    assert not found, _report("imports against the layers", found)


# ----------------------------------------------------------------- circles


def _import_graph() -> Dict[str, Dict[str, str]]:
    """module -> {module it imports: where}, for the imports that run."""
    graph: Dict[str, Dict[str, str]] = {m: {} for m in SOURCES}
    for imp in ALL_IMPORTS:
        if not imp.runs:
            continue
        for target in modules_named(imp):
            if target in SOURCES and target != imp.module:
                graph[imp.module].setdefault(target, imp.where)
    return graph


def _circles(graph: Dict[str, Dict[str, str]]) -> List[List[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    found: List[List[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_circles() -> None:
    graph = _import_graph()
    found = []
    for circle in _circles(graph):
        members = set(circle)
        edges = [
            f"    {where}: {a} imports {b}" for a in circle for b, where in sorted(graph[a].items()) if b in members
        ]
        found.append(f"circle of {len(circle)} modules: {', '.join(circle)}\n" + "\n".join(edges))
    assert not found, _report("import circles", found)


# ----------------------------------------------------------- private names


def _bindings(module: str) -> Dict[str, str]:
    """Names bound by the module's imports of snowg -> the dotted name they stand for."""
    bound: Dict[str, str] = {}
    for node, _runs in _walk(TREES[module]):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "snowg":
                    if alias.asname:
                        bound[alias.asname] = alias.name
                    else:
                        bound["snowg"] = "snowg"
        elif isinstance(node, ast.ImportFrom):
            target = _absolute(module, node)
            if target.split(".")[0] == "snowg":
                for alias in node.names:
                    bound[alias.asname or alias.name] = f"{target}.{alias.name}"
    return bound


def _dotted(node: ast.Attribute, bound: Dict[str, str]) -> Optional[str]:
    attrs = []
    inner: ast.expr = node
    while isinstance(inner, ast.Attribute):
        attrs.append(inner.attr)
        inner = inner.value
    if isinstance(inner, ast.Name) and inner.id in bound:
        return ".".join([bound[inner.id]] + attrs[::-1])
    return None


def test_no_use_of_another_package_s_private_names() -> None:
    found = []
    for imp in ALL_IMPORTS:
        mine = part_of(imp.module)
        for dotted in [imp.target] + [f"{imp.target}.{n}" for n in imp.names]:
            private = _private_part(dotted, mine)
            if private is not None:
                found.append(f"{imp.where}: imports {dotted} (private to snowg.{part_of(dotted)})")
                break
    for module in SOURCES:
        mine = part_of(module)
        bound = _bindings(module)
        for node, _runs in _walk(TREES[module]):
            if isinstance(node, ast.Attribute):
                chain = _dotted(node, bound)
                if chain is not None and _private_part(chain, mine) == node.attr:
                    found.append(f"{_where(module, node)}: uses {chain} (private to snowg.{part_of(chain)})")
    assert not found, _report("uses of another package's private names", found)


# ------------------------------------------------------- the checks themselves


def test_the_checks_see_imports_and_private_names() -> None:
    """The rules above pass because the code obeys them, not because they see nothing."""
    assert len(SOURCES) > 20 and "snowg._core" in SOURCES
    assert any(imp.module == "snowg" and imp.target.startswith("snowg._core") for imp in ALL_IMPORTS)
    assert _private_part("snowg.cluster._tls.load", "ws") == "_tls"
    assert _private_part("snowg.cluster._tls", "cluster") is None
    assert _private_part("snowg._core.process._kill", "cluster") == "_kill"
    assert _private_part("snowg._core.process.spawn", "cluster") is None
    assert _circles({"a": {"b": ""}, "b": {"c": ""}, "c": {"a": ""}, "d": {"a": ""}}) == [["a", "b", "c"]]
