"""`editledger probe`: what the model answers to a prompt at each of several versions, side by side.

Each version is checked out (rebuilt from the ledger and verified) once; for every prompt it gives the top-k next
tokens with their probabilities and a greedy continuation. The branch's base version is among the columns unless
asked otherwise, so "before" is always there to compare with."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from editor.lifecycle import LifecycleError, Workspace
from editor.model import LoadedModel

MAX_TOP_K = 50
MAX_NEW_TOKENS = 64


@dataclass(frozen=True)
class TokenChance:
    token: str
    probability: float


@dataclass(frozen=True)
class ProbeColumn:
    ref: str  # as asked ("base" for the added base version)
    commit_hash: str
    kind: str
    depth: int


@dataclass(frozen=True)
class ProbeAnswer:
    top: list[TokenChance]
    continuation: str  # greedy, without the prompt


@dataclass(frozen=True)
class ProbeRow:
    prompt: str
    kind: str  # prompt | rewrite | paraphrase | neighborhood
    expected: str | None  # for a request's prompts: the answer the edit wants (neighbours: their own answer)
    answers: list[ProbeAnswer]  # one per column


@dataclass(frozen=True)
class ProbeReport:
    columns: list[ProbeColumn]
    rows: list[ProbeRow]
    request_key: str | None = None
    target_true: str | None = None


@torch.no_grad()
def next_tokens(loaded: LoadedModel, prompt: str, top_k: int) -> list[TokenChance]:
    ids = torch.tensor([list(loaded.tokenizer(prompt)["input_ids"])], device=loaded.device)
    logits = loaded.model(input_ids=ids).logits[0, -1].float()
    probabilities = torch.softmax(logits, dim=-1)
    top = torch.topk(probabilities, k=min(top_k, probabilities.numel()))
    return [TokenChance(loaded.tokenizer.decode([int(i)]), float(p))
            for p, i in zip(top.values.tolist(), top.indices.tolist(), strict=True)]


@torch.no_grad()
def greedy_continuation(loaded: LoadedModel, prompt: str, max_new_tokens: int) -> str:
    """Argmax decoding (deterministic), stopping at the end-of-text token. The whole sequence is run at each step
    (a few tokens: no key-value cache, whose interface changes between transformers releases)."""
    ids = list(loaded.tokenizer(prompt)["input_ids"])
    produced: list[int] = []
    for _ in range(max_new_tokens):
        logits = loaded.model(input_ids=torch.tensor([ids + produced], device=loaded.device)).logits
        choice = int(logits[0, -1].argmax())
        if choice == loaded.tokenizer.eos_token_id:
            break
        produced.append(choice)
    return loaded.tokenizer.decode(produced, skip_special_tokens=True)


def probe(ws: Workspace, prompts: Sequence[str] = (), refs: Sequence[str] = ("main",), *, request: str | None = None,
          top_k: int = 5, max_new_tokens: int = 8, with_base: bool = True) -> ProbeReport:
    """Probe `prompts` (and, with `request`, that request's rewrite, paraphrase and neighbourhood prompts) at each
    version of `refs`, the base version of the first one's branch first unless `with_base` is False."""
    if not 1 <= top_k <= MAX_TOP_K:
        raise LifecycleError(f"--top-k {top_k}: expected 1 to {MAX_TOP_K}")
    if not 1 <= max_new_tokens <= MAX_NEW_TOKENS:
        raise LifecycleError(f"--tokens {max_new_tokens}: expected 1 to {MAX_NEW_TOKENS}")
    if not refs:
        raise LifecycleError("--at: give at least one version")
    rows: list[tuple[str, str, str | None]] = [(p, "prompt", None) for p in prompts]
    request_key = target_true = None
    if request is not None:
        fact = ws.ledger.request(request).request
        request_key, target_true = fact.request_key, fact.target_true
        rows.append((fact.text, "rewrite", fact.target_new))
        rows += [(p.text, "paraphrase", fact.target_new) for p in fact.prompts("paraphrase")]
        rows += [(p.text, "neighborhood", p.target or fact.target_true) for p in fact.prompts("neighborhood")]
    if not rows:
        raise LifecycleError("give a PROMPT or --request KEY")
    for text, _, _ in rows:
        if not text.strip():
            raise LifecycleError("PROMPT: empty prompt")
    columns: list[ProbeColumn] = []
    wanted = [ws.ledger.resolve(ref) for ref in refs]
    if with_base:
        base = ws.ledger.ancestry(wanted[0].commit_hash)[0]
        columns.append(ProbeColumn("base", base.commit_hash, base.kind, base.depth))
    for ref, version in zip(refs, wanted, strict=True):
        if all(c.commit_hash != version.commit_hash for c in columns):
            columns.append(ProbeColumn(ref, version.commit_hash, version.kind, version.depth))
    answers: list[list[ProbeAnswer]] = [[] for _ in rows]
    for number, column in enumerate(columns, 1):
        ws.say(f"probe: checking out {column.ref} ({column.commit_hash[:12]}), {number}/{len(columns)}")
        loaded, _ = ws.checkout_model(column.commit_hash)
        for row, (text, _, _) in zip(answers, rows, strict=True):
            row.append(ProbeAnswer(next_tokens(loaded, text, top_k), greedy_continuation(loaded, text,
                                                                                          max_new_tokens)))
        del loaded
    return ProbeReport(columns, [ProbeRow(text, kind, expected, row)
                                 for (text, kind, expected), row in zip(rows, answers, strict=True)],
                       request_key, target_true)
