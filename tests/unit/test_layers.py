"""Layers run one way (ARCHITECTURE.md): every import in lib/clickscore goes to its own layer
or one below it, and `model` imports neither Spark nor anything of clickscore but itself."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "lib" / "clickscore"

# bottom to top; a module may import its own layer and those below
LAYERS: tuple[tuple[str, frozenset[str]], ...] = (
    ("model", frozenset({"model"})),
    ("core primitives", frozenset({"core", "__init__"})),
    ("data-quality engine", frozenset({"dq"})),
    ("stage runner", frozenset({"runner"})),
    ("shared services", frozenset({"registry"})),
    ("stages", frozenset({"ingest", "sessionize", "features", "training", "scoring", "export",
                          "report", "audit", "maintain"})),
    ("commands", frozenset({"cli", "demo", "reference"})),
)


def layer_of(top: str) -> int:
    for rank, (_, members) in enumerate(LAYERS):
        if top in members:
            return rank
    raise AssertionError(f"clickscore.{top} is in no layer: add it to LAYERS in {__file__}")


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every clickscore import in a file, lazy ones inside functions too."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] if node.module != "clickscore" else [
                f"clickscore.{a.name}" for a in node.names]
            found += [(node.lineno, n) for n in names]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
    return [(line, name) for line, name in found if name.split(".")[0] == "clickscore"]


def top_of(path: Path) -> str:
    parts = path.relative_to(PACKAGE).parts
    return parts[0].removesuffix(".py")


def test_no_import_runs_up_a_layer():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        own = layer_of(top_of(path))
        for line, name in imports(path):
            target = name.split(".")[1] if "." in name else "__init__"
            if layer_of(target) > own:
                upward.append(f"{path.relative_to(PACKAGE)}:{line} ({LAYERS[own][0]}) imports "
                              f"{name} ({LAYERS[layer_of(target)][0]})")
    assert not upward, "imports that run up a layer:\n" + "\n".join(upward)


def test_the_model_package_needs_no_spark():
    offending = []
    for path in sorted((PACKAGE / "model").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = ([node.module or ""] if isinstance(node, ast.ImportFrom)
                     else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            offending += [f"{path.name}:{node.lineno} {n}" for n in names
                          if n.split(".")[0] in {"pyspark", "delta", "petastorm"}
                          or (n.startswith("clickscore.") and not n.startswith(
                              "clickscore.model"))]
    assert not offending, offending


def test_the_check_sees_an_upward_import(tmp_path):
    """The walk finds lazy imports too (the kind that hid core -> dq before)."""
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from clickscore.dq.gate import validate_batch\n"
                     "from clickscore import registry\n")
    assert sorted(imports(probe)) == [(2, "clickscore.dq.gate"), (3, "clickscore.registry")]
    assert layer_of("dq") > layer_of("core") and layer_of("registry") > layer_of("runner")
