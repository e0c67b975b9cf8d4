#!/usr/bin/env python3
"""Cumulo's layers, checked from the source with ``ast``: ``python scripts/check_layers.py``.

Three layers (docs/development.md, "Layout"):

- services: ``access storage lake compute ml serving pipelines metering console streams dr
  notebooks``, one package each: domain logic, router (``api``), commands (``cli``), SDK.
- composers, which put the services together: ``server/``, ``cli/`` (the root command, which
  mounts each service's sub-app), ``client/__init__.py`` (the root Client, which builds each
  service's sub-client) and ``__main__.py``.
- core: every other module, e.g. ``config``, ``errors``, ``db/``, ``principal``, ``services``,
  ``job``, ``forkserver/``, ``client/transport.py`` (the SDK's toolkit) and ``cli/context.py``,
  ``cli/output.py``, ``cli/paths.py`` (the CLI's toolkit, which each service's ``cli`` uses).

The rules, for every import (at module level, in a function, under ``TYPE_CHECKING``):

1. core imports no service and no composer;
2. a service imports no composer;
3. no module imports a name starting with ``_`` from another service, or a private module of
   it, nor reads such an attribute of a module it imported from there; a service imports
   another service's ``api`` (router) or ``cli`` module never;
4. no import cycle at module level, inside a service or across; and no two modules import
   each other even inside functions (a cycle put off until call time: one of the two should
   take a callback, or what both need moves to a module both import).

Three exceptions, by design:

- core may name a service's public types under ``if TYPE_CHECKING:``, for annotations only:
  nothing is imported when the program runs. ``cumulo.services.Services``, the typed container
  of the running services, is the reason;
- ``cumulo.client`` (the root Client, the public SDK) may be imported lazily (in a function or
  under ``TYPE_CHECKING``) from anywhere: it is what the user's side hands out
  (``cumulo.Client``, ``cumulo.job``, the CLI's commands, a pipeline step). At module level only
  composers import it.
- the root package ``cumulo`` may import ``cumulo.notebooks.magic`` lazily (in a function):
  IPython's ``%load_ext cumulo`` looks for ``load_ipython_extension`` on the package it names.

Each violation prints as ``file:line: X imports Y (rule)``. ``ALLOWED`` lists the known ones,
each with the change that removes it; an entry that no longer matches fails the check too, so
the list only shrinks.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ALLOWED", "Violation", "check", "main"]

PACKAGE = "cumulo"
SERVICES = frozenset({"access", "storage", "lake", "compute", "ml", "serving", "pipelines",
                      "metering", "console", "streams", "dr", "notebooks"})
ROOT_CLIENT = "cumulo.client"
IPYTHON_EXTENSION = "cumulo.notebooks.magic"  # what 'cumulo'.load_ipython_extension loads
_COMPOSER_PACKAGES = ("cumulo.server", "cumulo.cli")
_COMPOSER_MODULES = frozenset({"cumulo.__main__", ROOT_CLIENT})
# Core's packages; a package of cumulo in none of these lists is refused until it is named
# (a new service left out of SERVICES would otherwise pass as core, checked as such).
CORE_PACKAGES = frozenset({"db", "forkserver", "client"})
# The CLI's toolkit, which each service's cli module uses: core, though it lives in cli/.
_CLI_TOOLKIT = frozenset({"cumulo.cli.context", "cumulo.cli.output", "cumulo.cli.paths"})

# Known violations: (importing module, what it imports) -> the change that removes it. Empty
# now, and it should stay short: a new entry needs a reason and a name beside it.
ALLOWED: dict[tuple[str, str], str] = {}


@dataclass(frozen=True, order=True)
class Violation:
    file: str
    line: int
    importer: str
    imported: str
    rule: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.importer} imports {self.imported} ({self.rule})"


@dataclass(frozen=True)
class _Import:
    target: str  # a module, or module.name
    module: str  # the module part of target
    name: str | None  # the name imported from module, if any
    line: int
    lazy: bool  # in a function, or under TYPE_CHECKING: not run at import time
    typing_only: bool  # under TYPE_CHECKING


def _layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in SERVICES:
        return "service"
    if module in _CLI_TOOLKIT:
        return "core"
    if module in _COMPOSER_MODULES or any(
            module == p or module.startswith(p + ".") for p in _COMPOSER_PACKAGES):
        return "composer"
    return "core"


def _service(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in SERVICES else None


def _modules(src: Path) -> dict[str, Path]:
    """Every module under src/cumulo, by dotted name."""
    found: dict[str, Path] = {}
    for path in sorted((src / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


class _Imports(ast.NodeVisitor):
    """The imports of one module, each marked lazy (function, TYPE_CHECKING) or not."""

    def __init__(self, module: str, is_package: bool, known: dict[str, Path]) -> None:
        self.module, self.is_package, self.known = module, is_package, known
        self.found: list[_Import] = []
        self.aliases: dict[str, tuple[str, bool]] = {}  # local name -> (module, typing_only)
        self._function = 0
        self._typing = 0

    def _add(self, module: str, name: str | None, line: int) -> None:
        target = f"{module}.{name}" if name else module
        self.found.append(_Import(target, module, name, line, lazy=bool(
            self._function or self._typing), typing_only=bool(self._typing)))

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self._function += 1
        self.generic_visit(node)
        self._function -= 1

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_If(self, node: ast.If) -> None:
        if not _is_type_checking(node.test):
            self.generic_visit(node)
            return
        self._typing += 1
        for child in node.body:
            self.visit(child)
        self._typing -= 1
        for child in node.orelse:
            self.visit(child)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name == PACKAGE or alias.name.startswith(PACKAGE + "."):
                self._add(alias.name, None, node.lineno)
                if alias.asname:
                    self.aliases[alias.asname] = (alias.name, bool(self._typing))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:
            package = self.module if self.is_package else self.module.rpartition(".")[0]
            for _ in range(node.level - 1):
                package = package.rpartition(".")[0]
            base = f"{package}.{base}" if base else package
        if not (base == PACKAGE or base.startswith(PACKAGE + ".")):
            return
        for alias in node.names:
            submodule = f"{base}.{alias.name}"
            if submodule in self.known:  # from cumulo.compute import zygote: a module
                self._add(submodule, None, node.lineno)
                self.aliases[alias.asname or alias.name] = (submodule, bool(self._typing))
            else:
                self._add(base, alias.name, node.lineno)

    def private_attributes(self, tree: ast.AST) -> Iterator[_Import]:
        """``zygote._reap`` where ``zygote`` is a module this one imported."""
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in self.aliases and _private(node.attr)):
                module, typing_only = self.aliases[node.value.id]
                yield _Import(f"{module}.{node.attr}", module, node.attr, node.lineno,
                              lazy=True, typing_only=typing_only)


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _rule(importer: str, imp: _Import) -> str | None:
    """Which rule this import breaks, if any (cycles are found separately)."""
    if importer == PACKAGE and imp.lazy and imp.module == IPYTHON_EXTENSION:
        return None  # %load_ext cumulo (see the module's docstring)
    source, target = _layer(importer), _layer(imp.module)
    if target == "composer":
        if imp.module == ROOT_CLIENT and imp.lazy:
            return None
        if source == "core":
            return "core imports no composer"
        if source == "service":
            return "a service imports no composer"
        return None
    if target != "service":
        return None
    theirs = _service(imp.module)
    if source == "service" and _service(importer) == theirs:
        return None  # inside one service's room: anything goes but cycles
    inside = imp.module.split(".")[2:]
    if any(_private(part) for part in inside) or (imp.name and _private(imp.name)):
        return f"private to {theirs}"
    if source == "core" and not imp.typing_only:
        return "core imports no service"
    if source != "composer" and inside[:1] in (["api"], ["cli"]):
        return f"{theirs}'s {'router' if inside[0] == 'api' else 'CLI'} is for the composers"
    return None


def _cycles(files: dict[str, str], edges: dict[str, dict[str, int]],
            lazy_edges: dict[str, dict[str, int]]) -> Iterator[Violation]:
    """Module-level cycles, and two modules that import each other (in functions too)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, {}):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            connect(node)
    for component in components:
        path = _cycle_path(component, edges)
        first, second = path[0], path[1]
        yield Violation(files[first], edges[first][second], first, second,
                        "import cycle at module level: " + " -> ".join(path))
    component_of = {module: i for i, c in enumerate(components) for module in c}
    for a in sorted(lazy_edges):
        for b, line in sorted(lazy_edges[a].items()):
            reported = a in component_of and component_of[a] == component_of.get(b)
            if a < b and a in lazy_edges.get(b, {}) and not reported:
                yield Violation(files[a], line, a, b,
                                f"{a} and {b} import each other (in functions)")


