"""Dependencies point inward only: every import under python/ goes to the same layer or one inside it, and no
module imports itself back through others (docs/architecture.md draws the layers).

:data:`LAYERS` is the one place a module's layer is decided. A new module that no entry names fails
:func:`test_every_module_is_in_a_layer` until it is placed here, deliberately. Imports are read from the source
(module level and inside functions; relative ones resolved), except those under ``if TYPE_CHECKING:``, which
never run. Cython modules are scanned for Python imports too.
"""

from __future__ import annotations

import ast
import re
from collections import deque
from dataclasses import dataclass
from functools import cache
from itertools import pairwise
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "python"
PACKAGES = ("sente", "csente")

LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    # inside out; "pkg.*" names a package and everything in it, any other entry one module
    ("codecs", ("csente", "csente.*", "sente.edn", "sente.transit", "sente.packers", "sente.keys", "sente.msgpack")),
    ("protocol", ("sente.protocol", "sente.protocol.*")),
    ("transport", ("sente.transport", "sente.transport.*", "sente.sessions", "sente.loop_timer", "sente.handlers",
                   "sente.config", "sente.logs")),
    ("endpoints", ("sente.server", "sente.server_asgi", "sente.server_inbox", "sente.client", "sente.client.*",
                   "sente.app", "sente.metrics", "sente.jsclient", "sente.ops")),
    ("cluster", ("sente.cluster", "sente.cluster.*", "sente.serve", "sente.publisher")),
    ("apps and ops", ("sente", "sente.__main__", "sente.cli", "sente.demo", "sente.testapp", "sente.snapshot",
                      "sente.bench", "sente.bench.*")),
)


@dataclass(frozen=True)
class Module:
    name: str
    path: str
    """Relative to the repository, for messages."""
    source: str
    package: bool
    """An ``__init__``: relative imports resolve from the module itself."""
    cython: bool = False


@dataclass(frozen=True)
class Import:
    line: int
    target: str


def scan(root: Path = ROOT) -> dict[str, Module]:
    """Every module of the packages under ``root``, by dotted name (a fresh dict: callers may add to it)."""
    return dict(_scan(root))


@cache
def _scan(root: Path) -> dict[str, Module]:
    modules: dict[str, Module] = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*")):
            if path.suffix not in (".py", ".pyx"):
                continue
            parts = list(path.relative_to(root).with_suffix("").parts)
            init = parts[-1] == "__init__"
            name = ".".join(parts[:-1] if init else parts)
            modules[name] = Module(name, str(path.relative_to(root.parent)), path.read_text(), init,
                                   cython=path.suffix == ".pyx")
    return modules


def layer_of(name: str) -> int | None:
    for index, (_, entries) in enumerate(LAYERS):
        for entry in entries:
            if name == entry.removesuffix(".*") or (entry.endswith(".*") and name.startswith(entry[:-1])):
                return index
    return None


def _type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


class _Imports(ast.NodeVisitor):
    def __init__(self, module: Module) -> None:
        self.module = module
        self.found: list[tuple[int, str, list[str]]] = []  # line, module named, names imported from it

    def visit_If(self, node: ast.If) -> None:
        if _type_checking(node.test):
            for child in node.orelse:
                self.visit(child)
        else:
            self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.found.append((node.lineno, alias.name, []))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:
            package = self.module.name.split(".")
            if not self.module.package:
                package.pop()
            package = package[:len(package) - node.level + 1]
            base = ".".join([*package, *([node.module] if node.module else [])])
        self.found.append((node.lineno, base, [alias.name for alias in node.names]))


_PYX_IMPORT = re.compile(r"^\s*(?:from\s+([\w.]+)\s+import\s+([\w, ]+)|import\s+([\w.]+))", re.MULTILINE)


def imports_of(module: Module, known: frozenset[str]) -> list[Import]:
    """The imports of the scanned packages that ``module`` runs, each resolved to the module it loads."""
    out: list[Import] = []
    for line, named, names in _named_imports(module):
        if named.split(".")[0] not in PACKAGES:
            continue
        for target in [f"{named}.{n}" for n in names if f"{named}.{n}" in known] or [named]:
            while target not in known and "." in target:
                target = target.rpartition(".")[0]
            out.append(Import(line, target))
    return out


@cache
def _named_imports(module: Module) -> list[tuple[int, str, list[str]]]:
    """(line, module named, names imported from it) for each import ``module`` runs."""
    if module.cython:  # ``cimport`` is compile-time; a Python import in a .pyx reads like one in a .py
        return [(module.source.count("\n", 0, m.start()) + 1, m.group(1) or m.group(3),
                 [n.strip() for n in (m.group(2) or "").split(",") if n.strip()])
                for m in _PYX_IMPORT.finditer(module.source)]
    visitor = _Imports(module)
    visitor.visit(ast.parse(module.source, module.path))
    return visitor.found


