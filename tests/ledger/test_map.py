"""docs/map.md's ledger/ section against the code: it names every module of `ledger/`, and each module imports only
modules of its own tier or a lower one (the way the map says data flows), never from inside a function."""

from __future__ import annotations

from tests.code_map import imports_of, map_rows, package_modules


def test_the_map_names_every_ledger_module() -> None:
    assert {module for _, module in map_rows("ledger")} == package_modules("ledger")


def test_ledger_imports_run_down_the_tiers_of_the_map() -> None:
    tiers = {module: tier for tier, module in map_rows("ledger")}
    upward = []
    for module, tier in tiers.items():
        imported, local = imports_of("ledger", module)
        upward += [f"{module} (tier {tier}) imports {other} (tier {tiers[other]})"
                   for other in sorted(imported) if tiers[other] > tier]
        upward += [f"{module}.{function} imports inside a function" for function in local]
    assert upward == []
