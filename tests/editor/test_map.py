"""docs/map.md's editor/ section against the code: it names every module of `editor/` (methods included), and each
module imports only modules of a lower tier or of its own tier listed above it, so the table's order is an order
in which the modules could be written one after another, with no cycle. Function-local imports obey the same rule
(one may put off loading a lower module, never reach back up to the facade or an operation)."""

from __future__ import annotations

from tests.code_map import imports_of, map_rows, package_modules


def test_the_map_names_every_editor_module() -> None:
    assert {module for _, module in map_rows("editor")} == package_modules("editor")


def test_the_tiers_never_go_down_the_table() -> None:
    tiers = [tier for tier, _ in map_rows("editor")]
    assert tiers == sorted(tiers)


def test_editor_imports_run_up_the_table() -> None:
    rows = map_rows("editor")
    position = {module: index for index, (_, module) in enumerate(rows)}
    upward = []
    for index, (tier, module) in enumerate(rows):
        imported, _ = imports_of("editor", module)
        upward += [f"{module} (tier {tier}) imports {other} (tier {rows[position[other]][0]}), listed below it"
                   for other in sorted(imported) if position[other] > index]
    assert upward == []


def test_the_operation_modules_never_import_the_facade() -> None:
    """The modules `Workspace` hands its calls to take the session instead (no cycle through editor.lifecycle)."""
    operations = [module for tier, module in map_rows("editor") if tier in (4, 5)]
    assert "versions" in operations and "editing" in operations
    assert [m for m in operations if "lifecycle" in imports_of("editor", m)[0]] == []
