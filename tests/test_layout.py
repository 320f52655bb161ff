"""The package's shape: no import cycles, lower layers never import upper ones, only the CLI imports typer/rich."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import import_graph  # noqa: E402

# Modules below training and evaluation: they may import each other (without cycles), never train/, eval/ or cli.
LOWER = {"audio", "checkpoint", "config", "container", "entropy", "entropy_fit", "errors", "fileio", "loader",
         "metrics", "model/", "ncdfile", "spectral", "stream"}


def test_no_import_cycles_between_modules_or_packages():
    assert import_graph.cycles(import_graph.graph(grouped=True)) == []
    assert import_graph.cycles(import_graph.graph(grouped=False)) == []


def test_lower_layers_import_neither_training_nor_evaluation():
    edges = import_graph.graph(grouped=True)
    assert LOWER <= set(edges), set(edges)
    for module in LOWER:
        assert not edges[module] & {"train/", "eval/", "cli"}, (module, edges[module])
    assert "eval/" not in edges["train/"] and "train/" not in edges["eval/"]


def test_the_graph_sees_lazy_imports_and_skips_type_checking_ones(tmp_path):
    pkg = tmp_path / "neurocodec"
    (pkg / "train").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "train" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from .train import b\n")
    (pkg / "train" / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .. import a\n")
    edges = import_graph.graph(grouped=True, root=pkg)
    assert edges["a"] == {"train/"} and edges["train/"] == set()
    (pkg / "train" / "b.py").write_text("from ..a import f\n")
    assert import_graph.cycles(import_graph.graph(grouped=True, root=pkg)) == [["a", "train/"]]


def test_only_the_cli_imports_typer_or_rich():
    for path in (ROOT / "neurocodec").rglob("*.py"):
        if path.name == "cli.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.split(".")[0] in ("typer", "rich") for n in names), path