def problems(modules: dict[str, Module]) -> list[str]:
    """What breaks the layering, one readable line each: unplaced modules, outward imports, import cycles."""
    known = frozenset(modules)
    out = [f"{m.path}: {m.name} is in no layer: add it to LAYERS in tests/test_layers.py"
           for m in modules.values() if layer_of(m.name) is None]
    graph: dict[str, dict[str, int]] = {name: {} for name in modules}
    for module in modules.values():
        inner = layer_of(module.name)
        for imp in imports_of(module, known):
            if imp.target != module.name:
                graph[module.name].setdefault(imp.target, imp.line)
            outer = layer_of(imp.target)
            if inner is not None and outer is not None and outer > inner:
                out.append(f"{module.path}:{imp.line}: {module.name} ({LAYERS[inner][0]}) imports {imp.target} "
                           f"({LAYERS[outer][0]}): an inner layer may not import an outer one")
    for cycle in cycles(graph):
        steps = " -> ".join(f"{a} (line {graph[a][b]})" for a, b in pairwise(cycle))
        out.append(f"import cycle: {steps} -> {cycle[0]}")
    return out


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """One cycle (a closed path) per strongly connected component of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def connect(v: str) -> None:  # Tarjan's algorithm
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(component)

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return [_cycle_through(min(c), c, graph) for c in components]


def _cycle_through(start: str, component: set[str], graph: dict[str, dict[str, int]]) -> list[str]:
    """A shortest path from ``start`` back to itself inside ``component`` (breadth first; strongly connected, so
    there is one): ``[start, ..., start]``."""
    parent: dict[str, str] = {}
    queue = deque([start])
    while queue:
        v = queue.popleft()
        for w in sorted(graph[v]):
            if w == start:
                path = [v]
                while path[-1] != start:
                    path.append(parent[path[-1]])
                return [*path[::-1], start]
            if w in component and w not in parent:
                parent[w] = v
                queue.append(w)
    raise AssertionError(f"{start} is on no cycle")


# ---------------------------------------------------------------------- the project


def test_every_module_is_in_a_layer() -> None:
    modules = scan()
    assert "sente.server" in modules and "csente.shm" in modules
    unplaced = [p for p in problems(modules) if "in no layer" in p]
    assert not unplaced, "\n".join(unplaced)


def test_every_import_points_inward() -> None:
    outward = [p for p in problems(scan()) if "inner layer" in p]
    assert not outward, "\n".join(outward)


def test_no_import_cycles() -> None:
    found = [p for p in problems(scan()) if p.startswith("import cycle")]
    assert not found, "\n".join(found)


# ---------------------------------------------------------------------- the check itself


def _with(name: str, source: str, *, package: bool = False) -> dict[str, Module]:
    modules = scan()
    path = f"python/{name.replace('.', '/')}{'/__init__' if package else ''}.py"
    modules[name] = Module(name, path, source, package)
    return modules


def test_an_outward_import_is_named_with_its_file_line_and_layers() -> None:
    events = scan()["sente.protocol.events"]
    source = events.source + "\n\ndef hook():\n    from ..server import ChannelSocketServer\n"
    line = source.count("\n")
    found = problems(_with("sente.protocol.events", source))
    assert f"python/sente/protocol/events.py:{line}: sente.protocol.events (protocol) imports sente.server " \
           "(endpoints): an inner layer may not import an outer one" in found
    assert any(p.startswith("import cycle") and f"sente.protocol.events (line {line}) -> sente.server" in p
               for p in found)  # the server imports the events module: both ways now


def test_absolute_and_submodule_imports_resolve_to_the_module_loaded() -> None:
    found = problems(_with("sente.packers", scan()["sente.packers"].source + "from sente.cluster import redis\n"))
    assert len(found) == 1 and "imports sente.cluster.redis (cluster)" in found[0]


def test_imports_under_type_checking_never_run_so_they_may_point_anywhere() -> None:
    source = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from sente.server import ChannelSocketServer\n"
    assert problems(_with("sente.protocol.typed", source)) == []


def test_a_cycle_inside_one_layer_is_named_module_by_module() -> None:
    modules = _with("sente.protocol.a", "from . import b\n")
    modules["sente.protocol.b"] = Module("sente.protocol.b", "python/sente/protocol/b.py", "\n\nfrom .a import x\n",
                                         False)
    assert problems(modules) == ["import cycle: sente.protocol.a (line 1) -> sente.protocol.b (line 3) "
                                 "-> sente.protocol.a"]


def test_a_new_module_must_be_placed_in_a_layer() -> None:
    assert problems(_with("sente.widgets", "")) == [
        "python/sente/widgets.py: sente.widgets is in no layer: add it to LAYERS in tests/test_layers.py"]


def test_a_cython_module_is_read_for_its_python_imports() -> None:
    modules = scan()
    fanout = modules["csente.fanout"]
    modules["csente.fanout"] = Module(fanout.name, fanout.path, "from sente.server import ChannelSocketServer\n",
                                      False, cython=True)
    assert "python/csente/fanout.pyx:1: csente.fanout (codecs) imports sente.server (endpoints): an inner layer " \
           "may not import an outer one" in problems(modules)
