"""The package's shape: no import cycles (annotation-only imports counted), lower layers never import upper ones,
the audio path never reaches into the byte format, one generation's layout is chosen in one place, no module over
400 lines, only the CLI imports typer/rich, and nothing edits `sys.path`."""

from __future__ import annotations

import ast
import re

from tools import import_graph

from .conftest import ROOT

# Modules below training and evaluation: they may import each other (without cycles), never train/, eval/ or cli.
LOWER = {"audio", "checkpoint", "codes", "config", "container/", "entropy/", "entropy_fit", "errors", "fileio",
         "identity", "level", "limits", "live", "loader", "metrics", "model/", "ncdfile", "payload", "search",
         "spectral", "stream", "vbr", "wavio"}
# Rooms that code audio and never see the format's bytes or symbols.
AUDIO_PATH = {"audio", "codes", "level", "limiter", "limits", "live", "model/", "search", "spectral", "stream", "vbr",
              "wavio"}


def test_no_import_cycles_between_modules_or_packages():
    assert import_graph.cycles(import_graph.graph(grouped=True)) == []
    assert import_graph.cycles(import_graph.graph(grouped=False)) == []


def test_lower_layers_import_neither_training_nor_evaluation():
    edges = import_graph.graph(grouped=True)
    assert LOWER <= set(edges), LOWER - set(edges)
    for module in LOWER:
        assert not edges[module] & {"train/", "eval/", "cli/"}, (module, edges[module])
    assert "eval/" not in edges["train/"] and "train/" not in edges["eval/"]


def test_the_audio_path_never_imports_the_container_or_the_entropy_coder():
    edges = import_graph.graph(grouped=True)
    for module in AUDIO_PATH:
        assert not edges[module] & {"container/", "entropy/", "payload", "ncdfile", "identity"}, (module, edges[module])
    assert not edges["container/"] & {"entropy/", "payload"} and not edges["entropy/"] & {"container/", "payload"}


def test_version_dispatch_lives_in_the_container_and_the_payload_layout():
    allowed = {"container", "payload.py"}
    for path in (ROOT / "neurocodec").rglob("*.py"):
        rel = path.relative_to(ROOT / "neurocodec").parts
        if rel[0] not in allowed and "version_major" in path.read_text():
            raise AssertionError(f"{path}: version_major outside the container and payload.py")


def test_no_library_module_is_over_the_limit():
    assert import_graph.long_modules() == {}


def test_the_graph_counts_lazy_and_type_checking_imports(tmp_path):
    pkg = tmp_path / "neurocodec"
    (pkg / "train").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "train" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from .train import b\n")
    (pkg / "train" / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .. import a\n")
    edges = import_graph.graph(grouped=True, root=pkg)
    assert edges["a"] == {"train/"} and edges["train/"] == {"a"}
    assert import_graph.cycles(edges) == [["a", "train/"]]
    assert import_graph.type_checking_imports(pkg / "train" / "b.py") == 1


def test_only_the_cli_imports_typer_or_rich():
    for path in (ROOT / "neurocodec").rglob("*.py"):
        if "cli" in path.relative_to(ROOT / "neurocodec").parts[:1]:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.split(".")[0] in ("typer", "rich") for n in names), path


def test_nothing_edits_sys_path_and_research_stays_outside():
    """Tools, benchmarks and tests import the installed package; research code is imported by nobody."""
    for folder in ("neurocodec", "tests", "tools", "benchmarks", "formats", "research"):
        for path in (ROOT / folder).rglob("*.py"):
            text = path.read_text()
            assert not re.search(r"sys\.path\.(insert|append)", text), path
            if folder != "research":
                assert not re.search(r"^\s*(from|import) research\b", text, re.M), path


def test_the_light_rooms_import_no_torch():
    """`info`, the argument checks and the command line itself start without torch (about 0.5 s, not 3)."""
    import subprocess
    import sys

    code = ("import sys, neurocodec.cli, neurocodec.ncdinfo, neurocodec.preflight, neurocodec.limiter, "
            "neurocodec.container, neurocodec.payload, neurocodec.checkpoint; print('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout.strip() \
        == "False"
