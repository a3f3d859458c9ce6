"""docs/map.md's ledger/ and cli.py/commands/ sections against the code: each names every module of its package,
and each module imports only modules of its own tier or a lower one (the way the map says data flows), a ledger
module never from inside a function."""

from __future__ import annotations

import re

from tests.code_map import REPO, imports_of, map_rows, package_modules


def test_the_map_names_every_ledger_module() -> None:
    assert {module for _, module in map_rows("ledger")} == package_modules("ledger")


def test_ledger_imports_run_down_the_tiers_of_the_map() -> None:
    tiers = {module: tier for tier, module in map_rows("ledger")}
    upward = []
    for module, tier in tiers.items():
        imported, local = imports_of("ledger", module)
        upward += [f"{module} (tier {tier}) imports {other} (tier {tiers[other]})"
                   for other in sorted(imported) if tiers[other] > tier]
        upward += [f"{module}.{function} imports inside a function" for function, _ in local]
    assert upward == []


CLI_SECTION = "cli.py and commands/"


def test_the_map_names_cli_and_every_command_module() -> None:
    assert {module for _, module in map_rows("commands", CLI_SECTION)} == package_modules("commands")
    assert "| `cli.py` |" in (REPO / "docs" / "map.md").read_text(encoding="utf-8").split(CLI_SECTION, 1)[1]


def test_command_imports_run_down_the_tiers_of_the_map() -> None:
    """Commands may load `editor/` inside a function (so `import cli` stays light), never another command module."""
    tiers = {module: tier for tier, module in map_rows("commands", CLI_SECTION)}
    upward = []
    for module, tier in tiers.items():
        imported, local = imports_of("commands", module)
        upward += [f"{module} (tier {tier}) imports {other} (tier {tiers[other]})"
                   for other in sorted(imported) if tiers[other] > tier]
        upward += [f"{module}.{function} imports {other} inside a function" for function, other in local if other]
        source = (REPO / "commands" / f"{module}.py").read_text(encoding="utf-8")
        if re.search(r"^\s*(from cli |import cli\b)", source, re.MULTILINE):
            upward.append(f"{module} imports cli (the top)")
    assert upward == []
