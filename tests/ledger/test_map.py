"""docs/map.md's ledger/ section against the code: it names every module of `ledger/`, and each module imports only
modules of its own tier or a lower one (the way the map says data flows), never from inside a function."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ROW = re.compile(r"^\| (\d+) \| `ledger/(\w+)\.py` \|", re.MULTILINE)


def _ledger_tiers() -> dict[str, int]:
    text = (REPO / "docs" / "map.md").read_text(encoding="utf-8")
    section = text.split("\n## ledger/\n", 1)[1].split("\n## ", 1)[0]
    rows = ROW.findall(section)
    tiers = {module: int(tier) for tier, module in rows}
    assert len(tiers) == len(rows), "a module is listed twice"
    return tiers


def _imports(path: Path) -> tuple[set[str], list[str]]:
    """(ledger modules imported, functions that import inside their body)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "ledger":
            found |= {alias.name for alias in node.names if (path.parent / f"{alias.name}.py").exists()}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ledger."):
            found.add(node.module.split(".")[1])  # type: ignore[union-attr]
        elif isinstance(node, ast.Import):
            found |= {alias.name.split(".")[1] for alias in node.names if alias.name.startswith("ledger.")}
    local = [
        function.name
        for function in ast.walk(tree)
        if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef)
        for inner in ast.walk(function)
        if isinstance(inner, ast.Import | ast.ImportFrom)
    ]
    return found - {path.stem}, local


def test_the_map_names_every_ledger_module() -> None:
    on_disk = {path.stem for path in (REPO / "ledger").glob("*.py")}
    assert set(_ledger_tiers()) == on_disk


def test_ledger_imports_run_down_the_tiers_of_the_map() -> None:
    tiers = _ledger_tiers()
    upward = []
    for module, tier in tiers.items():
        imported, local = _imports(REPO / "ledger" / f"{module}.py")
        upward += [f"{module} (tier {tier}) imports {other} (tier {tiers[other]})"
                   for other in sorted(imported) if tiers[other] > tier]
        upward += [f"{module}.{function} imports inside a function" for function in local]
    assert upward == []
