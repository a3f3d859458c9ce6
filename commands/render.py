"""Everything `editledger` prints: the two consoles, JSON, plain lines, tables, one function per kind of record.

Output is written unwrapped (`soft_wrap`), so hashes and prompts stay whole when piped or narrow: scripts read them.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

out = Console(soft_wrap=True)  # lines stay whole when piped or narrow: scripts read them
err = Console(stderr=True, soft_wrap=True)

SHOWN_REQUESTS = 8  # without --all: this many requests of a version, then a count
SHOWN_DIFF_REQUESTS = 20


def plain(value: Any) -> Any:
    """Dataclasses (and lists of them) as JSON-able values."""
    if is_dataclass(value) and not isinstance(value, type):
        return {k: plain(v) for k, v in asdict(value).items()}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(plain(value), indent=2, ensure_ascii=False, default=str) + "\n")


def short(commit: str | None) -> str:
    return (commit or "")[:12]


def line(text: str = "", markup: bool = False) -> None:
    """One output line, never wrapped or cropped (hashes and prompts stay whole when piped or narrow)."""
    out.print(text, soft_wrap=True, markup=markup, highlight=False)


def fail_line(message: str) -> None:
    """One line on stderr, never wrapped: scripts and tests read it whole."""
    first = message.strip().splitlines()[0] if message.strip() else "failed"
    sys.stderr.write(first + "\n")


def warn_line(text: str) -> None:
    """A warning on stderr (yellow on a terminal), never wrapped."""
    err.print(text, style="yellow", markup=False, soft_wrap=True)


def fact_text(request: Any) -> str:
    """`'prompt with the subject': old → new` on one line."""
    return f"{request.text!r}: {request.target_true or '?'} → {request.target_new}"


def score_line(scores: list[Any]) -> str:
    summary = [s for s in scores if s.request_key is None]
    return ", ".join(f"{s.metric} {s.value:.3f}" for s in summary if s.metric != "n_requests")


def metric_text(values: dict[str, Any]) -> str:
    """The headline metrics of an evaluation, suite prefix dropped: `efficacy 1.000, specificity 0.500`."""
    shown = {k.rsplit("/", 1)[-1]: v for k, v in values.items() if isinstance(v, (int, float))}
    headline = {k: v for k, v in shown.items() if not k.endswith("_argmax")} or shown
    return ", ".join(f"{k} {v:.3f}" for k, v in headline.items())


def event_detail(detail: dict[str, Any] | None) -> str:
    if not detail:
        return ""
    if "residual_before" in detail:
        return (f"{detail['status']}, residual {detail['residual_before']:.4g} → {detail['residual_after']:.4g}")
    return metric_text(detail)


def replay_verdict(step: Any) -> str:
    """One line on a replayed version: the same bits, or why not and how far."""
    if step.ok:
        return "[green]same[/green]"
    differ = ", ".join(f"{name} {was} -> {now}" for name, (was, now) in step.numerics_differ.items())
    distance = f"largest relative weight change {step.distance:.2e}" if step.distance is not None else ""
    outcomes = {True: "every request ended as recorded", False: "some requests ended otherwise", None: ""}
    detail = "; ".join(x for x in (distance, outcomes[step.outcomes_same]) if x)
    if step.broken:
        return f"[red]DIFFERENT on the recorded numerics[/red] ({detail})"
    return f"[yellow]different numerics[/yellow] ({differ or 'unrecorded fields'}): {detail}"


# ------------------------------------------------------------------------------------------------ setup
def show_models(models: list[Any]) -> None:
    table = Table("name", "architecture", "state hash", "source")
    for m in models:
        table.add_row(m.name, m.architecture, short(m.state_hash), m.source_path or "")
    out.print(table)


def show_world(info: Any) -> None:
    editable = len(info.requests())
    out.print(f"world in {info.out_dir}: {info.n_facts} facts ({editable} editable, {info.n_facts - editable} never "
              f"edited), knows {info.accuracy:.1%} "
              f"(paraphrases {info.paraphrase_accuracy:.1%}), state {short(info.state_hash)}, "
              f"built in {info.build_seconds:.1f}s")
    if info.edit_hparams:
        settings = ", ".join(f"{k}={json.dumps(v)}" for k, v in info.edit_hparams.items())
        out.print(f"editing this model needs {settings}: recorded in its directory, applied when it is added")


# ------------------------------------------------------------------------------------------------ editing
def show_rounds(rounds: list[Any]) -> None:
    for r in rounds:
        v = r.version
        scores = score_line(r.scores)
        out.print(f"[green]{short(v.commit_hash)}[/green] {v.kind} {v.n_requests} requests, "
                  f"state {short(v.state_hash)}" + (f"; {scores}" if scores else ""), soft_wrap=True)


def show_aggregate(aggregate: dict[str, float]) -> None:
    table = Table("metric", "value")
    for k, v in sorted(aggregate.items()):
        table.add_row(k, f"{v:.0f}" if k == "n_requests" else f"{v:.4f}")
    out.print(table)


def show_replay(steps: list[Any]) -> None:
    for s in steps:
        out.print(f"{short(s.commit_hash)} {s.kind:7} {replay_verdict(s)}")


def show_demo(report: Any) -> None:
    table = Table(title="editledger demo: summary", show_header=True)
    table.add_column("what")
    table.add_column("result")
    table.add_row("base model", f"{report.base_label} {short(report.base_state_hash)} ({report.n_facts} facts)")
    table.add_row("edits", f"{report.n_edits} in {report.n_rounds} NSE rounds, {report.edit_seconds:.1f}s")
    for metric in ("efficacy", "generalization", "specificity"):
        if metric in report.scores:
            table.add_row(f"  {metric} after the last round", f"{report.scores[metric]:.3f}")
    for probe in report.probes:
        table.add_row(f"  {probe.prompt}", f"{probe.before!r} -> {probe.after!r} (wanted {probe.target_new!r})")
    table.add_row("revert", f"{short(report.revert_commit)}: reverted fact back to its base answer: "
                  f"{'yes' if report.reverted_back else 'no'}; others' efficacy {report.others_efficacy:.3f}")
    table.add_row("checkout", f"{report.checkouts} versions rebuilt and verified; round 1 exported to "
                  f"{report.export_dir}")
    table.add_row("replay", f"{report.replayed_ok}/{report.replayed} versions reproduced bit-exactly")
    table.add_row("verify", f"{'ok' if report.verify_ok else 'FAILED'}: {report.versions_checked} versions, "
                  f"{report.blobs_checked} blobs")
    table.add_row("files", f"model {report.world_dir}, ledger {report.ledger_dir / '.editledger'}")
    table.add_row("time", f"{report.seconds:.1f}s")
    for step in report.step_times:
        table.add_row(f"  {step.step}", f"{step.wall_seconds:.1f}s ({step.cpu_seconds:.0f} CPU-seconds)")
    out.print(table)
    out.print(f"Explore: cd {report.ledger_dir} && editledger log")


# ------------------------------------------------------------------------------------------------ history
def show_log(versions: list[Any], fmt: str) -> None:
    """`fmt`: short (one line per version, full hashes), full (like git log) or table."""
    if fmt == "short":
        for v in versions:
            line(f"{v.commit_hash} {v.kind:6} {v.created_at[:19]} {v.author} {v.n_requests:>3} requests"
                 + (f" {v.method}" if v.method else "") + (f": {v.reason}" if v.reason else ""))
    elif fmt == "full":
        for v in versions:
            line(f"commit {v.commit_hash} ({v.kind})")
            if v.parent_hash:
                line(f"Parent: {v.parent_hash}")
            line(f"Author: {v.author}")
            line(f"Date:   {v.created_at}")
            line(f"Method: {v.method or '-'}   Requests: {v.n_requests}   Base: {v.base_model}")
            line(f"State:  {v.state_hash}")
            line()
            line(f"    {v.reason}")
            line()
    else:
        table = Table("commit", "kind", "method", "requests", "author", "when", "reason", "state")
        for column in (0, 5, 7):
            table.columns[column].no_wrap = True
        table.columns[6].overflow = "fold"
        for v in versions:
            table.add_row(short(v.commit_hash), v.kind, v.method or "", str(v.n_requests), v.author,
                          v.created_at[:19], v.reason, short(v.state_hash))
        out.print(table)


def show_version(detail: Any, shown_requests: int | None = SHOWN_REQUESTS) -> None:
    v = detail.version
    line(f"commit {v.commit_hash} ({v.kind})" + (f"  tags: {', '.join(detail.tags)}" if detail.tags else ""))
    if v.parent_hash:
        line(f"parent {v.parent_hash}")
    line(f"author {v.author}  at {v.created_at}  method {v.method or '-'}  base {v.base_model}")
    line(f"state  {v.state_hash}")
    if v.reason:
        line(f"reason: {v.reason}")
    if v.hparams:
        line("hparams: " + ", ".join(f"{k}={json.dumps(x)}" for k, x in sorted(v.hparams.items())))
    roles: dict[str, int] = {}
    for entry in detail.requests:
        roles[entry.role] = roles.get(entry.role, 0) + 1
    line(f"requests: {len(detail.requests)}" + (f" ({', '.join(f'{n} {r}' for r, n in roles.items())})"
                                                  if roles else ""))
    ordered = sorted(detail.requests, key=lambda e: (e.role != "reverted", e.position))
    for entry in ordered[:shown_requests]:
        line(f"  {entry.role:8} {short(entry.request_key)} {fact_text(entry.request)}")
    if shown_requests is not None and len(ordered) > shown_requests:
        line(f"  … {len(ordered) - shown_requests} more (show {short(v.commit_hash)} --all lists every request)")
    layers: dict[int, tuple[set[int], int, float]] = {}
    for f in detail.footprint:
        neurons, passes, norm = layers.get(f.layer, (set(), 0, 0.0))
        layers[f.layer] = (neurons | set(f.neurons), passes + 1, norm + f.delta_norm)
    if layers:
        line("footprint: " + "; ".join(f"L{layer} {len(n)} neurons, {p} passes, Σ‖ΔW‖ {norm:.3g}"
                                       for layer, (n, p, norm) in sorted(layers.items())))
    if detail.outcomes:
        statuses: dict[str, int] = {}
        for o in detail.outcomes:
            statuses[o.status] = statuses.get(o.status, 0) + 1
        before = sum(o.residual_before for o in detail.outcomes) / len(detail.outcomes)
        after = [o.residual_after for o in detail.outcomes]
        line(f"outcomes: {', '.join(f'{n} {s}' for s, n in statuses.items())}; residual mean {before:.3g} → "
             f"{sum(after) / len(after):.3g} (largest after {max(after):.3g})")
    scores = score_line(detail.scores)
    line(f"scores: {scores}" if scores else "scores: none recorded at this version (editledger eval REF)")
    if detail.artifacts:
        total = sum(a.size_bytes for a in detail.artifacts)
        line(f"artifacts: {len(detail.artifacts)} ({', '.join(a.role for a in detail.artifacts)}), "
             f"{total / 2**20:.3g} MiB")


def show_version_all(detail: Any) -> None:
    show_version(detail, shown_requests=None)
    footprint = Table("layer", "pass", "neurons", "‖ΔW‖", title="footprint")
    for f in detail.footprint:
        footprint.add_row(str(f.layer), str(f.pass_index), str(len(f.neurons)), f"{f.delta_norm:.4g}")
    out.print(footprint)
    outcomes = Table("request", "residual before", "after", "status", title="outcomes")
    for o in detail.outcomes:
        outcomes.add_row(short(o.request_key), f"{o.residual_before:.4g}", f"{o.residual_after:.4g}", o.status)
    out.print(outcomes)
    if detail.scores:
        scores = Table("request", "suite", "metric", "value", title="scores")
        for s in detail.scores:
            scores.add_row(short(s.request_key) if s.request_key else "(all)", s.suite or "", s.metric,
                           f"{s.value:.4f}")
        out.print(scores)
    artifacts = Table("role", "sha256", "kind", "bytes", title="artifacts")
    for a in detail.artifacts:
        artifacts.add_row(a.role, short(a.sha256), a.kind, str(a.size_bytes))
    out.print(artifacts)


def show_request(detail: Any) -> None:
    r = detail.request
    line(f"request {detail.request_key}")
    line(f"subject: {r.subject}")
    line(f"fact: {fact_text(r)}")
    kinds: dict[str, int] = {}
    for p in r.eval_prompts:
        kinds[p.kind] = kinds.get(p.kind, 0) + 1
    if kinds:
        line("evaluation prompts: " + ", ".join(f"{n} {k}" for k, n in kinds.items()))
    line(f"in effect at the head of: {', '.join(detail.live_on)}" if detail.live_on
         else "in effect at no branch head")
    line(f"versions ({len(detail.events)}):")
    for e in detail.events:
        residual = (f", residual {e.residual_before:.4g} → {e.residual_after:.4g} ({e.status})"
                    if e.residual_before is not None else "")
        line(f"  {e.commit_hash} {e.role:8} {e.kind:6} {e.created_at[:19]} {e.author}{residual}"
             + (f": {e.reason}" if e.reason else ""))
    line(f"scores ({len(detail.scores)} evaluations):" if detail.scores else "scores: none recorded")
    for s in detail.scores:
        line(f"  {s.commit_hash} {s.created_at[:19]} {metric_text(s.scores)}")


def show_diff(result: Any, show_all: bool) -> None:
    line(f"diff {result.a} .. {result.b}")
    line(f"merge base {result.merge_base or 'none'}; {len(result.versions)} versions between")
    for sign, title, requests in (("+", "added", result.added), ("-", "removed", result.removed)):
        line(f"requests {title}: {len(requests)}")
        shown = requests if show_all else requests[:SHOWN_DIFF_REQUESTS]
        for info in shown:
            line(f"  {sign} {short(info.request_key)} {fact_text(info.request)}")
        if len(requests) > len(shown):
            line(f"  … {len(requests) - len(shown)} more (--all lists them, --json gives the full record)")
    line(f"layers touched: {len(result.layers)}")
    for layer in result.layers:
        line(f"  L{layer.layer}: {len(layer.neurons)} neurons by {layer.n_versions} versions, "
             f"Σ‖ΔW‖ {layer.delta_norm_sum:.4g}")


def show_blame(entries: list[Any]) -> None:
    table = Table("commit", "pass", "‖ΔW‖ of layer", "author", "reason")
    for e in entries:
        table.add_row(short(e.commit_hash), str(e.pass_index), f"{e.delta_norm:.4g}", e.author, e.reason)
    out.print(table)


def show_history(events: list[Any]) -> None:
    for e in events:
        line(f"{e.commit_hash} {e.created_at[:19]} {e.event:9} {e.kind:6} {short(e.request_key)} "
             f"{e.prompt.replace('{}', e.subject)!r}: {e.target_true or '?'} → {e.target_new}"
             + (f"  [{event_detail(e.detail)}]" if e.detail else ""))


def show_branches(branches: list[Any]) -> None:
    table = Table("branch", "head", "base model")
    for b in branches:
        table.add_row(b.name, short(b.head_hash), b.base_model)
    out.print(table)


def show_tags(tags: dict[str, str]) -> None:
    for tag_name, commit in sorted(tags.items()):
        out.print(f"{tag_name}  {short(commit)}")


# ------------------------------------------------------------------------------------------------ audit
def show_verification(report: Any, problems: list[str], steps: list[Any], branches: list[str],
                      replayed: bool) -> None:
    """`verify`'s summary: what was recomputed, the checkpoint, the replay (when asked for) and its failures."""
    line(f"commit hashes: {report.versions_checked} versions recomputed from their rows")
    line(f"blobs: {report.blobs_checked} re-read and their sha256 checked")
    if report.checkpoint_action == "written":
        line(f"checkpoint: {report.checkpoint} written (it did not exist): every branch's head and length")
    elif report.checkpoint_action == "checked":
        verdict = "every branch still holds its checkpointed head" if not problems else "see below"
        line(f"checkpoint: {report.checkpoint} checked: {verdict}")
    elif report.checkpoint_action == "skipped":
        line(f"checkpoint: {report.checkpoint} not written (the ledger has problems)")
    if replayed:
        exact = sum(s.ok for s in steps)
        verdict = ("replayed bit-exactly (every state hash reproduced)" if exact == len(steps) else
                   f"replayed, {exact} bit-exactly")
        plural = "branch" if len(branches) == 1 else "branches"
        line(f"replay: {len(steps)} distinct versions of {len(branches)} {plural} ({', '.join(branches)}) "
             f"{verdict} from their base")
        for step in steps:
            if not step.ok:
                line(f"  {step.commit_hash} {step.kind}: {replay_verdict(step)}", markup=True)
    if not problems:
        line("[green]ok[/green]", markup=True)


def show_gc(removed: list[str], applied: bool) -> None:
    for sha in removed:
        out.print(sha)
    out.print(f"{len(removed)} unreferenced blobs {'deleted' if applied else 'found (dry run; --apply deletes)'}")


def show_probe(report: Any) -> None:
    if report.request_key:
        line(f"request {report.request_key} (was {report.target_true or '?'})")
    table = Table("prompt", *[f"{c.ref} {short(c.commit_hash)} ({c.kind})" for c in report.columns],
                  show_lines=True)
    for row in report.rows:
        label = row.prompt + (f"\n[{row.kind}, expects {row.expected}]" if row.expected else "")
        cells = []
        for answer in row.answers:
            top = ", ".join(f"{t.token.strip() or repr(t.token)} {t.probability:.2f}" for t in answer.top)
            cells.append(f"{top}\n→ {answer.continuation.strip()}")
        table.add_row(label, *cells)
    out.print(table)
