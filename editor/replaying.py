"""Replaying rounds: recomputing recorded rounds from a version's state. On the same base, every version of a
history is recomputed and compared with its recorded state hash (`verify --replay`, explaining any difference);
onto another base, a branch's rounds are recomputed and recorded on a new branch (`replay --onto`). A revert
replays the rounds after its anchor with `replay_from`."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from editor.bases import add_model, corpus_for, dtype_of
from editor.determinism import apply_determinism, bit_exact_promised, numerics_differences
from editor.editing import round_artifacts
from editor.engine import EditState, RoundResult, rewrite_weights_copy
from editor.errors import LifecycleError
from editor.evaluate import evaluate_requests
from editor.hashing import state_hash
from editor.hparams import EditHparams
from editor.model import LoadedModel
from editor.rounds import run_round
from editor.session import Session, author_name
from editor.versions import checkout_model, environment, state_at
from ledger.faults import fault_point
from ledger.history import Round
from ledger.infos import VersionInfo
from ledger.records import ArtifactRef, RequestEntry, VersionDraft


@dataclass
class ReplayStep:
    """One version recomputed. When the state hash differs: which numerics differ from the recorded ones, how far
    the rewritten weights are from the recorded ones (largest |replayed - recorded| / max |recorded| over the
    rewritten tensors), and whether every request ended as recorded (edited, skipped, satisfied)."""

    commit_hash: str
    kind: str
    recorded_state_hash: str
    replayed_state_hash: str
    numerics_differ: dict[str, tuple] = field(default_factory=dict)
    bit_exact_promised: bool = True
    distance: float | None = None
    outcomes_same: bool | None = None

    @property
    def ok(self) -> bool:
        return self.recorded_state_hash == self.replayed_state_hash

    @property
    def broken(self) -> bool:
        """A different state hash where the recorded numerics promised the same bits."""
        return not self.ok and self.bit_exact_promised


@dataclass
class ReplayOntoReport:
    branch: str
    base_model: str
    versions: list[str]
    took: dict[str, bool] = field(default_factory=dict)   # request_key -> new target is the argmax
    subjects: dict[str, str] = field(default_factory=dict)

    @property
    def success_rate(self) -> float:
        return sum(self.took.values()) / max(1, len(self.took))


def replay(state: EditState, rounds: Iterable[Round],
           on_round: Callable[[Round, RoundResult], None] | None = None) -> list[RoundResult]:
    """Recompute `rounds` in order on the state's model, each under its recorded hyperparameters and seed."""
    results = []
    for round_ in rounds:
        state.hparams = EditHparams.from_dict(round_.hparams)
        apply_determinism(state.hparams.seed)
        result = run_round(state, list(round_.requests), round_.method)
        results.append(result)
        if on_round is not None:
            on_round(round_, result)
    return results


def replay_from(session: Session, start: str, rounds: Sequence[Round], recorded_in: str | None = None,
                ) -> tuple[LoadedModel, list[ArtifactRef], list[RoundResult]]:
    """Recompute `rounds` on the model of version `start`, reading back what `recorded_in`'s history
    recorded (templates, C0, z*). Returns the model, the context artifacts and each round's result."""
    first = rounds[0] if rounds else None
    state, loaded, context_refs = state_at(session, start, first.method if first else "nse",
                                           first.hparams if first else None, None, recorded_in=recorded_in)
    return loaded, context_refs, replay(state, rounds)


def replay_rounds(session: Session, start: str, rounds: Sequence[Round], recorded_in: str | None = None,
                  ) -> LoadedModel:
    """The model that `rounds` give when recomputed from version `start`; nothing is recorded."""
    return replay_from(session, start, [r for r in rounds if r.requests], recorded_in)[0]


def replay_same_base(session: Session, ref: str) -> list[ReplayStep]:
    """Recompute every version of `ref`'s history on its base, each under the numerics it recorded, and
    compare with the recorded state hashes (explaining any difference: `ReplayStep`). One edit state carries on
    from version to version; a revert starts again from its anchor's model."""
    lineage = session.ledger.lineage(ref)
    base = lineage.steps[0].version
    steps: list[ReplayStep] = [ReplayStep(base.commit_hash, "base", base.state_hash, base.state_hash)]
    state = loaded = None
    at: str | None = None  # the version whose model `state` holds
    for step in lineage.steps[1:]:
        version = step.version
        mode = version.environment.get("numerics", "native")
        if state is None or step.start != at or mode != session.active_numerics:
            first = step.rounds[0] if step.rounds else None
            state, loaded, _ = state_at(session, step.start or base.commit_hash, first.method if first else "nse",
                                        first.hparams if first else None, None, recorded_in=ref, mode=mode)
        results = replay(state, step.rounds)
        replayed = ReplayStep(version.commit_hash, version.kind, version.state_hash, state_hash(loaded.model))
        if not replayed.ok:
            _explain(session, replayed, version, loaded, results)
        steps.append(replayed)
        session.say(f"replayed {version.commit_hash[:12]} ({version.kind}): "
                    f"{'same state hash' if replayed.ok else 'DIFFERENT state hash'}")
        at = version.commit_hash
        if not replayed.ok:
            state = None  # continue from the recorded state of the next version's start
    return steps


