"""The import architecture of `engine` and `workers`, read from the source with `ast`.

Every import counts: module level, inside functions and methods, under `if TYPE_CHECKING:`, in
`try` blocks. A node of the graph is a module (`engine.delivery.deliverer`); a package's
`__init__.py` is the package's node (`engine.delivery`). Directories without an `__init__.py` are
namespace packages: no code runs for them, so they are no nodes.

An import gives an edge to the most specific module it names that exists in the tree, and, because
importing `a.b.c` runs the package inits of `a` and `a.b` first, edges to those parent packages as
well (except to the importer and its own parents, which are running already). Those edges are shown
as "package init run by importing …" in failure messages.

Every check takes a root directory and the package names to read there, so the self-tests at the
end run the very same code on a small tree written into `tmp_path`.
"""

from __future__ import annotations

import ast
import functools
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES: tuple[str, ...] = ("engine", "workers")
# relative to the root, POSIX separators; Alembic's scripts are not part of the import graph
EXCLUDED: tuple[str, ...] = ("engine/db/migrations",)

FOUNDATIONS: frozenset[str] = frozenset({"engine.settings", "engine.errors", "engine.logs", "engine.metrics"})
MAX_LINES = 400


# ---------------------------------------------------------------------------------------------
# The graph


@dataclass(frozen=True, order=True)
class Edge:
    """One import: `importer` runs `imported`, written at `path:line`.

    `via` is set for the edge to a parent package whose `__init__.py` runs only because the
    statement imports a module inside it (`via` is that module).
    """

    importer: str
    imported: str
    path: str
    line: int
    via: str | None = None

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}"
        if self.via is not None:
            where += f", package init run by importing {self.via}"
        return f"{self.importer} -> {self.imported} ({where})"


@dataclass(frozen=True)
class ImportGraph:
    modules: Mapping[str, Path]  # module name -> its file
    edges: tuple[Edge, ...]

    def successors(self) -> dict[str, set[str]]:
        result: dict[str, set[str]] = {name: set() for name in self.modules}
        for edge in self.edges:
            result[edge.importer].add(edge.imported)
        return result


@dataclass(frozen=True)
class Cycle:
    """A strongly connected component of more than one module, or a module importing itself."""

    members: tuple[str, ...]
    edges: tuple[Edge, ...]
    example: tuple[str, ...]  # one concrete loop through the component, first module repeated at the end

    def __str__(self) -> str:
        lines = [
            f"cycle among {len(self.members)} module(s): {', '.join(self.members)}",
            f"    for example: {' -> '.join(self.example)}",
            "    edges inside it:",
        ]
        lines += [f"      {edge}" for edge in self.edges]
        return "\n".join(lines)


def in_package(module: str, package: str) -> bool:
    """Whether `module` is `package` or one of its submodules."""
    return module == package or module.startswith(package + ".")


def parents(module: str) -> list[str]:
    """`a.b.c` -> [`a`, `a.b`]: the packages whose inits run before `module`."""
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _excluded(relative: str, excluded: Sequence[str]) -> bool:
    return any(relative == prefix or relative.startswith(prefix.rstrip("/") + "/") for prefix in excluded)


def module_files(root: Path, packages: Sequence[str], excluded: Sequence[str] = EXCLUDED) -> dict[str, Path]:
    """Module name -> file, for every `.py` file under `root/<package>` not under an excluded path."""
    modules: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            relative = path.relative_to(root).as_posix()
            if _excluded(relative, excluded):
                continue
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _most_specific(name: str, modules: Mapping[str, Path]) -> str | None:
    """`name` if it is a module of the tree, else its nearest parent that is one."""
    for candidate in [name, *reversed(parents(name))]:
        if candidate in modules:
            return candidate
    return None


def _relative_base(importer: str, is_package: bool, level: int, module: str | None, where: str) -> str:
    """The absolute module named by `from <level dots><module> import …` inside `importer`."""
    package = importer.split(".") if is_package else importer.split(".")[:-1]
    keep = len(package) - (level - 1)
    if keep < 1:
        raise ValueError(f"{where}: relative import goes beyond the top-level package")
    return ".".join(package[:keep] + (module.split(".") if module else []))


