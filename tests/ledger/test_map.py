"""docs/map.md's module tables against the code. The ledger/ section names every module of `ledger/`, and each module
imports only modules of its own tier or a lower one (the way the map says data flows), never from inside a function.
The cli.py and commands/ section names `cli.py` and every module of `commands/`, which import down its tiers too and
never import `cli` or `commands/` inside a function (they import `editor/` there: commands that need no model start
without torch)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ROW = re.compile(r"^\| (\d+) \| `((?:\w+/)?\w+\.py)` \|", re.MULTILINE)


def _tiers(section: str) -> dict[str, int]:
    """The tier of each module named in a section's table, by its path in the repository (`ledger/api.py`)."""
    text = (REPO / "docs" / "map.md").read_text(encoding="utf-8")
    body = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    rows = ROW.findall(body)
    tiers = {module: int(tier) for tier, module in rows}
    assert len(tiers) == len(rows), "a module is listed twice"
    return tiers


def _module_file(dotted: str) -> str | None:
    """`ledger.api` -> `ledger/api.py`, `cli` -> `cli.py`: the repository's file of a module, if it is one."""
    path = dotted.replace(".", "/") + ".py"
    return path if (REPO / path).is_file() else None


def _imported_files(node: ast.AST) -> set[str]:
    """The repository's module files an import statement loads (a package's names count when they are modules)."""
    if isinstance(node, ast.Import):
        return {path for alias in node.names if (path := _module_file(alias.name))}
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        found = {path for alias in node.names if (path := _module_file(f"{node.module}.{alias.name}"))}
        own = _module_file(node.module)
        return found | ({own} if own else set())
    return set()


def _imports(path: str) -> tuple[set[str], list[tuple[str, str]]]:
    """(module files imported, (function, module file) for each import inside a function body)."""
    tree = ast.parse((REPO / path).read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        found |= _imported_files(node)
    local = [
        (function.name, imported)
        for function in ast.walk(tree)
        if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef)
        for inner in ast.walk(function)
        if isinstance(inner, ast.Import | ast.ImportFrom)
        for imported in (_imported_files(inner) or {"(outside the repository)"})
    ]
    return found - {path}, local


def _upward(tiers: dict[str, int]) -> list[str]:
    """Every import of a module of the table by one of a lower tier."""
    upward = []
    for module, tier in tiers.items():
        imported, _ = _imports(module)
        upward += [f"{module} (tier {tier}) imports {other} (tier {tiers[other]})"
                   for other in sorted(imported & set(tiers)) if tiers[other] > tier]
    return upward


def test_the_map_names_every_ledger_module() -> None:
    on_disk = {f"ledger/{path.name}" for path in (REPO / "ledger").glob("*.py")}
    assert set(_tiers("ledger/")) == on_disk


def test_ledger_imports_run_down_the_tiers_of_the_map() -> None:
    tiers = _tiers("ledger/")
    local = [f"{module}: {function} imports inside a function" for module in tiers
             for function, _ in _imports(module)[1]]
    assert _upward(tiers) + local == []


def test_the_map_names_cli_and_every_command_module() -> None:
    on_disk = {"cli.py"} | {f"commands/{path.name}" for path in (REPO / "commands").glob("*.py")}
    assert set(_tiers("cli.py and commands/")) == on_disk


def test_command_imports_run_down_the_tiers_of_the_map() -> None:
    tiers = _tiers("cli.py and commands/")
    local = [f"{module}: {function} imports {imported} inside a function" for module in tiers
             for function, imported in _imports(module)[1] if imported in tiers]
    assert _upward(tiers) + local == []
