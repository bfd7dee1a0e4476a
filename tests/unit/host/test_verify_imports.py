"""The verifier's modules import one another without a cycle (cli and fleet once imported each
other; their shared input readers live in host_tools/verify/inputs.py). Read from the sources with
ast, so a cycle hidden in a function-level import is caught too."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[3] / "host_tools" / "verify"


def imports(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(
                "host_tools.verify."):
            out.add(node.module.rsplit(".", 1)[1])
        elif isinstance(node, ast.Import):
            out |= {a.name.rsplit(".", 1)[1] for a in node.names
                    if a.name.startswith("host_tools.verify.")}
    return out


def test_no_import_cycle() -> None:
    graph = {p.stem: imports(p) for p in PKG.glob("*.py") if p.stem not in ("__init__",
                                                                            "__main__")}
    done: set[str] = set()

    def visit(node: str, path: tuple[str, ...]) -> None:
        assert node not in path, "import cycle: " + " -> ".join(path + (node,))
        if node in done:
            return
        for nxt in sorted(graph.get(node, ())):
            visit(nxt, path + (node,))
        done.add(node)

    for module in sorted(graph):
        visit(module, ())
    assert len(done) == len(graph) >= 7 and "cli" in graph and "fleet" in graph