def _targets(
    statement: ast.Import | ast.ImportFrom,
    importer: str,
    is_package: bool,
    where: str,
    modules: Mapping[str, Path],
) -> list[str]:
    """The modules of the tree a statement names, most specific first found, without repeats.

    `import a.b.c` and `from a.b import c` name `a.b.c` when it is a module, else the nearest parent
    that is; `from a.b import name`, name being no submodule, names `a.b`.
    """
    if isinstance(statement, ast.Import):
        names = [alias.name for alias in statement.names]
    else:
        base = (
            _relative_base(importer, is_package, statement.level, statement.module, where)
            if statement.level
            else statement.module or ""
        )
        names = []
        for alias in statement.names:
            submodule = f"{base}.{alias.name}"
            names.append(submodule if alias.name != "*" and submodule in modules else base)
    targets: list[str] = []
    for name in names:
        target = _most_specific(name, modules)
        if target is not None and target not in targets:
            targets.append(target)
    return targets


def _edges_of_statement(
    statement: ast.Import | ast.ImportFrom,
    importer: str,
    is_package: bool,
    path: str,
    modules: Mapping[str, Path],
) -> list[Edge]:
    """The edges to what the statement names, then to the package inits that importing it runs."""
    targets = _targets(statement, importer, is_package, f"{path}:{statement.lineno}", modules)
    edges = [Edge(importer, target, path, statement.lineno) for target in targets]
    running = {importer, *parents(importer)}  # their inits run already, or are this very module
    seen = set(targets)
    for target in targets:
        for package in parents(target):
            if package in modules and package not in running and package not in seen:
                seen.add(package)
                edges.append(Edge(importer, package, path, statement.lineno, via=target))
    return edges


def module_edges(importer: str, path: Path, root: Path, modules: Mapping[str, Path]) -> list[Edge]:
    """Every edge from one module, from all its import statements wherever they are."""
    relative = path.relative_to(root).as_posix()
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=relative)
    is_package = path.name == "__init__.py"
    edges: list[Edge] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            edges += _edges_of_statement(node, importer, is_package, relative, modules)
    return sorted(set(edges), key=lambda e: (e.line, e.via is not None, e.imported))


@functools.cache
def _cached_graph(root: Path, packages: tuple[str, ...], excluded: tuple[str, ...]) -> ImportGraph:
    modules = module_files(root, packages, excluded)
    edges: list[Edge] = []
    for name, path in modules.items():
        edges += module_edges(name, path, root, modules)
    return ImportGraph(modules=modules, edges=tuple(edges))


def build_graph(
    root: Path, packages: Sequence[str] = PACKAGES, excluded: Sequence[str] = EXCLUDED
) -> ImportGraph:
    """The import graph of `packages` under `root` (read once per root and package list)."""
    return _cached_graph(root.resolve(), tuple(packages), tuple(excluded))


# ---------------------------------------------------------------------------------------------
# The rules: each returns its violations, empty when the rule holds


def forbidden_edges(root: Path, packages: Sequence[str], forbidden: Callable[[str, str], bool]) -> list[Edge]:
    """The edges `importer -> imported` for which `forbidden(importer, imported)` is true."""
    graph = build_graph(root, packages)
    return sorted(
        (e for e in graph.edges if forbidden(e.importer, e.imported)),
        key=lambda e: (e.importer, e.line, e.imported),
    )


def engine_imports_of_workers(root: Path, packages: Sequence[str] = PACKAGES) -> list[Edge]:
    """Rule 1: nothing in `engine` imports `workers`."""
    return forbidden_edges(root, packages, lambda a, b: in_package(a, "engine") and in_package(b, "workers"))


def engine_imports_of_entry_points(root: Path, packages: Sequence[str] = PACKAGES) -> list[Edge]:
    """Rule 2: `engine.cli` only from inside itself; `engine.http` only from itself and `engine.cli`."""

    def forbidden(importer: str, imported: str) -> bool:
        if not in_package(importer, "engine"):
            return False
        if in_package(imported, "engine.cli"):
            return not in_package(importer, "engine.cli")
        if in_package(imported, "engine.http"):
            return not (in_package(importer, "engine.http") or in_package(importer, "engine.cli"))
        return False

    return forbidden_edges(root, packages, forbidden)


def foundation_imports_beyond_foundations(root: Path, packages: Sequence[str] = PACKAGES) -> list[Edge]:
    """Rule 3: the foundations import only each other and the top package `engine`."""

    def forbidden(importer: str, imported: str) -> bool:
        in_foundations = any(in_package(importer, f) for f in FOUNDATIONS)
        allowed = imported == "engine" or any(in_package(imported, f) for f in FOUNDATIONS)
        return in_foundations and not allowed

    return forbidden_edges(root, packages, forbidden)


