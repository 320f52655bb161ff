"""The package's import graph, read from the source (no imports run), with its cycles and line counts.

    python tools/import_graph.py            # subpackages (train/, eval/, model/, container/, entropy/) as one node
    python tools/import_graph.py --modules  # one node per module
    python tools/import_graph.py --lines    # also lines per module (and those over MAX_LINES)

Every import counts: those inside functions (a lazy import is still a dependency) and those under
`if TYPE_CHECKING:` (an annotation is a dependency too, and hides a knot if left out). A cycle is a strongly
connected component of more than one node. Exits 1 on a cycle or a module over MAX_LINES.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "neurocodec"
GROUPS = ("train", "eval", "model", "container", "entropy", "cli")  # subpackages shown as one node
MAX_LINES = 400  # a library module longer than this does more than one job


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def type_checking_imports(path: Path) -> int:
    """How many imports of `path` sit under `if TYPE_CHECKING:` (counted in the graph like any other)."""
    count = 0
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            count += sum(isinstance(n, (ast.Import, ast.ImportFrom)) for c in node.body for n in ast.walk(c))
    return count


def imports(path: Path, modules: set[str], root: Path = PACKAGE) -> set[str]:
    """The package modules that `path` imports (relative imports resolved; `from . import x` names module x)."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(), str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" for a in node.names]
            if not all(t in modules for t in targets):  # `from . import x` of modules x imports x, not the package
                targets.append(base)
        else:
            continue
        for target in targets:
            # The longest package module that the dotted name starts with.
            parts = target.split(".")
            for n in range(len(parts), 0, -1):
                candidate = ".".join(parts[:n])
                if candidate in modules:
                    if candidate != name and candidate != "neurocodec":
                        out.add(candidate)
                    break
    return out


def group(module: str, grouped: bool) -> str:
    parts = module.split(".")
    if grouped and len(parts) > 1 and parts[1] in GROUPS:
        return parts[1] + "/"
    return ".".join(parts[1:]) or "neurocodec"


def graph(grouped: bool = True, root: Path = PACKAGE) -> dict[str, set[str]]:
    files = sorted(root.rglob("*.py"))
    modules = {module_name(f, root) for f in files}
    edges: dict[str, set[str]] = {}
    for f in files:
        src = group(module_name(f, root), grouped)
        edges.setdefault(src, set())
        for target in imports(f, modules, root):
            dst = group(target, grouped)
            if dst != src:
                edges[src].add(dst)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
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
                out.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def long_modules(root: Path = PACKAGE) -> dict[str, int]:
    """Modules over `MAX_LINES` lines → their length."""
    lengths = {str(f.relative_to(root.parent)): len(f.read_text().splitlines()) for f in sorted(root.rglob("*.py"))}
    return {name: n for name, n in lengths.items() if n > MAX_LINES}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--modules", action="store_true", help="one node per module instead of train/, eval/, model/")
    ap.add_argument("--lines", action="store_true", help="print lines per module")
    ap.add_argument("--root", type=Path, default=PACKAGE, help="the package folder (e.g. an older checkout's)")
    args = ap.parse_args()
    edges = graph(grouped=not args.modules, root=args.root)
    for src in sorted(edges):
        print(f"{src:>22} -> {', '.join(sorted(edges[src])) or '-'}")
    found = cycles(edges)
    print("cycles: " + ("; ".join(" <-> ".join(c) for c in found) if found else "none"))
    if args.lines:
        total = 0
        for f in sorted(args.root.rglob("*.py")):
            n = len(f.read_text().splitlines())
            total += n
            print(f"{n:>6}  {f.relative_to(args.root.parent)}")
        print(f"{total:>6}  total")
    long = long_modules(args.root)
    print(f"modules over {MAX_LINES} lines: " + (", ".join(f"{k} ({v})" for k, v in long.items()) or "none"))
    return 1 if found or long else 0


if __name__ == "__main__":
    sys.exit(main())
