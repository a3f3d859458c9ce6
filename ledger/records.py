"""Plain records exchanged between the engine, the lifecycle and the ledger.

These dataclasses are the contract: the editor produces them, the ledger stores them. They hold only
JSON-able values (no tensors), so `ledger/` stays free of torch.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

VersionKind = Literal["base", "edit", "revert", "replay", "import"]
RequestRole = Literal["edited", "reverted", "replayed"]
RequestStatus = Literal["edited", "skipped", "satisfied"]
PromptKind = Literal["paraphrase", "neighborhood", "generation", "attribute", "portability"]


def canonical_json(value: Any) -> str:
    """The one serialisation that hashes use: sorted keys, no spaces, UTF-8, no NaN."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


@dataclass(frozen=True)
class EvalPrompt:
    """A prompt used to evaluate a request; `target` is its expected answer where it has its own."""

    kind: str
    text: str
    target: str | None = None


@dataclass(frozen=True)
class EditRequest:
    """One fact edit: `prompt` holds `{}` where the subject goes."""

    subject: str
    prompt: str
    target_new: str
    target_true: str | None = None
    relation_id: str | None = None
    case_id: str | None = None
    eval_prompts: tuple[EvalPrompt, ...] = ()

    @property
    def text(self) -> str:
        return self.prompt.format(self.subject)

    def prompts(self, kind: str) -> list[EvalPrompt]:
        return [p for p in self.eval_prompts if p.kind == kind]

    def content(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "prompt": self.prompt,
            "target_new": self.target_new,
            "target_true": self.target_true,
            "relation_id": self.relation_id,
            "case_id": self.case_id,
            "eval_prompts": [[p.kind, p.text, p.target] for p in self.eval_prompts],
        }

    @property
    def request_key(self) -> str:
        """Content address of the request: the same fact with the same prompts is the same request."""
        return hashlib.sha256(canonical_json(self.content()).encode()).hexdigest()

    @classmethod
    def from_content(cls, data: dict[str, Any]) -> EditRequest:
        prompts = tuple(EvalPrompt(kind=k, text=t, target=g) for k, t, g in data.get("eval_prompts", []))
        return cls(
            subject=data["subject"],
            prompt=data["prompt"],
            target_new=data["target_new"],
            target_true=data.get("target_true"),
            relation_id=data.get("relation_id"),
            case_id=data.get("case_id"),
            eval_prompts=prompts,
        )


@dataclass(frozen=True)
class RequestEntry:
    """A request's place in a version: edited by it, reverted by it, or replayed by it."""

    request: EditRequest
    role: RequestRole = "edited"


@dataclass(frozen=True)
class FootprintLayer:
    """Neurons (columns of the rewrite module) changed at one layer in one pass, and the change's norm."""

    layer: int
    pass_index: int
    neurons: tuple[int, ...]
    delta_norm: float


@dataclass(frozen=True)
class RequestOutcome:
    """Per request: distance to its target value before and after the round, and what happened to it.

    Whether it took (None in versions recorded before these were measured): `zstar_loss` is the target's mean
    negative log-likelihood with z* in place (the loss z* minimises, without its KL and decay terms) and
    `zstar_target_prob` its exp(-loss); `target_prob_before` / `target_prob_after` are the target's probability
    at the bare prompt on the model before and after the round; `already_true` / `took`: every target token is
    the model's top prediction (teacher forced) before / after the round."""

    request_key: str
    residual_before: float
    residual_after: float
    status: RequestStatus
    zstar_loss: float | None = None
    zstar_target_prob: float | None = None
    target_prob_before: float | None = None
    target_prob_after: float | None = None
    already_true: bool | None = None
    took: bool | None = None

    @property
    def measured(self) -> bool:
        return any(v is not None for v in self.measures())

    def measures(self) -> tuple[float | bool | None, ...]:
        return (self.zstar_loss, self.zstar_target_prob, self.target_prob_before, self.target_prob_after,
                self.already_true, self.took)


@dataclass(frozen=True)
class ArtifactRef:
    """A blob in the store used by a version; `role` names its use (delta, zstar, keys, templates, ...)."""

    role: str
    sha256: str
    kind: str
    size_bytes: int


@dataclass(frozen=True)
class Score:
    metric: str
    value: float
    request_key: str | None = None
    suite: str | None = None


@dataclass(frozen=True)
class RoundRecord:
    """A round that a revert replayed: the version that first applied it and its request keys, in order."""

    source: str
    request_keys: tuple[str, ...]


@dataclass(frozen=True)
class RevertRecord:
    """What a revert version's model is made of: the model of `anchor` (an ancestor) plus `rounds` replayed on
    it. `reverted_version` is set when it reverts a revert (it restores what that one removed)."""

    anchor: str
    rounds: tuple[RoundRecord, ...]
    reverted_version: str | None = None


@dataclass
class VersionDraft:
    """Everything a new version records. The ledger turns it into rows and a commit hash."""

    kind: VersionKind
    base_model: str
    state_hash: str
    author: str = "unknown"
    reason: str = ""
    method: str | None = None
    hparams: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    requests: list[RequestEntry] = field(default_factory=list)
    footprint: list[FootprintLayer] = field(default_factory=list)
    outcomes: list[RequestOutcome] = field(default_factory=list)
    artifacts: list[ArtifactRef] = field(default_factory=list)
    scores: list[Score] = field(default_factory=list)
    # Free-form recorded facts that belong in the hash.
    extra: dict[str, Any] = field(default_factory=dict)
    revert: RevertRecord | None = None  # a revert's anchor and replayed rounds (in the hash too)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