def db_imports_beyond_foundations(root: Path, packages: Sequence[str] = PACKAGES) -> list[Edge]:
    """Rule 4: `engine.db` and its submodules import only the foundations and `engine.db.*`."""

    def forbidden(importer: str, imported: str) -> bool:
        allowed = in_package(imported, "engine.db") or any(in_package(imported, f) for f in FOUNDATIONS)
        return in_package(importer, "engine.db") and not allowed

    return forbidden_edges(root, packages, forbidden)


def workers_imports_of_entry_points(root: Path, packages: Sequence[str] = PACKAGES) -> list[Edge]:
    """Rule 6: `workers` may import the engine, but not `engine.cli` nor `engine.http`."""
    return forbidden_edges(
        root,
        packages,
        lambda a, b: (
            in_package(a, "workers") and (in_package(b, "engine.cli") or in_package(b, "engine.http"))
        ),
    )


def strongly_connected_components(successors: Mapping[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative; each component sorted, components in discovery order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> tuple[str, Iterator[str]]:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        return node, iter(sorted(successors.get(node, ())))

    for start in sorted(successors):
        if start in index:
            continue
        work = [visit(start)]
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    work.append(visit(child))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component: list[str] = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    components.append(sorted(component))
    return components


def _example_loop(start: str, members: set[str], successors: Mapping[str, set[str]]) -> tuple[str, ...]:
    """A shortest loop from `start` back to itself inside the component (breadth first)."""
    previous: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for child in sorted(successors[node] & members):
            if child == start:
                path = [start]
                while node != start:
                    path.append(node)
                    node = previous[node]
                return (start, *reversed(path[1:]), start)
            if child not in previous:
                previous[child] = node
                queue.append(child)
    raise AssertionError(f"{start} is in a cycle but no loop back to it was found")


def import_cycles(root: Path, packages: Sequence[str] = PACKAGES) -> list[Cycle]:
    """Rule 5: every import cycle (component of more than one module, or a self-import)."""
    graph = build_graph(root, packages)
    successors = graph.successors()
    cycles: list[Cycle] = []
    for component in strongly_connected_components(successors):
        members = set(component)
        if len(component) == 1 and component[0] not in successors[component[0]]:
            continue
        inside = sorted(
            (e for e in graph.edges if e.importer in members and e.imported in members),
            key=lambda e: (e.importer, e.line, e.imported),
        )
        example = _example_loop(component[0], members, successors)
        cycles.append(Cycle(members=tuple(component), edges=tuple(inside), example=example))
    return sorted(cycles, key=lambda c: c.members)


def oversized_modules(
    root: Path, packages: Sequence[str] = PACKAGES, limit: int = MAX_LINES
) -> list[tuple[str, int]]:
    """(file, line count) of every module longer than `limit` lines, longest first."""
    graph = build_graph(root, packages)
    counts = [
        (path.relative_to(root.resolve()).as_posix(), len(path.read_text(encoding="utf-8").splitlines()))
        for path in graph.modules.values()
    ]
    return sorted(((p, n) for p, n in counts if n > limit), key=lambda pn: (-pn[1], pn[0]))


def _fail_with_edges(what: str, edges: Sequence[Edge]) -> None:
    if edges:
        listing = "\n".join(f"  {edge}" for edge in edges)
        pytest.fail(f"{what}: {len(edges)} forbidden import(s):\n{listing}", pytrace=False)


# ---------------------------------------------------------------------------------------------
# The real tree


def test_the_real_tree_has_modules_and_imports_to_check() -> None:
    graph = build_graph(ROOT)
    assert "engine.db" in graph.modules and "workers" in graph.modules
    assert not any(name.startswith("engine.db.migrations") for name in graph.modules)
    assert graph.edges


def test_nothing_in_engine_imports_workers() -> None:
    _fail_with_edges("engine must not import workers", engine_imports_of_workers(ROOT))


def test_only_the_cli_imports_engine_cli_and_only_the_cli_and_http_import_engine_http() -> None:
    _fail_with_edges(
        "engine.cli is imported only inside engine.cli, engine.http only inside engine.http and engine.cli",
        engine_imports_of_entry_points(ROOT),
    )


def test_the_foundations_import_only_each_other() -> None:
    _fail_with_edges(
        f"the foundations ({', '.join(sorted(FOUNDATIONS))}) import only each other and engine",
        foundation_imports_beyond_foundations(ROOT),
    )


def test_engine_db_imports_only_the_foundations_and_itself() -> None:
    _fail_with_edges(
        "engine.db imports only the foundations and engine.db.*", db_imports_beyond_foundations(ROOT)
    )


def test_there_are_no_import_cycles() -> None:
    cycles = import_cycles(ROOT)
    if cycles:
        listing = "\n".join(str(cycle) for cycle in cycles)
        pytest.fail(f"{len(cycles)} import cycle(s):\n{listing}", pytrace=False)


def test_workers_import_the_engine_but_not_its_cli_or_http() -> None:
    _fail_with_edges(
        "workers must not import engine.cli or engine.http", workers_imports_of_entry_points(ROOT)
    )


def test_no_module_has_more_than_400_lines() -> None:
    offenders = oversized_modules(ROOT)
    if offenders:
        listing = "\n".join(f"  {path}: {count} lines" for path, count in offenders)
        pytest.fail(f"{len(offenders)} module(s) longer than {MAX_LINES} lines:\n{listing}", pytrace=False)


# ---------------------------------------------------------------------------------------------
# The checker itself, on a synthetic tree

SYNTHETIC: dict[str, str] = {
    "engine/__init__.py": '"""Fake engine."""\n',
    "engine/settings.py": (
        "from typing import TYPE_CHECKING\n"  # 1
        "\n"  # 2
        "if TYPE_CHECKING:\n"  # 3
        "    from engine.errors import Problem\n"  # 4
    ),
    "engine/errors.py": "class Problem(Exception):\n    pass\n",
    "engine/alpha.py": (
        "from . import beta\n"  # 1: relative, module level
        "\n"
        "VALUE = 1\n"
    ),
    "engine/beta.py": (
        "import os\n"  # 1: not in the tree, no edge
        "\n"  # 2
        "\n"  # 3
        "def late() -> int:\n"  # 4
        "    from engine.alpha import VALUE\n"  # 5: function level, closes the cycle
        "\n"  # 6
        "    return VALUE\n"  # 7
    ),
    "engine/core/__init__.py": "",
    "engine/core/gamma.py": (
        "from .. import settings\n"  # 1: relative, two levels up
        "\n"  # 2
        "\n"  # 3
        "class Runner:\n"  # 4
        "    def run(self) -> None:\n"  # 5
        "        from workers import x\n"  # 6: forbidden, method level
    ),
    "engine/db/migrations/env.py": "from workers import x\n",  # excluded: never read
    "workers/__init__.py": "",
    "workers/x.py": "import engine.errors\n",
}


def write_tree(root: Path, files: Mapping[str, str]) -> Path:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


@pytest.fixture
def synthetic_root(tmp_path: Path) -> Path:
    return write_tree(tmp_path, SYNTHETIC)


def test_the_graph_counts_imports_at_every_level_and_resolves_relative_ones(synthetic_root: Path) -> None:
    graph = build_graph(synthetic_root)
    assert sorted(graph.modules) == [
        "engine",
        "engine.alpha",
        "engine.beta",
        "engine.core",
        "engine.core.gamma",
        "engine.errors",
        "engine.settings",
        "workers",
        "workers.x",
    ]
    assert sorted(graph.edges) == sorted(
        [
            Edge("engine.settings", "engine.errors", "engine/settings.py", 4),
            Edge("engine.alpha", "engine.beta", "engine/alpha.py", 1),
            Edge("engine.beta", "engine.alpha", "engine/beta.py", 5),
            Edge("engine.core.gamma", "engine.settings", "engine/core/gamma.py", 1),
            Edge("engine.core.gamma", "workers.x", "engine/core/gamma.py", 6),
            Edge("engine.core.gamma", "workers", "engine/core/gamma.py", 6, via="workers.x"),
            Edge("workers.x", "engine.errors", "workers/x.py", 1),
            Edge("workers.x", "engine", "workers/x.py", 1, via="engine.errors"),
        ]
    )


def test_the_checker_reports_exactly_the_cycle_and_the_forbidden_import_of_a_synthetic_tree(
    synthetic_root: Path,
) -> None:
    assert engine_imports_of_workers(synthetic_root) == [
        Edge("engine.core.gamma", "workers", "engine/core/gamma.py", 6, via="workers.x"),
        Edge("engine.core.gamma", "workers.x", "engine/core/gamma.py", 6),
    ]
    assert import_cycles(synthetic_root) == [
        Cycle(
            members=("engine.alpha", "engine.beta"),
            edges=(
                Edge("engine.alpha", "engine.beta", "engine/alpha.py", 1),
                Edge("engine.beta", "engine.alpha", "engine/beta.py", 5),
            ),
            example=("engine.alpha", "engine.beta", "engine.alpha"),
        )
    ]
    assert engine_imports_of_entry_points(synthetic_root) == []
    assert foundation_imports_beyond_foundations(synthetic_root) == []
    assert db_imports_beyond_foundations(synthetic_root) == []
    assert workers_imports_of_entry_points(synthetic_root) == []
    assert oversized_modules(synthetic_root, limit=6) == [("engine/beta.py", 7)]


RULE_CASES: list[tuple[Callable[[Path, Sequence[str]], list[Edge]], dict[str, str], list[str]]] = [
    (
        engine_imports_of_entry_points,
        {
            "engine/__init__.py": "",
            "engine/cli/__init__.py": "",
            "engine/cli/run.py": "from engine.http import app\n",  # allowed: the CLI starts the app
            "engine/http/__init__.py": "",
            "engine/http/app.py": "from engine.cli import main\n",
            "engine/jobs.py": "import engine.http.app\n",
        },
        [
            "engine.http.app -> engine.cli (engine/http/app.py:1)",
            "engine.jobs -> engine.http (engine/jobs.py:1, package init run by importing engine.http.app)",
            "engine.jobs -> engine.http.app (engine/jobs.py:1)",
        ],
    ),
    (
        foundation_imports_beyond_foundations,
        {
            "engine/__init__.py": "",
            "engine/settings.py": "from engine import errors\nfrom engine.rules import model\n",
            "engine/errors.py": "import engine\n",
            "engine/rules/__init__.py": "",
            "engine/rules/model.py": "",
        },
        [
            "engine.settings -> engine.rules (engine/settings.py:2, package init run by importing engine.rules.model)",
            "engine.settings -> engine.rules.model (engine/settings.py:2)",
        ],
    ),
    (
        db_imports_beyond_foundations,
        {
            "engine/__init__.py": "",
            "engine/db/__init__.py": "from engine.db import schema\nfrom engine.logs import log\n",
            "engine/db/schema.py": "def late() -> None:\n    from engine.events import record\n",
            "engine/events.py": "",
            "engine/logs.py": "",
        },
        ["engine.db.schema -> engine.events (engine/db/schema.py:2)"],
    ),
    (
        workers_imports_of_entry_points,
        {
            "engine/__init__.py": "",
            "engine/cli/__init__.py": "",
            "engine/cli/base.py": "",
            "engine/delivery/deliverer.py": "",  # engine/delivery is a namespace package
            "workers/__init__.py": "",
            "workers/tasks.py": "from engine.delivery import deliverer\nfrom engine.cli import base\n",
        },
        [
            "workers.tasks -> engine.cli (workers/tasks.py:2, package init run by importing engine.cli.base)",
            "workers.tasks -> engine.cli.base (workers/tasks.py:2)",
        ],
    ),
]


@pytest.mark.parametrize(
    ("checker", "files", "expected"), RULE_CASES, ids=[case[0].__name__ for case in RULE_CASES]
)
def test_each_other_rule_reports_exactly_the_imports_it_forbids(
    tmp_path: Path,
    checker: Callable[[Path, Sequence[str]], list[Edge]],
    files: dict[str, str],
    expected: list[str],
) -> None:
    assert [str(edge) for edge in checker(write_tree(tmp_path, files), PACKAGES)] == expected


def test_a_module_importing_itself_is_reported_as_a_cycle(tmp_path: Path) -> None:
    root = write_tree(tmp_path, {"engine/__init__.py": "", "engine/selfish.py": "import engine.selfish\n"})
    edge = Edge("engine.selfish", "engine.selfish", "engine/selfish.py", 1)
    assert import_cycles(root) == [
        Cycle(members=("engine.selfish",), edges=(edge,), example=("engine.selfish", "engine.selfish"))
    ]
