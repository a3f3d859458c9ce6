"""The report's costs on real models: editledger's NSE against the reference implementation (speed), storage per
edit at real size (`benchmarks.real_storage`), and the lifecycle checked on a real model
(`benchmarks.real_lifecycle`)."""

from __future__ import annotations

from typing import Any

from benchmarks.report_format import env_line, fmt, pct, table, verdict

REFERENCE_PHASES = (("z*", "z*"), ("keys", "keys (the passes' and Cp's)"), ("hidden states", "hidden states"),
                    ("neuron selection", "neuron selection"), ("solve", "solve"), ("write", "write"), ("Cp", "Cp"),
                    ("measure", "outcome measurements"), ("other", "the rest of the round"))


def reference_speed_lines(record: dict[str, Any] | None) -> list[str]:
    """editledger's NSE against the reference implementation on a real model, when measured (a driver outside the
    repository runs both in one process: the reference's code is not the project's to ship)."""
    if record is None:
        return []
    d = record["data"]
    phases, per_edit, cpu = d["phase_seconds"], d["seconds_per_edit"], d["cpu_seconds_per_edit"]
    rows = [[label, phases["ours"].get(name), phases["reference"].get(name)] for name, label in REFERENCE_PHASES]
    rows += [["**all rounds**", d["total_seconds"]["ours"], d["total_seconds"]["reference"]],
             ["seconds per edit", per_edit["ours"], per_edit["reference"]],
             ["CPU seconds per edit", cpu["ours"], cpu["reference"]]]
    agree = d["agreement"]
    return [f"### {d['model']}: editledger's NSE vs the reference implementation (run on its own)", "",
            env_line(record), "",
            f"{d['rounds']} NSE rounds of {d['round_size']} CounterFact facts the model knows, both implementations "
            f"in one process, rounds alternating which goes first: {d['how']} Reference: {d['reference']['repo']} "
            f"at {d['reference']['commit'][:12]}. Seconds (wall) over all rounds:", "",
            table(["phase", "editledger", "reference"], rows), "",
            f"Reference / editledger: **{d['ratio_wall']:.2f}x** wall, {d['ratio_cpu']:.2f}x CPU (goal ≥ "
            f"{d['goal']:g}x: {verdict(d['ratio_wall'] >= d['goal'])}). {d['phase_notes']}", "",
            f"The results agree: z* within {agree['zstar_rel_diff_max']:.1g} of ‖z* − h0‖, the same neuron sets in "
            f"every layer and pass (Jaccard {agree['neuron_jaccard_min']:g}), ΔW within "
            f"{agree['delta_w_rel_diff_max']:.1g} (relative), the residual after each round the same to "
            f"{agree['residual_rel_diff_max']:.1g}; efficacy / generalization / specificity after the last round "
            f"{_scores(d['quality_after']['ours'])} (editledger), {_scores(d['quality_after']['reference'])} "
            f"(reference).", ""]


def _scores(scores: dict[str, float]) -> str:
    return " / ".join(fmt(scores[m], 2) for m in ("efficacy", "generalization", "specificity"))


def real_storage_lines(record: dict[str, Any] | None) -> list[str]:
    """Storage on real models (`python -m benchmarks.real_storage`), when measured."""
    if not record or not record.get("models"):
        return []
    rows = []
    for name, model in sorted(record["models"].items()):
        roles = model["bytes_per_edit_by_role"]
        delta = roles.get("delta", 0)
        rows.append([name, model["edits"], model["rounds"], model["columns_per_edit"], delta / 1024,
                     model["floor_bytes_per_edit"] / 1024, delta / max(1.0, model["floor_bytes_per_edit"]),
                     roles.get("keys", 0) / 1024, roles.get("zstar", 0) / 1024, roles.get("c0", 0) / 2**20,
                     model.get("note", "")])
    return ["### At real size (`python -m benchmarks.real_storage --ledger DIR --name NAME`)", "",
            "Per edit, from a real model's ledger. C0 is stored once per base, corpus and layer, by the first round "
            "that needs it: shown per edit of that ledger.", "",
            table(["model", "edits", "rounds", "columns per edit", "delta KiB/edit", "floor KiB/edit",
                   "delta / floor", "keys KiB/edit", "z* KiB/edit", "C0 MiB/edit", "how"], rows), ""]


def real_lifecycle_lines(records: dict[str, dict[str, Any]]) -> list[str]:
    """The lifecycle checked on a real model outside the suite (`python -m benchmarks.real_lifecycle`)."""
    if not records:
        return []
    lines = ["### Lifecycle on a real model (`python -m benchmarks.real_lifecycle --model MODEL`)", "",
             "One NSE round through `Workspace` on the model's GGUF from its package: scores of the edited facts "
             "before -> after (efficacy / generalization / specificity, %), on the version checked out and verified; "
             "one request reverted; the branch replayed bit for bit; `verify`. Wall and CPU seconds of the whole "
             "run (conversion into the work directory included when it was not there yet).", ""]
    rows = []
    for name, record in sorted(records.items()):
        data = record["data"]
        before, after = data["scores_before"], data["scores_after"]
        scores = " / ".join(f"{pct(before.get(k))} -> {pct(after.get(k))}"
                            for k in ("efficacy", "generalization", "specificity"))
        c0_tokens = data["c0_texts"] * data["c0_tokens_per_text"]
        rows.append([name, data["edits"], data["overrides"].get("layers"), c0_tokens, scores,
                     f"{data['replayed_ok']}/{data['replayed']}", data["verify_ok"], data["wall_seconds"],
                     data["cpu_seconds"]])
        lines.append(f"- {name}: {env_line(record)}")
    lines += ["", table(["run", "edits", "blocks", "C0 tokens sampled", "before -> after", "replayed bit-exact",
                         "verify", "wall s", "CPU s"], rows), ""]
    return lines
