"""BENCHMARKS.md's cost sections: engine speed and the lifecycle's times (with the real model's reference
comparison), checkout at scale, storage, ledger queries, scaling, the remote store and the GPU."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from benchmarks.report_format import (
    env_line,
    figure,
    fmt,
    get_path,
    rel_path,
    section_data,
    table,
    verdict,
)
from benchmarks.report_real_costs import reference_speed_lines
from benchmarks.report_world import LINE_STYLES

QUERY_GOAL_MS = 50.0


def speed_plots(record: dict[str, Any], plots_dir: Path) -> list[Path]:
    data = record["data"]
    paths = []
    per_edit = data.get("per_edit") or []
    if per_edit:
        def draw(figure):
            axes = figure.add_subplot(1, 1, 1)
            for method in dict.fromkeys(row["method"] for row in per_edit):
                rows = sorted((r for r in per_edit if r["method"] == method), key=lambda r: r["batch_size"])
                axes.plot([r["batch_size"] for r in rows], [r["seconds_per_edit"] for r in rows], marker="o",
                          label=method, color=LINE_STYLES.get(method, (None,))[0])
            axes.set_xscale("log")
            axes.set_yscale("log")
            axes.set_xlabel("requests per round")
            axes.set_ylabel("seconds per edit")
            axes.set_title("Seconds per edit by method and round size", fontsize=9)
            axes.grid(alpha=0.3, which="both")
            axes.legend(fontsize=7)
        paths.append(figure(record, draw, plots_dir / "speed_per_edit.png"))
    reverts = get_path(data, "lifecycle", "reverts") or []
    if reverts:
        def draw_reverts(figure):
            axes = figure.add_subplot(1, 1, 1)
            axes.bar([r["position"] for r in reverts], [r["seconds"] for r in reverts], color="C0")
            axes.set_xlabel("position of the reverted round (1 = oldest)")
            axes.set_ylabel("seconds")
            axes.set_title("Revert cost by the reverted round's position", fontsize=9)
            axes.grid(alpha=0.3, axis="y")
        paths.append(figure(record, draw_reverts, plots_dir / "speed_revert.png"))
    return paths


def storage_plot(record: dict[str, Any], plots_dir: Path) -> Path | None:
    rows = record["data"].get("methods") or []
    if not rows:
        return None

    def draw(figure):
        axes = figure.add_subplot(1, 1, 1)
        names = [r["method"] for r in rows]
        positions = range(len(rows))
        axes.bar([p - 0.2 for p in positions], [r["delta_bytes_per_edit"] / 1024 for r in rows], 0.4,
                 label="stored delta")
        axes.bar([p + 0.2 for p in positions], [r["floor_bytes_per_edit"] / 1024 for r in rows], 0.4,
                 label="floor (touched columns x rows x dtype)")
        axes.set_xticks(list(positions), names)
        axes.set_ylabel("KiB per edit")
        axes.set_title("Weight-change bytes per edit", fontsize=9)
        axes.legend(fontsize=7)
        axes.grid(alpha=0.3, axis="y")
    return figure(record, draw, plots_dir / "storage_per_edit.png")



def speed_section(record: dict[str, Any] | None, out: Path, plots_dir: Path,
                  scale: dict[str, Any] | None = None, reference: dict[str, Any] | None = None) -> list[str]:
    lines = ["## 2. Speed", ""]
    if record is None:
        return [*lines, "Not run (`python -m benchmarks --sections speed`).", ""]
    data = record["data"]
    lines += [env_line(record), ""]
    plots = speed_plots(record, plots_dir)
    if data.get("per_edit"):
        world_name = get_path(data, "world", "preset")
        lines += [f"### Seconds per edit (engine only, `{world_name}` world, CPU)", "",
                  table(["method", "requests per round", "rounds", "s per round", "s per edit"],
                        [[r["method"], r["batch_size"], r["rounds"], r["seconds_per_round"], r["seconds_per_edit"]]
                         for r in data["per_edit"]]), ""]
    lifecycle = data.get("lifecycle")
    if lifecycle:
        checkout = lifecycle["checkout_seconds"]
        lines += ["### Lifecycle on a real SQLite ledger", "",
                  f"{lifecycle['n_rounds']} NSE rounds of {lifecycle['round_size']} recorded with "
                  f"`Workspace.edit` ({fmt(lifecycle['edit_seconds_total'], 1)} s).", "",
                  table(["measure", "seconds", "ratio", "goal", "verdict"], [
                      ["load base model (`load_model` = `from_pretrained` + tokenizer), median",
                       lifecycle["load_seconds"], None, "", ""],
                      *[[f"checkout of version {depth} (median)", seconds, seconds / lifecycle["load_seconds"],
                         f"≤ {lifecycle['checkout_goal']}x", verdict(seconds / lifecycle["load_seconds"]
                                                                    <= lifecycle["checkout_goal"])]
                        for depth, seconds in checkout.items()],
                      ["replay of all rounds with cached z* (`replay_same_base`)", lifecycle["replay_seconds_total"],
                       lifecycle["replay_ratio"], f"≤ {lifecycle['replay_goal']}x",
                       verdict(lifecycle["replay_ratio"] <= lifecycle["replay_goal"])],
                      ["replay, median round vs median original round", None, lifecycle.get("replay_round_ratio"),
                       "", ""],
                  ]), "",
                  f"Replay reproduced every recorded state hash: {fmt(lifecycle.get('replay_same_hash'))}.", "",
                  "Revert cost by the reverted round's position (a revert replays every later round):", "",
                  table(["reverted round", "rounds replayed", "seconds"],
                        [[r["position"], r["rounds_replayed"], r["seconds"]] for r in lifecycle["reverts"]]), ""]
    engine = data.get("engine")
    if engine:
        from benchmarks.engine_speed import markdown

        lines += ["### Engine (`benchmarks.engine_speed.run`)", ""]
        try:
            lines += [markdown(engine), ""]
        except (KeyError, TypeError):  # results saved by an older engine_speed: show them as they are
            lines += [table(["measure", "value"], _flatten(engine)), ""]
    lines += checkout_scale_lines(scale)
    lines += reference_speed_lines(reference)
    for path in plots:
        lines += [f"![{path.stem}]({rel_path(path, out)})", ""]
    return lines


def checkout_scale_lines(record: dict[str, Any] | None) -> list[str]:
    if record is None:
        return []
    c = record["data"]
    return ["### Checkout at GPT2-XL size (`python -m benchmarks.checkout_scale`, run on its own)", "",
            env_line(record), "",
            f"A GPT-2 of GPT2-XL's shape ({c['parameters'] / 1e9:.2f}B parameters, random weights), {c['rounds']} NSE "
            f"rounds recorded at layers {c['layers']}:", "",
            table(["measure", "seconds", "ratio to `from_pretrained`"], [
                ["`load_model` (`from_pretrained` + tokenizer), median", c["load_s"], None],
                ["first checkout of the last version (reads every round's change, keeps a snapshot)",
                 c["first_checkout_s"], c["first_checkout_s"] / c["load_s"]],
                ["checkout of the last version, median", c["checkout_s"], c["ratio"]],
                ["the same with `--full-verify` (every base tensor hashed)", c["full_verify_s"],
                 c["full_verify_ratio"]],
            ]), "",
            "`from_pretrained` maps the safetensors file and reads its bytes only when they are used, so any "
            "verified checkout costs at least reading and hashing the tensors that edits wrote (here 5 of 48 "
            "blocks' MLP output weights, 205 MB); `--full-verify` reads and hashes all of them.", ""]


def _flatten(node: Any, prefix: str = "") -> list[list[Any]]:
    rows: list[list[Any]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            rows += _flatten(value, f"{prefix}{key}" if not prefix else f"{prefix}.{key}")
    elif isinstance(node, list) and node and all(isinstance(v, dict) for v in node):
        for index, value in enumerate(node):
            rows += _flatten(value, f"{prefix}[{index}]")
    else:
        rows.append([prefix, node if not isinstance(node, list) else ", ".join(fmt(v) for v in node)])
    return rows


def storage_section(record: dict[str, Any] | None, out: Path, plots_dir: Path) -> list[str]:
    lines = ["## 3. Storage", ""]
    if record is None:
        return [*lines, "Not run (`python -m benchmarks --sections storage`).", ""]
    rows = record["data"]["methods"]
    roles = sorted({k for r in rows for k in r["bytes_per_edit_by_role"]} - {"c0", "templates"})
    lines += [env_line(record), "",
              "Bytes written per edit, from the ledger's artifact rows of each edit version. Floor = touched "
              "columns x d_model x dtype bytes (the new values alone). The stored delta keeps the column indices, "
              "the exact old values and the new values (safetensors), so ~2x the floor is expected. Keys (to rebuild "
              "Cp) and z* (NSE, to replay without recomputing) are stored beside it. Per-base blobs (C0, templates) "
              "are not counted. SQLite size after a WAL checkpoint.", "",
              table(["method", "edits", "round size", "columns per edit", "delta KiB/edit", "floor KiB/edit",
                     "delta / floor", "all blobs KiB/edit", "blobs MiB / 1,000 edits", "SQLite MiB / 1,000 edits"],
                    [[r["method"], r["n_edits"], r["round_size"], r["columns_per_edit"],
                      r["delta_bytes_per_edit"] / 1024, r["floor_bytes_per_edit"] / 1024, r["delta_over_floor"],
                      r["blob_bytes_per_edit"] / 1024, r["blob_bytes_per_1000_edits"] / 2**20,
                      r["sqlite_bytes_per_1000_edits"] / 2**20]
                     for r in rows]), "",
              "KiB per edit by artifact role (C0 and templates are per base model and not counted):", "",
              table(["method", *roles], [[r["method"], *(r["bytes_per_edit_by_role"].get(k, 0) / 1024
                                                          for k in roles)] for r in rows]), ""]
    path = storage_plot(record, plots_dir)
    if path is not None:
        lines += [f"![{path.stem}]({rel_path(path, out)})", ""]
    return lines


def ledger_section(record: dict[str, Any] | None) -> list[str]:
    lines = ["## 4. Ledger queries", ""]
    if record is None:
        return [*lines, "Not run (`python -m benchmarks --sections ledger`).", ""]
    data = record["data"]
    lines += [env_line(record), ""]
    from benchmarks.ledger_queries import table as queries_table

    with contextlib.suppress(KeyError, TypeError):  # an odd record: the verdict table below still shows it all
        lines += [queries_table(data), ""]
    rows = [r for r in query_rows(data) if r["metric"].endswith("_ms")]
    if rows:
        lines += [f"Medians of repeated runs; goal: each query < {QUERY_GOAL_MS:.0f} ms.", "",
                  table(["backend", "query", "ms", "verdict"],
                        [[r["backend"], r["metric"].removesuffix("_ms"), r["value"],
                          verdict(r["value"] < QUERY_GOAL_MS)] for r in rows]), ""]
    else:
        lines += [table(["measure", "value"], _flatten(data)), ""]
    return lines


def scaling_section(record: dict[str, Any] | None) -> list[str]:
    lines = ["## 4b. Lifecycle costs by history length", ""]
    if record is None:
        return [*lines, "Not run (`python -m benchmarks --sections scaling`).", ""]
    from benchmarks.lifecycle_scaling import table as scaling_table

    lines += [env_line(record), "",
              "N rounds of one request on the tiny world. Wall seconds and SQL statements per operation; growth per "
              "doubling of N: about 2x for an operation that replays N rounds, about 1x for the rest.", ""]
    with contextlib.suppress(KeyError, TypeError):
        lines += [scaling_table(record["data"]), ""]
    return lines



def remote_store_section(record: dict[str, Any] | None) -> list[str]:
    """Checkout and edit with the blob store on an S3 server (`python -m benchmarks.remote_store`)."""
    lines, data = section_data("4d. A blob store on S3", record, "python -m benchmarks.remote_store")
    if data is None:
        return lines
    local, s3 = data["local"], data["s3"]
    lines += [f"A {data['model_parameters'] / 1e6:.0f}M-parameter GPT-2-style model, {data['rounds']} rounds of "
              f"{data['round_size']} NSE edits, moto's S3 server on loopback (no network latency: add the transfer "
              f"of the bytes fetched on a real bucket). `from_pretrained` alone: {fmt(data['from_pretrained_s'])} s.",
              "", table(["measurement", "local store", "S3 store"], [
                  ["checkout, warm (s)", local["checkout_warm_s"], s3["checkout_warm_s"]],
                  ["checkout, cold blob cache (s)", "", s3["checkout_cold_cache_s"]],
                  ["checkout on a new machine: nothing cached, base hashed in full (s)", "",
                   s3["checkout_new_machine_s"]],
                  ["bytes a cold checkout fetches", "", s3["cold_checkout_bytes_fetched"]],
                  ["edit round (s)", local["round_s"], s3["round_s"]],
                  ["first round, with C0 (s)", local["first_round_with_c0_s"], s3["first_round_with_c0_s"]],
              ]), ""]
    return lines


def gpu_section() -> list[str]:
    return ["## 5. GPU", "",
            "No GPU figure exists yet: this run had no GPU machine. Every number above is CPU-only.", ""]

def query_rows(ledger_data: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Flatten ledger_queries.run's dict to rows {backend, metric, value} (ms or versions/s)."""
    rows: list[dict[str, Any]] = []
    if not ledger_data:
        return rows
    backends = ledger_data.get("backends", ledger_data)
    for backend, values in backends.items():
        if not isinstance(values, dict):
            continue
        for metric, value in values.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                rows.append({"backend": backend, "metric": metric, "value": float(value)})
    return rows
