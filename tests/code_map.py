"""docs/map.md's module tables read back, and the modules each file imports: what tests/ledger/test_map.py and
tests/editor/test_map.py check the map against."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def map_rows(package: str, section: str | None = None) -> list[tuple[int, str]]:
    """(tier, module) of every row of the `package/` section's table (or the section titled `section`) naming a
    module of `package`, in table order; a module is named by its path inside the package without `.py`
    (`methods/nse`, `__init__`)."""
    text = (REPO / "docs" / "map.md").read_text(encoding="utf-8")
    section = text.split(f"\n## {section or package + '/'}\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(rf"^\| (\d+) \| `{package}/([\w/]+)\.py` \|", section, re.MULTILINE)
    modules = [module for _, module in rows]
    assert len(set(modules)) == len(modules), "a module is listed twice"
    return [(int(tier), module) for tier, module in rows]


def package_modules(package: str) -> set[str]:
    """Every module of `package` on disk, named as the map names them."""
    root = REPO / package
    return {str(path.relative_to(root).with_suffix("")) for path in root.rglob("*.py")}


def _module_of(package: str, dotted: str, name: str | None = None) -> str | None:
    """The package module that `from dotted import name` (or `import dotted`) reads, or None outside `package`."""
    parts = dotted.split(".")
    if parts[0] != package:
        return None
    root = REPO / package
    inside = "/".join(parts[1:])
    candidates = [f"{inside}/{name}" if inside else name] if name else []
    candidates += [inside, f"{inside}/__init__" if inside else "__init__"]
    return next((c for c in candidates if c and (root / f"{c}.py").is_file()), None)


def imports_of(package: str, module: str) -> tuple[set[str], list[tuple[str, str | None]]]:
    """(the modules of `package` that `module` imports, at module level or inside a function; (function, module
    of `package` or None) for every import inside a function's body)."""
    tree = ast.parse((REPO / package / f"{module}.py").read_text(encoding="utf-8"))
    found: set[str | None] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found |= {_module_of(package, node.module, alias.name) for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {_module_of(package, alias.name) for alias in node.names}
    local = [
        (function.name, _module_of(package, inner.module, alias.name) if isinstance(inner, ast.ImportFrom)
         else _module_of(package, alias.name))
        for function in ast.walk(tree)
        if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef)
        for inner in ast.walk(function)
        if isinstance(inner, ast.Import | ast.ImportFrom) and (isinstance(inner, ast.Import) or inner.module)
        for alias in inner.names
    ]
    return {m for m in found if m is not None} - {module}, local
