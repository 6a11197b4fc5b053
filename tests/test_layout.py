"""The package's shape (docs/architecture.md): no import cycles between modules, and no
module over about 500 lines without a reason at its top. The layer rules themselves are
import-linter contracts in pyproject.toml (``lint-imports`` in .ci/run)."""

from __future__ import annotations

import ast
from pathlib import Path

import grimp

PACKAGE = Path(__file__).parent.parent / "smppbridge"
#: past this many lines a module says at its top why it is not split
MAX_LINES = 500


def _sccs(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles() -> None:
    """No two modules import each other, directly or round a loop (every import counts,
    deferred and TYPE_CHECKING ones too; a package importing its own modules does not)."""
    g = grimp.build_graph("smppbridge", cache_dir=None)
    graph = {m: {d for d in g.find_modules_directly_imported_by(m)
                 if d.startswith("smppbridge") and not d.startswith(m + ".")}
             for m in g.modules if m.startswith("smppbridge")}
    assert _sccs(graph) == []


def test_long_modules_say_why() -> None:
    """A module of more than 500 lines has a "Size:" paragraph in its docstring."""
    unexplained = []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text("utf-8")
        if len(text.splitlines()) <= MAX_LINES:
            continue
        doc = ast.get_docstring(ast.parse(text)) or ""
        if "Size:" not in doc:
            unexplained.append(str(path.relative_to(PACKAGE.parent)))
    assert unexplained == []
