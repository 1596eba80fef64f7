"""The package's layers import downwards only (README, "How it is built"): cluster → telemetry → shop →
load/chaos/evaluate/slo → agents → scenarios → bench and the CLI. A lower layer that imports a higher
one closes a circle (the bench_* modules once made a 13-file one); this test reads every module's
imports, lazy ones inside functions included, and names each arrow that points up."""

from __future__ import annotations

import ast
from pathlib import Path

import sockdrill

ROOT = Path(sockdrill.__file__).parent
LAYERS = {"errors": 0, "cluster": 0, "telemetry": 1, "shop": 2, "slo": 3, "load": 3, "chaos": 3,
          "evaluate": 3, "agents": 4, "scenarios": 5, "bench": 6, "ui": 6, "cli": 6}
CLI = 6  # every folder's cli.py holds that folder's Typer verbs: it is part of the command line, on top
# The one known exception, kept visible: the runtime's queue exporter reads queue depths with the shop's
# own broker client (Redis streams or RabbitMQ) rather than a second copy of it.
ALLOWED = {("sockdrill.telemetry.collectors", "sockdrill.shop.queue")}


def layer(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != "sockdrill" or len(parts) < 2:
        return None
    if parts[-1] == "cli":
        return CLI
    return LAYERS.get(parts[1])


def imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_every_package_has_a_layer() -> None:
    folders = {p.name for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    modules = {p.stem for p in ROOT.glob("*.py") if p.stem != "__init__"}
    assert folders | modules <= set(LAYERS), (folders | modules) - set(LAYERS)


def test_imports_point_down() -> None:
    upward = []
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        me = ".".join(p for p in rel.parts if p != "__init__")
        mine = layer(me)
        if mine is None:
            continue
        for other in imports(path):
            theirs = layer(other)
            if theirs is not None and theirs > mine and (me, other) not in ALLOWED:
                upward.append(f"{me} → {other}")
    assert not upward, "imports that point up a layer:\n" + "\n".join(sorted(upward))