def _explain(session: Session, step: ReplayStep, version: VersionInfo, replayed: LoadedModel,
             results: Sequence[RoundResult]) -> None:
    """Why a replay gave another state hash: the numerics that differ from the recorded ones, the distance of
    the rewritten weights from the recorded weights, and whether every request ended as recorded."""
    now = environment(session, replayed)
    step.numerics_differ = numerics_differences(version.environment, now)
    step.bit_exact_promised = bit_exact_promised(version.environment, now)
    recorded_weights = rewrite_weights_copy(checkout_model(session, version.commit_hash)[0])
    replayed_weights = rewrite_weights_copy(replayed)
    step.distance = max(
        float((replayed_weights[name].double() - weight.double()).abs().max()
              / weight.double().abs().max().clamp_min(1e-30))
        for name, weight in recorded_weights.items()
    )
    recorded = {o.request_key: o.status for o in session.ledger.show(version.commit_hash).outcomes}
    replayed_outcomes = {o.request_key: o.status for result in results for o in result.outcomes}
    step.outcomes_same = recorded == replayed_outcomes


def replay_onto(session: Session, branch: str, model_dir: Path, *, base_name: str, new_branch: str,
                corpus: Path | None = None, author: str | None = None) -> ReplayOntoReport:
    """Recompute a branch's history (z* included) on another base model, recorded on a new branch. One edit
    state carries through every round (the new base is loaded once)."""
    source_head = session.ledger.resolve(branch)
    rounds = session.ledger.rounds(source_head.commit_hash)
    corpus = corpus_for(session, source_head.base_model, corpus)
    if not any(b.name == new_branch for b in session.ledger.branches()):
        add_model(session, base_name, model_dir, branch=new_branch, author=author, corpus=corpus,
                  dtype=dtype_of(session, source_head.base_model))  # the new base in the old one's dtype
    elif (session.ledger.resolve(new_branch).kind != "base"
          or session.ledger.resolve(new_branch).base_model != base_name):
        raise LifecycleError(f"--new-branch {new_branch!r}: branch exists and has versions")
    head = session.ledger.resolve(new_branch).commit_hash
    report = ReplayOntoReport(branch=new_branch, base_model=base_name, versions=[])
    if rounds:
        state, loaded, context_refs = state_at(session, head, rounds[0].method, rounds[0].hparams, corpus)
        state.zstar_cache.clear()  # z* belongs to the old base: recompute on the new one

        def record(round_: Round, result: RoundResult) -> None:
            nonlocal head
            artifacts = round_artifacts(session, result, context_refs)
            draft = VersionDraft(
                kind="replay", base_model=base_name, state_hash=state_hash(loaded.model),
                author=author or author_name(), reason=f"replay of {round_.source[:12]} from branch {branch}",
                method=round_.method, hparams=result.hparams, environment=environment(session, loaded),
                requests=[RequestEntry(r, "replayed") for r in round_.requests], footprint=result.footprint,
                outcomes=result.outcomes, artifacts=artifacts, extra={"replay_of": round_.source},
            )
            fault_point("replay.artifacts_stored")
            head = session.ledger.append_version(draft, new_branch, expected_head=head).commit_hash
            report.versions.append(head)
            session.say(f"replay onto {base_name}: round {len(report.versions)}/{len(rounds)}")

        replay(state, rounds, on_round=record)
    requests = [r for round_ in rounds for r in round_.requests]
    if requests:
        final, _ = checkout_model(session, head)
        evaluation = evaluate_requests(final.model, final.tokenizer, requests)
        for request, row in zip(requests, evaluation.per_request, strict=True):
            report.took[request.request_key] = bool(row.get("efficacy_argmax", row.get("efficacy", 0.0)) >= 1.0)
            report.subjects[request.request_key] = request.subject
    return report