def _cycle_path(component: list[str], edges: dict[str, dict[str, int]]) -> list[str]:
    """A shortest cycle through the component's first module, as a list of modules."""
    start, members = component[0], set(component)
    previous: dict[str, str] = {}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for nxt in sorted(edges.get(node, {})):
            if nxt == start:
                path = [node]
                while path[-1] != start:
                    path.append(previous[path[-1]])
                return [*reversed(path), start]
            if nxt in members and nxt not in previous:
                previous[nxt] = node
                queue.append(nxt)
    return [*component, start]  # not reached: a component's members reach its first


def check(src: Path) -> list[Violation]:
    """Every violation of the layers in ``src`` (the folder that holds ``cumulo/``)."""
    known = _modules(src)
    base = src.parent if src.name == "src" else src
    files = {module: str(path.relative_to(base)) for module, path in known.items()}
    found: list[Violation] = []
    edges: dict[str, dict[str, int]] = {}  # module -> module imported at import time -> line
    lazy_edges: dict[str, dict[str, int]] = {}  # the same, counting imports in functions
    named = SERVICES | CORE_PACKAGES | {p.split(".")[1] for p in _COMPOSER_PACKAGES}
    unnamed: set[str] = set()
    for module, path in known.items():
        parts = module.split(".")
        if len(parts) >= 3 and parts[1] not in named and parts[1] not in unnamed:
            unnamed.add(parts[1])
            found.append(Violation(files[module], 1, module, "-", (
                f"package cumulo.{parts[1]} is in no layer: add it to SERVICES or "
                "CORE_PACKAGES in scripts/check_layers.py")))
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        except SyntaxError as exc:
            found.append(Violation(files[module], exc.lineno or 0, module, "?",
                                   f"its source does not parse: {exc.msg}"))
            continue
        visitor = _Imports(module, path.name == "__init__.py", known)
        visitor.visit(tree)
        for imp in [*visitor.found, *visitor.private_attributes(tree)]:
            rule = _rule(module, imp)
            if rule:
                found.append(Violation(files[module], imp.line, module, imp.target, rule))
            if imp.module in known and imp.module != module and not imp.typing_only:
                if not imp.lazy:
                    edges.setdefault(module, {}).setdefault(imp.module, imp.line)
                lazy_edges.setdefault(module, {}).setdefault(imp.module, imp.line)
    found += _cycles(files, edges, lazy_edges)
    return sorted(set(found))


def report(src: Path) -> tuple[list[Violation], list[str]]:
    """The violations ALLOWED does not list, and the ALLOWED entries that match nothing."""
    found = check(src)
    new = [v for v in found if (v.importer, v.imported) not in ALLOWED]
    seen = {(v.importer, v.imported) for v in found}
    stale = [f"{a} imports {b}: no longer found; remove it from ALLOWED in "
             f"scripts/check_layers.py" for (a, b) in ALLOWED if (a, b) not in seen]
    return new, stale


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    src = Path(args[0]) if args else Path(__file__).resolve().parent.parent / "src"
    new, stale = report(src)
    for violation in new:
        print(violation)
    for line in stale:
        print(line)
    if new or stale:
        print(f"{len(new)} layering violation(s), {len(stale)} stale allowance(s); the rules "
              "are in scripts/check_layers.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
